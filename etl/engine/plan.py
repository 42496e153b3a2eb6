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
    updates = rows[rows["_action"] == "update"].head(samples)
    if not updates.empty:
        target = ctx.tables(mapping).target
        with ctx.target_engine(mapping).connect() as conn:
            old = pd.DataFrame(
                conn.execute(select(target).where(target.c._key.in_(updates["_key"].tolist()))).mappings().all(),
                columns=[c.name for c in target.columns],
            )
        old = _values(coerce(old, mapping.fields, ctx.timezone), fields).set_index("_key")
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
            details["updates"].append({"key": key, "changes": changes})
    details["inactivations"] = rows[rows["_action"] == "inactivate"]["_key"].head(samples).tolist()
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
