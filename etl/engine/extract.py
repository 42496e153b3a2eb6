"""Stage 1: extract a source in chunks, map each chunk, write canonical rows to staging."""

from __future__ import annotations

import json
import logging
import math
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, and_, delete, exists, func, literal, select

from etl import faults
from etl.db.background import BackgroundWrites
from etl.db.connect import dialect_of
from etl.db.extract import ExtractRequest, check_columns, iter_chunks, lower_bound, text_timestamp
from etl.db.write import insert_frame, refresh_statistics, rows_written
from etl.engine import mirror_swap, xref_partition
from etl.engine.build import fields_to_fill, mask_personal_data, release_memory
from etl.engine.context import SyncContext
from etl.engine.idhashes import add_extracted, prune
from etl.engine.publish import stage_unmapped
from etl.engine.sweep import Staged, check_vanished, id_hashes, sweep
from etl.engine.tables import (
    KEY_LEN,
    EntityTables,
    SchemaDiff,
    bucket_of,
    build_indexes,
    has_run_rows,
    holds_run,
    key_text,
    mirrored_records,
    start_bulk_load,
    table_exists,
)
from etl.errors import ConfigError, ConfigIssue, DataError, UnmappedValueError
from etl.frames import isin
from etl.mapping.apply import FATAL_PREFIX, MappedChunk, _jsonable, map_chunk
from etl.mapping.model import EntityMapping, SourceSpec
from etl.store.repo import IN_BATCH, TimestampText, Watermark
from etl.yamlio import dotted

log = logging.getLogger("erpoa.sync")


def prepare(ctx: SyncContext, entity: str) -> list[str]:
    """Create the entity's tables and drop staging left by earlier runs (or earlier attempts of this one).

    First the tables that exist are compared with the mapping (`EntityTables.compare`): a change that
    is not safe raises a ConfigError located in the mapping file before anything is written; work
    tables whose columns differ are rebuilt, and target and mirror take the safe changes (new columns,
    longer text). Columns added to kept data make this run read the entity completely, and the next
    runs until one publishes (its watermarks are forgotten first); so do fields whose columns exist but that
    the entity's last publish did not write for every record (`_mapped_again`). A dry run changes nothing: it reads
    missing columns as NULL and plans the complete read. Returns what changed (or would), for the
    run's message.
    """
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    engine = ctx.target_engine(mapping)
    diff = tables.compare(engine, work=not ctx.dry_run)
    if diff.refused:
        raise ConfigError([_located(ctx, entity, r.loc, r.message) for r in diff.refused])
    for table in diff.rebuild:
        log.info("%s: rebuilding the work table %s (its columns differ from the mapping)", entity, table.name)
    for change in diff.changes:
        log.warning("%s: %s", entity, change.note(planned=ctx.dry_run))
    # The run's message names the target's changes; the mirror's follow them (in the log).
    shown = [c for c in diff.changes if c.table == tables.target.name] or diff.changes
    notes = [c.note(planned=ctx.dry_run) for c in shown]
    replay = ctx.only_ids is not None  # reads its records only: the next sync is the complete read
    again, unfilled = _mapped_again(ctx, entity, tables, engine, diff)
    if diff.complete_read or again or unfilled:
        complete_reads(ctx).add(entity)
        them = "them" if diff.complete_read or len(again) + len(unfilled) > 1 else "it"
        if ctx.dry_run:
            tail = "a complete read follows"
        elif replay:
            tail = f"the next `erpoa sync` reads {entity} completely to fill {them}"
        else:
            tail = f"{entity} is read completely to fill {them}"
        said = [f"{_fields_are(again)} mapped again"] if again else []
        if unfilled:
            its = "its column was" if len(unfilled) == 1 else "their columns were"
            said.append(f"{_fields_are(unfilled)} not filled yet ({its} added by a run that did not fill every record)")
        notes.append(": ".join(["; ".join(said), tail]) if said else tail)
        log.warning("%s: %s", entity, notes[-1])
    elif not table_exists(engine, tables.target) and _has_watermarks(ctx, entity):
        # A new `target.table` (or a target dropped): an incremental read would fill it with the changes only.
        complete_reads(ctx).add(entity)
        reads = f"the next `erpoa sync` reads {entity} completely" if replay else f"{entity} is read completely"
        notes.append(f"the target {tables.target.name} does not exist yet: {reads}")
        log.warning("%s: %s", entity, notes[-1])
        if not ctx.dry_run:
            ctx.store.forget_watermarks(entity)
    specs = ctx.mapping(entity).sources
    marks = {source: ctx.store.watermark_row(entity, source) for source, spec in specs.items() if spec.cursor}
    if not ctx.full_refresh and entity not in complete_reads(ctx):
        stale = _stale_watermarks(ctx, entity, marks)
        for source, why in stale.items():
            reads = f"the next `erpoa sync` reads {source} completely" if replay else f"{source} is read completely"
            notes.append(f"{why}: {reads}")
            log.warning("%s: %s", entity, notes[-1])
        if stale and not ctx.dry_run:
            ctx.store.forget_watermarks(entity, stale)
            marks = {source: mark for source, mark in marks.items() if source not in stale}
    notes += _overlap_notes(ctx, entity, marks)
    if ctx.dry_run:
        tables.without_columns(diff.absent)
    else:
        if diff.complete_read or again or unfilled:
            ctx.store.forget_watermarks(entity)  # before the columns exist: a crash after them still reads all
        tables.evolve(engine, diff)
        tables.create(engine)
        ctx.store.clear_pending_watermarks(entity, ctx.run_id)
        with engine.begin() as conn:
            prune(conn, tables.ids, ctx.run_id)
            mirror_swap.discard(conn, tables.mirror)  # left by an earlier run
        with ctx.store.engine.begin() as conn:
            xref_partition.discard(conn, entity)  # left by an earlier run
    work = ctx.work_tables(mapping)
    work.create(ctx.work_engine(mapping), work_only=True)
    engine = ctx.work_engine(mapping)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        if postgres and not has_run_rows(conn, work.stage, ctx.run_id):
            start_bulk_load(conn, work.stage)  # indexes come back in `partitions`, once every source is staged
        else:
            conn.execute(delete(work.stage).where(work.stage.c._run != ctx.run_id))
        if postgres and not holds_run(conn, work.gold, ctx.run_id):
            # Without indexes: the merge's writes of gold rows kept both up to date (~2.4 s of the server's
            # time at a million rows, beside the merge); the one lookup by key builds them (`_load_links`).
            start_bulk_load(conn, work.gold)
        else:
            conn.execute(delete(work.gold).where(work.gold.c._run != ctx.run_id))
    notes += stage_unmapped(ctx, entity)  # a source renamed or removed: its mirrored records are staged deleted
    faults.point("extract.prepared")
    return notes


def _mapped_again(
    ctx: SyncContext, entity: str, tables: EntityTables, engine: Engine, diff: SchemaDiff
) -> tuple[list[str], list[str]]:
    """The mapped fields whose target column exists but that the entity's last publish did not write for every
    record (recorded in the store, `Store.published_fields`), in two lists:

    - mapped again: an earlier publish wrote them; removed from the mapping since, their columns hold the values
      of when they were removed (NULL for records published meanwhile);
    - not filled yet: no publish wrote them; their columns were added by a run that did not publish, or by a
      replay, which fills its own records only.

    Where the record predates the second distinction, all are taken as mapped again. Nothing when the store has
    no record (a publish before it kept one, or none) or the target does not exist yet."""
    absent = diff.absent.get(tables.target.name, set())
    missing = [name for name in fields_to_fill(ctx, entity) if name not in absent]
    published = ctx.published_fields(entity)
    if not missing or published is None or not table_exists(engine, tables.target):
        return [], []
    ever = published.ever
    return [n for n in missing if ever is None or n in ever], [n for n in missing if ever is not None and n not in ever]


def _fields_are(names: list[str]) -> str:
    return f"field {names[0]} is" if len(names) == 1 else f"fields {', '.join(names)} are"


def complete_reads(ctx: SyncContext) -> set[str]:
    """The entities this run reads completely whatever their watermarks (columns were added to their tables, or
    fields mapped again)."""
    reads: set[str] = ctx.__dict__.setdefault("_complete_reads", set())
    return reads


def _stale_watermarks(ctx: SyncContext, entity: str, marks: dict[str, Watermark | None]) -> dict[str, str]:
    """source -> why its committed watermark (of `marks`) cannot be the start of this run's read (`_stale`)."""
    specs = ctx.mapping(entity).sources
    found = {source: _stale(ctx, specs[source], source, mark) for source, mark in marks.items() if mark is not None}
    return {source: why for source, why in found.items() if why is not None}


def _stale(ctx: SyncContext, spec: SourceSpec, source: str, mark: Watermark) -> str | None:
    """Why the committed watermark `mark` of `source` cannot be where its read starts, or None when it can.

    It was taken from another cursor column than the mapping's (its values say nothing about this one's), or it lies
    in the future (a cursor value recorded by a version that took it as it was): either would make incremental reads
    skip rows that changed. The source is then read completely, as when it has no watermark.
    """
    assert spec.cursor is not None
    if mark.cursor is not None and mark.cursor.lower() != spec.cursor.lower():
        return (
            f"the cursor of source {source} changed ({mark.cursor} -> {spec.cursor}) since its watermark "
            f"{mark.text} was taken"
        )
    stamp = _as_time(mark.value)
    if stamp is not None and _later(stamp, _future_limit(ctx, spec, stamp)):
        return (
            f"the watermark of source {source} ({mark.text}) is later than a day from now (a cursor value in "
            "the future, taken as it was by an earlier version)"
        )
    return None


def _overlap_notes(ctx: SyncContext, entity: str, marks: dict[str, Watermark | None]) -> list[str]:
    """A note for each source whose mapping sets an `overlap` that its numeric cursor cannot use.

    The overlap is a time window: a number cursor (a rising id, a version number) is read from its watermark itself.
    Known once the source has a watermark; said only when the mapping sets the overlap (the default applies to time
    cursors). Rows committed late with a lower number are not read by incremental runs."""
    notes = []
    for source, spec in ctx.mapping(entity).sources.items():
        if not spec.cursor or "overlap" not in spec.model_fields_set or not spec.overlap:
            continue
        mark = marks.get(source)
        value = None if mark is None else mark.value
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            notes.append(
                f"the overlap of source {source} ({spec.overlap}) is a time window and does not apply to its numeric "
                f"cursor {spec.cursor}: each run reads {spec.cursor} >= the watermark, so a row committed late with "
                f"a lower value is not read incrementally; set `overlap: 0`, or use a modification time as the cursor"
            )
    return notes


def _has_watermarks(ctx: SyncContext, entity: str) -> bool:
    return any(ctx.store.watermark(entity, source) is not None for source in ctx.mapping(entity).sources)


def _located(ctx: SyncContext, entity: str, loc: tuple[str | int, ...], message: str) -> ConfigIssue:
    """A ConfigIssue at `loc` of the entity's mapping file (at its file alone when its positions are unknown)."""
    smap = ctx.mappings.source_maps.get(entity)
    if smap is not None:
        return smap.issue(loc, message)
    path = ctx.mappings.files.get(entity)
    return ConfigIssue(str(path) if path else "", None, None, dotted(loc), message)


def extract_source(ctx: SyncContext, entity: str, source: str, *, defer_sweep: bool = False) -> dict[str, Any]:
    """Extract `source` of `entity` into staging; returns read / staged / rejected counts.

    Idempotent per (run, entity, source): a retry first removes what an earlier
    attempt staged. Values that a `fail` lookup cannot map stop the run here,
    before anything is published. With `defer_sweep`, an incremental read's deletion sweep
    is left to the caller (`sweep_source`, which may run the sweeps of several sources at
    once); the counts then hold `sweep_due: 1`.
    """
    mapping = ctx.mapping(entity)
    spec = mapping.sources[source]
    conn_cfg = ctx.source_conn(mapping, source)
    work = ctx.work_tables(mapping)
    engine = ctx.work_engine(mapping)
    with engine.begin() as conn:
        conn.execute(delete(work.stage).where(work.stage.c._run == ctx.run_id, work.stage.c._source == source))
    if not ctx.dry_run:
        ctx.store.clear_quarantine(ctx.run_id, entity, source=source, stage="map")
    resolved = source_columns(ctx, entity, source)
    replay = ctx.only_ids is not None
    mark = _watermark_row(ctx, entity, source)
    since = None if mark is None else lower_bound(
        mark.value, spec.overlap, mark.text if mark.kind == "datetime_text" else None
    )
    if isinstance(since, datetime) and dialect_of(conn_cfg) == "sqlite":
        # SQLite keeps timestamps as text in SQLAlchemy's format; compare like with like (a watermark recorded as a
        # timestamp by a version before text cursors were recorded as text).
        since = since.strftime("%Y-%m-%d %H:%M:%S.%f")
    actual = [resolved[c] for c in spec.columns]
    ids = None
    if replay:
        assert ctx.only_ids is not None
        ids = ctx.only_ids.get(source, [])
        if not ids:
            return {"read": 0, "staged": 0, "rejected": 0, "deleted": 0}
    request = ExtractRequest(source, spec, actual, since=since, chunk_size=ctx.chunk_size, where_ids=ids)
    counts = {"read": 0, "staged": 0, "rejected": 0, "deleted": 0, "moved": 0}
    fatal: list[pd.DataFrame] = []
    gaps: list[pd.DataFrame] = []
    rejects: list[pd.DataFrame] = []
    cursor = CursorMaximum(ctx, spec, entity, source)
    with ctx.background_writes(mapping, f"erpoa-stage-{entity}-{source}") as writes:
        for chunk in iter_chunks(conn_cfg, request):
            chunk.columns = list(spec.columns)
            if spec.cursor and not chunk.empty:
                cursor.add(chunk)
            _extract_chunk(ctx, entity, source, chunk, writes, counts, fatal, gaps, rejects)
            del chunk
            if sum(len(r) for r in rejects) >= QUARANTINE_BATCH:
                _quarantine(ctx, entity, source, rejects)
            release_memory()
    settle_chunks(ctx, entity, source, rejects, gaps, fatal)
    counts["moved"] = _mark_moved(ctx, entity, source)
    faults.point("extract.source_done")
    full_read = since is None
    if replay:  # the records asked for that the source no longer has: gone, as a sweep would find them
        counts["deleted"] = _vanished_marked(ctx, entity, source, _mark_vanished(ctx, entity, source, only=ids))
    elif full_read:
        counts["deleted"] = _vanished_marked(ctx, entity, source, _mark_vanished(ctx, entity, source), judge=True)
    elif _sweeps(ctx, spec):
        if defer_sweep:
            counts["sweep_due"] = 1
        else:
            counts["deleted"] = sweep_source(ctx, entity, source)
            counts["read"] += ctx.read_again.pop((entity, source), 0)
    watermark = cursor.watermark()
    if spec.cursor and (watermark is not None or full_read) and not ctx.dry_run and not replay:
        # A complete read's watermark replaces the one before (a complete read that found no cursor value forgets it)
        ctx.store.set_pending_watermark(
            ctx.run_id, entity, source, watermark, cursor=spec.cursor, complete=full_read
        )
        faults.point("extract.watermark_pending")
    return counts


def source_columns(ctx: SyncContext, entity: str, source: str) -> dict[str, str]:
    """`check_columns` of the source (the mapping's column names -> the source's spelling; SchemaDriftError when one
    is missing), probed once per run: the extraction and the deletion sweep, which may run beside it, ask."""
    key = (entity, source)
    if key not in ctx.source_columns:
        mapping = ctx.mapping(entity)
        ctx.source_columns[key] = check_columns(
            ctx.source_conn(mapping, source), mapping.sources[source], source, entity,
            smap=ctx.mappings.source_maps.get(entity),
        )
    return ctx.source_columns[key]


def settle_chunks(
    ctx: SyncContext,
    entity: str,
    source: str,
    rejects: list[pd.DataFrame],
    gaps: list[pd.DataFrame],
    fatal: list[pd.DataFrame],
) -> None:
    """After a source's chunks went through `_extract_chunk`: quarantine the rejected rows left, record the mapping
    gaps, and stop (UnmappedValueError) when a `fail` lookup could not map some values."""
    _quarantine(ctx, entity, source, rejects)
    if gaps and not ctx.dry_run:
        ctx.store.add_gaps(ctx.run_id, entity, source, pd.concat(gaps, ignore_index=True))
    if fatal:
        frame = pd.concat(fatal, ignore_index=True)
        sample = ", ".join(f"'{v}'" for v in frame["value"].drop_duplicates().head(5))
        tables = ", ".join(sorted({r.removeprefix(FATAL_PREFIX) for r in frame["rule"]}))
        raise UnmappedValueError(
            f"{entity}: {frame['_src_id'].nunique()} {source} row(s) have values that code table(s) {tables} "
            f"do not map ({sample}) and the policy is `fail`; add them to mappings/codes/ "
            f"(`erpoa mappings suggest {entity}` proposes entries) and rerun. Nothing was published."
        )


def _watermark_row(ctx: SyncContext, entity: str, source: str) -> Watermark | None:
    """The committed watermark the source's read starts from, or None for a full read: also when it is stale
    (`_stale`; `prepare` forgets it, but not in a dry run)."""
    spec = ctx.mapping(entity).sources[source]
    if ctx.full_refresh or ctx.only_ids is not None or not spec.cursor or entity in complete_reads(ctx):
        return None
    mark = ctx.store.watermark_row(entity, source)
    if mark is None or _stale(ctx, spec, source, mark) is not None:
        return None
    return mark


def sweep_due(ctx: SyncContext, entity: str, source: str) -> bool:
    """Whether `extract_source` of `source` will read incrementally and sweep for deletions.

    Known before the extraction, so that the sweep can read the source's ids meanwhile.
    """
    return _sweeps(ctx, ctx.mapping(entity).sources[source]) and _watermark_row(ctx, entity, source) is not None


def _sweeps(ctx: SyncContext, spec: SourceSpec) -> bool:
    """Whether an incremental read of the source sweeps for deletions (not in a replay of chosen ids)."""
    return ctx.only_ids is None and spec.sweep and ctx.sweep


def sweep_source(ctx: SyncContext, entity: str, source: str, staged: Staged | None = None) -> int:
    """The keys-only deletion sweep of an incremental read of `source`; rows staged.

    Run after the source's extraction, or beside it with `staged` (opened once it has ended).
    """
    return _vanished_marked(ctx, entity, source, sweep(ctx, entity, source, staged), judge=True)


def _vanished_marked(ctx: SyncContext, entity: str, source: str, deleted: int, *, judge: bool = False) -> int:
    """After `deleted` rows of `source` were staged: with `judge`, refuse a source cut short (`check_vanished`);
    then mark their links inactive."""
    if judge:
        check_vanished(ctx, entity, source, deleted)
    if deleted and not ctx.dry_run:
        _unlink_vanished(ctx, entity, source)
    faults.point("extract.vanished_marked")
    return deleted


def _extract_chunk(
    ctx: SyncContext,
    entity: str,
    source: str,
    chunk: pd.DataFrame,
    writes: BackgroundWrites,
    counts: dict[str, int],
    fatal: list[pd.DataFrame],
    gaps: list[pd.DataFrame],
    rejects: list[pd.DataFrame],
) -> None:
    """Map one extracted chunk, hand its canonical and rejected rows to the stage writer, collect its rejects
    (in `rejects`, for the caller to quarantine)."""
    mapping = ctx.mapping(entity)
    counts["read"] += len(chunk)
    mapped = map_chunk(chunk, mapping, source, ctx.mappings.code_tables, as_of=ctx.as_of, timezone=ctx.timezone)
    mapped = reject_nul(mapped, mapping, chunk)
    mapped = reject_long_ids(mapped, mapping, source, chunk)
    rows = mapped.rows
    staged = pd.DataFrame({"_run": ctx.run_id, "_source": source, "_src_id": rows["_src_id"], "_status": "ok"})
    staged["_key"] = key_text(rows, mapping.key)
    staged["_bucket"] = bucket_of(staged["_key"])
    for name in mapping.fields:
        if name in rows.columns:
            staged[name] = rows[name]
    # In bucket order, a merge partition's rows fill a few neighbouring pages of each chunk instead of a few
    # rows of every page: the merge's reads of the stage (and of the mirror, copied from it) touch each page
    # about once instead of once per partition.
    staged = staged.take(np.argsort(staged["_bucket"].to_numpy(), kind="stable"))
    rejected_ids = mapped.rejects["_src_id"].drop_duplicates()
    # A rejected row is staged so that it is not taken for vanished; an id too long never reached the mirror.
    rejected_ids = rejected_ids[~_longer_than_key(rejected_ids)]
    rejected = pd.DataFrame({"_run": ctx.run_id, "_source": source, "_src_id": rejected_ids, "_status": "rejected"})
    ids = None if ctx.dry_run else ctx.tables(mapping).ids
    writes.submit(
        partial(_stage_chunk, ctx.work_engine(mapping), ctx.work_tables(mapping).stage, ids, ctx.run_id, source, staged,
                rejected)
    )
    faults.point("extract.chunk_staged")  # handed to the writer: a kill here may or may not leave it staged
    counts["staged"] += len(staged)
    counts["rejected"] += len(rejected)
    if not mapped.rejects.empty:
        rejects.append(mapped.rejects)
    if not mapped.fatal.empty:
        fatal.append(mapped.fatal)
    if not mapped.gaps.empty:
        gaps.append(mapped.gaps)
    ctx.tick(entity, f"extract {source}", len(chunk))


NUL_REASON = (
    "text contains a NUL character (\\x00), which PostgreSQL cannot store and most tools cut off; "
    "remove it at the source"
)


def reject_nul(mapped: MappedChunk, mapping: EntityMapping, raw: pd.DataFrame) -> MappedChunk:
    """Quarantine rows whose text fields contain NUL (rule `type:string`) instead of failing the load.

    Checked on every target so that a row behaves the same wherever it is published.
    """
    rows = mapped.rows
    strings = [f for f, spec in mapping.fields.items() if spec.type == "string" and f in rows.columns]
    if rows.empty or not strings:
        return mapped
    raw = raw.reset_index(drop=True)
    parts = []
    bad_any = pd.Series(False, index=rows.index)
    for name in strings:
        bad = _has_nul(rows[name])
        if not bad.any():
            continue
        bad_any |= bad
        parts.append(pd.DataFrame({
            "_src_id": rows.loc[bad, "_src_id"].to_numpy(),
            "field": name,
            "rule": "type:string",
            "value": rows.loc[bad, name].str.replace("\x00", "\\x00", regex=False).to_numpy(),
            "reason": NUL_REASON,
            "raw": [json.dumps(_jsonable(raw.loc[i].to_dict()), ensure_ascii=False) for i in rows.index[bad]],
        }))
    if not parts:
        return mapped
    rejects = pd.concat([mapped.rejects, *parts], ignore_index=True)
    return replace(mapped, rows=rows[~bad_any], rejects=rejects)


def reject_long_ids(mapped: MappedChunk, mapping: EntityMapping, source: str, raw: pd.DataFrame) -> MappedChunk:
    """Quarantine rows whose source id (rule `id_too_long`) or business key (`key_too_long`) is longer than the
    engine's columns for them hold (`KEY_LEN` characters: stage, mirror, the target's `_key`, cross-reference).

    Checked on every target (SQLite would store them) so that a row behaves the same wherever it is published.
    A row rejected for another rule gets the line too: a retry would meet it next.
    """
    rows = mapped.rows
    id_reason = partial(_too_long_reason, f"the source id (id: {', '.join(mapping.sources[source].id)})", "it")
    lines, bad = _too_long(rows, rows["_src_id"], raw, "_src_id", "id_too_long", id_reason)
    rejected = mapped.rejects.drop_duplicates("_src_id")
    rejected = rejected[_longer_than_key(rejected["_src_id"])]
    if not rejected.empty:
        reasons = rejected["_src_id"].map(id_reason)
        lines.append(rejected.assign(field="_src_id", rule="id_too_long", value=rejected["_src_id"], reason=reasons))
    if _key_may_exceed(mapping) and not rows.empty:
        key_reason = partial(_too_long_reason, f"the business key (key: {', '.join(mapping.key)})", "the record")
        more, long_key = _too_long(rows, key_text(rows, mapping.key), raw, "_key", "key_too_long", key_reason)
        lines += more
        bad = bad | long_key
    if not lines:
        return mapped
    rejects = pd.concat([mapped.rejects, *lines], ignore_index=True)
    return replace(mapped, rows=rows[~bad], rejects=rejects)


def _too_long(
    rows: pd.DataFrame, values: pd.Series, raw: pd.DataFrame, field: str, rule: str, reason: Callable[[str], str]
) -> tuple[list[pd.DataFrame], np.ndarray]:
    """The reject lines (`REJECT_COLUMNS`) of the `rows` whose `values` are longer than `KEY_LEN` characters,
    and the mask of those rows."""
    long = _longer_than_key(values)
    if not long.any():
        return [], long
    raw = raw.reset_index(drop=True)
    found = values[long]
    line = pd.DataFrame({
        "_src_id": rows.loc[long, "_src_id"].to_numpy(),
        "field": field,
        "rule": rule,
        "value": found.to_numpy(),
        "reason": found.map(reason).to_numpy(),
        "raw": [json.dumps(_jsonable(raw.loc[i].to_dict()), ensure_ascii=False) for i in rows.index[long]],
    })
    return [line], long


def _longer_than_key(values: pd.Series) -> np.ndarray:
    """Which `values` are texts longer than `KEY_LEN` characters."""
    if isinstance(values.dtype, pd.StringDtype):  # in C++ for text columns
        return (values.str.len() > KEY_LEN).fillna(False).to_numpy(dtype=bool)
    return values.astype(object).map(lambda v: isinstance(v, str) and len(v) > KEY_LEN).to_numpy(dtype=bool)


def _too_long_reason(what: str, subject: str, value: str) -> str:
    return (
        f"{what} is {len(value)} characters long; the engine keeps it in columns of at most {KEY_LEN} characters, "
        f"so {subject} cannot be staged or published: shorten it at the source"
    )


#: The longest text of a key field of each type that has no `length:` (a number, a date, a timestamp).
_KEY_TEXT = {"integer": 20, "decimal": 45, "date": 10, "datetime": 40, "boolean": 5}


def _key_may_exceed(mapping: EntityMapping) -> bool:
    """Whether the mapping's key fields can make a business key longer than `KEY_LEN` characters."""
    longest = 0
    for name in mapping.key:
        spec = mapping.fields[name]
        size = spec.length if spec.type == "string" else _KEY_TEXT.get(spec.type)
        if size is None:
            return True
        longest += size + 1
    return longest - 1 > KEY_LEN


def _has_nul(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.StringDtype):  # in C++ for text columns
        return values.str.contains("\x00", regex=False).fillna(False).astype(bool)
    return values.astype(object).map(lambda v: isinstance(v, str) and "\x00" in v).astype(bool)


def _cursor_value(value: Any) -> Any:
    """A cursor maximum as a comparable Python value (timestamps stored as text become datetimes)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.item() if hasattr(value, "item") else value


_CURSOR_KINDS = {"datetime": "timestamps", "date": "dates", "str": "text", "int": "numbers", "float": "numbers"}


def _cursor_kind(value: Any) -> str:
    kind = type(_cursor_value(value)).__name__
    return _CURSOR_KINDS.get(kind, kind)


def _chunk_cursor_top(chunk: pd.DataFrame, spec: SourceSpec, entity: str, source: str) -> tuple[Any, str | None]:
    """The chunk's greatest cursor value (as `_cursor_value`) and, when the column holds text, that text; DataError
    when the cursor column mixes kinds.

    A text value in a timestamp column ('yesterday' in a SQLite DATETIME) sorts after every date: taken as
    the maximum, the watermark would make the next incremental read skip every row changed since. A column of text
    of one kind (`2026/01/09 10:00:00`, which `datetime.fromisoformat` does not read, in every row) is a text cursor.
    """
    column = chunk[spec.cursor]
    try:
        raw = column.max()
        top = _cursor_value(raw)
    except TypeError:  # values that do not compare (a datetime and a str, an int and a str)
        raise _mixed_cursor(chunk, spec, entity, source, None) from None
    if isinstance(top, str):  # a text cursor, or timestamps (SQLite keeps them as text) beside a value that is not
        present = column.dropna()
        mixed = pd.api.types.infer_dtype(present, skipna=True) != "string"
        if mixed or (present.map(_cursor_kind) != "text").any():
            raise _mixed_cursor(chunk, spec, entity, source, None)
    return top, raw if isinstance(raw, str) else None


def _greater(top: Any, current: Any, chunk: pd.DataFrame, spec: SourceSpec, entity: str, source: str) -> bool:
    """`top > current` for the cursor maxima of two chunks; DataError when they are of different kinds."""
    try:
        return bool(top > current)
    except TypeError:
        raise _mixed_cursor(chunk, spec, entity, source, earlier=current) from None


def _mixed_cursor(
    chunk: pd.DataFrame, spec: SourceSpec, entity: str, source: str, earlier: Any | None = None
) -> DataError:
    """The DataError for cursor values of another kind than the column's others, with samples and their rows' ids.

    The column's kind is taken to be its values' most common kind other than text (text in a timestamp or
    number column is the odd one out); `earlier` is the maximum of the chunks before, when the clash is
    between chunks.
    """
    assert spec.cursor is not None
    values = chunk[spec.cursor]
    kinds = values.map(lambda v: None if v is None or v is pd.NaT or pd.isna(v) else _cursor_kind(v))
    present = kinds.dropna()
    if earlier is not None:
        present = pd.concat([present, pd.Series([_cursor_kind(earlier)])], ignore_index=True)
    typed = present[present != "text"]
    expected = str((typed if not typed.empty else present).mode().iloc[0])
    bad = kinds.notna() & (kinds != expected)
    odd = [repr(v) for v in values[bad].drop_duplicates().head(5)]
    if earlier is not None and _cursor_kind(earlier) != expected:
        odd.insert(0, repr(earlier))
    if not odd:  # no value is of another kind than the most common one: name one of each kind
        odd = [f"{kind} such as {values[kinds == kind].iloc[0]!r}" for kind in present.drop_duplicates().head(5)
               if (kinds == kind).any()]
    id_col = spec.id[0] if spec.id and spec.id[0] in chunk.columns else None
    ids = [str(v) for v in chunk.loc[bad, id_col].head(5)] if id_col else []
    where = f" (rows with {id_col} {', '.join(ids)})" if ids else ""
    return DataError(
        f"{entity}: the cursor column {spec.cursor} of source '{source}' holds value(s) that are not {expected} like "
        f"the others: {', '.join(odd)}{where}. The watermark (where the next incremental read starts) cannot be "
        "computed from them. Correct these values in the source (or choose a cursor column of one type) and "
        "rerun; nothing was published and the watermark is unchanged."
    )


#: How far past now (in `run.timezone` for timestamps without a zone) a cursor value may lie before it is taken for
#: a mistyped date: a day, so that a source whose clock is in another zone than `run.timezone` is not flagged.
FUTURE_MARGIN = timedelta(days=1)


def _future_limit(ctx: SyncContext, spec: SourceSpec, stamp: datetime) -> datetime:
    """The latest cursor time that is not in the future (see `FUTURE_MARGIN`), in the form of `stamp`."""
    return _clock(ctx, stamp) + max(spec.overlap, FUTURE_MARGIN)


class CursorMaximum:
    """The greatest cursor value of a source's read (the watermark it records), and the values in the future.

    A timestamp cursor value later than now plus a day (`FUTURE_MARGIN`, or the overlap when longer) is a mistyped
    date, or the source's clock is wrong. As the watermark it would make the next reads skip every row changed until
    that time (and a full refresh kept it). The watermark is then the greatest cursor value that is not in the future:
    never later than what the source itself stamped, whatever its clock or zone, so the next runs read every row
    changed after it (and the future-dated rows again, until they are corrected); the entity's run message
    (`SyncContext.extract_notes`) and the log say which rows.
    """

    def __init__(self, ctx: SyncContext, spec: SourceSpec, entity: str, source: str) -> None:
        self.ctx, self.spec, self.entity, self.source = ctx, spec, entity, source
        self.top: Any = None
        self.text: str | None = None  # the greatest value as the column's text, when it holds text
        self.kept: Any = None  # the greatest value that is not in the future, and its text
        self.kept_text: str | None = None
        self.future = 0
        self.future_ids: list[str] = []

    def add(self, chunk: pd.DataFrame) -> None:
        """Take the cursor values of `chunk` (the source's columns, named as the mapping names them)."""
        spec, entity, source = self.spec, self.entity, self.source
        top, text = _chunk_cursor_top(chunk, spec, entity, source)
        if top is None:
            return
        if self.top is None or _greater(top, self.top, chunk, spec, entity, source):
            self.top, self.text = top, text
        stamp = _as_time(top)
        limit = None if stamp is None else _future_limit(self.ctx, spec, stamp)
        if limit is not None and _later(stamp, limit):
            assert spec.cursor is not None
            later = chunk[spec.cursor].map(lambda v: _later(_as_time(_cursor_value(v)), limit)).astype(bool)
            self.future += int(later.sum())
            if len(self.future_ids) < 5:
                ids = chunk.loc[later, list(spec.id)].astype(str).agg("|".join, axis=1)
                self.future_ids += ids.head(5 - len(self.future_ids)).tolist()
            top, text = _chunk_cursor_top(chunk[~later.to_numpy()], spec, entity, source)
            if top is None:
                return
        if self.kept is None or _greater(top, self.kept, chunk, spec, entity, source):
            self.kept, self.kept_text = top, text

    def watermark(self) -> Any:
        """The value to record as the source's watermark: the greatest cursor value, or the greatest that is not in
        the future when some are (then noted); None when no row had one."""
        if not self.future:
            top, text = self.top, self.text
        else:
            top, text = self.kept, self.kept_text
            ids = f" (rows with {'|'.join(self.spec.id)} {', '.join(self.future_ids)})" if self.future_ids else ""
            stamp = _as_time(self.top)
            zone = "" if stamp is None or stamp.tzinfo is not None else f" in {self.ctx.timezone}"
            kept = "no watermark (the next run reads the source completely)" if top is None else (
                f"the watermark is the greatest that is not ({text if text is not None else top})"
            )
            note = (
                f"{self.future} row(s) of source {self.source} have a cursor {self.spec.cursor} later than a day from "
                f"now{zone}, up to {self.text if self.text is not None else self.top}{ids}: {kept}, so that the next "
                "runs still read every row changed after it (and these rows again); correct these values at the source"
            )
            log.warning("%s: %s", self.entity, note)
            self.ctx.note(self.entity, note)
        if top is None:
            return None
        return TimestampText(text) if text is not None and isinstance(top, datetime) else top


def _as_time(value: Any) -> datetime | None:
    """A cursor value as the timestamp it stands for (a date at midnight, timestamp text), or None (not a time)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return text_timestamp(value)
    return None


def _clock(ctx: SyncContext, like: datetime) -> datetime:
    """Now as cursor values like `like` write it: with a zone (UTC), or without one in `run.timezone` (as source
    databases stamp local time)."""
    at = datetime.now(UTC)
    if like.tzinfo is not None:
        return at
    return at.astimezone(zoneinfo.ZoneInfo(ctx.timezone)).replace(tzinfo=None)


def _later(value: datetime | None, limit: datetime) -> bool:
    """`value > limit`; False for no value or one that does not compare (with a zone against one without)."""
    try:
        return value is not None and value > limit
    except TypeError:
        return False


#: Rejected rows collected over chunks before they are written to the quarantine in one transaction:
#: written per chunk, the store's round trips cost ~1 s at a million rows for a thousand rejects.
QUARANTINE_BATCH = 10_000


def _quarantine(ctx: SyncContext, entity: str, source: str, parts: list[pd.DataFrame]) -> None:
    """Quarantine the rejected rows of `parts` (a source's chunks), and empty it."""
    if not parts:
        return
    rejects = pd.concat(parts, ignore_index=True)
    parts.clear()
    frame = mask_personal_data(rejects.rename(columns={"_src_id": "src_id"}).assign(source=source), ctx.mapping(entity))
    if ctx.dry_run:
        ctx.planned_quarantine.append(frame.assign(entity=entity, stage="map"))
    else:
        ctx.store.add_quarantine(ctx.run_id, entity, frame, stage="map")


def _stage_chunk(
    engine: Engine, stage: Table, ids: Table | None, run: str, source: str, staged: pd.DataFrame, rejected: pd.DataFrame
) -> None:
    """Stage a chunk's rows and, unless `ids` is None (a dry run), record the hashes of its staged ids."""
    with engine.begin() as conn:
        insert_frame(conn, stage, staged)
        insert_frame(conn, stage, rejected)
        if ids is not None:
            add_extracted(conn, ids, run, source, id_hashes(staged["_src_id"]))


def _mark_moved(ctx: SyncContext, entity: str, source: str) -> int:
    """Stage a `moved` row under the old key of every record whose business key changed since it was published.

    The row makes the merge rebuild the old golden record without that record (so it is
    inactivated when nothing else contributes to it) while the record itself is merged
    under its new key.
    """
    mapping = ctx.mapping(entity)
    mirror, stage = ctx.tables(mapping).mirror, ctx.work_tables(mapping).stage
    target_engine = ctx.target_engine(mapping)
    if not table_exists(target_engine, mirror):
        return 0
    cols = ["_run", "_source", "_src_id", "_status", "_key", "_bucket"]
    if ctx.same_database:
        if not _mirrors(target_engine, mirror, source):
            return 0  # first load of the source: no statistics to refresh, no join to run
        refresh_statistics(target_engine, stage)
        moved = select(
            literal(ctx.run_id), literal(source), mirror.c._src_id, literal("moved"), mirror.c._key, mirror.c._bucket
        ).where(
            stage.c._run == ctx.run_id,
            stage.c._source == source,
            stage.c._status == "ok",
            mirror.c._source == source,
            mirror.c._src_id == stage.c._src_id,
            mirror.c._key != stage.c._key,
        )
        with target_engine.begin() as conn:
            return rows_written(conn, stage.insert().from_select(cols, moved))
    with ctx.work_engine(mapping).connect() as conn:
        staged = pd.DataFrame(
            conn.execute(
                select(stage.c._src_id, stage.c._key).where(
                    stage.c._run == ctx.run_id, stage.c._source == source, stage.c._status == "ok"
                )
            ).all(),
            columns=["_src_id", "_new"],
        )
    if staged.empty:
        return 0
    both = mirrored_records(target_engine, mirror, source).merge(staged, on="_src_id")
    gone = both[both["_key"] != both["_new"]].assign(_run=ctx.run_id, _source=source, _status="moved")
    with ctx.work_engine(mapping).begin() as conn:
        insert_frame(conn, stage, gone, cols)
    return len(gone)


def _mirrors(engine: Engine, mirror: Table, source: str) -> bool:
    """Whether the mirror holds any record of `source` (one index probe)."""
    with engine.connect() as conn:
        return conn.execute(select(mirror.c._src_id).where(mirror.c._source == source).limit(1)).first() is not None


def _mark_vanished(ctx: SyncContext, entity: str, source: str, only: Sequence[str] | None = None) -> int:
    """Stage a `deleted` row for every mirrored record of `source` that the source no longer has.

    `only`: of these records (a replay read just them), not of every mirrored one.
    """
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    work = ctx.work_tables(mapping)
    mirror, stage = tables.mirror, work.stage
    target_engine = ctx.target_engine(mapping)
    if not table_exists(target_engine, mirror):
        return 0  # never published: nothing can have vanished
    if only is not None:
        with target_engine.connect() as conn:
            mirrored = pd.concat(
                [
                    pd.DataFrame(
                        conn.execute(
                            select(mirror.c._src_id, mirror.c._key, mirror.c._bucket).where(
                                mirror.c._source == source, mirror.c._src_id.in_(list(only[i : i + IN_BATCH]))
                            )
                        ).all(),
                        columns=["_src_id", "_key", "_bucket"],
                    )
                    for i in range(0, len(only), IN_BATCH)
                ]
                or [pd.DataFrame(columns=["_src_id", "_key", "_bucket"])],
                ignore_index=True,
            )
        return _stage_gone(ctx, mapping, source, mirrored)
    if ctx.same_database:  # stage statistics are fresh where the mirror has rows: refreshed by _mark_moved
        present = exists().where(
            and_(stage.c._run == ctx.run_id, stage.c._source == source, stage.c._src_id == mirror.c._src_id)
        )
        vanished = select(
            literal(ctx.run_id), literal(source), mirror.c._src_id, literal("deleted"), mirror.c._key, mirror.c._bucket
        ).where(mirror.c._source == source, ~present)
        with ctx.work_engine(mapping).begin() as conn:
            return rows_written(
                conn, stage.insert().from_select(["_run", "_source", "_src_id", "_status", "_key", "_bucket"], vanished)
            )
    return _stage_gone(ctx, mapping, source, mirrored_records(ctx.target_engine(mapping), mirror, source))


def _stage_gone(ctx: SyncContext, mapping: Any, source: str, mirrored: pd.DataFrame) -> int:
    """Stage a `deleted` row for each of the `mirrored` records this run did not stage from `source`."""
    stage = ctx.work_tables(mapping).stage
    with ctx.work_engine(mapping).connect() as conn:
        seen = {
            r[0]
            for r in conn.execute(select(stage.c._src_id).where(stage.c._run == ctx.run_id, stage.c._source == source))
        }
    gone = mirrored[~isin(mirrored["_src_id"], seen)].assign(_run=ctx.run_id, _source=source, _status="deleted")
    with ctx.work_engine(mapping).begin() as conn:
        insert_frame(conn, stage, gone, ["_run", "_source", "_src_id", "_status", "_key", "_bucket"])
    return len(gone)


def _unlink_vanished(ctx: SyncContext, entity: str, source: str) -> None:
    """Mark the cross-reference links of the source records that vanished inactive.

    Done before the publish, and repeated by every run that finds them vanished until the
    mirror forgets them, so a crash anywhere cannot leave a link to a deleted record active
    (the golden record may live on through the other source). A record that comes back is
    linked again by the publish that accepts it.
    """
    mapping = ctx.mapping(entity)
    stage = ctx.work_tables(mapping).stage
    with ctx.work_engine(mapping).connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                select(stage.c._src_id).where(
                    stage.c._run == ctx.run_id, stage.c._source == source, stage.c._status == "deleted"
                )
            )
        ]
    ctx.store.deactivate_xref_ids(entity, source, ids, ctx.run_id)


def partitions(ctx: SyncContext, entity: str) -> int:
    """How many partitions the merge of this run's staged rows needs.

    Called once every source is staged: the stage's indexes are built (see `prepare`) and its
    planner statistics refreshed here, so that the merge's reads and status updates of one
    partition use its indexes (without them, each of those statements scanned every staged
    row: 12.7 s at a million rows).
    """
    mapping = ctx.mapping(entity)
    work = ctx.work_tables(mapping)
    build_indexes(ctx.work_engine(mapping), work.stage)
    refresh_statistics(ctx.work_engine(mapping), work.stage)
    with ctx.work_engine(mapping).connect() as conn:
        staged = (
            conn.execute(
                select(func.count())
                .select_from(work.stage)
                .where(work.stage.c._run == ctx.run_id, work.stage.c._status.in_(["ok", "deleted", "moved"]))
            ).scalar()
            or 0
        )
    size = mapping.partition_rows or ctx.config.run.partition_rows
    return max(1, math.ceil(staged / size))
