"""Reads and writes of the reconciliation store, used by the engine and the CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Table, and_, delete, func, inspect, select, update

from etl.db.write import analyze, insert_frame, upsert_rows
from etl.store import schema as s

log = logging.getLogger("erpoa.store")

IN_BATCH = 500  # values per `IN (...)` of one statement
ANALYZE_AFTER = 10_000  # quarantined rows in one call after which PostgreSQL's statistics are refreshed


def now() -> datetime:
    """Store timestamps: local wall-clock time without zone, second precision."""
    return datetime.now().replace(microsecond=0)


def new_run_id() -> str:
    """A sortable, unique run id such as `20261124T020000.123456-3f9a1c`."""
    return run_id_for(datetime.now(), uuid.uuid4().hex[:6])


def run_id_for(started: datetime, suffix: str) -> str:
    """The run id of a run started at `started` (local time): the store orders runs by id, so it holds the
    microseconds (two runs of one second sorted by their random suffix before); ids of older versions, without
    them, sort before those of their second."""
    return f"{started:%Y%m%dT%H%M%S.%f}-{suffix}"


class Store:
    """The reconciliation store behind one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cursor_columns: bool | None = None

    def migrate(self) -> None:
        s.migrate(self.engine)
        self._cursor_columns = None

    def _has_cursor_columns(self) -> bool:
        """Whether the watermark tables have the columns of schema version 7 (a plan reads an older store as it is)."""
        if self._cursor_columns is None:
            self._cursor_columns = all(
                s.has_column(self.engine, table, name) for table, names in s.ADDED_COLUMNS for name in names
            )
        return self._cursor_columns

    # runs -------------------------------------------------------------------
    def start_run(self, run_id: str, *, trigger: str, mode: str, mapping_version: str, entities: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(select(s.runs.c.run_id).where(s.runs.c.run_id == run_id)).first()
            if exists:
                conn.execute(update(s.runs).where(s.runs.c.run_id == run_id).values(status="running", finished_at=None))
                return
            conn.execute(
                s.runs.insert().values(
                    run_id=run_id,
                    started_at=now(),
                    trigger=trigger,
                    mode=mode,
                    mapping_version=mapping_version,
                    status="running",
                    entities=",".join(entities),
                    host=socket.gethostname()[:100],
                    pid=os.getpid(),
                )
            )

    def finish_run(self, run_id: str, status: str, message: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(s.runs)
                .where(s.runs.c.run_id == run_id)
                .values(status=status, finished_at=now(), message=message)
            )

    def record_entity(self, run_id: str, entity: str, **values: Any) -> None:
        """Create or update the entity-run row with the given figures."""
        values["updated_at"] = now()
        with self.engine.begin() as conn:
            upsert_rows(
                conn,
                s.entity_runs,
                [{"run_id": run_id, "entity": entity, "status": "running", **values}],
                ["run_id", "entity"],
                update=list(values),
            )

    def entity_run(self, run_id: str, entity: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(s.entity_runs).where(s.entity_runs.c.run_id == run_id, s.entity_runs.c.entity == entity)
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.runs).order_by(s.runs.c.started_at.desc(), s.runs.c.run_id.desc()).limit(limit)
            )
            return [dict(r) for r in rows.mappings()]

    def mapping_versions(self, entity: str, *, other_than: str) -> list[str]:
        """The mapping versions of the syncs (full or incremental) that published `entity`, latest first (by the
        second they started), other than the run `other_than` (the one asking, which has not published yet)."""
        runs, er = s.runs, s.entity_runs
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(runs.c.mapping_version)
                .join(er, er.c.run_id == runs.c.run_id)
                .where(
                    er.c.entity == entity,
                    er.c.status == "success",
                    runs.c.mode.in_(["full", "incremental"]),
                    runs.c.run_id != other_than,
                )
                .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            ).scalars()
            return list(dict.fromkeys(str(v) for v in rows))

    def entity_runs(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.entity_runs).where(s.entity_runs.c.run_id == run_id))
            return [dict(r) for r in rows.mappings()]

    def previous_read_total(self, entity: str, before_run: str) -> int | None:
        """Rows the last successful complete read of `entity` read (for row-count bands).

        That is its last successful full sync, else its first successful run (a first incremental
        run has no watermark and reads everything): an incremental run's count is of changed rows only.
        """
        runs, er = s.runs, s.entity_runs
        done = (er.c.entity == entity) & (er.c.status == "success") & (er.c.run_id < before_run)
        with self.engine.connect() as conn:
            full = conn.execute(
                select(er.c.read_total)
                .join(runs, runs.c.run_id == er.c.run_id)
                .where(done, runs.c.mode == "full")
                .order_by(er.c.run_id.desc())
                .limit(1)
            ).scalar()
            if full is not None:
                return int(full)
            first = conn.execute(select(er.c.read_total).where(done).order_by(er.c.run_id).limit(1)).scalar()
            return None if first is None else int(first)

    # watermarks ---------------------------------------------------------------
    def watermark(self, entity: str, source: str) -> Any | None:
        mark = self.watermark_row(entity, source)
        return None if mark is None else mark.value

    def watermark_row(self, entity: str, source: str) -> Watermark | None:
        """The source's committed watermark with its stored text, kind and cursor column; None when there is none."""
        w = s.watermarks
        cols = [w.c.value, w.c.value_type, *([w.c.cursor_column] if self._has_cursor_columns() else [])]
        with self.engine.connect() as conn:
            row = conn.execute(select(*cols).where(w.c.entity == entity, w.c.source == source)).first()
        if row is None or row[0] is None:
            return None
        return Watermark(decode_watermark(row[0], row[1]), row[0], row[1], row[2] if len(row) > 2 else None)

    def set_pending_watermark(
        self, run_id: str, entity: str, source: str, value: Any, *, cursor: str | None = None, complete: bool = False
    ) -> None:
        """Record what this run read of `source`, committed by `commit_watermarks` once it published: the greatest
        `value` of the `cursor` column, and whether the read was `complete` (its watermark then replaces the one before;
        a complete read that found no cursor value forgets it)."""
        text_value, kind = encode_watermark(value)
        row: dict[str, Any] = {
            "run_id": run_id, "entity": entity, "source": source, "value": text_value, "value_type": kind
        }
        if self._has_cursor_columns():
            row |= {"cursor_column": cursor, "read_complete": complete}
        with self.engine.begin() as conn:
            upsert_rows(conn, s.pending_watermarks, [row], ["run_id", "entity", "source"])

    def forget_watermarks(self, entity: str, sources: Iterable[str] | None = None) -> None:
        """Forget the entity's committed watermarks (of these `sources` only): each source is read completely until a
        run publishes."""
        w = s.watermarks
        where = [w.c.entity == entity] + ([] if sources is None else [w.c.source.in_(list(sources))])
        with self.engine.begin() as conn:
            conn.execute(delete(w).where(*where))

    def clear_pending_watermarks(self, entity: str, keep_run: str) -> None:
        """Forget watermarks that crashed runs read but never published."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(s.pending_watermarks).where(
                    s.pending_watermarks.c.entity == entity, s.pending_watermarks.c.run_id != keep_run
                )
            )

    def commit_watermarks(
        self, run_id: str, entity: str, fields: Iterable[str] | None = None, *, some_records: bool = False
    ) -> None:
        """Record the entity's watermarks from what this run read; called after its publish committed.

        A complete read's watermark replaces the one before (`read_complete`); an incremental read's advances it, or
        replaces one it does not compare with or taken from another cursor column (`_replaces`).
        With `fields` (the mapping's fields the publish wrote), they are recorded in the same transaction as
        the fields the entity was last published with (`published_fields`). A publish of `some_records` only (a
        replay) filled no field for the others: the record keeps only the fields it held that are still mapped.
        """
        columns = self._has_cursor_columns()
        with self.engine.begin() as conn:
            record = None if fields is None else _fields_record(_published(conn, entity), fields, some_records)
            if record is not None:
                upsert_rows(
                    conn,
                    s.published_fields,
                    [{"entity": entity, "field_names": record, "run_id": run_id, "updated_at": now()}],
                    ["entity"],
                )
            p, w = s.pending_watermarks, s.watermarks
            read = [p.c.source, p.c.value, p.c.value_type, *([p.c.cursor_column, p.c.read_complete] if columns else [])]
            pending = conn.execute(select(*read).where(p.c.run_id == run_id, p.c.entity == entity)).mappings().all()
            for row in pending:
                here = (w.c.entity == entity, w.c.source == row["source"])
                complete = bool(row.get("read_complete"))
                if row["value"] is None:
                    if complete:  # read completely, no cursor value: nothing to start the next read from
                        conn.execute(delete(w).where(*here))
                    continue
                cols = [w.c.value, w.c.value_type, *([w.c.cursor_column] if columns else [])]
                current = conn.execute(select(*cols).where(*here)).first()
                if not complete and current is not None and current[0] is not None and not _replaces(row, current):
                    continue
                values = {"value": row["value"], "value_type": row["value_type"], "run_id": run_id, "updated_at": now()}
                if columns:
                    values["cursor_column"] = row.get("cursor_column")
                upsert_rows(conn, w, [{"entity": entity, "source": row["source"], **values}], ["entity", "source"])
            conn.execute(
                delete(s.pending_watermarks).where(
                    s.pending_watermarks.c.run_id == run_id, s.pending_watermarks.c.entity == entity
                )
            )

    def published_fields(self, entity: str) -> PublishedFields | None:
        """The fields the entity's publishes wrote (`PublishedFields`); None when unknown: never published, last
        published by a version before the record (store schema 6), or a store not migrated yet (a plan reads it
        as it is)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(s.published_fields.name):
                return None
            return _published(conn, entity)

    def watermarks(self) -> list[dict[str, Any]]:
        w = s.watermarks
        cols = [c for c in w.columns if c.name != "cursor_column" or self._has_cursor_columns()]
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(*cols).order_by(w.c.entity)).mappings()]

    # quarantine ---------------------------------------------------------------
    def clear_quarantine(
        self, run_id: str, entity: str, *, source: str | None = None, stage: str | None = None
    ) -> None:
        """Forget what a previous attempt of this run recorded (task retries stay idempotent)."""
        cond = and_(s.quarantine.c.run_id == run_id, s.quarantine.c.entity == entity)
        if source is not None:
            cond = and_(cond, s.quarantine.c.source == source)
        if stage is not None:
            cond = and_(cond, s.quarantine.c.stage == stage)
        with self.engine.begin() as conn:
            conn.execute(delete(s.quarantine).where(cond))

    def add_quarantine(self, run_id: str, entity: str, frame: pd.DataFrame, *, stage: str) -> int:
        """Store rejected rows: frame has source, src_id, field, rule, value, reason, raw (golden_key optional)."""
        if frame.empty:
            return 0
        text = [c for c in frame.columns if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype)]
        frame = frame.assign(**{c: frame[c].map(_storable) for c in text})
        out = pd.DataFrame(
            {
                "run_id": run_id,
                "entity": entity,
                "source": frame["source"].astype(str).to_numpy(),
                "src_id": frame.get("src_id", pd.Series([None] * len(frame))).to_numpy(),
                "golden_key": frame.get("golden_key", pd.Series([None] * len(frame))).to_numpy(),
                "stage": stage,
                "field": frame.get("field", pd.Series([None] * len(frame))).to_numpy(),
                "rule": frame["rule"].astype(str).str.slice(0, 200).to_numpy(),
                "value": frame.get("value", pd.Series([None] * len(frame))).to_numpy(),
                "reason": frame.get("reason", pd.Series([None] * len(frame))).to_numpy(),
                "raw": frame.get("raw", pd.Series([None] * len(frame))).to_numpy(),
                "status": "open",
                "created_at": now(),
            }
        )
        with self.engine.begin() as conn:
            written = insert_frame(conn, s.quarantine, out)
            if written >= ANALYZE_AFTER:
                # Without fresh statistics the superseding below scans every open row per statement
                # (0.6 s each at a million open findings, 2 ms after ANALYZE). In this transaction: it
                # counts the rows just written.
                analyze(conn, s.quarantine)
            # The same problem seen again: keep one open row per (source record, rule), the newest.
            for (source, rule), part in out.groupby(["source", "rule"]):
                ids = part["src_id"].dropna().astype(str).unique().tolist()
                _supersede(conn, entity, rule, run_id, s.quarantine.c.src_id, ids, s.quarantine.c.source == source)
            # Merge, integrity and gate findings are about a golden record, whose source ids change with the
            # sources it was built from this time (`{"erp": "1"}`, then `{"erp": "1", "oa": "7"}`): the same
            # problem of the same golden record seen again supersedes the older one too.
            keyed = out[out["golden_key"].notna()]
            for rule, part in keyed.groupby("rule"):
                keys = part["golden_key"].astype(str).unique().tolist()
                _supersede(conn, entity, rule, run_id, s.quarantine.c.golden_key, keys)
            return written

    def quarantine(
        self,
        *,
        entity: str | None = None,
        status: str | None = "open",
        run_id: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        stmt = select(s.quarantine).order_by(s.quarantine.c.id)
        if entity:
            stmt = stmt.where(s.quarantine.c.entity == entity)
        if status:
            stmt = stmt.where(s.quarantine.c.status == status)
        if run_id:
            stmt = stmt.where(s.quarantine.c.run_id == run_id)
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(stmt).mappings().all(), columns=[c.name for c in s.quarantine.columns])

    def accepted_findings(self, entity: str, run_id: str) -> frozenset[tuple[str, str]]:
        """(source, id) of the source records of `entity` that `run_id` quarantined again for a rule an earlier
        run that published the entity had quarantined them for: a quality gate already judged them (see
        `publish.gate_decision`). Read from the store, so any process can ask.

        The chain from the published run's finding to `run_id` may pass through runs that did not publish (refused,
        failed or killed): each found the problem again and superseded the finding before it. Such a run's finding
        is accepted when the one it superseded was; one it was the first to record is new bad data.
        """
        q, er = s.quarantine, s.entity_runs
        cols = (q.c.run_id, q.c.resolved_run_id, q.c.source, q.c.src_id, q.c.golden_key, q.c.rule, q.c.field)
        superseded: dict[str, list[Any]] = {}
        with self.engine.connect() as conn:
            published = set(
                conn.execute(select(er.c.run_id).where(er.c.entity == entity, er.c.status == "success")).scalars()
            )
            frontier, asked = [run_id], {run_id}
            while frontier:
                # Runs are walked back only through the findings they superseded, batch by batch.
                found: list[Any] = []
                for start in range(0, len(frontier), IN_BATCH):
                    found += conn.execute(
                        select(*cols).where(
                            q.c.entity == entity,
                            q.c.status == "superseded",
                            q.c.resolved_run_id.in_(frontier[start : start + IN_BATCH]),
                        )
                    ).all()
                for row in found:
                    superseded.setdefault(str(row.resolved_run_id), []).append(row)
                frontier = sorted({str(row.run_id) for row in found if str(row.run_id) not in published} - asked)
                asked.update(frontier)
        accepted: dict[str, tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]] = {}

        def inherits(row: Any) -> bool:
            """Whether `row` (a finding of its run) is accepted: its run published, or it superseded an accepted one."""
            if str(row.run_id) in published:
                return True
            by_record, by_key = accepted.get(str(row.run_id), (set(), set()))
            return (row.rule, row.field, row.source, row.src_id) in by_record or (
                row.golden_key is not None and (row.rule, row.field, row.golden_key) in by_key
            )

        # Oldest superseding run first: a finding is superseded by a later run than its own.
        for run in sorted(superseded):
            rows = [row for row in superseded[run] if inherits(row)]
            accepted[run] = (
                {(row.rule, row.field, row.source, row.src_id) for row in rows},
                {(row.rule, row.field, row.golden_key) for row in rows if row.golden_key is not None},
            )
        mine = [row for row in superseded.get(run_id, []) if row.src_id is not None and inherits(row)]
        return frozenset(pair for row in mine for pair in source_records(str(row.source), str(row.src_id)))

    def count_quarantine(
        self, run_id: str, entity: str, *, excluding: Collection[tuple[str, str]] = frozenset()
    ) -> int:
        """Distinct records (source, source id) `run_id` quarantined for `entity`, less those whose source records are
        all in `excluding` ((source, id) pairs, see `source_records`): ERP record 19 and OA record 19 are two."""
        q = s.quarantine
        mine = and_(q.c.run_id == run_id, q.c.entity == entity, q.c.src_id.is_not(None))
        with self.engine.connect() as conn:
            if not excluding:
                records = select(q.c.source, q.c.src_id).where(mine).distinct().subquery()
                return int(conn.execute(select(func.count()).select_from(records)).scalar() or 0)
            rows = conn.execute(select(q.c.source, q.c.src_id).where(mine)).all()
        return len({
            (str(source), str(src_id)) for source, src_id in rows
            if not excluded_record(str(source), str(src_id), excluding)
        })

    def run_findings(
        self, run_id: str, entity: str, *, excluding: Collection[tuple[str, str]] = frozenset()
    ) -> pd.DataFrame:
        """The rows `run_id` quarantined for `entity` (source, src_id, field, rule, value), less those about
        source records all in `excluding`, as `count_quarantine` counts them; without the raw rows."""
        q = s.quarantine
        cols = [q.c.source, q.c.src_id, q.c.field, q.c.rule, q.c.value]
        stmt = select(*cols).where(q.c.run_id == run_id, q.c.entity == entity).order_by(q.c.id)
        with self.engine.connect() as conn:
            rows = pd.DataFrame(conn.execute(stmt).all(), columns=[c.name for c in cols])
        if excluding and not rows.empty:
            keep = [
                pd.isna(i) or not excluded_record(str(src), str(i), excluding)
                for src, i in zip(rows["source"], rows["src_id"], strict=True)
            ]
            rows = rows[keep]
        return rows

    def resolve_quarantine(
        self,
        entity: str,
        source: str,
        src_ids: Iterable[str],
        run_id: str,
        status: str = "resolved",
        *,
        this_run_too: bool = False,
    ) -> int:
        """Close the open quarantine rows of these source ids of earlier runs: `resolved` (they passed in
        `run_id`, or now fail only what `run_id` recorded) or `vanished` (the source no longer has them; with
        `this_run_too`, rows `run_id` wrote about them from the mirror are closed as well)."""
        q = s.quarantine
        runs = () if this_run_too else (q.c.run_id != run_id,)
        with self.engine.begin() as conn:
            return _update_in(
                conn, q, q.c.src_id, list(dict.fromkeys(src_ids)),
                q.c.entity == entity, q.c.source == source, q.c.status == "open", *runs,
                status=status, resolved_run_id=run_id, resolved_at=now(),
            )

    def resolve_quarantine_keys(self, entity: str, keys: Iterable[str], run_id: str) -> int:
        """Mark open merge (duplicate key), integrity and gate quarantine rows of these golden keys resolved: the
        keys were published in `run_id` without the problem (one found again was recorded, and the older row
        superseded, by `run_id`)."""
        q = s.quarantine
        with self.engine.begin() as conn:
            return _update_in(
                conn, q, q.c.golden_key, list(dict.fromkeys(keys)),
                q.c.entity == entity, q.c.status == "open", q.c.run_id != run_id,
                q.c.stage.like("merge%") | q.c.stage.like("gate%") | q.c.stage.like("integrity%"),
                status="resolved", resolved_run_id=run_id, resolved_at=now(),
            )

    # gaps and gate --------------------------------------------------------------
    def add_gaps(self, run_id: str, entity: str, source: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        grouped = frame.groupby(["field", "table", "policy", "value"], as_index=False)["count"].sum()
        rows = [
            {
                "run_id": run_id,
                "entity": entity,
                "source": source,
                "field": r.field,
                "value": _storable(str(r.value))[:255],
                "code_table": r.table,
                "policy": r.policy,
                "count": int(r.count),
            }
            for r in grouped.itertuples(index=False)
        ]
        with self.engine.begin() as conn:
            conn.execute(
                delete(s.gaps).where(s.gaps.c.run_id == run_id, s.gaps.c.entity == entity, s.gaps.c.source == source)
            )
            conn.execute(s.gaps.insert(), rows)

    def gaps(self, run_id: str, entity: str | None = None) -> pd.DataFrame:
        stmt = select(s.gaps).where(s.gaps.c.run_id == run_id)
        if entity:
            stmt = stmt.where(s.gaps.c.entity == entity)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(stmt).mappings().all(), columns=[c.name for c in s.gaps.columns])

    def clear_gate(self, run_id: str, entity: str, partition: int | None = None) -> None:
        cond = and_(s.gate_results.c.run_id == run_id, s.gate_results.c.entity == entity)
        if partition is not None:
            cond = and_(cond, s.gate_results.c.partition == partition)
        with self.engine.begin() as conn:
            conn.execute(delete(s.gate_results).where(cond))

    def add_gate(self, run_id: str, entity: str, partition: int, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                s.gate_results.insert(),
                [{"run_id": run_id, "entity": entity, "partition": partition, **r} for r in rows],
            )

    def gate(self, run_id: str, entity: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.gate_results).where(s.gate_results.c.run_id == run_id, s.gate_results.c.entity == entity)
            )
            return [dict(r) for r in rows.mappings()]

    # cross-reference ------------------------------------------------------------
    def upsert_xref(self, entity: str, run_id: str, frame: pd.DataFrame) -> int:
        """frame: source, src_id, golden_key, detail (optional). Batched, portable."""
        if frame.empty:
            return 0
        stamp = now()
        table = s.xref
        count = 0
        with self.engine.begin() as conn:
            for source, part in frame.groupby("source"):
                ids = part["src_id"].astype(str).tolist()
                existing: dict[str, tuple[str, bool]] = {}
                for start in range(0, len(ids), 1000):
                    rows = conn.execute(
                        select(table.c.src_id, table.c.golden_key, table.c.active).where(
                            table.c.entity == entity,
                            table.c.source == source,
                            table.c.src_id.in_(ids[start : start + 1000]),
                        )
                    ).all()
                    existing.update({r[0]: (r[1], bool(r[2])) for r in rows})
                new, changed = [], []
                details = part["detail"].tolist() if "detail" in part else [None] * len(part)
                for src_id, key, detail in zip(ids, part["golden_key"].astype(str), details, strict=True):
                    if src_id not in existing:
                        new.append(
                            {
                                "entity": entity,
                                "source": source,
                                "src_id": src_id,
                                "golden_key": key,
                                "first_run_id": run_id,
                                "last_run_id": run_id,
                                "active": True,
                                "detail": detail,
                                "updated_at": stamp,
                            }
                        )
                    elif existing[src_id] != (key, True):
                        changed.append((src_id, key, detail))
                if new:
                    conn.execute(table.insert(), new)
                for src_id, key, detail in changed:
                    conn.execute(
                        update(table)
                        .where(table.c.entity == entity, table.c.source == source, table.c.src_id == src_id)
                        .values(
                            golden_key=key,
                            active=True,
                            last_run_id=run_id,
                            updated_at=stamp,
                            **({"detail": detail} if detail is not None else {}),
                        )
                    )
                count += len(new) + len(changed)
        return count

    def deactivate_xref(self, entity: str, run_id: str, keys: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            _update_in(
                conn, s.xref, s.xref.c.golden_key, list(keys), s.xref.c.entity == entity,
                active=False, last_run_id=run_id, updated_at=now(),
            )

    def deactivate_xref_ids(self, entity: str, source: str, src_ids: Iterable[str], run_id: str) -> None:
        """Mark the active links of these source records inactive (the records vanished from the source)."""
        x = s.xref
        with self.engine.begin() as conn:
            _update_in(
                conn, x, x.c.src_id, list(dict.fromkeys(src_ids)),
                x.c.entity == entity, x.c.source == source, x.c.active.is_(True),
                active=False, last_run_id=run_id, updated_at=now(),
            )

    def xref(self, entity: str, value: str) -> list[dict[str, Any]]:
        """Cross-reference rows whose golden key or source id equals `value`."""
        with self.engine.connect() as conn:
            by_key = conn.execute(select(s.xref).where(s.xref.c.entity == entity, s.xref.c.golden_key == value))
            rows = [dict(r) for r in by_key.mappings()]
            if not rows:
                by_id = conn.execute(
                    select(s.xref.c.golden_key).where(s.xref.c.entity == entity, s.xref.c.src_id == value)
                ).first()
                if by_id:
                    rows = [
                        dict(r)
                        for r in conn.execute(
                            select(s.xref).where(s.xref.c.entity == entity, s.xref.c.golden_key == by_id[0])
                        ).mappings()
                    ]
        for row in rows:
            if row.get("detail"):
                with contextlib.suppress(ValueError):
                    row["detail"] = json.loads(row["detail"])
        return rows


def _storable(value: Any) -> Any:
    """Text every store database accepts: PostgreSQL text cannot hold NUL, so it is written as `\\x00`."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) and "\x00" in value else value


class TimestampText(str):
    """A cursor value read from a text column that holds ISO timestamps (`2026-01-09 10:00:00`): recorded as the text
    (kind `datetime_text`), compared as the timestamp, and the next read's lower bound is bound as text of the same
    form (`etl.db.extract.lower_bound`): a database compares a text column with text, not with a timestamp."""


@dataclass(frozen=True)
class Watermark:
    """A committed watermark (`erpoa_watermark`)."""

    #: the decoded value: a `datetime_text` watermark's timestamp
    value: Any
    #: as stored
    text: str
    kind: str | None
    #: the cursor column it was taken from; None when recorded before schema version 7
    cursor: str | None


def _replaces(pending: Any, current: Any) -> bool:
    """Whether the `pending` watermark of an incremental read replaces the `current` one: it is greater, it was taken
    from another cursor column, or the two do not compare (a column changed from `timestamp` to `timestamptz`, or
    from a timestamp to a number): the new value is what the source's cursor column holds now."""
    before, now_read = (current[2] if len(current) > 2 else None), pending.get("cursor_column")
    if before is not None and now_read is not None and str(before).lower() != str(now_read).lower():
        return True
    try:
        return bool(
            decode_watermark(pending["value"], pending["value_type"]) > decode_watermark(current[0], current[1])
        )
    except TypeError:
        log.warning(
            "the watermark %s (%s) and the cursor maximum %s (%s) do not compare: the latter replaces it",
            current[0], current[1], pending["value"], pending["value_type"],
        )
        return True


def encode_watermark(value: Any) -> tuple[str | None, str]:
    if value is None:
        return None, "none"
    if isinstance(value, TimestampText):
        return str(value), "datetime_text"
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.isoformat(sep=" "), "datetime"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, Decimal):  # numeric(18,0) and the like: compared as a number, bound as one
        return str(value), "decimal"
    if isinstance(value, bytes | bytearray | memoryview):  # a rowversion: its bytes, as hex
        return bytes(value).hex(), "bytes"
    if hasattr(value, "item"):
        return encode_watermark(value.item())
    if isinstance(value, float):
        return repr(value), "float"
    return str(value), "str"


def decode_watermark(value: str, kind: str | None) -> Any:
    if kind in ("datetime", "datetime_text"):
        return datetime.fromisoformat(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "bytes":
        return bytes.fromhex(value)
    return value


def _supersede(
    conn: Connection, entity: str, rule: str, run_id: str, column: Any, values: list[str], *where: Any
) -> None:
    """Mark open findings of `rule` from earlier runs whose `column` is in `values` superseded by `run_id`, when
    `run_id` found that rule on the same field of the record (no field: no field).

    A finding about another field of the record is another problem: fixed, it is resolved, not superseded by a
    finding of the same expectation on a field that still fails.
    """
    q = s.quarantine
    for field, found in _found_fields(conn, entity, rule, run_id, column, values, *where).items():
        same_field = q.c.field.is_(None) if field is None else q.c.field == field
        _update_in(
            conn, q, column, found, q.c.entity == entity, q.c.rule == rule, q.c.status == "open",
            q.c.run_id != run_id, same_field, *where, status="superseded", resolved_run_id=run_id, resolved_at=now(),
        )


def _found_fields(
    conn: Connection, entity: str, rule: str, run_id: str, column: Any, values: list[str], *where: Any
) -> dict[str | None, list[str]]:
    """field -> the `values` of `column` whose findings of `rule` by `run_id` name that field (see `_supersede`)."""
    q = s.quarantine
    found: dict[str | None, list[str]] = {}
    for start in range(0, len(values), IN_BATCH):
        stmt = select(q.c.field, column).distinct().where(
            q.c.entity == entity, q.c.rule == rule, q.c.run_id == run_id, *where,
            column.in_(values[start : start + IN_BATCH]),
        )
        for field, value in conn.execute(stmt):
            found.setdefault(field, []).append(str(value))
    return found


def _update_in(conn: Connection, table: Table, column: Any, values: list[str], *where: Any, **changes: Any) -> int:
    """UPDATE `table` SET `changes` WHERE `where` AND `column` IN `values`, 500 values a statement; rows changed."""
    count = 0
    for start in range(0, len(values), IN_BATCH):
        stmt = update(table).where(*where, column.in_(values[start : start + IN_BATCH])).values(**changes)
        count += conn.execute(stmt).rowcount or 0
    return count


def names_one_record(src_id: str) -> bool:
    """Whether a quarantine row's `src_id` is one source record's id (of the row's `source`). Otherwise it is the
    JSON object of the source ids of a golden record (`{"erp": "1", "oa": "7"}`): its integrity and gate findings
    name every source record the golden record was built from.

    >>> names_one_record("000123"), names_one_record('{"erp": "000123", "oa": "7"}')
    (True, False)
    """
    return not src_id.startswith("{")


@dataclass(frozen=True)
class PublishedFields:
    """The fields of an entity's mapping its publishes wrote for every record (`erpoa_published_fields`)."""

    #: those of its last publish (less, after a replay, the fields it filled for the replayed records only)
    fields: frozenset[str]
    #: those of any publish since the record began; None when it began as a list, before this was kept
    ever: frozenset[str] | None


def _fields_record(before: PublishedFields | None, fields: Iterable[str], some_records: bool) -> str | None:
    """The JSON of `erpoa_published_fields` after a publish that wrote `fields` (see `Store.commit_watermarks`);
    None to leave it as it is (a replay with nothing recorded before it)."""
    names = list(fields)
    if some_records:
        if before is None:
            return None
        names = [name for name in names if name in before.fields]
    ever = (frozenset() if before is None else before.ever or before.fields) | (frozenset() if some_records else
                                                                                 frozenset(names))
    return json.dumps({"fields": names, "ever": sorted(ever)}, ensure_ascii=False)


def _published(conn: Connection, entity: str) -> PublishedFields | None:
    """`Store.published_fields` in `conn`: a JSON object (`fields`, `ever`), or the list the record began as."""
    table = s.published_fields
    value = conn.execute(select(table.c.field_names).where(table.c.entity == entity)).scalar()
    if value is None:
        return None
    data = json.loads(value)
    if isinstance(data, list):
        return PublishedFields(frozenset(map(str, data)), None)
    return PublishedFields(frozenset(map(str, data["fields"])), frozenset(map(str, data["ever"])))


def excluded_record(source: str, src_id: str, excluding: Collection[tuple[str, str]]) -> bool:
    """Whether every source record a quarantine row names is in `excluding` ((source, id) pairs)."""
    pairs = source_records(source, src_id)
    return bool(pairs) and all(pair in excluding for pair in pairs)


def source_records(source: str, src_id: str) -> list[tuple[str, str]]:
    """The (source, id) pairs behind a quarantine row: the merge's rows name several sources (`erp+oa`, the ids
    as JSON), the others one (`names_one_record`)."""
    if not names_one_record(src_id):
        try:
            return [(name, str(value)) for name, value in json.loads(src_id).items()]
        except ValueError:
            return []
    return [(name, src_id) for name in source.split("+")]
