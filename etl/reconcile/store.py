"""Differences in the reconciliation store (`erpoa_difference`): persistence across runs and sign-off.

A difference keeps its `diff_id` from run to run. Seen again, it gets a new
`last_run_id` / `last_seen_at` and `run_count + 1`; no longer seen, it becomes
`present = false` (an `open` one turns `fixed`, signed by `erpoa`). A difference
marked `fixed` that is seen again is reopened; an `accepted` one stays accepted.
A reconciliation against the mirror (after a sync) cannot see what a fresh read of
the sources saw, so it never closes a difference last seen by a fresh reconciliation
(run mode `reconcile`); a fresh reconciliation closes any. Reopening or closing a
difference by itself keeps the last sign-off of a person in its note.

Each recording also keeps which differences that run found (`erpoa_difference_seen`)
and its counts (`erpoa_reconciliation`), in the same transaction, so the report of
a past run shows what that run found, not the span between first and last sighting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, func, or_, select, update

from etl.db.write import insert_frame
from etl.errors import ConfigError, TerminalError
from etl.store import schema as s
from etl.store.repo import now

STATUSES = ("open", "accepted", "fixed")
VALUE_COLUMNS = ["golden_key", "field", "erp_value", "oa_value", "target_value", "detail"]
IN_BATCH = 500
AUTO_SIGNER = "erpoa"
#: Mode of the runs of `erpoa reconcile`, which read the sources afresh instead of comparing with the mirror.
FRESH_MODE = "reconcile"
#: How the automatic notes start; what follows their first "; " is a person's sign-off carried along.
_AUTO_NOTES = ("reopened: seen again in run ", "not found in run ")
_SIGNED = {"open": "reopened", "accepted": "accepted", "fixed": "fixed"}


def _clean(value: Any) -> Any:
    """None for every kind of null (pandas turns None into NaN in string columns)."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _stamp(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S") if _clean(value) is not None else "?"


def kept_sign_off(status: str, signed_by: Any, signed_at: Any, note: Any) -> str | None:
    """The last sign-off of a person, as text to keep in an automatic note ("was fixed by 李审计 at ...: ...").

    A sign-off by a person gives its status, signer, time and note; an automatic note passes on the sign-off it
    carries; anything else (new, or closed by `erpoa` only) gives None.
    """
    by, text = _clean(signed_by), _clean(note)
    if by is not None and by != AUTO_SIGNER:
        said = f"was {_SIGNED.get(status, status)} by {by} at {_stamp(signed_at)}"
        return f"{said}: {text}" if text else said
    if isinstance(text, str) and text.startswith(_AUTO_NOTES):
        return text.partition("; ")[2] or None
    return None


def with_difference_counts(engine: Engine, run_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entity-run rows with `differences` = present in that run and `new` = first seen in it, as in the report.

    The stored `differences` figure of a sync counts what turned open in the run; it is replaced by the
    recorded count. Runs reconciled before schema version 4 have no record: both figures are None.
    """
    counts = DifferenceStore(engine).reconciliations([run_id]).set_index("entity")
    out = []
    for row in rows:
        known = row["entity"] in counts.index
        out.append(
            {
                **row,
                "differences": int(counts.at[row["entity"], "present"]) if known else None,
                "new": int(counts.at[row["entity"], "new"]) if known else None,
            }
        )
    return out


class UnknownDifferenceError(TerminalError):
    """A DIFF_ID given on the command line matches no difference (or more than one)."""

    exit_code = 2


class DifferenceStore:
    """Reads and writes of `erpoa_difference` behind one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = s.differences

    # recording ------------------------------------------------------------------
    def record(
        self,
        entity: str,
        run_id: str,
        diffs: pd.DataFrame,
        *,
        seen_at: datetime | None = None,
        fresh: bool = False,
    ) -> dict[str, Any]:
        """Store the differences one run found for `entity`; returns counts of what changed.

        `fresh`: the run read the sources afresh (`erpoa reconcile`, run mode `FRESH_MODE`) rather than
        comparing with the mirror; only such a run closes a difference whose last sighting was fresh too.
        Idempotent per run: recording the same run twice counts each difference once.
        """
        t = self.table
        stamp = seen_at or now()
        diffs = diffs.drop_duplicates("diff_id")
        found = set(diffs["diff_id"])
        with self.engine.begin() as conn:
            cols = ["diff_id", "status", "present", "last_run_id", "signed_by", "signed_at", "note", *VALUE_COLUMNS]
            stmt = (
                select(*[t.c[c] for c in cols], s.runs.c.mode)
                .select_from(t.outerjoin(s.runs, s.runs.c.run_id == t.c.last_run_id))
                .where(t.c.entity == entity)
            )
            existing = pd.DataFrame(conn.execute(stmt).all(), columns=[*cols, "last_mode"])
            known = set(existing["diff_id"])
            new = diffs[~diffs["diff_id"].isin(known)]
            insert_frame(
                conn,
                t,
                new.assign(
                    entity=entity,
                    first_run_id=run_id,
                    last_run_id=run_id,
                    first_seen_at=stamp,
                    last_seen_at=stamp,
                    run_count=1,
                    present=True,
                    status="open",
                )[
                    [
                        "diff_id",
                        "entity",
                        "class",
                        *VALUE_COLUMNS,
                        "first_run_id",
                        "last_run_id",
                        "first_seen_at",
                        "last_seen_at",
                        "run_count",
                        "present",
                        "status",
                    ]
                ],
            )
            seen = existing[existing["diff_id"].isin(found)]
            again = seen[seen["last_run_id"] != run_id]
            self._batch(
                conn,
                again["diff_id"],
                run_count=t.c.run_count + 1,
                last_run_id=run_id,
                last_seen_at=stamp,
                present=True,
            )
            self._batch(conn, seen.loc[seen["last_run_id"] == run_id, "diff_id"], present=True)
            reopened = again[again["status"] == "fixed"]
            self._auto_sign(conn, reopened, f"reopened: seen again in run {run_id}", "open", None, stamp)
            self._refresh_values(conn, seen, diffs)
            missing = existing[existing["present"].fillna(False).astype(bool) & ~existing["diff_id"].isin(found)]
            # The mirror lacks what only a fresh read saw (an edit the cursor missed, a joined table's change).
            held = missing.iloc[:0] if fresh else missing[missing["last_mode"] == FRESH_MODE]
            gone = missing.drop(held.index)
            self._batch(conn, gone["diff_id"], present=False)
            fixed = gone[gone["status"] == "open"]
            self._auto_sign(conn, fixed, f"not found in run {run_id}", "fixed", AUTO_SIGNER, stamp)
            counts = conn.execute(
                select(t.c.status, func.count()).where(t.c.entity == entity, t.c.present.is_(True)).group_by(t.c.status)
            ).all()
            self._record_seen(conn, entity, run_id, sorted(found), new=len(new), reopened=len(reopened), stamp=stamp)
        by_status = {str(k): int(v) for k, v in counts}
        # `total` is what this run found (the report's and `erpoa status`'s "differences"); `new_or_reopened` is
        # what turned open by this run (alerts); `open_total` is every present difference whose status is open.
        return {
            "total": len(diffs),
            "new": len(new),
            "open": len(new) + len(reopened),
            "new_or_reopened": len(new) + len(reopened),
            "reopened": len(reopened),
            "persisting": len(seen),
            "fixed": len(fixed),
            "gone": len(gone),
            "held": len(held),  # not found against the mirror, but last seen by a fresh read: left as they were
            "open_total": by_status.get("open", 0),
            "accepted": by_status.get("accepted", 0),
            "by_class": {str(k): int(v) for k, v in diffs["class"].value_counts().sort_index().items()},
        }

    def _record_seen(
        self, conn: Any, entity: str, run_id: str, found: list[str], *, new: int, reopened: int, stamp: datetime
    ) -> None:
        """Which differences this run found for `entity`, replacing an earlier recording of the same run."""
        seen, rec = s.difference_seen, s.reconciliations
        conn.execute(seen.delete().where(seen.c.run_id == run_id, seen.c.entity == entity))
        conn.execute(rec.delete().where(rec.c.run_id == run_id, rec.c.entity == entity))
        insert_frame(conn, seen, pd.DataFrame({"run_id": run_id, "diff_id": found, "entity": entity}))
        conn.execute(
            rec.insert().values(
                run_id=run_id, entity=entity, present=len(found), new=new, reopened=reopened, recorded_at=stamp
            )
        )

    def _auto_sign(
        self, conn: Any, rows: pd.DataFrame, note: str, status: str, signed_by: str | None, stamp: datetime
    ) -> None:
        """Set `status` automatically on `rows`; the note keeps the last sign-off of a person, if any."""
        if rows.empty:
            return
        kept = [
            kept_sign_off(*r)
            for r in rows[["status", "signed_by", "signed_at", "note"]].itertuples(index=False, name=None)
        ]
        notes = pd.Series([f"{note}; {k}" if k else note for k in kept], index=rows.index)
        for text, ids in rows["diff_id"].groupby(notes, sort=False):
            self._batch(conn, ids, status=status, signed_by=signed_by, signed_at=stamp, note=text)

    def _batch(self, conn: Any, ids: Iterable[str], **values: Any) -> None:
        ids = list(ids)
        for start in range(0, len(ids), IN_BATCH):
            conn.execute(
                update(self.table).where(self.table.c.diff_id.in_(ids[start : start + IN_BATCH])).values(**values)
            )

    def _refresh_values(self, conn: Any, seen: pd.DataFrame, diffs: pd.DataFrame) -> None:
        """Keep the latest values of persisting differences (an amount that moved but still differs)."""
        if seen.empty:
            return
        current = {r["diff_id"]: r for r in diffs[["diff_id", *VALUE_COLUMNS]].to_dict("records")}
        for old in seen[["diff_id", *VALUE_COLUMNS]].to_dict("records"):
            new = {c: _clean(current[old["diff_id"]][c]) for c in VALUE_COLUMNS}
            if any(_clean(old[c]) != new[c] for c in VALUE_COLUMNS):
                conn.execute(update(self.table).where(self.table.c.diff_id == old["diff_id"]).values(**new))

    # sign-off -------------------------------------------------------------------
    def resolve(self, prefixes: Sequence[str]) -> list[str]:
        """Full diff ids for ids or unique prefixes (at least 6 characters)."""
        t = self.table
        out: list[str] = []
        problems: list[str] = []
        with self.engine.connect() as conn:
            for given in prefixes:
                prefix = given.strip().lower()
                if len(prefix) < 6:
                    problems.append(f"'{prefix}' is too short; give at least 6 characters of the id")
                    continue
                rows = [r[0] for r in conn.execute(select(t.c.diff_id).where(t.c.diff_id.like(prefix + "%")).limit(3))]
                if not rows:
                    problems.append(f"no difference with id '{prefix}'; see `erpoa reconcile list`")
                elif len(rows) > 1:
                    problems.append(f"'{prefix}' matches several differences ({', '.join(rows)}); give more characters")
                else:
                    out.append(rows[0])
        if problems:
            raise UnknownDifferenceError("; ".join(problems))
        return list(dict.fromkeys(out))

    def sign_off(self, diff_ids: Sequence[str], status: str, *, by: str, note: str | None = None) -> pd.DataFrame:
        """Set `status` (open, accepted or fixed) on the given differences, signed by `by`; returns them."""
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, not '{status}'")
        if not by.strip():
            raise ConfigError("say who signs off: --by NAME")
        ids = self.resolve(diff_ids)
        with self.engine.begin() as conn:
            self._batch(conn, ids, status=status, signed_by=by.strip()[:100], signed_at=now(), note=note)
        return self.frame(diff_ids=ids, present=None)

    # reading --------------------------------------------------------------------
    def reconciliations(self, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Recorded reconciliations (run_id, entity, present, new, reopened); runs before schema 4 have none."""
        rec = s.reconciliations
        cols = ["run_id", "entity", "present", "new", "reopened"]
        stmt = select(*[rec.c[c] for c in cols])
        with self.engine.connect() as conn:
            if run_ids is None:
                rows = list(conn.execute(stmt).all())
            else:
                ids = list(run_ids)
                rows = [
                    r
                    for i in range(0, len(ids), IN_BATCH)
                    for r in conn.execute(stmt.where(rec.c.run_id.in_(ids[i : i + IN_BATCH]))).all()
                ]
        return pd.DataFrame(rows, columns=cols)

    def seen(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """(run_id, entity, diff_id) of the differences the given runs found."""
        t = s.difference_seen
        ids = list(run_ids)
        cols = ["run_id", "entity", "diff_id"]
        with self.engine.connect() as conn:
            rows = [
                r
                for i in range(0, len(ids), IN_BATCH)
                for r in conn.execute(select(*[t.c[c] for c in cols]).where(t.c.run_id.in_(ids[i : i + IN_BATCH])))
            ]
        return pd.DataFrame(rows, columns=cols)

    def frame(
        self,
        *,
        entity: str | None = None,
        cls: str | None = None,
        status: str | None = None,
        present: bool | None = True,
        diff_ids: Sequence[str] | None = None,
        entities: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Differences as a frame, filtered; ordered by entity, class and key."""
        t = self.table
        stmt = select(t).order_by(t.c.entity, t.c["class"], t.c.golden_key, t.c.field)
        conds = []
        if entity:
            conds.append(t.c.entity == entity)
        if entities is not None:
            conds.append(t.c.entity.in_(list(entities)))
        if cls:
            conds.append(t.c["class"] == cls)
        if status:
            conds.append(t.c.status == status)
        if present is not None:
            conds.append(t.c.present.is_(present))
        if diff_ids is not None:
            conds.append(
                or_(*[t.c.diff_id.in_(list(diff_ids[i : i + IN_BATCH])) for i in range(0, len(diff_ids), IN_BATCH)])
                if diff_ids
                else t.c.diff_id.is_(None)
            )
        if conds:
            stmt = stmt.where(and_(*conds))
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=[c.name for c in t.columns])
        if not frame.empty:
            frame["present"] = frame["present"].astype(bool)
        return frame
