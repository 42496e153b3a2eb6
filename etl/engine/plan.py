"""What a sync would do (`erpoa plan`): counts and samples, read from a dry run's work database."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from etl.engine.context import SyncContext
from etl.mapping.types import as_text, coerce


def _values(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for name in fields:
        out[name] = as_text(out[name]) if name in out else None
    return out


def _flag(value: Any) -> bool | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value).lower() in (
        "true", "1", "t")


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def plan_details(ctx: SyncContext, entity: str, samples: int = 5) -> dict[str, Any]:
    """Samples of inserts, updates (field: old -> new), inactivations and quarantines of a dry run."""
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
    text = _values(rows, fields)
    for name in pii:
        text[name] = text[name].str.slice(0, 3) + "****"
    details: dict[str, Any] = {"inserts": [], "updates": [], "inactivations": [], "quarantined": []}
    inserts = text[text["_action"] == "insert"].head(samples)
    details["inserts"] = [{"key": r["_key"], **{f: r[f] for f in fields[:6]}} for _, r in inserts.iterrows()]
    all_updates = rows[rows["_action"] == "update"]
    # Updates that switch a record off (its status says it left) count as inactivations: look them up as well.
    switched_off = all_updates[all_updates["_active"].map(_flag).eq(False)]
    updates = all_updates.head(samples)
    lookup = list(dict.fromkeys([*updates["_key"], *switched_off["_key"]]))
    old = pd.DataFrame(columns=["_key"]).set_index("_key")
    if lookup:
        target = ctx.tables(mapping).target
        with ctx.target_engine(mapping).connect() as conn:
            found = pd.DataFrame(
                [
                    r
                    for start in range(0, len(lookup), 1000)
                    for r in conn.execute(
                        select(target).where(target.c._key.in_(lookup[start : start + 1000]))
                    ).mappings().all()
                ],
                columns=[c.name for c in target.columns],
            )
        old = _values(coerce(found, mapping.fields, ctx.timezone), fields).set_index("_key")
    if not updates.empty:
        new = _values(updates, fields).set_index("_key")
        for key, row in new.iterrows():
            changes = {}
            for f in fields:
                before = old.at[key, f] if key in old.index else None
                after = row[f]
                if not (pd.isna(before) and pd.isna(after)) and before != after:
                    masked = f in pii
                    changes[f] = {"old": "****" if masked else before, "new": "****" if masked else after}
            if key in old.index and "_active" in old.columns and "_active" in row.index:
                before, after = _flag(old.at[key, "_active"]), _flag(row["_active"])
                if before != after:  # a re-activation (or the reverse) with no field changed is still a change
                    changes["_active"] = {"old": before, "new": after}
            if key in old.index and "_presence" in old.columns and "_presence" in row.index:
                before, after = _text(old.at[key, "_presence"]), _text(row["_presence"])
                if before != after:  # a source record joins or leaves the golden record: an update of its own
                    changes["_presence"] = {"old": before, "new": after}
            details["updates"].append({"key": key, "changes": changes})
    was_active = [k for k in switched_off["_key"] if k in old.index and _flag(old.at[k, "_active"])]
    inactivated = rows[rows["_action"] == "inactivate"]["_key"].tolist() + was_active
    details["inactivations"] = inactivated[:samples]
    frames = [f for f in ctx.planned_quarantine if not f.empty and (f["entity"] == entity).any()]
    if frames:
        q = pd.concat(frames, ignore_index=True)
        q = q[q["entity"] == entity]
        details["quarantined"] = [
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
    return details
