"""Approved OA contracts -> CM_Contract exactly once, on SQLite, PostgreSQL and MariaDB; the audit views.

Contracts already archived by hand (cOARequestID set) are adopted, the missing
ones created with the OA values, the contract numbers written back; the audit
lists the seeded exceptions (a contract without an OA request, a force-archived
one, amount differences) and stores them as differences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config.project import ProjectConfig
from etl.demo.generate import DemoSize
from etl.flows.audit import CLASSES, audit_views
from etl.flows.run import run_flows
from tests.helpers.project import make_project, urls_for

SIZE = DemoSize(departments=12, employees=60, requisitions=20, contracts=40)
DB_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def select(config: ProjectConfig, conn_name: str, table: str, *columns: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(*sa.table(table, *map(sa.column, columns)).c)).mappings()]
    finally:
        engine.dispose()


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ProjectConfig, dict]:
    return make_project(tmp_path / "p", urls_for(request.param, request, tmp_path / "p"), size=SIZE, seed=3)


@pytest.mark.parametrize("project", DB_BACKENDS, indirect=True)
def test_approved_contracts_archived_exactly_once(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    approved = {str(r) for r in m["contract_requests"]["approved"]}
    forced = approved & {str(r) for r in m["force_archived_requests"]}
    approved -= forced
    others = {str(r) for k, ids in m["contract_requests"].items() if k != "approved" for r in ids}
    forms = {f["htbh"]: f for f in select(config, "oa", "formtable_main_15", "requestid", "htbh", "htmc", "xdf",
                                           "htje", "qsrq", "jsrq")}
    missing = set(m["contracts_missing_in_erp"])
    assert missing and all(str(forms[h]["requestid"]) in approved for h in missing)

    summary = run_flows(config, flows=["contract_archive"])
    result = summary.flows[0]
    assert summary.status == "success", summary.message
    assert (result.created, result.adopted) == (len(missing), len(approved) - len(missing))
    assert sorted(result.created_numbers) == sorted(missing)

    cols = ("cContractID", "strContractName", "cVenCode", "dblTotalMoney", "dtStartDate", "dtEndDate", "cOARequestID")
    rows = select(config, "erp", "CM_Contract", *cols)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_request.setdefault(str(row["cOARequestID"]), []).append(row)
    assert approved <= set(by_request) and all(len(by_request[r]) == 1 for r in approved)
    assert not others & set(by_request)
    for htbh in missing:
        form = forms[htbh]
        row = by_request[str(form["requestid"])][0]
        assert (row["cContractID"], row["strContractName"], row["cVenCode"]) == (htbh, form["htmc"], form["xdf"])
        assert float(row["dblTotalMoney"]) == pytest.approx(float(form["htje"]))
        assert (str(row["dtStartDate"])[:10], str(row["dtEndDate"])[:10]) == (form["qsrq"], form["jsrq"])
    written = {str(f["requestid"]): f["erp_contract_no"]
               for f in select(config, "oa", "formtable_main_15", "requestid", "erp_contract_no")}
    assert {r: written[r] for r in approved} == {r: by_request[r][0]["cContractID"] for r in approved}

    again = run_flows(config, flows=["contract_archive"]).flows[0]
    assert (again.created, again.adopted, again.written_back) == (0, 0, 0)
    assert len(select(config, "erp", "CM_Contract", "cContractID")) == len(rows)

    views = audit_views(config, ["contract_archive"])
    stray = views["contract_without_approval"]
    assert m["erp_contract_without_oa_request"] in set(stray["doc_no"])
    assert set(stray.loc[stray["state"] == "held", "request_ref"]) == forced & set(by_request)
    mismatch = views["amount_mismatch"]
    assert set(mismatch["doc_no"]) == {d["htbh"] for d in m["contract_amount_differences"]}
    assert set(views["req_without_po"]["request_id"]) == forced
    diffs = select(config, "recon", "erpoa_difference", "entity", "class", "golden_key", "detail")
    stored = {(d["class"], d["golden_key"]) for d in diffs if d["entity"] == "contract_archive"}
    assert (CLASSES["contract_without_approval"], m["erp_contract_without_oa_request"]) in stored
    assert {("audit_amount_mismatch", d["htbh"]) for d in m["contract_amount_differences"]} <= stored
    reason = next(json.loads(d["detail"])["reason"] for d in diffs
                  if d["golden_key"] == m["erp_contract_without_oa_request"])
    assert reason == "no OA request id"


@pytest.mark.sqlite
@pytest.mark.parametrize("project", DB_BACKENDS[:1], indirect=True)
def test_contract_ending_before_it_starts_is_held(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    htbh = m["contracts_missing_in_erp"][0]
    form = sa.table("formtable_main_15", sa.column("htbh"), sa.column("jsrq"))
    engine = sa.create_engine(config.connection("oa").sqlalchemy_url())
    with engine.begin() as conn:
        conn.execute(sa.update(form).where(form.c.htbh == htbh).values(jsrq="2020-01-01"))
    engine.dispose()
    result = run_flows(config, flows=["contract_archive"]).flows[0]
    assert htbh not in result.created_numbers and result.unmapped == 1
    waiting = audit_views(config, ["contract_archive"])["req_without_po"]
    assert waiting.loc[waiting["state"] == "approved", "reason"].str.contains("dtEndDate 2020-01-01 is before").all()
