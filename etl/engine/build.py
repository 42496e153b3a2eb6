"""Stage 2: per partition, merge the sources into golden records, check them, stage what to publish.

Reads this run's staged rows and the mirror (the sources' last accepted rows)
for the affected keys, quarantines duplicate keys, merges by survivorship,
compares with the target by row hash, checks references and runs the quality
gate on the rows that would change, and writes the result to the gold table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Engine, Float, Table, and_, bindparam, cast, delete, func, null, select, update

from etl import faults, logs
from etl.db.background import BackgroundWrites
from etl.db.ddl import stored_datetimes
from etl.db.read import read_frame
from etl.db.write import insert_frames
from etl.engine.context import SyncContext
from etl.engine.merge import merge
from etl.engine.retry import with_retries
from etl.engine.tables import SET_ASIDE, bucket_of, bucket_range, has_run_rows, table_exists
from etl.errors import IntegrityError
from etl.frames import isin
from etl.mapping.model import EntityMapping
from etl.mapping.types import coerce, row_hash

IN_BATCH = 500
SMALL_KEYSET = 5_000


def _typed_columns(engine: Engine, table: Table, columns: Sequence[str], mapping: EntityMapping | None) -> list[Any]:
    """The columns to select; through a PostgreSQL driver decimal fields come as float8 and dates as timestamps.

    `coerce` turns both into float64 / datetime64 anyway; reading them so spares a Python
    `Decimal` / `date` object per value (memory and conversion time). The values are the same:
    a decimal of the column's scale parses to the same float64, and a date is midnight.
    Read through `COPY` (psycopg), pyarrow parses the columns' own text into those types:
    the server's casts would only cost it time.
    """
    # A column the table lacks yet is read as NULL (a plan, which adds no column: `EntityTables.without_columns`).
    cols = [table.c[c] if c in table.c else null().label(c) for c in columns]
    if mapping is None or engine.dialect.name != "postgresql" or engine.dialect.driver == "psycopg":
        return cols
    out: list[Any] = []
    for col in cols:
        spec = mapping.fields.get(col.name)
        if spec is not None and spec.type == "decimal":
            out.append(cast(col, Float).label(col.name))
        elif spec is not None and spec.type == "date":
            out.append(cast(col, DateTime).label(col.name))
        else:
            out.append(col)
    return out


def _rows_for_keys(
    engine: Engine,
    table: Table,
    columns: Sequence[str],
    keys: pd.Index,
    lo: int,
    hi: int,
    extra: Any = None,
    mapping: EntityMapping | None = None,
) -> pd.DataFrame:
    """Rows of `table` whose `_key` is in `keys` (batched IN for few keys, bucket range scan for many)."""
    cols = _typed_columns(engine, table, columns, mapping)
    if len(keys) <= SMALL_KEYSET:
        parts = []
        ordered = sorted(keys)  # batches of neighbouring keys: fewer index pages each
        for start in range(0, len(ordered), IN_BATCH):
            cond: Any = table.c._key.in_(ordered[start : start + IN_BATCH])
            parts.append(read_frame(engine, select(*cols).where(cond if extra is None else and_(cond, extra)), columns))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    cond = and_(table.c._bucket >= lo, table.c._bucket < hi)
    frame = read_frame(engine, select(*cols).where(cond if extra is None else and_(cond, extra)), columns)
    return frame[isin(frame["_key"], keys)]


def build_partition(
    ctx: SyncContext, entity: str, partition: int = 0, partitions: int = 1, writes: BackgroundWrites | None = None
) -> dict[str, int]:
    """Merge, compare and gate one partition; returns counts per action.

    With `writes`, the partition's gold rows are written in the background (retried there on
    transient errors) while the caller goes on with the next partition; without, before returning.
    """
    mapping = ctx.mapping(entity)
    tables, work = ctx.tables(mapping), ctx.work_tables(mapping)
    lo, hi = bucket_range(partition, partitions)
    wengine, tengine = ctx.work_engine(mapping), ctx.target_engine(mapping)
    fields = list(mapping.fields)
    fresh = (entity, partition) in ctx.fresh_gold
    ctx.fresh_gold.discard((entity, partition))  # a retry of this partition deletes what this attempt wrote
    with wengine.begin() as conn:
        if not fresh:
            conn.execute(
                delete(work.gold).where(
                    work.gold.c._run == ctx.run_id, work.gold.c._bucket >= lo, work.gold.c._bucket < hi
                )
            )
        conn.execute(
            update(work.stage)
            .where(
                work.stage.c._run == ctx.run_id,
                # Rendered as literals: the planner matches them with the partial index `..._held`.
                work.stage.c._status.in_(bindparam("set_aside", list(SET_ASIDE), expanding=True, literal_execute=True)),
                work.stage.c._bucket >= lo,
                work.stage.c._bucket < hi,
            )
            .values(_status="ok")
        )
    if not ctx.dry_run:
        for stage_name in (f"merge{partition}", f"integrity{partition}", f"gate{partition}"):
            ctx.store.clear_quarantine(ctx.run_id, entity, stage=stage_name)
        ctx.store.clear_gate(ctx.run_id, entity, partition)
    faults.point("merge.start")
    freeze_long_lived(writes)
    stage_cols = ["_source", "_src_id", "_status", "_key", *fields]
    staged = read_frame(
        wengine,
        select(*_typed_columns(wengine, work.stage, stage_cols, mapping)).where(
            work.stage.c._run == ctx.run_id,
            work.stage.c._status.in_(["ok", "deleted", "moved"]),
            work.stage.c._bucket >= lo,
            work.stage.c._bucket < hi,
        ),
        stage_cols,
    )
    counts = dict.fromkeys(["insert", "update", "unchanged", "inactivate", "rejected", "duplicates"], 0)
    if staged.empty:
        return counts
    keys = pd.Index(staged["_key"].dropna().unique())
    mirror_cols = ["_source", "_src_id", "_key", *fields]
    mirrored = (
        _rows_for_keys(tengine, tables.mirror, mirror_cols, keys, lo, hi, mapping=mapping)
        if table_exists(tengine, tables.mirror)
        else pd.DataFrame(columns=mirror_cols)
    )
    accepted = staged[staged["_status"] == "ok"].drop(columns="_status")
    if mirrored.empty:  # first load of these keys: nothing to replace (coerce below settles the dtypes)
        current = accepted.reset_index(drop=True)
    else:
        touched = staged["_source"] + "\x1f" + staged["_src_id"]
        mirrored = mirrored[~isin(mirrored["_source"] + "\x1f" + mirrored["_src_id"], touched)]
        current = pd.concat([mirrored, accepted], ignore_index=True)
    staged_rows = len(staged)
    del mirrored, accepted, staged
    current = coerce(current, mapping.fields, ctx.timezone, copy=False)
    if ctx.dry_run and wengine.dialect.name != tengine.dialect.name:
        # a sync stages in the target, whose DateTime columns may keep less of a time: hash what it would keep
        for name, spec in mapping.fields.items():
            if spec.type == "datetime":
                current[name] = stored_datetimes(current[name], tengine.dialect)
    frames = {s: current[current["_source"] == s].drop(columns="_source") for s in mapping.sources}
    current = current[["_source", "_src_id", "_key"]]  # all that is read of it from here on
    result = merge(frames, mapping, ctx.timezone)
    del frames
    golden = result.golden
    rejected_src: list[pd.DataFrame] = []
    target_cols = ["_key", "_hash", "_active", "_presence"]
    existing = (
        _rows_for_keys(tengine, tables.target, target_cols, keys, lo, hi)
        if table_exists(tengine, tables.target)
        else pd.DataFrame(columns=target_cols)
    )
    existing = existing.set_index("_key")
    held = _held_by_duplicates(result.duplicates, existing)
    if not result.duplicates.empty:
        dups = result.duplicates
        counts["duplicates"] = len(dups)
        reason = "this business key occurs more than once in the source; fix the source or the key mapping"
        _quarantine(
            ctx,
            entity,
            pd.DataFrame(
                {
                    "source": dups["_source"],
                    "src_id": dups["_src_id"],
                    "golden_key": dups["_key"],
                    "field": mapping.key[0],
                    "rule": "duplicate_key",
                    "value": dups["_key"],
                    "reason": np.where(
                        isin(dups["_key"], held),
                        f"{reason} (until then the target keeps the record as last published)",
                        reason,
                    ),
                }
            ),
            stage=f"merge{partition}",
        )
        # Into the mirror all the same: a later run that re-reads one member of the key must still see the others.
        _mark_stage_rejected(ctx, mapping, dups[["_source", "_src_id"]], status="duplicate")
    if len(held):
        golden = golden[~isin(golden["_key"], held)].reset_index(drop=True)
    golden = _with_activity(golden, mapping)
    # Nullable Int64 from the start: the concat with inactivated keys below would otherwise turn the column
    # into float64 and store every hash of the partition rounded to 53 bits.
    golden["_hash"] = row_hash(golden, fields).astype("Int64")
    golden["_bucket"] = bucket_of(golden["_key"])
    golden["_action"] = _actions(golden, existing, rewrite=bool(fields_to_fill(ctx, entity)))
    without_sources = existing.index.difference(pd.Index(golden["_key"])).difference(held).intersection(keys)
    vanished = [k for k in without_sources if bool(existing.at[k, "_active"])]
    changed = golden["_action"].isin(["insert", "update"])
    bad = _check_references(ctx, mapping, golden[changed], partition)
    bad = pd.concat([bad, _gate(ctx, mapping, golden[changed], partition)], ignore_index=True)
    if not bad.empty:
        bad_keys = set(bad["golden_key"])
        golden.loc[isin(golden["_key"], bad_keys) & changed, "_action"] = "rejected"
        rejected_src.append(current[isin(current["_key"], bad_keys)][["_source", "_src_id"]])
    if vanished:
        gone = pd.DataFrame({"_key": vanished, "_action": "inactivate", "_active": False})
        gone["_bucket"] = bucket_of(gone["_key"])
        golden = pd.concat([golden, gone], ignore_index=True)
    if rejected_src:
        _mark_stage_rejected(ctx, mapping, pd.concat(rejected_src, ignore_index=True))
    golden["_run"] = ctx.run_id
    golden["_hash"] = golden["_hash"].astype("Int64")
    golden["_bucket"] = golden["_bucket"].astype("int64")
    out_cols = ["_run", "_key", "_bucket", "_action", "_active", "_presence", "_hash", "_ids", *fields]
    write = partial(_write_gold, wengine, work.gold, golden.reindex(columns=out_cols))
    if writes is None:
        write()
    else:
        settings = ctx.config.run
        writes.submit(
            partial(
                with_retries,
                write,
                what=f"{entity}: writing the gold rows of partition {partition}",
                retries=settings.retries,
                backoff=settings.retry_backoff_seconds,
            )
        )
    for action, n in golden["_action"].value_counts().items():
        counts[str(action)] = counts.get(str(action), 0) + int(n)
    inactive_updates = golden["_key"][(golden["_action"] == "update") & ~golden["_active"].astype(bool)]
    counts["deactivated"] = int(inactive_updates.map(existing["_active"]).fillna(False).astype(bool).sum())
    ctx.tick(entity, "merge", staged_rows)
    del golden, current, existing, result
    release_memory()
    return counts


def expect_fresh_gold(ctx: SyncContext, entity: str, partitions: int) -> None:
    """Before merging every partition in this process: when the gold table holds no row of the run,
    the first merge of each partition has nothing of its own to delete.

    The delete scans the run's gold rows (its index leads with `_run`): 0.9 s over a million-row
    merge, for nothing on a run's first attempt.
    """
    mapping = ctx.mapping(entity)
    with ctx.work_engine(mapping).connect() as conn:
        if not has_run_rows(conn, ctx.work_tables(mapping).gold, ctx.run_id):
            ctx.fresh_gold.update((entity, p) for p in range(partitions))


_PARTITIONS_SEEN: list[int] = []
_HEAP_FROZEN: list[int] = []


def freeze_heap() -> None:
    """Once per process, at its first entity: keep what is alive out of the collector's sight.

    A syncing process carries SQLAlchemy, pandas, pyarrow and Great Expectations (Airflow too, in a
    task): a full collection visits every object of them, ~0.1-0.2 s. The collector runs such
    collections on its own schedule while an entity syncs: in an incremental run with no changes
    they were a tenth of its time. Frozen (`gc.freeze`), what lives as long as the process is no
    longer visited; what a run allocates is collected as before. Not collected first: that would
    cost what it saves, and a process holds next to no cyclic garbage as its first entity starts
    (46 objects, seen in the benchmark's incremental run). `freeze_long_lived` freezes once more,
    after a collection, from a process's second merge partition on.
    """
    import gc

    if not _HEAP_FROZEN:
        _HEAP_FROZEN.append(1)
        gc.freeze()


def freeze_long_lived(writes: BackgroundWrites | None = None) -> None:
    """From the second partition a process merges on, keep what is alive out of the collector's sight.

    The gate ends each partition with a full collection (GX holds the partition's frame in
    reference cycles). A full collection visits every tracked object: with Airflow, SQLAlchemy,
    pandas and GX loaded that took 0.25 s per partition, 5 s at a million rows. What is alive
    between two partitions (modules, GX and its suite, the run's configuration) lives as long as
    the process, so it is frozen once (`gc.freeze`) and later collections only visit the objects
    of the partition at hand. A process that merges one partition (an incremental run, an Airflow
    task) does not pay for the freeze's own full collection. The previous partition's gold rows
    are written first: frozen while in flight, a frame caught in a reference cycle would never be
    freed.
    """
    import gc

    _PARTITIONS_SEEN.append(1)
    if len(_PARTITIONS_SEEN) == 2:
        if writes is not None:
            writes.wait()
        gc.collect()
        gc.freeze()


def _write_gold(engine: Engine, gold: Table, rows: pd.DataFrame) -> None:
    insert_frames(engine, gold, rows)
    faults.point("merge.gold_written")


def release_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc `malloc_trim`; a no-op elsewhere).

    A partition's frames are freed when it ends, but glibc keeps the pages, so the process's
    resident size would ratchet up to the largest partition seen plus fragmentation.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_TRIM: list[Any] = []


def _arrow_from_malloc() -> None:
    """Arrow buffers (pandas `str` columns, COPY CSV) from malloc, so that `release_memory` returns them too.

    pyarrow's default pool (jemalloc or mimalloc) keeps freed pages for reuse, out of reach of
    `malloc_trim`: about 80 MB more peak memory on a 200,000-row purchase sync. An explicit
    `ARROW_DEFAULT_MEMORY_POOL` is left alone.
    """
    import os

    import pyarrow

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())


_arrow_from_malloc()


def _malloc_trim() -> Any:
    if not _TRIM:
        try:
            import ctypes
            import ctypes.util

            _TRIM.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _TRIM.append(None)
    return _TRIM[0]


def _held_by_duplicates(duplicates: pd.DataFrame, existing: pd.DataFrame) -> pd.Index:
    """Published keys that a source holds twice now and that the last published version took from that source.

    Merged from the other sources alone, such a record would lose what only that source gives (or, given by it
    alone, be inactivated as though it had vanished), and which member of the duplicate to use is not known: the
    target keeps the record as last published (no gold row), as it keeps one whose new version a check refused.
    Its other sources' rows are mirrored all the same, so the merge that follows the fix at the source has them.
    A key the target lacks, or whose published version has nothing of that source, merges without the duplicate.
    """
    if duplicates.empty or existing.empty:
        return pd.Index([], dtype=object)
    pairs = duplicates[["_key", "_source"]].drop_duplicates()
    presence = pairs["_key"].map(existing["_presence"])
    took = [
        isinstance(sources, str) and source in sources.split("+")
        for sources, source in zip(presence, pairs["_source"], strict=True)
    ]
    return pd.Index(pairs.loc[np.array(took, dtype=bool), "_key"].unique())


def _with_activity(golden: pd.DataFrame, mapping: EntityMapping) -> pd.DataFrame:
    deletion = mapping.deletion
    active = pd.Series(True, index=golden.index)
    if deletion.status_field and deletion.inactive_values:
        active = ~golden[deletion.status_field].astype("str").isin(deletion.inactive_values)
    golden["_active"] = active.astype(bool)
    return golden


def fields_to_fill(ctx: SyncContext, entity: str) -> list[str]:
    """The mapped fields the entity's last publish did not write for every record (`Store.published_fields`): added,
    mapped again, or renamed since. Until a publish has written them, the merge rewrites every record it reads: a row
    hash is of values only, so a record whose values did not change (a field renamed, another removed as one with
    the same values was added) would otherwise keep the new column empty. Empty when the store keeps no record."""
    published = ctx.published_fields(entity)
    return [] if published is None else [name for name in ctx.mapping(entity).fields if name not in published.fields]


def _actions(golden: pd.DataFrame, existing: pd.DataFrame, *, rewrite: bool = False) -> pd.Series:
    """insert, update or unchanged per golden record; with `rewrite`, every known record is an update."""
    known = pd.Series(isin(golden["_key"], existing.index), index=golden.index)
    if rewrite:
        return pd.Series(np.where(known, "update", "insert"), index=golden.index)
    old_hash = golden["_key"].map(existing["_hash"]) if not existing.empty else pd.Series(np.nan, index=golden.index)
    old_active = (
        golden["_key"].map(existing["_active"]) if not existing.empty else pd.Series(np.nan, index=golden.index)
    )
    old_presence = (
        golden["_key"].map(existing["_presence"]) if not existing.empty else pd.Series(np.nan, index=golden.index)
    )
    same = (
        (old_hash.astype("float64") == golden["_hash"].astype("float64"))
        & (old_active.fillna(False).astype(bool) == golden["_active"])
        & (old_presence.astype("str") == golden["_presence"].astype("str"))
    )
    action = np.where(~known, "insert", np.where(same, "unchanged", "update"))
    return pd.Series(action, index=golden.index)


#: In a dry run, the key of `SyncContext.__dict__` naming the entities whose plan would publish (`active_values`).
PLANNED = "_would_publish"


def active_values(ctx: SyncContext, entity: str, column: str, *, merging: str) -> pd.Series:
    """The distinct values of `entity.column` over the entity's active records, as the merge of `merging` sees them.

    A sync publishes a referenced entity before it merges the entities that point to it: the target's active
    records. A dry run publishes nothing, so it applies what the plan of `entity` in this run would publish to the
    target's records: its inserts and updates count with their new values (none when they switch a record off,
    an `inactivate` removes the record's); its rejected rows leave the target's as they are. Only a plan that
    would publish counts (`PLANNED`, set once its gate passed): not one the gate would refuse or that failed, nor
    the entity being merged itself (`merging`), whose target the sync does not publish before its own merge.
    Read once per merged entity, run and process: the entities it points to were synced before it, and do not
    change while its partitions are merged.
    """
    cache: dict[tuple[str, str, str], pd.Series] = ctx.__dict__.setdefault("_active_values", {})
    if (entity, column, merging) in cache:
        return cache[(entity, column, merging)]
    ref_mapping = ctx.mapping(entity)
    table = ctx.tables(ref_mapping).target
    engine = ctx.target_engine(ref_mapping)
    readable = column in table.c and table_exists(engine, table)  # a plan reads a column to be added as empty
    if ctx.dry_run and entity != merging and entity in ctx.__dict__.get(PLANNED, ()):
        values = _planned_target_values(ctx, ref_mapping, column, readable)
    elif readable:
        values = read_frame(engine, select(table.c[column]).where(_holding(table, column)).distinct(), [column])[column]
    else:
        values = pd.Series([], dtype=object)
    values = values.reset_index(drop=True)
    cache[(entity, column, merging)] = values
    return values


def _holding(table: Table, column: str) -> Any:
    """The active records of `table` with a value in `column`."""
    return and_(table.c._active.is_(True), table.c[column].is_not(None))


def _planned_target_values(ctx: SyncContext, mapping: EntityMapping, column: str, readable: bool) -> pd.Series:
    """`active_values` in a dry run: the target's values as the planned publish of `mapping`'s entity leaves them."""
    gold, wengine = ctx.work_tables(mapping).gold, ctx.work_engine(mapping)
    touched = pd.Index([], dtype=object)
    added = pd.Series([], dtype=object)
    if column in gold.c and table_exists(wengine, gold):
        mine = gold.c._run == ctx.run_id
        stmt = select(gold.c._key).where(mine, gold.c._action.in_(["update", "inactivate"]))
        touched = pd.Index(read_frame(wengine, stmt, ["_key"])["_key"].unique())
        stmt = select(gold.c[column]).where(
            mine, gold.c._action.in_(["insert", "update"]), gold.c._active.is_(True), gold.c[column].is_not(None)
        )
        added = read_frame(wengine, stmt, [column])[column]
    if not readable:
        return added.drop_duplicates()
    table, engine = ctx.tables(mapping).target, ctx.target_engine(mapping)
    stmt = select(table.c[column], func.count().label("_n")).where(_holding(table, column)).group_by(table.c[column])
    counts = read_frame(engine, stmt, [column, "_n"])
    if len(touched):
        # A value stays while a record the plan leaves alone still has it (a column need not be unique).
        lo, hi = bucket_range(0, 1)
        before = _rows_for_keys(engine, table, ["_key", column], touched, lo, hi, extra=_holding(table, column))
        left = counts["_n"].to_numpy() - counts[column].map(before[column].value_counts()).fillna(0).to_numpy()
        counts = counts[left > 0]
    return pd.concat([counts[column], added], ignore_index=True).drop_duplicates()


def _referenced_values(ctx: SyncContext, entity: str, field: str, merging: str) -> set[str]:
    """`active_values` as text, as `references:` compares them."""
    cache: dict[tuple[str, str, str], set[str]] = ctx.__dict__.setdefault("_referenced_values", {})
    if (entity, field, merging) not in cache:
        cache[(entity, field, merging)] = set(active_values(ctx, entity, field, merging=merging).astype("str"))
    return cache[(entity, field, merging)]


def _check_references(ctx: SyncContext, mapping: EntityMapping, rows: pd.DataFrame, partition: int) -> pd.DataFrame:
    """Quarantine (or fail on) golden rows that point to keys missing in another entity's target."""
    found = []
    for field, (entity, other) in mapping.references.items():
        values = rows[field].dropna()
        if values.empty:
            continue
        known = _referenced_values(ctx, entity, other, mapping.entity)
        missing = rows[rows[field].notna() & ~isin(rows[field].astype("str"), known)]
        if missing.empty:
            continue
        spec = mapping.fields[field]
        if spec.on_missing_reference == "fail":
            sample = ", ".join(missing[field].astype("str").unique()[:5])
            raise IntegrityError(
                f"{mapping.entity}: {len(missing)} row(s) reference {entity}.{other} values that do not exist "
                f"({sample}); "
                f"sync {entity} first or fix the data. Nothing was published."
            )
        found.append(
            pd.DataFrame(
                {
                    "source": missing["_presence"].astype("str"),
                    "src_id": missing["_ids"],
                    "golden_key": missing["_key"],
                    "field": field,
                    "rule": f"reference:{entity}.{other}",
                    "value": missing[field].astype("str"),
                    "reason": f"{field} is not an active {entity}.{other} in the target; "
                    f"add it to {entity} or fix the reference, then `erpoa quarantine retry {mapping.entity}` "
                    "(an incremental sync reads again only the records that change at the source)",
                }
            )
        )
    frame = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["golden_key"])
    _quarantine(ctx, mapping.entity, frame, stage=f"integrity{partition}")
    return frame


def _gate(ctx: SyncContext, mapping: EntityMapping, rows: pd.DataFrame, partition: int) -> pd.DataFrame:
    """Run the entity's Great Expectations suite on the rows to publish; quarantine failing rows."""
    from etl.engine.quality import run_gate

    return run_gate(ctx, mapping, rows, partition)


def quarantine_rows(ctx: SyncContext, entity: str, frame: pd.DataFrame, *, stage: str) -> None:
    """Record rejected rows in the store (or, in a dry run, in the plan)."""
    if frame.empty:
        return
    if "raw" not in frame:
        frame = frame.assign(raw=None)
    frame = mask_personal_data(frame, ctx.mapping(entity))
    if ctx.dry_run:
        ctx.planned_quarantine.append(frame.assign(entity=entity, stage=stage))
        return
    ctx.store.add_quarantine(ctx.run_id, entity, frame, stage=stage)


_quarantine = quarantine_rows


def mask_personal_data(frame: pd.DataFrame, mapping: EntityMapping) -> pd.DataFrame:
    """Quarantine rows with values of `pii: true` fields masked: the rejected `value`, the values the
    `reason` quotes, and the raw source row.

    The store keeps a copy of rejected data for stewards; the source stays the system of record (the
    row's source id points to it). Id columns and columns that feed the business key stay readable:
    reconciliation derives the golden key of a quarantined row from its raw record.
    """
    pii = set(mapping.pii_fields)
    if frame.empty or not pii:
        return frame
    out = frame.copy()
    if "field" in out and "value" in out:
        sel = out["field"].isin(pii)
        out.loc[sel, "value"] = out.loc[sel, "value"].map(logs.mask_personal)
        quoted = sel & out["reason"].notna() if "reason" in out else None
        if quoted is not None and quoted.any():
            out.loc[quoted, "reason"] = out.loc[quoted, "reason"].map(_mask_reason)
    if "raw" not in out or "source" not in out:
        return out
    for source, spec in mapping.sources.items():
        keep = set(spec.id) | {c for f, fs in spec.fields.items() if f in mapping.key for c in fs.columns}
        hidden = {c for f, fs in spec.fields.items() if f in pii for c in fs.columns} - keep
        sel = (out["source"].astype(str) == source) & out["raw"].notna()
        if hidden and sel.any():
            out.loc[sel, "raw"] = out.loc[sel, "raw"].map(lambda text, hidden=hidden: _mask_raw(text, hidden))
    return out


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
_SAMPLES = re.compile(rf"^(?:{_QUOTED.pattern})|, e\.g\. .*$")


def _mask_reason(reason: object) -> object:
    """A transform's reason (``'x' does not match …``, ``…, e.g. 'x', 'y'``) with its quoted values masked.

    Transforms already quote personal data masked; this also covers reasons written by older versions.
    """
    if not isinstance(reason, str):
        return reason
    return _SAMPLES.sub(lambda m: _QUOTED.sub(_mask_quoted, m.group()), reason)


def _mask_quoted(match: re.Match[str]) -> str:
    return repr(str(logs.mask_personal(match.group()[1:-1])))


def _mask_raw(text: str, hidden: set[str]) -> str:
    try:
        record = json.loads(text)
    except (TypeError, ValueError):
        return text
    if not isinstance(record, dict):
        return text
    return json.dumps({k: logs.mask_personal(v) if k in hidden else v for k, v in record.items()}, ensure_ascii=False)


def _mark_stage_rejected(ctx: SyncContext, mapping: EntityMapping, pairs: pd.DataFrame, status: str = "held") -> None:
    """Set aside staged source rows the merge refused.

    `held` rows (refused by an integrity or gate check) stay out of the mirror, so the
    target keeps the last accepted version and the rows are retried rather than forgotten.
    `duplicate` rows (a key that occurs more than once in one source) go into the mirror,
    so the duplicate is found again however few of its members a later run re-reads.
    """
    stage = ctx.work_tables(mapping).stage
    with ctx.work_engine(mapping).begin() as conn:
        for source, part in pairs.drop_duplicates().groupby("_source"):
            ids = part["_src_id"].astype("str").tolist()
            for start in range(0, len(ids), IN_BATCH):
                conn.execute(
                    update(stage)
                    .where(
                        stage.c._run == ctx.run_id,
                        stage.c._source == source,
                        stage.c._status == "ok",
                        stage.c._src_id.in_(ids[start : start + IN_BATCH]),
                    )
                    .values(_status=status)
                )
