"""What a sync would do (`erpoa plan`): counts and samples, read from a dry run's work database.

Sample values are shown in their field's type: integers as int, decimals as float, booleans as bool,
strings as text, dates and datetimes as ISO text (JSON has no date type). An update lists a field as
changed only where the sync would change the value the target stores: the canonical values (`coerce`,
as the row hash sees them) are compared, datetimes at the precision the target's column keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Dialect

from etl.db.ddl import stored_datetimes
from etl.engine.context import SyncContext
from etl.frames import is_missing
from etl.mapping.model import CanonicalField
from etl.mapping.types import as_text, coerce


def _flag(value: Any) -> bool | None:
    return None if is_missing(value) else str(value).lower() in ("true", "1", "t")


def _text(value: Any) -> str | None:
    return None if is_missing(value) else str(value)


def _shown(value: Any, spec: CanonicalField) -> Any:
    """One canonical value as a sample shows it: a plain Python value of the field's type, None for null."""
    if is_missing(value):
        return None
    if spec.type == "integer":
        return int(value)
    if spec.type == "decimal":
        return float(value)
    if spec.type == "boolean":
        return bool(value)
    if spec.type in ("date", "datetime"):
        return str(as_text(pd.Series([pd.Timestamp(value)]))[0])  # as the rest of the tool writes them
    return str(value)


def _samples(frame: pd.DataFrame, fields: Mapping[str, CanonicalField]) -> pd.DataFrame:
    """`frame` (canonical values) with each field as `_shown` values."""
    out = frame.copy()
    for name, spec in fields.items():
        values = out[name] if name in out else [None] * len(out)
        out[name] = pd.Series([_shown(v, spec) for v in values], index=out.index, dtype=object)
    return out


def _same(before: Any, after: Any, spec: CanonicalField, dialect: Dialect) -> bool:
    """Whether publishing `after` leaves the stored `before` as it is (both canonical values)."""
    if is_missing(before) or is_missing(after):
        return is_missing(before) and is_missing(after)
    if spec.type == "datetime":
        stored = stored_datetimes(pd.Series([pd.Timestamp(before), pd.Timestamp(after)]), dialect)
        return bool(stored[0] == stored[1])
    return bool(before == after)


def _changes(
    old: pd.Series | None,
    new: pd.Series,
    fields: Mapping[str, CanonicalField],
    added: set[str],
    dialect: Dialect,
) -> dict[str, dict[str, Any]]:
    """The fields an update changes, field: {old, new} (shown values); pii values masked.

    A field whose column the target does not have yet is always listed (old None): the update fills it.
    """
    changes: dict[str, dict[str, Any]] = {}
    for name, spec in fields.items():
        before = None if old is None or name not in old.index else old[name]
        after = new[name] if name in new.index else None
        if name not in added and _same(before, after, spec, dialect):
            continue
        shown = {"old": _shown(before, spec), "new": _shown(after, spec)}
        changes[name] = dict.fromkeys(shown, "****") if spec.pii else shown
    return changes


def _target_rows(ctx: SyncContext, entity: str, keys: list[str]) -> pd.DataFrame:
    """The target's rows of `keys` (canonical values), indexed by `_key`."""
    mapping = ctx.mapping(entity)
    target = ctx.tables(mapping).target
    if not keys:
        return pd.DataFrame(columns=[c.name for c in target.columns]).set_index("_key")
    with ctx.target_engine(mapping).connect() as conn:
        found = pd.DataFrame(
            [
                r
                for start in range(0, len(keys), 1000)
                for r in conn.execute(select(target).where(target.c._key.in_(keys[start : start + 1000])))
                .mappings()
                .all()
            ],
            columns=[c.name for c in target.columns],
        )
    return coerce(found, mapping.fields, ctx.timezone).set_index("_key")


#: Why an update may change no value: the target compares row hashes, and the stored one was made over other fields.
REHASHED = (
    "no value changes: the stored row hash differs (made by an earlier mapping, e.g. before a field was "
    "removed or mapped again), so the record is written again with the same values and a new hash"
)


#: Why an update changes only fields the target has no column for yet (their old value shows as None).
NEW_COLUMNS = "written again to fill the target's new column(s):"


def _update_samples(ctx: SyncContext, entity: str, updates: pd.DataFrame, old: pd.DataFrame) -> list[dict[str, Any]]:
    """Each sampled update as {key, changes}: its fields, activity and presence that change."""
    mapping = ctx.mapping(entity)
    fields = mapping.fields
    added = {name for name in fields if name not in ctx.tables(mapping).target.c}
    dialect = ctx.target_engine(mapping).dialect
    out = []
    for _, row in updates.iterrows():
        key = row["_key"]
        before = old.loc[key] if key in old.index else None
        changes = _changes(before, row, fields, added, dialect)
        if before is not None and "_active" in old.columns:
            was, now = _flag(before["_active"]), _flag(row.get("_active"))
            if was != now:  # a re-activation (or the reverse) with no field changed is still a change
                changes["_active"] = {"old": was, "new": now}
        if before is not None and "_presence" in old.columns:
            was_in, now_in = _text(before["_presence"]), _text(row.get("_presence"))
            if was_in != now_in:  # a source record joins or leaves the golden record: an update of its own
                changes["_presence"] = {"old": was_in, "new": now_in}
        sample: dict[str, Any] = {"key": key, "changes": changes}
        if not changes and before is not None:
            sample["note"] = REHASHED
        elif before is not None and changes and set(changes) <= added:
            # old None → new None says nothing by itself: the record is rewritten to fill the column
            sample["note"] = f"{NEW_COLUMNS} {', '.join(changes)}"
        out.append(sample)
    return out


def plan_details(ctx: SyncContext, entity: str, samples: int = 5) -> dict[str, Any]:
    """Samples of inserts, updates (field: old -> new), inactivations and quarantines of a dry run.

    Values are plain Python values of each field's type (see the module's docstring); pii fields are masked.
    """
    mapping = ctx.mapping(entity)
    gold = ctx.work_tables(mapping).gold
    fields = list(mapping.fields)
    pii = set(mapping.pii_fields)
    with ctx.work_engine(mapping).connect() as conn:
        rows = pd.DataFrame(
            conn.execute(select(gold).where(gold.c._run == ctx.run_id)).mappings().all(),
            columns=[c.name for c in gold.columns],
        )
    rows = coerce(rows, mapping.fields, ctx.timezone)
    details: dict[str, Any] = {"inserts": [], "updates": [], "inactivations": [], "quarantined": []}
    inserts = _samples(rows[rows["_action"] == "insert"].head(samples), mapping.fields)
    for name in pii:
        inserts[name] = inserts[name].map(lambda v: None if v is None else str(v)[:3] + "****")
    details["inserts"] = [{"key": r["_key"], **{f: r[f] for f in fields[:6]}} for _, r in inserts.iterrows()]
    all_updates = rows[rows["_action"] == "update"]
    # Updates that switch a record off (its status says it left) count as inactivations: look them up as well.
    switched_off = all_updates[all_updates["_active"].map(_flag).eq(False)]
    updates = all_updates.head(samples)
    old = _target_rows(ctx, entity, list(dict.fromkeys([*updates["_key"], *switched_off["_key"]])))
    details["updates"] = _update_samples(ctx, entity, updates, old)
    was_active = [k for k in switched_off["_key"] if k in old.index and _flag(old.at[k, "_active"])]
    inactivated = rows[rows["_action"] == "inactivate"]["_key"].tolist() + was_active
    details["inactivations"] = inactivated[:samples]
    details["quarantined"] = _quarantine_samples(ctx, entity, pii, samples)
    return details


def _quarantine_samples(ctx: SyncContext, entity: str, pii: set[str], samples: int) -> list[dict[str, Any]]:
    frames = [f for f in ctx.planned_quarantine if not f.empty and (f["entity"] == entity).any()]
    if not frames:
        return []
    q = pd.concat(frames, ignore_index=True)
    q = q[q["entity"] == entity]
    return [
        {
            "source": r["source"],
            "src_id": r.get("src_id"),
            "rule": r["rule"],
            "field": r.get("field"),
            "value": "****" if r.get("field") in pii else r.get("value"),
            "reason": r.get("reason"),
        }
        for _, r in q.head(samples).iterrows()
    ]
