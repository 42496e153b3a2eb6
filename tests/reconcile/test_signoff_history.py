"""A person's sign-off is not erased when a run reopens the difference (or closes it again): the automatic note
keeps who signed, when and their note, and the report shows it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.engine.hooks import default_hooks
from etl.engine.pipeline import open_store, run_sync
from etl.reconcile.store import AUTO_SIGNER, DifferenceStore, kept_sign_off
from etl.report.build import write_reports
from tests.helpers.project import execute_sql, make_project, urls_for

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]
NOTE = "corrected in U8 per ticket 4711"


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path):
    urls = urls_for(request.param, request, tmp_path)
    return make_project(tmp_path / "project", urls)


def _row(store: DifferenceStore, diff_id: str) -> dict:
    return store.frame(diff_ids=[diff_id], present=None).iloc[0].to_dict()


def test_reopen_keeps_the_sign_off_of_a_person(project, tmp_path: Path) -> None:
    config, manifest = project
    hooks = default_hooks(config)
    run_sync(config, full_refresh=True, hooks=hooks)
    store = DifferenceStore(open_store(config).engine)
    planted = manifest["contract_amount_differences"][0]
    amounts = store.frame(entity="contract", cls="field_mismatch")
    diff_id = amounts[(amounts["golden_key"] == planted["htbh"]) & (amounts["field"] == "amount")]["diff_id"].iloc[0]
    store.sign_off([diff_id[:8]], "fixed", by="李审计", note=NOTE)
    signed_at = pd.Timestamp(_row(store, diff_id)["signed_at"]).strftime("%Y-%m-%d %H:%M:%S")
    signed = f"was fixed by 李审计 at {signed_at}: {NOTE}"

    again, _ = run_sync(config, entities=["contract"], full_refresh=True, hooks=hooks)
    row = _row(store, diff_id)
    assert (row["status"], row["signed_by"]) == ("open", None)
    assert row["note"] == f"reopened: seen again in run {again.run_id}; {signed}"
    paths = write_reports(config, out_dir=tmp_path / "report")
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False).set_index("diff_id")
    assert signed in csv.at[diff_id, "note"]
    assert "李审计" in paths["html"].read_text(encoding="utf-8")

    # corrected at the source after all: the automatic fix keeps the person's sign-off too
    oa = config.connection("oa").sqlalchemy_url()
    execute_sql(
        oa, "UPDATE formtable_main_15 SET htje = :v WHERE htbh = :k", {"v": planted["erp"], "k": planted["htbh"]}
    )
    gone, _ = run_sync(config, entities=["contract"], full_refresh=True, hooks=hooks)
    row = _row(store, diff_id)
    assert (row["status"], row["signed_by"], row["present"]) == ("fixed", AUTO_SIGNER, False)
    assert row["note"] == f"not found in run {gone.run_id}; {signed}"


def test_automatic_sign_offs_carry_nothing_of_their_own() -> None:
    assert kept_sign_off("fixed", AUTO_SIGNER, "2026-12-06 19:48:02", "not found in run R1") is None
    assert kept_sign_off("open", None, None, None) is None
    assert kept_sign_off("open", None, None, "reopened: seen again in run R2") is None
    assert kept_sign_off("accepted", "张会计", pd.Timestamp("2026-12-06 19:48:02"), None) == (
        "was accepted by 张会计 at 2026-12-06 19:48:02"
    )
    assert kept_sign_off("open", "hr01", "2026-12-06 19:48:02", "still wrong; see 4711") == (
        "was reopened by hr01 at 2026-12-06 19:48:02: still wrong; see 4711"
    )
