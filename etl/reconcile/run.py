"""Reconciliation with I/O: read the mirror, target, quarantine and gaps, compare, store the differences.

Two ways in:

- `reconcile_entity(ctx, entity)`: the hook after each publish; compares the
  mirror (every source record's last accepted canonical row) with the target.
- `reconcile_fresh(config, entity)`: `erpoa reconcile`; extracts the sources
  afresh (read-only), maps them in memory and compares with the target, under a
  run of its own (trigger and mode `reconcile`). Nothing is written to the
  sources or the target.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine, Table, select
from sqlalchemy.exc import SQLAlchemyError

from etl.config.project import ProjectConfig
from etl.db.connect import engine_for
from etl.db.extract import ExtractRequest, check_columns, iter_chunks
from etl.db.read import records_frame
from etl.engine.tables import EntityTables, key_text, table_exists
from etl.errors import ConfigError, ErpOaError, classify_db_error
from etl.mapping.apply import map_chunk
from etl.mapping.codes import CodeTable
from etl.mapping.loader import COMMAND_LINE, MappingSet, run_entities
from etl.mapping.model import EntityMapping
from etl.mapping.types import coerce
from etl.reconcile.compare import GAP_COLUMNS, KEY, QUARANTINE_COLUMNS, SRC_ID, compare_entity
from etl.reconcile.store import FRESH_MODE, DifferenceStore
from etl.store import schema as s
from etl.store.repo import Store, new_run_id

if TYPE_CHECKING:
    from etl.engine.context import SyncContext

log = logging.getLogger("erpoa.reconcile")
READ_CHUNK = 100_000
CENSUS_MODES = ("full", FRESH_MODE)


# --------------------------------------------------------------------------- reading


def read_table(engine: Engine, table: Table, columns: list[str], where: Any = None) -> pd.DataFrame:
    """Rows of `table` (only `columns`), read in chunks; empty when the table does not exist yet."""
    if not table_exists(engine, table):
        return pd.DataFrame(columns=columns)
    stmt = select(*[table.c[c] for c in columns])
    if where is not None:
        stmt = stmt.where(where)
    parts = []
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=READ_CHUNK).execute(stmt)
        for rows in result.partitions(READ_CHUNK):
            parts.append(records_frame(rows, columns))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def read_sides(
    engine: Engine, tables: EntityTables, mapping: EntityMapping, timezone: str
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The mirror split by source, and the target; canonical."""
    fields = list(mapping.fields)
    mirror = read_table(engine, tables.mirror, ["_source", SRC_ID, KEY, *fields])
    mirror = coerce(mirror, mapping.fields, timezone)
    sides = {str(src): part.drop(columns="_source") for src, part in mirror.groupby("_source", sort=False)}
    for source in mapping.sources:
        sides.setdefault(source, mirror.iloc[:0].drop(columns="_source"))
    target = read_table(engine, tables.target, [*fields, KEY, "_active", "_presence", "_hash"])
    target = coerce(target, mapping.fields, timezone)
    if not target.empty:
        target["_active"] = target["_active"].astype(bool)
    return sides, target


def reference_keys(mappings: MappingSet, mapping: EntityMapping, engine_of: Any, tables_of: Any) -> dict[str, set[Any]]:
    """For each `entity.field` the mapping references, the active values in that entity's target."""
    out: dict[str, set[Any]] = {}
    for entity, other in mapping.references.values():
        ref = mappings.entity(entity)
        table = tables_of(ref).target
        engine = engine_of(ref)
        if not table_exists(engine, table):
            continue
        with engine.connect() as conn:
            values = conn.execute(select(table.c[other]).where(table.c._active.is_(True)).distinct()).scalars()
            out[f"{entity}.{other}"] = {str(v) for v in values if v is not None}
    return out


def derive_keys(
    mapping: EntityMapping,
    quarantine: pd.DataFrame,
    code_tables: Mapping[str, CodeTable],
    *,
    as_of: date,
    timezone: str,
) -> pd.DataFrame:
    """Fill `golden_key` of quarantined source rows from their raw record, where the key itself maps."""
    if quarantine.empty or "raw" not in quarantine.columns:
        return quarantine
    out = quarantine.copy()
    todo = out["golden_key"].isna() & out["raw"].notna() & out["source"].isin(list(mapping.sources))
    for source, part in out[todo].groupby("source"):
        spec = mapping.sources[str(source)]
        records = []
        for text in part["raw"].drop_duplicates():
            try:
                records.append(json.loads(text))
            except (TypeError, ValueError):
                continue
        if not records:
            continue
        raw = pd.DataFrame.from_records(records).reindex(columns=spec.columns)
        try:
            mapped = map_chunk(
                raw, mapping, str(source), code_tables, as_of=as_of, timezone=timezone, fields=mapping.key
            )
        except Exception as exc:  # a quarantined row may be too broken to map even its key
            log.debug("cannot derive keys of quarantined %s rows: %s", source, exc)
            continue
        rows = mapped.rows
        if rows.empty:
            continue
        keys = dict(zip(rows[SRC_ID], key_text(rows, mapping.key), strict=True))
        sel = todo & (out["source"] == source)
        out.loc[sel, "golden_key"] = out.loc[sel, "src_id"].astype(str).map(keys)
    return out


def open_quarantine(store: Store, entity: str) -> pd.DataFrame:
    """The entity's open quarantine rows: the problems as they stand now."""
    frame = store.quarantine(entity=entity, status="open")
    return frame[[*QUARANTINE_COLUMNS, "raw"]]


def census_gaps(store: Store, entity: str, upto_run: str) -> pd.DataFrame:
    """Gap rows of the runs since the entity's last complete read (a full sync or a fresh reconciliation).

    Incremental runs only see the rows they read, so their gaps add to the last
    census rather than replace it.
    """
    with store.engine.connect() as conn:
        runs = conn.execute(
            select(s.runs.c.run_id, s.runs.c.mode, s.runs.c.entities)
            .where(s.runs.c.run_id <= upto_run)
            .order_by(s.runs.c.run_id.desc())
            .limit(500)
        ).all()
    wanted = []
    for run_id, mode, entities in runs:
        if entity not in str(entities or "").split(","):
            continue
        wanted.append(run_id)
        if mode in CENSUS_MODES:
            break
    if not wanted:
        return pd.DataFrame(columns=GAP_COLUMNS)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(*[s.gaps.c[c] for c in GAP_COLUMNS]).where(s.gaps.c.entity == entity, s.gaps.c.run_id.in_(wanted))
        ).all()
    frame = pd.DataFrame(rows, columns=GAP_COLUMNS)
    if frame.empty:
        return frame
    return frame.groupby(["source", "field", "value", "code_table", "policy"], as_index=False)["count"].max()


# --------------------------------------------------------------------------- after a publish


def reconcile_entity(ctx: SyncContext, entity: str) -> dict[str, Any]:
    """Compare ERP, OA and target of `entity` as published by this run, and store the differences.

    Returns `open` (differences new or reopened this run), `total` (present this
    run), `by_class` and the other counts of `DifferenceStore.record`.
    """
    if ctx.dry_run:
        return {"open": 0, "total": 0, "by_class": {}}
    try:
        return _reconcile_published(ctx, entity)
    except SQLAlchemyError as exc:
        raise classify_db_error(exc, what=f"{entity}: reconciling") from None


def _reconcile_published(ctx: SyncContext, entity: str) -> dict[str, Any]:
    mapping = ctx.mapping(entity)
    started = time.monotonic()
    engine = ctx.target_engine(mapping)
    sides, target = read_sides(engine, ctx.tables(mapping), mapping, ctx.timezone)
    quarantine = derive_keys(
        mapping, open_quarantine(ctx.store, entity), ctx.mappings.code_tables, as_of=ctx.as_of, timezone=ctx.timezone
    )
    refs = reference_keys(ctx.mappings, mapping, ctx.target_engine, ctx.tables)
    diffs = compare_entity(
        mapping,
        sides.get("erp", pd.DataFrame()),
        sides.get("oa", pd.DataFrame()),
        target,
        quarantine=quarantine,
        gaps=census_gaps(ctx.store, entity, ctx.run_id),
        reference_keys=refs,
        timezone=ctx.timezone,
    )
    stats = DifferenceStore(ctx.store.engine).record(entity, ctx.run_id, diffs)
    stats["seconds"] = round(time.monotonic() - started, 3)
    log.info("%s: %s difference(s), %s new", entity, stats["total"], stats["open"])
    return stats


# --------------------------------------------------------------------------- fresh, standalone


def extract_fresh(
    config: ProjectConfig, mappings: MappingSet, mapping: EntityMapping, source: str, *, as_of: date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Read and map every row of one source (read-only); returns (rows, rejects, gaps, rows read)."""
    spec = mapping.sources[source]
    conn_cfg = config.connection(spec.connection or source)
    resolved = check_columns(conn_cfg, spec, source, mapping.entity, smap=mappings.source_maps.get(mapping.entity))
    request = ExtractRequest(source, spec, [resolved[c] for c in spec.columns], chunk_size=config.run.chunk_size)
    rows, rejects, gaps = [], [], []
    read = 0
    tz = config.run.timezone
    for chunk in iter_chunks(conn_cfg, request):
        chunk.columns = list(spec.columns)
        read += len(chunk)
        mapped = map_chunk(chunk, mapping, source, mappings.code_tables, as_of=as_of, timezone=tz)
        part = mapped.rows
        part = part.assign(**{KEY: key_text(part, mapping.key)})
        rows.append(part)
        if not mapped.rejects.empty:
            rej = mapped.rejects.rename(columns={"_src_id": "src_id"}).assign(source=source, golden_key=None)
            rejects.append(rej)
        if not mapped.gaps.empty:
            gaps.append(mapped.gaps)
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=[SRC_ID, KEY])
    frame = coerce(frame, mapping.fields, tz)
    rej_frame = (
        pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=["source", "src_id", "golden_key"])
    )
    gap_frame = (
        pd.concat(gaps, ignore_index=True)
        if gaps
        else pd.DataFrame(columns=["field", "table", "policy", "value", "count"])
    )
    return frame, rej_frame, gap_frame, read


def _user_counts(stats: dict[str, Any]) -> dict[str, Any]:
    """Counts as the report names them: `total` present, `new` first seen, `open` present and still open."""
    return {**stats, "open": stats["open_total"]}


def _tables_match(entity: str, tables: EntityTables, engine: Engine) -> None:
    """ConfigError unless the entity's target and mirror have the mapping's columns: a mapping changed since
    the last sync is applied to them by the next sync (docs/mapping.md), which reconciliation must wait for."""
    diff = tables.compare(engine, work=False)
    missing = sorted(f"{table}.{column}" for table, columns in diff.absent.items() for column in columns)
    if missing or diff.refused:
        what = f"columns {', '.join(missing)} do not exist yet" if missing else "its tables no longer fit it"
        raise ConfigError(
            f"{entity}: the mapping changed since the last sync ({what}); run `erpoa sync {entity}` first "
            "(or `erpoa plan` to see what it will change), then reconcile"
        )


def reconcile_fresh(config: ProjectConfig, entity: str | None = None) -> dict[str, Any]:
    """`erpoa reconcile [ENTITY]`: compare freshly extracted sources with the target, store the differences.

    Runs as its own run (trigger and mode `reconcile`). Returns `{"run_id",
    "status", "entities": {entity: stats}}` with the stats of
    `DifferenceStore.record` plus `read`, where `open` counts the present differences
    whose status is open (as in the report), not those that turned open in this run
    (`new_or_reopened`).
    """
    from etl.engine.lock import entity_lock
    from etl.engine.pipeline import load_project_mappings, open_store

    mappings = load_project_mappings(config)
    store = open_store(config)
    names = (
        mappings.order([entity], origin=COMMAND_LINE)
        if entity
        else run_entities(mappings, config.run.entities, config.config_path)
    )
    run_id = new_run_id()
    store.start_run(run_id, trigger="reconcile", mode=FRESH_MODE, mapping_version=mappings.version, entities=names)
    as_of = date.today()
    tz = config.run.timezone
    results: dict[str, Any] = {}
    failed = []
    tables: dict[str, EntityTables] = {}

    def tables_of(m: EntityMapping) -> EntityTables:
        if m.entity not in tables:
            tables[m.entity] = EntityTables.build(m, schema=config.connection(m.target.connection).schema_)
        return tables[m.entity]

    def engine_of(m: EntityMapping) -> Engine:
        return engine_for(config.connection(m.target.connection), read_only=True)

    for name in names:
        mapping = mappings.entity(name)
        started = time.monotonic()
        store.record_entity(run_id, name, status="running")
        try:
            _tables_match(name, tables_of(mapping), engine_of(mapping))
            target_name = mapping.target.connection + ":" + mapping.target.table
            with entity_lock(store.engine, name, target_name, run_id, wait_seconds=config.run.lock_wait_seconds):
                sides: dict[str, pd.DataFrame] = {}
                rejects, read = [], {}
                for source in mapping.sources:
                    rows, rej, gaps, n = extract_fresh(config, mappings, mapping, source, as_of=as_of)
                    sides[source], read[source] = rows, n
                    if not rej.empty:
                        rejects.append(rej)
                    if not gaps.empty:
                        store.add_gaps(run_id, name, source, gaps)
                _, target = read_sides(engine_of(mapping), tables_of(mapping), mapping, tz)
            fresh_q = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=["source", "src_id"])
            fresh_q = derive_keys(mapping, fresh_q, mappings.code_tables, as_of=as_of, timezone=tz)
            stored_q = open_quarantine(store, name)
            # Duplicates and mapping gaps are seen afresh; later-stage findings come from the last sync.
            stored_q = stored_q[~stored_q["stage"].astype(str).eq("map") & (stored_q["rule"] != "duplicate_key")]
            quarantine = pd.concat([fresh_q.reindex(columns=stored_q.columns), stored_q], ignore_index=True)
            diffs = compare_entity(
                mapping,
                sides.get("erp", pd.DataFrame()),
                sides.get("oa", pd.DataFrame()),
                target,
                quarantine=quarantine,
                gaps=census_gaps(store, name, run_id),
                reference_keys=reference_keys(mappings, mapping, engine_of, tables_of),
                timezone=tz,
            )
            stats = _user_counts(DifferenceStore(store.engine).record(name, run_id, diffs, fresh=True))
            stats["read"] = read
            seconds = round(time.monotonic() - started, 3)
            stats["seconds"] = seconds
            store.record_entity(
                run_id,
                name,
                status="success",
                read_erp=read.get("erp", 0),
                read_oa=read.get("oa", 0),
                read_total=sum(read.values()),
                quarantined=int(fresh_q["src_id"].nunique()) if not fresh_q.empty else 0,
                differences=stats["new_or_reopened"],  # as a sync stores it (what turned open: alerts)
                seconds_reconcile=seconds,
                seconds_total=seconds,
            )
            results[name] = stats
        except (ErpOaError, SQLAlchemyError) as exc:
            exc = classify_db_error(exc, what=f"{name}: reconciling")
            failed.append(name)
            store.record_entity(run_id, name, status="failed", message=str(exc)[:2000])
            results[name] = {"status": "failed", "message": str(exc)}
    status = "success" if not failed else ("failed" if len(failed) == len(names) else "partial")
    store.finish_run(run_id, status, "; ".join(f"{n}: failed" for n in failed) or None)
    return {"run_id": run_id, "status": status, "entities": results}
