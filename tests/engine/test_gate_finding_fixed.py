"""A golden record quarantined by the gate on two fields with the same expectation type: once one field's problem is
fixed (its expectation removed) and the record replayed, that finding is `resolved`; the other field's is found again,
so its old row is `superseded` and a new one is open (it used to be the fixed one that was called superseded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.engine.pipeline import open_store, run_sync
from etl.engine.replay import replay_quarantine
from tests.helpers.project import make_project, replace_in, urls_for

RULE = "expect_column_values_to_be_between"


@pytest.mark.sqlite
def test_a_fixed_gate_finding_is_resolved_and_the_other_field_stays_open(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    path = config.resolve(config.expectations) / "purchase.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    # quantity and amount both at most 50: a line over it fails twice, on each field, with the same type
    suite["expectations"] = [e for e in suite["expectations"] if e["type"] != RULE] + [
        {"type": RULE, "kwargs": {"column": column, "max_value": 50}, "meta": {}} for column in ("quantity", "amount")
    ]
    path.write_text(json.dumps(suite, ensure_ascii=False, indent=2), encoding="utf-8")
    mapping = config.resolve(config.mappings) / "purchase.yaml"
    replace_in(mapping, ("max_quarantined_pct: 10", "max_quarantined_pct: 100"))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    store = open_store(config)
    rows = store.quarantine(entity="purchase")
    gate = rows[rows["rule"] == RULE]
    both = gate.groupby("src_id")["field"].agg(set)
    record = next(src_id for src_id, fields in both.items() if fields == {"quantity", "amount"})
    amount = int(gate[(gate["src_id"] == record) & (gate["field"] == "amount")]["id"].iloc[0])
    quantity = int(gate[(gate["src_id"] == record) & (gate["field"] == "quantity")]["id"].iloc[0])

    suite["expectations"] = [e for e in suite["expectations"] if e["kwargs"].get("column") != "amount"
                             or e["type"] != RULE]
    path.write_text(json.dumps(suite, ensure_ascii=False, indent=2), encoding="utf-8")
    done = replay_quarantine(config, "purchase", ids=[amount])
    assert done.result.status == "success", done.result.message
    after = store.quarantine(entity="purchase", status=None).set_index("id")
    assert after.at[amount, "status"] == "resolved"
    assert after.at[quantity, "status"] == "superseded"
    again = after[(after["src_id"] == record) & (after["status"] == "open")]
    assert list(zip(again["rule"], again["field"], strict=True)) == [(RULE, "quantity")]
