"""Stage 3: publish an entity in one transaction, then record what the run did.

Inside one target transaction: upsert inserted/updated golden records, inactivate
vanished ones (never a hard delete), move accepted source rows into the mirror and make
the run's id hashes live (`etl.engine.idhashes`). Only after that commit do watermarks
advance and the cross-reference and quarantine bookkeeping follow; all of it is
idempotent, so a rerun after a crash at any point converges on the same state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from itertools import pairwise
from typing import Any

import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    MetaData,
    String,
    Table,
    and_,
    cast,
    delete,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError

from etl import faults
from etl.db.write import (
    indexes_built_after,
    insert_frame,
    insert_select,
    refresh_statistics,
    rows_written,
    upsert_select,
)
from etl.engine import idhashes, mirror_swap, sweep, xref_partition
from etl.engine.context import SyncContext
from etl.engine.lock import AIRFLOW_TRIGGER
from etl.engine.quality import row_count_band, row_count_limits, threshold
from etl.engine.tables import build_indexes, mirrored_records, stageable, table_exists, truncate
from etl.engine.xref_partition import XREF_COLUMNS
from etl.errors import QualityGateError
from etl.store import schema as store_schema
from etl.store.repo import IN_BATCH, excluded_record, names_one_record, source_records

log = logging.getLogger("erpoa.publish")

XREF_CHUNK = 50_000


def gate_decision(ctx: SyncContext, entity: str, read_total: int, *, quarantined: int | None = None) -> None:
    """Refuse to publish when batch expectations failed or quarantine exceeds the thresholds.

    A dry run (`erpoa plan`) decides the same from what it planned, so that a plan says when the
    sync would be refused: its findings counted as the sync counts its own (distinct source ids,
    less the records a published run already quarantined for the same rule, `_plan_excluding`);
    `quarantined` is not used (kept for callers).
    """
    mapping = ctx.mapping(entity)
    excluding: frozenset[tuple[str, str]] = frozenset()
    if ctx.dry_run:
        results = [r for r in ctx.planned_gate if r["entity"] == entity]
        planned = planned_findings(ctx, entity, ["golden_key"])
        excluding = _plan_excluding(ctx, entity, planned)
        quarantined = records_count(_not_excluded(planned, excluding))
    else:
        results = ctx.store.gate(ctx.run_id, entity)
        # An incremental read judges what it adds: records a published run already quarantined, failing again
        # as it re-reads them, are no new bad data (counted, they would refuse every run that reads them, its
        # watermark never moving). A full refresh judges the whole entity.
        accepted = frozenset() if ctx.full_refresh else ctx.store.accepted_findings(entity, ctx.run_id)
        excluding = ctx.already_quarantined | accepted
        quarantined = ctx.store.count_quarantine(ctx.run_id, entity, excluding=excluding)
    broken = [r for r in results if r["level"] == "batch"]
    reasons = [
        f"{r['expectation']}" + (f" on {r['column']}" if r["column"] else "") + f": {r['message']}" for r in broken
    ]
    pct = threshold(ctx, mapping, "max_quarantined_pct")
    rows = threshold(ctx, mapping, "max_quarantined_rows")
    least = threshold(ctx, mapping, "pct_min_rows")
    too_many = False
    if rows is not None and quarantined > rows:
        reasons.append(f"{quarantined} rows quarantined, more than max_quarantined_rows={rows}")
        too_many = True
    band = row_count_band(ctx, mapping)
    previous = ctx.store.previous_read_total(entity, ctx.run_id) if band and ctx.full_refresh else None
    if band and previous and not band[0] * previous <= read_total <= band[1] * previous:
        reasons.append(
            f"expect_table_row_count_to_be_between: read {read_total} rows, outside {band[0]:g}-{band[1]:g} x "
            f"the {previous} rows of the entity's last complete read (its last full sync, or its first run)"
        )
    if pct is not None and read_total and read_total >= least and quarantined * 100.0 / read_total > pct:
        reasons.append(
            f"{quarantined * 100.0 / read_total:.1f}% of rows quarantined ({quarantined} of the {read_total} read), "
            f"more than max_quarantined_pct={pct}"
        )
        too_many = True
    low, high = row_count_limits(ctx, mapping) if ctx.full_refresh else (None, None)
    if (low is not None and read_total < low) or (high is not None and read_total > high):
        limits = f"{low:g}-{high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        reasons.append(f"expect_table_row_count_to_be_between: read {read_total} rows, expected {limits}")
    faults.point("gate.decided")
    if reasons:
        row_rules = sorted({r["expectation"] for r in results if r["level"] == "row"})
        extra = f" Row-level expectations that failed: {', '.join(row_rules)}." if row_rules else ""
        if too_many:
            found = _not_excluded(planned_findings(ctx, entity), excluding) if ctx.dry_run else (
                ctx.store.run_findings(ctx.run_id, entity, excluding=excluding)
            )
            if not found.empty:
                extra += f" Quarantined records counted: {findings_summary(found)}."
        airflow = ctx.trigger == AIRFLOW_TRIGGER
        if ctx.dry_run:
            samples = "the DAG's plan keeps no samples: run `erpoa plan` for them" if airflow else (
                "its samples show the rows quarantined")
            raise QualityGateError(
                f"{entity}: the quality gate would refuse to publish: " + "; ".join(reasons) + "." + extra
                + f" (a plan: nothing was written; {samples})"
            )
        # a DAG run's gate runs in its merge_validate tasks, which keep no Data Docs (docs/airflow.md)
        docs = f"the log of {entity}'s merge_validate tasks" if airflow else "the Data Docs of the run"
        raise QualityGateError(
            f"{entity}: quality gate refused to publish: "
            + "; ".join(reasons)
            + "."
            + extra
            + " Nothing of this entity was published and its watermark did not move; see `erpoa quarantine list "
            f"--entity {entity}` and {docs}."
        )


#: Source records named per rule in a refusal's summary of its findings (`findings_summary`).
FINDING_EXAMPLES = 3


def findings_summary(found: pd.DataFrame, examples: int = FINDING_EXAMPLES) -> str:
    """The quarantine rows `found` (source, src_id, field, rule, value) per rule, the rule with the most records
    first: how many source records, which (the first `examples`), and the first row's field and value.

    >>> rows = pd.DataFrame({"source": ["oa", "oa", "erp"], "src_id": ["17", "19", "3"],
    ...                      "field": ["department_code", "department_code", "name"],
    ...                      "rule": ["duplicate_key", "duplicate_key", "lookup:department"],
    ...                      "value": ["D0302", "D0302", None]})
    >>> findings_summary(rows)
    "duplicate_key: 2 records (oa 17, oa 19; department_code 'D0302'); lookup:department: 1 record (erp 3; name)"
    """
    parts: list[tuple[int, str]] = []
    for rule, rows in found.groupby("rule", sort=False):
        records = rows.assign(src_id=rows["src_id"].fillna("")).drop_duplicates(["source", "src_id"])
        count = len(records)
        named = [
            " + ".join(f"{src} {sid}" for src, sid in source_records(str(source), str(src_id))) or str(source)
            for source, src_id in zip(records["source"][:examples], records["src_id"][:examples], strict=True)
        ]
        shown = ", ".join(named) + (f" and {count - examples} more" if count > examples else "")
        first = rows.iloc[0]
        where = "" if pd.isna(first["field"]) else f"; {first['field']}"
        if where and not pd.isna(first["value"]):
            where += f" {str(first['value'])[:60]!r}"
        parts.append((count, f"{rule}: {count} record{'s' if count != 1 else ''} ({shown}{where})"))
    return "; ".join(text for _, text in sorted(parts, key=lambda p: -p[0]))


def records_count(found: pd.DataFrame) -> int:
    """The source records of findings (`source`, `src_id` columns), each once however many rules and stages it
    failed: as `Store.count_quarantine` counts a sync's."""
    return len(found[["source", "src_id"]].dropna(subset=["src_id"]).astype("str").drop_duplicates())


def planned_findings(ctx: SyncContext, entity: str, more: Sequence[str] = ()) -> pd.DataFrame:
    """What a dry run planned to quarantine for `entity`, in `findings_summary`'s columns (and `more`)."""
    columns = ["source", "src_id", "field", "rule", "value", *more]
    frames = [f[f["entity"] == entity].reindex(columns=columns) for f in ctx.planned_quarantine if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _not_excluded(found: pd.DataFrame, excluding: frozenset[tuple[str, str]]) -> pd.DataFrame:
    """The rows of `found` not about source records all in `excluding` (as `Store.run_findings` leaves them)."""
    if not excluding or found.empty:
        return found
    keep = [
        pd.isna(i) or not excluded_record(str(src), str(i), excluding)
        for src, i in zip(found["source"], found["src_id"], strict=True)
    ]
    return found[keep]


def _plan_excluding(ctx: SyncContext, entity: str, planned: pd.DataFrame) -> frozenset[tuple[str, str]]:
    """The source records a plan's findings do not count toward the gate's thresholds, as the sync would not count
    them: those of a replay (`ctx.already_quarantined`) and, unless it is a full refresh, those the plan finds
    again for a rule an open finding of a published run names (`Store.accepted_findings` finds them once the
    sync's findings superseded the open ones; a plan writes none, so it asks about the open ones instead).

    An open finding is accepted when its run published the entity, or when it superseded an accepted one
    (`accepted_findings` of its run); a planned finding supersedes the open one of the same rule and source
    record, or of the same rule and golden record, as `Store.add_quarantine` does.
    """
    excluding = set(ctx.already_quarantined)
    if ctx.full_refresh or planned.empty:
        return frozenset(excluding)
    open_rows = ctx.store.quarantine(entity=entity, status="open")
    if open_rows.empty:
        return frozenset(excluding)
    runs = store_schema.entity_runs
    with ctx.store.engine.connect() as conn:
        published = set(
            conn.execute(select(runs.c.run_id).where(runs.c.entity == entity, runs.c.status == "success")).scalars()
        )
    inherited = {run: ctx.store.accepted_findings(entity, run) for run in set(open_rows["run_id"]) - published}
    by_record: set[tuple[str, str, str]] = set()
    by_key: set[tuple[str, str]] = set()
    for run, source, src_id, key, rule in zip(
        open_rows["run_id"], open_rows["source"], open_rows["src_id"], open_rows["golden_key"], open_rows["rule"],
        strict=True,
    ):
        pairs = [] if pd.isna(src_id) else source_records(str(source), str(src_id))
        if run not in published and not (pairs and all(pair in inherited[run] for pair in pairs)):
            continue
        if pairs:
            by_record.add((str(source), str(src_id), str(rule)))
        if not pd.isna(key):
            by_key.add((str(key), str(rule)))
    for source, src_id, key, rule in zip(
        planned["source"], planned["src_id"], planned["golden_key"], planned["rule"], strict=True
    ):
        if pd.isna(src_id):
            continue
        if (str(source), str(src_id), str(rule)) in by_record or (not pd.isna(key) and (str(key), str(rule)) in by_key):
            excluding.update(source_records(str(source), str(src_id)))
    return frozenset(excluding)


# Rows written by one publish above which the target's planner statistics are refreshed.
STATISTICS_MIN_ROWS = 10_000


def _vacuums_mirror(counts: dict[str, int]) -> bool:
    """Whether a publish with these counts is followed by `vacuum_mirror` (which also analyses the mirror).

    A mirror swapped in was vacuumed and analysed when it was built.
    """
    return counts["mirrored"] >= STATISTICS_MIN_ROWS and not counts.get("mirror_swapped")


def publish(ctx: SyncContext, entity: str) -> dict[str, int]:
    """Publish the gold rows of this run in one target transaction.

    A mirror that took many rows is analysed by the vacuum `publish_and_finalize` runs after it.
    """
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    target, gold, stage, mirror = tables.target, tables.gold, tables.stage, tables.mirror
    fields = list(mapping.fields)
    key = mapping.target_key
    stamp = datetime.now().replace(microsecond=0)
    counts: dict[str, int] = {}
    faults.point("publish.begin")
    with ctx.target_engine(mapping).begin() as conn:
        cols = [
            *fields,
            "_key",
            "_bucket",
            "_active",
            "_presence",
            "_hash",
            "_run_id",
            "_mapping_version",
            "_updated_at",
        ]
        source = select(
            *[gold.c[f] for f in fields],
            gold.c._key,
            gold.c._bucket,
            gold.c._active,
            gold.c._presence,
            gold.c._hash,
            literal(ctx.run_id),
            literal(ctx.mappings.version),
            literal(stamp),
        ).where(gold.c._run == ctx.run_id, gold.c._action.in_(["insert", "update"]))
        with indexes_built_after(conn, target) as first_load:
            load = insert_select if first_load else partial(upsert_select, key=key)
            counts["upserted"] = load(conn, target, cols, source)
        faults.point("publish.upserted")
        gone = select(gold.c._key).where(gold.c._run == ctx.run_id, gold.c._action == "inactivate")
        values: dict[str, Any] = {"_active": False, "_run_id": ctx.run_id, "_updated_at": stamp}
        if mapping.deletion.status_field and mapping.deletion.set_status is not None:
            values[mapping.deletion.status_field] = mapping.deletion.set_status
        counts["inactivated"] = (
            conn.execute(
                update(target).where(target.c._key.in_(gone), target.c._active.is_(True)).values(**values)
            ).rowcount
            or 0
        )
        faults.point("publish.inactivated")
        mirror_was_empty = conn.execute(select(literal(1)).select_from(mirror).limit(1)).first() is None
        vanished = exists().where(
            and_(
                stage.c._run == ctx.run_id,
                stage.c._status == "deleted",
                stage.c._source == mirror.c._source,
                stage.c._src_id == mirror.c._src_id,
            )
        )
        removed_any = conn.execute(delete(mirror).where(vanished)).rowcount != 0
        faults.point("publish.mirror_deleted")
        mirror_cols = ["_source", "_src_id", "_key", "_bucket", "_run", *fields]
        accepted = select(
            stage.c._source,
            stage.c._src_id,
            stage.c._key,
            stage.c._bucket,
            literal(ctx.run_id),
            *[stage.c[f] for f in fields],
        ).where(stage.c._run == ctx.run_id, stage.c._status.in_(["ok", "duplicate"]))
        swapped = mirror_swap.swap(conn, ctx, entity) if mirror_was_empty else None
        counts["mirror_swapped"] = int(swapped is not None)
        if swapped is not None:  # built beside the merge, vacuumed and analysed (`etl.engine.mirror_swap`)
            counts["mirrored"] = swapped
            faults.point("publish.mirror_swapped")
        else:
            with indexes_built_after(conn, mirror) as first_load:
                load = insert_select if first_load else partial(upsert_select, key=["_source", "_src_id"])
                counts["mirrored"] = load(conn, mirror, mirror_cols, accepted)
        faults.point("publish.mirror_upserted")
        # The sources whose mirrored ids this publish removed (one more look at the stage only when it removed some).
        removed = set(
            conn.execute(
                select(stage.c._source).where(stage.c._run == ctx.run_id, stage.c._status == "deleted").distinct()
            ).scalars()
        ) if removed_any else set()
        idhashes.publish(conn, tables.ids, ctx.run_id, list(mapping.sources), mirror_was_empty, removed)
    faults.point("publish.committed")
    if max(counts["upserted"], counts["mirrored"]) >= STATISTICS_MIN_ROWS:
        analysed = _vacuums_mirror(counts) or counts["mirror_swapped"]
        refresh_statistics(ctx.target_engine(mapping), target, *([] if analysed else [mirror]))
    return counts


def publish_and_finalize(ctx: SyncContext, entity: str) -> dict[str, int]:
    """`publish`, then `finalize`; on a PostgreSQL store the cross-reference is loaded while the publish runs.

    The links come from the gold rows, which the publish does not change, and go into the
    store in its own transaction, committed only once the publish has committed: the two
    database sessions work at the same time (the server has a core for each) and the end
    state is that of `publish` followed by `finalize`. A failure of either rolls the links
    back; both steps are idempotent, so a retry of the whole starts clean.
    """
    if not _XrefLoader.overlaps(ctx, entity):
        counts = publish(ctx, entity)
        counts.update(finalize(ctx, entity))
    else:
        findings = _open_findings(ctx, entity)
        with (
            _XrefLoader(ctx, entity) as xref,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"erpoa-xref-{entity}") as pool,
        ):
            loading = pool.submit(_load_links, ctx, entity, xref, _gate_keys(findings))
            try:
                counts = publish(ctx, entity)
            except BaseException:
                loading.exception()  # let the load finish before its transaction is rolled back
                raise
            published = loading.result()
        counts.update(_settle(ctx, entity, findings, published, xref.count))
    if _vacuums_mirror(counts):
        # Once no transaction of the sync is open (the links' was), so that every row can be marked visible
        # to all: the deletion sweep of each incremental run reads all of a source's mirrored ids.
        vacuum_mirror(ctx, entity)
    return counts


def vacuum_mirror(ctx: SyncContext, entity: str) -> None:
    """`VACUUM (ANALYZE)` of the mirror after a large publish (PostgreSQL; elsewhere nothing).

    Its ids then read from the primary key alone (an index-only scan, half the time of reading
    the table at a million rows), and no later reader sets each new row's hint bits. When the
    vacuum fails, the mirror is only analysed, as `publish` does for a smaller one.
    """
    mapping = ctx.mapping(entity)
    engine, mirror = ctx.target_engine(mapping), ctx.tables(mapping).mirror
    try:
        refresh_statistics(engine, mirror, vacuum=True)
    except SQLAlchemyError as exc:  # an optimisation: never fail a published entity over it
        log.warning("%s: could not vacuum the mirror (the next sweep reads the table instead): %s", entity, exc)
        refresh_statistics(engine, mirror)


def finalize(ctx: SyncContext, entity: str) -> dict[str, int]:
    """After the publish committed: update the cross-reference, resolve quarantine, then advance watermarks.

    Watermarks move last: a crash before them makes the rerun read the same rows
    again, find them unchanged and redo this idempotent bookkeeping.
    """
    findings = _open_findings(ctx, entity)
    with _XrefLoader(ctx, entity) as xref:
        published = _load_links(ctx, entity, xref, _gate_keys(findings))
    return _settle(ctx, entity, findings, published, xref.count)


def _open_findings(ctx: SyncContext, entity: str) -> pd.DataFrame:
    """Open quarantine findings of earlier runs: those this run may resolve."""
    open_rows = ctx.store.quarantine(entity=entity, status="open")
    return open_rows[open_rows["run_id"] != ctx.run_id]


def _gate_keys(findings: pd.DataFrame) -> set[str]:
    """Golden keys of open merge (duplicate key), integrity and gate findings: resolved when published again."""
    return set(findings.loc[findings["stage"].str.match(r"^(merge|gate|integrity)"), "golden_key"].dropna())


def _load_links(ctx: SyncContext, entity: str, xref: _XrefLoader, gate_keys: set[str]) -> list[str]:
    """Stream this run's published golden keys with their source ids into `xref`; returns those in `gate_keys`."""
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    gold, stage = tables.gold, tables.stage
    kept = gold.c._action.in_(["insert", "update", "unchanged"])
    if xref.in_target_database():
        if _mirror_holds_only(ctx, entity):
            # Every golden record of the run was merged from staged rows only, so its source ids are the
            # run's accepted staged rows: read as they are, without unpacking each gold row's `_ids`; on a
            # first load, those built beside the merge (`xref_partition.build`) when there are.
            if not xref.adopt():
                xref.add_select(
                    select(stage.c._source, stage.c._src_id, stage.c._key).where(
                        stage.c._run == ctx.run_id, stage.c._status == "ok"
                    )
                )
        else:
            ids = func.jsonb_each_text(cast(gold.c._ids, JSONB)).table_valued("key", "value").alias("ids")
            xref.add_select(
                select(ids.c.key, ids.c.value, gold.c._key)
                .select_from(gold.join(ids, true()))
                .where(gold.c._run == ctx.run_id, kept, ids.c.key.in_(list(mapping.sources)))
            )
        faults.point("finalize.xref_loaded")
        xref.complete()
        wanted = sorted(gate_keys)
        if wanted:
            build_indexes(ctx.work_engine(mapping), gold)  # a run's gold rows are written without them
        with ctx.target_engine(mapping).connect() as conn:
            return [
                key
                for start in range(0, len(wanted), 1000)
                for key in conn.execute(
                    select(gold.c._key).where(
                        gold.c._run == ctx.run_id, kept, gold.c._key.in_(wanted[start : start + 1000])
                    )
                ).scalars()
            ]
    published: list[str] = []
    with ctx.target_engine(mapping).connect() as conn:
        result = conn.execution_options(stream_results=True).execute(
            select(gold.c._key, gold.c._ids).where(gold.c._run == ctx.run_id, kept).order_by(gold.c._key)
        )
        for rows in result.partitions(XREF_CHUNK):
            frame = pd.DataFrame.from_records(list(map(tuple, rows)), columns=["golden_key", "ids"])
            # In key order, and each chunk's links by source id: the cross-reference's two indexes then
            # take mostly neighbouring entries instead of one random page per row.
            xref.add(_explode_ids(frame, list(mapping.sources)).sort_values(["source", "src_id"], ignore_index=True))
            faults.point("finalize.xref_chunk")
            published.extend(k for k in frame["golden_key"] if k in gate_keys)
    xref.complete()
    return published


def _mirror_holds_only(ctx: SyncContext, entity: str) -> bool:
    """Whether the mirror holds no row that an earlier run accepted (it is empty, or this run wrote all of it).

    Then no golden record of the run took a value from a mirrored row: the merge combined the run's
    accepted staged rows alone, and the links of its published records are exactly those rows
    (`ok` once the merge set aside held and duplicate rows). A mirrored row of an earlier run that
    the run did not stage again (a source row the mapping now rejects, a held row) keeps its run id,
    and its presence sends the caller to the gold rows' `_ids`. Seen before the publish commits, the
    mirror is that of the runs before; after, rows this run replaced carry its id.
    """
    mirror = ctx.tables(ctx.mapping(entity)).mirror
    other = or_(mirror.c._run != ctx.run_id, mirror.c._run.is_(None))
    with ctx.target_engine(ctx.mapping(entity)).connect() as conn:
        return conn.execute(select(mirror.c._src_id).where(other).limit(1)).first() is None


def _settle(
    ctx: SyncContext, entity: str, findings: pd.DataFrame, published: list[str], linked: int
) -> dict[str, int]:
    """Once the links are committed: resolve what the run fixed, unlink inactivated records, advance watermarks.

    Of the source records with open findings of earlier runs: those the source no longer has (a sweep or a
    complete read found them gone, a replay asked for them and got nothing) are closed `vanished`, and so are
    the integrity and gate findings of a golden record once every source record they name is gone;
    those the run read again keep open only the findings it made (a record that passed is resolved; one that
    now fails another rule keeps only that rule open); golden records published without their merge,
    integrity or gate problem (a duplicate key fixed at the source) resolve those findings.
    """
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    gold = tables.gold
    named = findings[findings["src_id"].notna()]
    one = named["src_id"].astype(str).map(names_one_record).astype(bool)
    open_ids = {
        str(source): set(part["src_id"].astype(str))
        for source, part in named[one].groupby("source")
        if str(source) in mapping.sources
    }
    for source, asked in (ctx.only_ids or {}).items():  # a replay: the merge may have found these again already
        if source in mapping.sources:
            open_ids[source] = open_ids.get(source, set()) | set(asked)
    joint = {
        (str(source), str(src_id)): source_records(str(source), str(src_id))
        for source, src_id in zip(named.loc[~one, "source"], named.loc[~one, "src_id"], strict=True)
    }
    watched = {source: set(ids) for source, ids in open_ids.items()}
    for pairs in joint.values():
        for source, src_id in pairs:
            if source in mapping.sources:
                watched.setdefault(source, set()).add(src_id)
    with ctx.target_engine(mapping).connect() as conn:
        gone = [
            r[0]
            for r in conn.execute(select(gold.c._key).where(gold.c._run == ctx.run_id, gold.c._action == "inactivate"))
        ]
        staged = _staged_statuses(ctx, tables.stage, conn, watched)
    if gone:
        ctx.store.deactivate_xref(entity, ctx.run_id, gone)
    absent = {
        source: _absent(ctx, entity, source, sorted(ids), staged.get(source, {})) for source, ids in watched.items()
    }
    resolved = vanished = 0
    for source, wanted in open_ids.items():
        ids, statuses = sorted(wanted), staged.get(source, {})
        reread = [i for i in ids if statuses.get(i, set()) - {"deleted", "moved", sweep.GONE}]
        missing = [i for i in ids if i in absent[source]]
        vanished += ctx.store.resolve_quarantine(
            entity, source, missing, ctx.run_id, status="vanished", this_run_too=True
        )
        resolved += ctx.store.resolve_quarantine(entity, source, reread, ctx.run_id)
    # A golden record's finding is about all of its source records: closed once none of them is left.
    closed: dict[str, list[str]] = {}
    for (source, src_id), pairs in joint.items():
        if pairs and all(i in absent.get(s, ()) for s, i in pairs):
            closed.setdefault(source, []).append(src_id)
    for source, src_ids in closed.items():
        vanished += ctx.store.resolve_quarantine(
            entity, source, src_ids, ctx.run_id, status="vanished", this_run_too=True
        )
    # One whose source records the run all read again was checked again: what it found again superseded the old
    # finding (the same rule on the same field, `Store.add_quarantine`); the rest it no longer finds is resolved.
    checked: dict[str, list[str]] = {}
    for (source, src_id), pairs in joint.items():
        again = [staged.get(s, {}).get(i, set()) - {"deleted", "moved", sweep.GONE} for s, i in pairs]
        if pairs and all(again) and src_id not in closed.get(source, ()):
            checked.setdefault(source, []).append(src_id)
    for source, src_ids in checked.items():
        resolved += ctx.store.resolve_quarantine(entity, source, src_ids, ctx.run_id)
    if ctx.only_ids is None:  # before the keys: what a rerun would find of them does not depend on where it stopped
        vanished += _close_unmapped(ctx, entity, findings, set(mapping.sources))
    if published:
        resolved += ctx.store.resolve_quarantine_keys(entity, published, ctx.run_id)
    faults.point("finalize.resolved")
    # and the fields it published: a replay's for its records only, not filled for the others
    ctx.store.commit_watermarks(ctx.run_id, entity, fields=mapping.fields, some_records=ctx.only_ids is not None)
    faults.point("finalize.watermarks")
    return {"xref": linked, "resolved": resolved, "vanished": vanished}


def _close_unmapped(ctx: SyncContext, entity: str, findings: pd.DataFrame, sources: set[str]) -> int:
    """Close (`vanished`) the open findings about source records of a source the mapping no longer has (renamed or
    removed): for the entity that source's records are gone, and its mirrored rows were dropped by this run
    (`unmapped_sources`). A replay leaves them open: it names them as skipped (`etl.engine.replay`)."""
    closing: dict[str, list[str]] = {}
    for source, src_id in zip(findings["source"], findings["src_id"], strict=True):
        if pd.isna(src_id) or pd.isna(source):
            continue
        pairs = source_records(str(source), str(src_id))
        if any(src not in sources for src, _ in pairs) or any(s not in sources for s in str(source).split("+")):
            closing.setdefault(str(source), []).append(str(src_id))
    closed = 0
    for source, src_ids in closing.items():
        log.warning(
            "%s: closing %d open quarantine row(s) of source '%s', which the mapping no longer has (vanished)",
            entity, len(src_ids), source,
        )
        closed += ctx.store.resolve_quarantine(entity, source, src_ids, ctx.run_id, status="vanished")
    return closed


def _staged_statuses(
    ctx: SyncContext, stage: Table, conn: Connection, wanted: dict[str, set[str]]
) -> dict[str, dict[str, set[str]]]:
    """The statuses this run staged each of the `wanted` ids of each source with (those it staged), 500 at a time:
    only source records with an open finding matter."""
    staged: dict[str, dict[str, set[str]]] = {}
    for source, wanted_ids in wanted.items():
        ids = sorted(wanted_ids)
        statuses = staged.setdefault(source, {})
        for start in range(0, len(ids), IN_BATCH):
            for src_id, status in conn.execute(
                select(stage.c._src_id, stage.c._status).where(
                    stage.c._run == ctx.run_id,
                    stage.c._source == source,
                    stage.c._src_id.in_(ids[start : start + IN_BATCH]),
                )
            ):
                statuses.setdefault(str(src_id), set()).add(str(status))
    return staged


def _absent(ctx: SyncContext, entity: str, source: str, ids: list[str], statuses: dict[str, set[str]]) -> set[str]:
    """Those of `ids` (of `source`) this run found gone from the source: staged `deleted`, or not staged and known
    to be absent (`_not_at_source`)."""
    missing = {i for i in ids if statuses.get(i, set()) & {"deleted", sweep.GONE}}
    return missing | set(_not_at_source(ctx, entity, source, [i for i in ids if i not in statuses]))


def _not_at_source(ctx: SyncContext, entity: str, source: str, ids: list[str]) -> list[str]:
    """Those of `ids` (source records with open findings that this run did not stage) the source no longer has.

    Known when the run read the source completely (a full read stages every record it has) or replayed exactly
    these ids. An incremental read's sweep checks these ids against the source's as it reads them and stages
    those it did not find (`sweep.GONE`, `etl.engine.sweep._Findings`), in whichever process or Airflow task it
    ran: they are among the staged ids, not these. Without a sweep nothing is known and they stay open for a
    later run.
    """
    if not ids:
        return []
    spec = ctx.mapping(entity).sources[source]
    if ctx.only_ids is not None:
        asked = set(ctx.only_ids.get(source, []))
        return [i for i in ids if i in asked and stageable(i)]  # a long one was quarantined again, not staged
    if ctx.full_refresh or not spec.cursor or ctx.store.watermark(entity, source) is None:
        return ids  # watermarks have not moved yet: None means this run's read was a full one
    return []  # an incremental read: what its sweep found gone is staged (`sweep.GONE`), the rest unknown


class _XrefLoader:
    """`Store.upsert_xref` for a whole run, set-based when the store is PostgreSQL (psycopg).

    The store's portable version looks existing rows up 1,000 ids at a time and inserts
    row by row: at a million rows, thousands of round trips, and PostgreSQL reuses a plan
    made while the table was still small (a sequential scan per lookup). Here every chunk
    is COPied into a temporary table and, at the end, merged with one UPDATE (rows whose
    key or activity changed) and one INSERT (new rows), in one transaction: the same rows
    and values as the store's version (first/last run, `active`, `updated_at`, `detail`
    untouched on update) and the same count (new + changed). On the first load of an entity
    (no cross-reference rows of it yet) the chunks are COPied straight into the table: every
    row is new, so the temporary table and both joins are skipped; where the cross-reference
    is partitioned (schema version 3), into a new partition of the entity, indexed and
    attached by `complete`. When the store is the target's database, `add_select` has the
    server write the links from the gold rows instead. Other stores: chunk by chunk through
    `Store.upsert_xref`, as before.
    """

    def __init__(self, ctx: SyncContext, entity: str) -> None:
        self.ctx, self.entity, self.count = ctx, entity, 0
        engine = ctx.store.engine
        self.fast = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        self.tmp = Table(
            "erpoa_tmp_xref",
            MetaData(),
            Column("source", String(40)),
            Column("src_id", String(255)),
            Column("golden_key", String(512)),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        self._tx: Any = None
        self._conn: Any = None
        self.loaded = 0
        self.direct = False
        self.partition: Table | None = None
        self.completed = False
        self.adopted = False
        self.stamp: Any = None

    @staticmethod
    def overlaps(ctx: SyncContext, entity: str) -> bool:
        """Whether the links can load while the publish runs: a PostgreSQL store, a target that is not SQLite."""
        store = ctx.store.engine
        target = ctx.target_engine(ctx.mapping(entity))
        return store.dialect.name == "postgresql" and store.dialect.driver == "psycopg" and (
            target.dialect.name != "sqlite"
        )

    def __enter__(self) -> _XrefLoader:
        return self

    def in_target_database(self) -> bool:
        """Whether the store is the target's PostgreSQL database (the same URL): the links are then
        cut out of the gold rows by the server, in one statement (`add_select`)."""
        return xref_partition.store_is_target(self.ctx, self.entity)

    def adopt(self) -> bool:
        """Take the entity's links built beside the merge, if this run has a table of them (a first load)."""
        if self._conn is None:
            self._begin(adopt=True)
        return self.adopted

    def add_select(self, links: Any) -> None:
        """Add the (source, src_id, golden_key) rows of the SELECT `links`, run by the store's server."""
        if self._conn is None:
            self._begin()
        if not self.direct:
            self.loaded += insert_select(self._conn, self.tmp, ["source", "src_id", "golden_key"], links)
            return
        sub = links.subquery()
        rows = select(
            literal(self.entity, String), *sub.c, literal(self.ctx.run_id, String), literal(self.ctx.run_id, String),
            true(), literal(self.stamp, DateTime),
        )
        self.count += insert_select(self._conn, self._direct_table(), XREF_COLUMNS, rows)

    def _direct_table(self) -> Table:
        """Where a first load's links go: the entity's new partition, or the cross-reference itself."""
        return store_schema.xref if self.partition is None else self.partition

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if not self.fast:
            self.count += self.ctx.store.upsert_xref(self.entity, self.ctx.run_id, frame)
            return
        if self._conn is None:
            self._begin()
        rows = frame.assign(src_id=frame["src_id"].astype(str), golden_key=frame["golden_key"].astype(str))
        if self.direct:
            rows = rows.assign(
                entity=self.entity, first_run_id=self.ctx.run_id, last_run_id=self.ctx.run_id, active=True,
                updated_at=self.stamp,
            )
            self.count += insert_frame(self._conn, self._direct_table(), rows, XREF_COLUMNS)
            return
        self.loaded += insert_frame(self._conn, self.tmp, rows, ["source", "src_id", "golden_key"])

    def _begin(self, *, adopt: bool = False) -> None:
        from etl.store.repo import now

        self._conn = self.ctx.store.engine.connect()
        self._tx = self._conn.begin()
        self.stamp = now()
        # The entity is locked: nobody else adds its rows between this look and the commit.
        self.direct = not xref_partition.has_links(self._conn, self.entity)
        if not self.direct:
            self.tmp.create(self._conn)
            return
        self.partition = xref_partition.adopt(self._conn, self.ctx, self.entity) if adopt else None
        if self.partition is not None:
            self.adopted, self.count = True, self.partition.info["rows"]
            return
        xref_partition.discard(self._conn, self.entity)
        self.partition = xref_partition.new_partition(self._conn, self.entity)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self._conn is None:
            return
        try:
            if kind is None:
                self.complete()
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()

    def complete(self) -> None:
        """Merge the loaded links into the cross-reference, or index and attach a new partition; nothing is
        committed yet. Done by the loading thread itself (so it overlaps the publish) or on leaving the block."""
        if self._conn is None or self.completed:
            return
        self.completed = True
        if not self.direct:
            self.count += self._merge(self._conn)
        if self.partition is not None:
            xref_partition.attach(self._conn, self.partition, self.entity, indexed=self.adopted)

    def _merge(self, conn: Any) -> int:
        xref, tmp, entity, run_id, stamp = store_schema.xref, self.tmp, self.entity, self.ctx.run_id, self.stamp
        conn.exec_driver_sql("ANALYZE erpoa_tmp_xref")
        same = and_(xref.c.entity == entity, xref.c.source == tmp.c.source, xref.c.src_id == tmp.c.src_id)
        changed = conn.execute(
            update(xref)
            .where(same, or_(xref.c.golden_key != tmp.c.golden_key, xref.c.active.is_not(True)))
            .values(golden_key=tmp.c.golden_key, active=True, last_run_id=run_id, updated_at=stamp)
        ).rowcount
        new = rows_written(
            conn,
            xref.insert().from_select(
                [*XREF_COLUMNS[:-1], "detail", XREF_COLUMNS[-1]],
                select(
                    literal(entity, String),
                    tmp.c.source,
                    tmp.c.src_id,
                    tmp.c.golden_key,
                    literal(run_id, String),
                    literal(run_id, String),
                    true(),
                    null(),
                    literal(stamp, DateTime),
                ).where(~exists().where(same)),
            )
        )
        return int(changed or 0) + new


def _explode_ids(frame: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """One (source, src_id, golden_key) row per source id in the gold rows' `_ids` JSON.

    `_ids` is written by `etl.engine.merge` as `{"erp":"<id>","oa":"<id>"}`; ids without a
    backslash are cut out of it by one regular expression per source, run by pyarrow in C++.
    The rare ids with escapes go through `json.loads`.
    """
    import json

    import pyarrow as pa
    import pyarrow.compute as pc

    ids = frame["ids"].astype("str")
    escaped = ids.str.contains("\\", regex=False).fillna(False).to_numpy(dtype=bool)
    plain = pa.array(ids[~escaped].array)
    keys = frame["golden_key"].to_numpy(dtype=object)[~escaped]
    parts = []
    for source in sources:
        found = pc.struct_field(pc.extract_regex(plain, pattern=f'"{re.escape(source)}":"(?P<id>[^"]*)"'), [0])
        present = found.is_valid().to_numpy(zero_copy_only=False)
        parts.append(
            pd.DataFrame(
                {"source": source, "src_id": found.filter(pa.array(present)).to_pandas(), "golden_key": keys[present]}
            )
        )
    rows = [
        (source, src_id, key)
        for key, text in zip(frame["golden_key"][escaped], ids[escaped], strict=True)
        for source, src_id in json.loads(text).items()
    ]
    parts.append(pd.DataFrame(rows, columns=["source", "src_id", "golden_key"]))
    return pd.concat(parts, ignore_index=True)


def unmapped_sources(conn: Connection, mirror: Table, sources: Collection[str]) -> list[str]:
    """The sources the mirror holds rows of that are not among `sources` (renamed or removed from the mapping).

    Each look asks for one row outside the ranges of the known sources: where the mirror's key starts with
    `_source` (SQLite, MariaDB) a few empty index ranges, so nothing was renamed costs one short query.
    """
    known = sorted(sources)
    found: list[str] = []
    while True:
        names = sorted([*known, *found])
        gaps = [mirror.c._source < names[0], mirror.c._source > names[-1]] + [
            and_(mirror.c._source > low, mirror.c._source < high) for low, high in pairwise(names)
        ]
        row = conn.execute(select(mirror.c._source).where(or_(*gaps)).limit(1)).first()
        if row is None:
            return sorted(found)
        found.append(str(row[0]))


def _may_hold_unmapped(ctx: SyncContext, entity: str, dialect: str) -> bool:
    """Whether the mirror is to be asked for sources the mapping no longer has (`unmapped_sources`).

    On PostgreSQL the mirror's key starts with the id (`mirror_key`): the question reads the whole key, so it
    is asked only when it can have a new answer: the mappings changed since the entity's last published run,
    or a full refresh (which reads everything anyway; the way to clean a mirror left by an older version).
    """
    if dialect != "postgresql" or ctx.full_refresh:
        return True
    versions = ctx.store.mapping_versions(entity, other_than=ctx.run_id)
    return not versions or versions[0] != ctx.mappings.version


def stage_unmapped(ctx: SyncContext, entity: str) -> list[str]:
    """Stage a `deleted` row for every mirrored record of a source the mapping no longer has; returns notes.

    For the entity such a source (renamed or removed) has no records any more: the merge rebuilds each golden
    record it took part in from the other sources (inactivated when none has it, as when a source deletes it),
    the publish removes its rows from the mirror and its id hashes in its one transaction, and the links are
    marked inactive first (as `_unlink_vanished` does), so a run killed anywhere leaves the mirror rows for the
    rerun to stage again. Run once `prepare` cleared old staging: it replaces this run's rows of those sources.
    Nothing was renamed: one short query (on PostgreSQL, one to the store unless the mappings changed).
    """
    mapping = ctx.mapping(entity)
    tables, work = ctx.tables(mapping), ctx.work_tables(mapping)
    mirror, stage = tables.mirror, work.stage
    engine = ctx.target_engine(mapping)
    if not table_exists(engine, mirror) or not _may_hold_unmapped(ctx, entity, engine.dialect.name):
        return []
    with engine.connect() as conn:
        gone = unmapped_sources(conn, mirror, list(mapping.sources))
    notes: list[str] = []
    columns = ["_run", "_source", "_src_id", "_status", "_key", "_bucket"]
    for source in gone:
        rows = mirrored_records(engine, mirror, source).assign(_run=ctx.run_id, _source=source, _status="deleted")
        with ctx.work_engine(mapping).begin() as conn:
            conn.execute(delete(stage).where(stage.c._run == ctx.run_id, stage.c._source == source))
            insert_frame(conn, stage, rows, columns)
        if not ctx.dry_run:
            ctx.store.deactivate_xref_ids(entity, source, rows["_src_id"].astype(str).tolist(), ctx.run_id)
        path = ctx.mappings.files.get(entity) or "its mapping"
        notes.append(
            f"source '{source}' is no longer in {path} (renamed or removed): "
            + ("the run would drop" if ctx.dry_run else "dropping")
            + f" its {len(rows)} mirrored record(s) and rebuilding their golden records from the other sources "
            "(inactivated where none has them); a renamed source's records come back as it is read"
        )
        log.warning("%s: %s", entity, notes[-1])
    return notes


def cleanup(ctx: SyncContext, entity: str) -> None:
    """Drop this run's staging rows (gold rows stay for the report until the next run).

    On PostgreSQL the stage is truncated: it holds this run's rows only (`prepare` removed the others
    and the entity's lock kept every other run out since), and a DELETE would leave every row behind
    as a dead tuple for VACUUM, which the next run's first look at the stage would read through.
    """
    mapping = ctx.mapping(entity)
    work = ctx.work_tables(mapping)
    with ctx.work_engine(mapping).begin() as conn:
        if conn.dialect.name == "postgresql":
            truncate(conn, work.stage)
        else:
            conn.execute(delete(work.stage).where(work.stage.c._run == ctx.run_id))


def gold_counts(ctx: SyncContext, entity: str) -> dict[str, int]:
    """Actions of this run's gold rows."""
    mapping = ctx.mapping(entity)
    gold = ctx.work_tables(mapping).gold
    with ctx.work_engine(mapping).connect() as conn:
        rows = conn.execute(
            select(gold.c._action, func.count()).where(gold.c._run == ctx.run_id).group_by(gold.c._action)
        ).all()
    return {str(a): int(n) for a, n in rows}
