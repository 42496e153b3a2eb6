"""Reconciliation against real databases: a demo sync on SQLite, PostgreSQL and MariaDB finds the differences
the demo plants, classified right; they persist across runs; sign-off shows in the next report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from etl.engine.hooks import default_hooks
from etl.engine.pipeline import open_store, run_sync
from etl.reconcile.run import reconcile_fresh
from etl.reconcile.store import DifferenceStore, UnknownDifferenceError
from etl.report.build import write_reports
from tests.helpers.project import make_project, target_rows, urls_for

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path):
    urls = urls_for(request.param, request, tmp_path)
    return make_project(tmp_path / "project", urls)


def _diffs(config) -> pd.DataFrame:
    return DifferenceStore(open_store(config).engine).frame()


def _keys(diffs: pd.DataFrame, entity: str, cls: str, field: str | None = None) -> set[str]:
    rows = diffs[(diffs["entity"] == entity) & (diffs["class"] == cls)]
    if field is not None:
        rows = rows[rows["field"] == field]
    return set(rows["golden_key"].dropna())


def _sql(url: str, statement: str, **params: object) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def test_sync_finds_the_planted_differences(project) -> None:
    config, manifest = project
    summary, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    assert summary.status == "success", summary.message
    assert {e.entity: e.differences for e in summary.entities}["contract"] > 0
    diffs = _diffs(config)
    assert diffs["diff_id"].is_unique

    amounts = diffs[(diffs["entity"] == "contract") & (diffs["field"] == "amount")]
    assert set(amounts["class"]) == {"field_mismatch"}
    planted = {d["htbh"]: d for d in manifest["contract_amount_differences"]}
    assert set(amounts["golden_key"]) == set(planted)
    for row in amounts.itertuples(index=False):
        assert row.erp_value == f"{planted[row.golden_key]['erp']:.2f}"
        assert row.oa_value == f"{planted[row.golden_key]['oa']:.2f}"
    assert set(manifest["contracts_missing_in_erp"]) == _keys(diffs, "contract", "only_in_oa")
    assert manifest["erp_contract_without_oa_request"] in _keys(diffs, "contract", "only_in_erp")

    dup_codes = {d["code"] for d in manifest["duplicate_oa_workcodes"]}
    assert _keys(diffs, "employee", "duplicate_key") == dup_codes
    assert set(manifest["employees_only_in_erp"]) - dup_codes == _keys(diffs, "employee", "only_in_erp")
    assert set(manifest["employees_only_in_oa"]) - dup_codes == _keys(diffs, "employee", "only_in_oa")
    # spellings the mapping unifies (workcodes, names with spaces or full-width letters) are not differences
    lonely = set(manifest["employees_only_in_erp"]) | set(manifest["employees_only_in_oa"])
    variants = {c for codes in manifest["workcode_variants"].values() for c in codes} - dup_codes - lonely
    assert not variants & (_keys(diffs, "employee", "only_in_erp") | _keys(diffs, "employee", "only_in_oa"))
    assert not _keys(diffs, "employee", "field_mismatch", "name")
    departed = set(manifest["departed_in_oa_active_in_erp"]) | set(manifest["departed_in_erp_active_in_oa"])
    assert departed <= _keys(diffs, "employee", "field_mismatch", "status")

    unmapped = manifest["unmapped_oa_department"]["code"]
    gaps = diffs[diffs["class"] == "mapping_gap"]
    dept_gap = gaps[gaps["entity"] == "department"]
    # The OA code feeds two lookups (the code and the governed name) of one code table: one gap for the code.
    assert len(dept_gap) == 1 and set(dept_gap["oa_value"]) == {unmapped} and dept_gap["golden_key"].isna().all()
    assert json.loads(dept_gap["detail"].iloc[0])["fields"] == ["department_code", "name"]
    emp_gap = gaps[gaps["entity"] == "employee"]
    assert len(emp_gap) == 1 and emp_gap["golden_key"].isna().all()
    held = json.loads(emp_gap["detail"].iloc[0])["src_ids"]["oa"].split(", ")
    assert str(manifest["employee_in_unmapped_department"]["oa_id"]) in held
    assert manifest["employee_in_unmapped_department"]["code"] not in _keys(diffs, "employee", "only_in_erp")

    lines = {(f"{d['ccode']}|{d['line_no']}", d["field"]) for d in manifest["requisition_line_differences"]}
    found = diffs[(diffs["entity"] == "purchase") & (diffs["class"] == "field_mismatch")]
    assert lines <= set(zip(found["golden_key"], found["field"], strict=True))
    missing = {no.replace("-", "") for no in manifest["requisitions_missing_in_erp"]}
    assert {k.split("|")[0] for k in _keys(diffs, "purchase", "only_in_oa")} <= missing
    # a correct publish leaves nothing to drift, on every dialect (the recomputed row hash matches)
    assert not (diffs["class"] == "target_drift").any()
    assert not (diffs["class"] == "orphan_reference").any()
    assert diffs["class"].value_counts().sum() == len(diffs)


def test_differences_persist_and_sign_off_shows_in_the_report(project, tmp_path: Path) -> None:
    config, _ = project
    first, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    before = _diffs(config).set_index("diff_id")
    second, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    after = _diffs(config).set_index("diff_id")
    assert set(before.index) == set(after.index)
    assert (after["run_count"] == 2).all()
    assert (after["first_run_id"] == first.run_id).all() and (after["last_run_id"] == second.run_id).all()
    assert (after["first_seen_at"] == before["first_seen_at"].reindex(after.index)).all()
    assert {e.entity: e.differences for e in second.entities} == dict.fromkeys(
        [e.entity for e in second.entities], 0
    ), "nothing is new the second time"

    store = DifferenceStore(open_store(config).engine)
    accepted = after[(after["entity"] == "contract") & (after["class"] == "field_mismatch")].index[0]
    store.sign_off([accepted[:8]], "accepted", by="张会计", note="approved variance")
    with pytest.raises(UnknownDifferenceError):
        store.sign_off(["ffffffffffff"], "accepted", by="x")
    run_sync(config, hooks=default_hooks(config))
    paths = write_reports(config, out_dir=tmp_path / "report")
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False).set_index("diff_id")
    assert csv.at[accepted, "status"] == "accepted" and csv.at[accepted, "signed_by"] == "张会计"
    assert (csv.drop(index=accepted)["status"] == "open").all()
    assert "已接受" in paths["html"].read_text(encoding="utf-8")


def test_fresh_reconcile_matches_sync_and_sees_drift_and_fixes(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True, hooks=default_hooks(config))
    synced = _diffs(config)
    result = reconcile_fresh(config)
    assert result["status"] == "success"
    fresh = _diffs(config)
    assert set(fresh["diff_id"]) == set(synced["diff_id"])
    assert (fresh["last_run_id"] == result["run_id"]).all()
    run = open_store(config).runs(1)[0]
    assert (run["trigger"], run["mode"]) == ("reconcile", "reconcile")

    target, oa = config.connection("target").sqlalchemy_url(), config.connection("oa").sqlalchemy_url()
    q = '"' if not target.startswith("mysql") else "`"
    published = {r[0] for r in target_rows(config, "md_contract", ["contract_no"])}
    edited = sorted(published - set(synced["golden_key"].dropna()))[0]
    _sql(target, f"UPDATE md_contract SET {q}name{q} = 'edited in the target' WHERE contract_no = :k", k=edited)
    fixed = manifest["contract_amount_differences"][0]
    _sql(oa, "UPDATE formtable_main_15 SET htje = :v WHERE htbh = :k", v=fixed["erp"], k=fixed["htbh"])
    result = reconcile_fresh(config, "contract")
    stats = result["entities"]["contract"]
    assert stats["by_class"].get("target_drift") == 1 and stats["fixed"] == 1
    now = DifferenceStore(open_store(config).engine).frame(entity="contract", present=None)
    drift = now[now["class"] == "target_drift"].iloc[0]
    assert (drift["golden_key"], drift["field"], drift["target_value"]) == (edited, "name", "edited in the target")
    gone = now[(now["golden_key"] == fixed["htbh"]) & (now["field"] == "amount")].iloc[0]
    assert not gone["present"] and gone["status"] == "fixed" and gone["signed_by"] == "erpoa"
