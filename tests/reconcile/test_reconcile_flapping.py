"""A difference only a fresh read of the sources sees (an ERP edit that did not move the cursor column) is not
closed by the next sync's reconciliation against the mirror, so it no longer flips between "fixed by erpoa" and
"reopened" with every sync and `erpoa reconcile`; a fresh reconciliation still closes it once it is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.engine.hooks import default_hooks
from etl.engine.pipeline import open_store, run_sync
from etl.reconcile.run import reconcile_fresh
from etl.reconcile.store import AUTO_SIGNER, DifferenceStore
from tests.helpers.project import execute_sql, make_project, target_rows, urls_for

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path):
    urls = urls_for(request.param, request, tmp_path)
    return make_project(tmp_path / "project", urls)


def _plain_person(config) -> str:
    """An employee in the ERP, the OA and the target without any difference."""
    differing = set(DifferenceStore(open_store(config).engine).frame(entity="employee")["golden_key"].dropna())
    return sorted({r[0] for r in target_rows(config, "md_employee", ["employee_code"])} - differing)[0]


def _rename(config, person: str, name_sql: str) -> None:
    """Edit the ERP person's name in place, leaving dModifyDate (the sync's cursor) as it was."""
    url = config.connection("erp").sqlalchemy_url()
    execute_sql(url, f'UPDATE hr_hi_person SET "cPsn_Name" = {name_sql} WHERE "cPsn_Num" = :k', {"k": person})


def _late_name(config) -> dict:
    frame = DifferenceStore(open_store(config).engine).frame(entity="employee", cls="field_mismatch", present=None)
    rows = frame[(frame["field"] == "name") & frame["erp_value"].fillna("").str.endswith("LATE")]
    assert len(rows) == 1, frame[["golden_key", "field", "erp_value", "oa_value"]]
    return rows.iloc[0].to_dict()


def test_sync_does_not_close_what_only_a_fresh_read_saw(project) -> None:
    config, _ = project
    hooks = default_hooks(config)
    assert run_sync(config, full_refresh=True, hooks=hooks)[0].status == "success"
    person = _plain_person(config)
    _rename(config, person, """"cPsn_Name" || 'LATE'""")

    first = reconcile_fresh(config, "employee")
    seen = _late_name(config)
    assert (
        seen["golden_key"] == person
        and seen["status"] == "open"
        and seen["present"]
        and seen["last_run_id"] == first["run_id"]
    )

    summary, _ = run_sync(config, entities=["employee"], hooks=hooks)
    assert summary.status == "success", summary.message
    after_sync = _late_name(config)
    assert after_sync["status"] == "open" and after_sync["present"], after_sync
    assert after_sync["signed_by"] is None and after_sync["last_run_id"] == first["run_id"]
    # the sync's own findings do not include it: its report of that run does not show it
    assert seen["diff_id"] not in set(DifferenceStore(open_store(config).engine).seen([summary.run_id])["diff_id"])

    second = reconcile_fresh(config, "employee")["entities"]["employee"]
    again = _late_name(config)
    assert second["reopened"] == 0 and again["status"] == "open" and again["note"] is None
    assert again["run_count"] == 2 and again["first_run_id"] == first["run_id"]

    _rename(config, person, 'substr("cPsn_Name", 1, length("cPsn_Name") - 4)')
    closed = reconcile_fresh(config, "employee")
    gone = DifferenceStore(open_store(config).engine).frame(diff_ids=[seen["diff_id"]], present=None).iloc[0]
    assert not gone["present"] and gone["status"] == "fixed" and gone["signed_by"] == AUTO_SIGNER
    assert gone["note"] == f"not found in run {closed['run_id']}"


def test_sync_still_closes_what_the_mirror_saw(project) -> None:
    config, manifest = project
    hooks = default_hooks(config)
    run_sync(config, full_refresh=True, hooks=hooks)
    reconcile_fresh(config, "contract")
    planted = manifest["contract_amount_differences"][0]
    store = DifferenceStore(open_store(config).engine)
    mine = store.frame(entity="contract", cls="field_mismatch")
    diff_id = mine[(mine["golden_key"] == planted["htbh"]) & (mine["field"] == "amount")]["diff_id"].iloc[0]
    seen_by_sync, _ = run_sync(config, entities=["contract"], full_refresh=True, hooks=hooks)
    assert store.frame(diff_ids=[diff_id]).iloc[0]["last_run_id"] == seen_by_sync.run_id

    oa = config.connection("oa").sqlalchemy_url()
    execute_sql(
        oa, "UPDATE formtable_main_15 SET htje = :v WHERE htbh = :k", {"v": planted["erp"], "k": planted["htbh"]}
    )
    fixed_by, _ = run_sync(config, entities=["contract"], full_refresh=True, hooks=hooks)
    row = store.frame(diff_ids=[diff_id], present=None).iloc[0]
    assert not row["present"] and row["status"] == "fixed" and row["note"] == f"not found in run {fixed_by.run_id}"
