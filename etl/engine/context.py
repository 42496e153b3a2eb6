"""Everything one sync run needs to know, passed to each stage function."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, create_engine

from etl.config.project import ConnectionConfig, ProjectConfig
from etl.db.background import BackgroundWrites
from etl.db.connect import dialect_of, engine_for
from etl.engine.tables import EntityTables
from etl.mapping.loader import MappingSet
from etl.mapping.model import EntityMapping
from etl.store.repo import PublishedFields, Store

ProgressFn = Callable[[str, str, int], None]


@dataclass
class SyncContext:
    """A run: configuration, mappings, store, run id and mode.

    In a dry run (`erpoa plan`) staging happens in a private SQLite work
    database and nothing is written to the target or the store.
    """

    config: ProjectConfig
    mappings: MappingSet
    store: Store
    run_id: str
    full_refresh: bool = False
    #: False skips the keys-only deletion sweep of incremental reads (a later sweeping run finds deletions)
    sweep: bool = True
    dry_run: bool = False
    trigger: str = "cli"
    as_of: date = field(default_factory=date.today)
    progress: ProgressFn | None = None
    only_ids: dict[str, list[str]] | None = None
    #: Source records (source, id) quarantined before this run (a replay of them): the gate's thresholds count
    #: only the records this run quarantines anew; those that fail again stay quarantined either way.
    already_quarantined: frozenset[tuple[str, str]] = frozenset()
    planned_quarantine: list[pd.DataFrame] = field(default_factory=list)
    #: Gate outcomes of a dry run (`quality.run_gate` records them in the store otherwise), with `entity`.
    planned_gate: list[dict[str, Any]] = field(default_factory=list)
    #: (entity, partition) whose gold rows are known not to exist yet: their first merge skips the delete
    fresh_gold: set[tuple[str, int]] = field(default_factory=set)
    #: Warnings an entity's extraction found, for its run message (`EntityResult.notes`): cursor values later than the
    #: clock allows (`etl.engine.extract.CursorMaximum`). Appended by the threads that extract its sources.
    extract_notes: dict[str, list[str]] = field(default_factory=dict)
    #: (entity, source) -> the source's column names as read (`extract.source_columns`), probed once per run
    source_columns: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: (entity, source) -> rows the deletion sweep read again (records the mirror did not hold), added to `read`
    read_again: dict[tuple[str, str], int] = field(default_factory=dict)
    _tables: dict[str, EntityTables] = field(default_factory=dict)
    _published: dict[str, PublishedFields | None] = field(default_factory=dict)
    _work: Engine | None = None
    _workdir: Any = None

    @property
    def timezone(self) -> str:
        return self.config.run.timezone

    @property
    def chunk_size(self) -> int:
        return self.config.run.chunk_size

    def note(self, entity: str, note: str) -> None:
        """Add a warning to the entity's `extract_notes`."""
        self.extract_notes.setdefault(entity, []).append(note)

    def mapping(self, entity: str) -> EntityMapping:
        return self.mappings.entity(entity)

    def published_fields(self, entity: str) -> PublishedFields | None:
        """`Store.published_fields` of `entity`, read once per run and process: only the run's own publish changes
        it, and `extract.prepare` and the merge (`build.fields_to_fill`) read it before that."""
        if entity not in self._published:
            self._published[entity] = self.store.published_fields(entity)
        return self._published[entity]

    def target_conn(self, mapping: EntityMapping) -> ConnectionConfig:
        return self.config.connection(mapping.target.connection)

    def source_conn(self, mapping: EntityMapping, source: str) -> ConnectionConfig:
        spec = mapping.sources[source]
        return self.config.connection(spec.connection or source)

    def target_engine(self, mapping: EntityMapping) -> Engine:
        return engine_for(self.target_conn(mapping), read_only=self.dry_run)

    def work_engine(self, mapping: EntityMapping) -> Engine:
        """Where stage and gold tables live: the target database, or a private SQLite file in a dry run."""
        if not self.dry_run:
            return self.target_engine(mapping)
        if self._work is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="erpoa-plan-")
            self._work = create_engine(f"sqlite:///{Path(self._workdir.name) / 'work.db'}")
        return self._work

    @property
    def same_database(self) -> bool:
        return not self.dry_run

    def tables(self, mapping: EntityMapping) -> EntityTables:
        tables = self._tables.get(mapping.entity)
        if tables is None:
            target = self.target_conn(mapping)
            tables = EntityTables.build(mapping, schema=target.schema_, dialect=dialect_of(target))
            self._tables[mapping.entity] = tables
        return tables

    def work_tables(self, mapping: EntityMapping) -> EntityTables:
        """Stage and gold tables as seen in the work database."""
        if not self.dry_run:
            return self.tables(mapping)
        key = f"work:{mapping.entity}"
        tables = self._tables.get(key)
        if tables is None:
            tables = EntityTables.build(mapping, schema=None)
            self._tables[key] = tables
        return tables

    def background_writes(self, mapping: EntityMapping, name: str) -> BackgroundWrites:
        """A writer for work-table rows: in a thread, or in line where the work database is SQLite (one writer
        at a time; a dry run's work database is SQLite too)."""
        in_line = self.dry_run or self.work_engine(mapping).dialect.name == "sqlite"
        return BackgroundWrites(name, sync=in_line)

    def target_dialect(self, mapping: EntityMapping) -> str:
        return dialect_of(self.target_conn(mapping))

    def tick(self, entity: str, stage: str, rows: int) -> None:
        if self.progress is not None:
            self.progress(entity, stage, rows)

    def close(self) -> None:
        if self._work is not None:
            self._work.dispose()
            self._work = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
