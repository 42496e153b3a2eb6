"""Fixes to the flows' audit and approval reading found by exploratory test C (session 22).

- a linked document deleted (or renumbered) in the ERP is reported under `req_without_po`, and closes when back;
- a force-archived (强制归档) request names no approver: the administrator and time are `archived_by`/`archived_at`;
- `approval_amended` says which fields differ between the OA form now and the document, with both values;
- flow amounts are text with two decimals (`10.00`), not floats (`10.0`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.config.project import ProjectConfig, load_project
from etl.flows.approval import read_approvals
from etl.flows.audit import amount_text, audit_views
from etl.flows.run import run_flows
from etl.report import labels
from etl.store.repo import Store
from tests.helpers.crash import build_sources, new_project

pytestmark = pytest.mark.sqlite


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo ERP and OA on SQLite, built once for the module (each test copies them)."""
    return build_sources(tmp_path_factory.mktemp("s22_sources"))


@pytest.fixture
def project(sources: Path, tmp_path: Path) -> ProjectConfig:
    return load_project(new_project(sources, tmp_path / "p"))


def sql(config: ProjectConfig, conn_name: str, statement: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [dict(r) for r in result.mappings()] if result.returns_rows else []
    finally:
        engine.dispose()


def flow_diffs(config: ProjectConfig, cls: str) -> dict[str, dict[str, Any]]:
    """Stored differences of the purchase-order flow of one class, by business key."""
    found = sql(config, "recon", "SELECT * FROM erpoa_difference WHERE entity = 'purchase_order' AND class = :c",
                c=cls)
    return {r["golden_key"]: r for r in found}


def created_link(config: ProjectConfig) -> dict[str, Any]:
    """A link of a PO the flow created (with its lines)."""
    found = sql(config, "erp", "SELECT * FROM erpoa_po_link WHERE origin = 'created' ORDER BY oa_request_id")
    assert found, "the flow created POs"
    return found[0]


# --------------------------------------------------------------------------- finding 1: a deleted PO


def test_a_po_deleted_in_the_erp_is_reported_and_closes_when_it_is_back(project: ProjectConfig) -> None:
    config = project
    assert run_flows(config, flows=["purchase_order"]).status == "success"
    link = created_link(config)
    rid, po = str(link["oa_request_id"]), link["po_no"]
    head = sql(config, "erp", 'SELECT * FROM "PO_Pomain" WHERE "cPOID" = :n', n=po)[0]
    lines = sql(config, "erp", 'SELECT * FROM "PO_Podetails" WHERE "POID" = :i', i=head["POID"])
    # a buyer deletes the PO in U8
    sql(config, "erp", 'DELETE FROM "PO_Podetails" WHERE "POID" = :i', i=head["POID"])
    sql(config, "erp", 'DELETE FROM "PO_Pomain" WHERE "cPOID" = :n', n=po)

    again = run_flows(config, flows=["purchase_order"]).flows[0]
    assert again.created == 0  # exactly once: the flow does not make a second PO
    waiting = audit_views(config, ["purchase_order"])["req_without_po"].set_index("request_id")
    assert waiting.at[rid, "reason"] == f"linked PO {po} no longer exists in the ERP"
    assert waiting.at[rid, "state"] == "approved" and waiting.at[rid, "request_no"] == link["request_no"]
    stored = flow_diffs(config, "audit_req_without_po")[rid]
    assert stored["present"] and stored["status"] == "open"
    assert json.loads(stored["detail"])["reason"] == f"linked PO {po} no longer exists in the ERP"
    assert labels.describe(stored["detail"], "zh-CN").endswith(f"关联的采购订单 {po} 已不在ERP中")
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    links = store.xref("purchase_order", rid)  # both ways, no longer active
    assert {(x["source"], x["active"]) for x in links} == {("oa", False), ("erp", False)}, links

    # the PO is put back: the difference closes
    sql(config, "erp", 'INSERT INTO "PO_Pomain" (' + ", ".join(f'"{k}"' for k in head) + ") VALUES ("
        + ", ".join(f":{k}" for k in head) + ")", **head)
    for line in lines:
        sql(config, "erp", 'INSERT INTO "PO_Podetails" (' + ", ".join(f'"{k}"' for k in line) + ") VALUES ("
            + ", ".join(f":{k}" for k in line) + ")", **line)
    assert run_flows(config, flows=["purchase_order"]).status == "success"
    assert rid not in set(audit_views(config, ["purchase_order"])["req_without_po"]["request_id"])
    closed = flow_diffs(config, "audit_req_without_po")[rid]
    assert not closed["present"] and closed["status"] == "fixed"
    assert {x["active"] for x in store.xref("purchase_order", po)} == {True}
    store.engine.dispose()


# --------------------------------------------------------------------------- finding 5: force-archived requests


def _approvals(config: ProjectConfig, force_archived: str = "hold") -> pd.DataFrame:
    from etl.flows import load_flows

    spec = load_flows(config).flows["purchase_order"].approval
    spec = spec.model_copy(update={"force_archived": force_archived})
    engine = sa.create_engine(config.connection("oa").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            return read_approvals(conn, spec)
    finally:
        engine.dispose()


def _forced(config: ProjectConfig) -> dict[str, dict[str, Any]]:
    """Requests whose only decision since the last submit is a force-archive (logtype 'e'), with its operator."""
    found = sql(config, "oa", "SELECT requestid, operator, operatedate, operatetime FROM workflow_requestlog l "
                "WHERE logtype = 'e' AND NOT EXISTS (SELECT 1 FROM workflow_requestlog a WHERE "
                "a.requestid = l.requestid AND a.logtype = '0')")
    return {str(r["requestid"]): r for r in found}


def test_a_force_archived_request_names_no_approver(project: ProjectConfig) -> None:
    config = project
    forced = _forced(config)
    assert forced, "the demo force-archives some requests"
    appr = _approvals(config)
    held = appr.loc[list(forced)]
    assert set(held["state"]) == {"held"}
    assert held["approver"].isna().all() and held["approved_at"].isna().all() and held["approver_name"].isna().all()
    for rid, entry in forced.items():
        assert pd.Timestamp(held.at[rid, "archived_at"]) == pd.Timestamp(f"{entry['operatedate']} "
                                                                         f"{entry['operatetime']}")
        assert held.at[rid, "archived_by"] and held.at[rid, "archived_by"] != "oa:None"
    approved = appr[appr["state"] == "approved"]
    assert approved["approver"].notna().all() and approved["approved_at"].notna().all()

    # `force_archived: approve` makes the administrator's archive the approval, as configured
    lenient = _approvals(config, "approve").loc[list(forced)]
    assert set(lenient["state"]) == {"approved"} and lenient["approver"].notna().all()

    assert run_flows(config, flows=["purchase_order"]).status == "success"
    stored = flow_diffs(config, "audit_req_without_po")
    rid = sorted(forced)[0]
    detail = json.loads(stored[rid]["detail"])
    assert detail["approver"] is None and detail["approved_at"] is None
    assert detail["archived_by"] == held.at[rid, "archived_by"]
    zh, en = labels.describe(detail, "zh-CN"), labels.describe(detail, "en")
    assert "审批人" not in zh and "审批时间" not in zh and "强制归档" in zh and detail["archived_by"] in zh
    assert "by " + detail["archived_by"] in en and "not approved" in en and "(at " not in en


# --------------------------------------------------------------------------- finding 7: what an amendment changed


def test_an_amended_request_says_which_fields_changed(project: ProjectConfig) -> None:
    config = project
    assert run_flows(config, flows=["purchase_order"]).status == "success"
    link = created_link(config)
    rid, po = str(link["oa_request_id"]), link["po_no"]
    supplier = sql(config, "erp", 'SELECT "cVenCode" FROM "PO_Pomain" WHERE "cPOID" = :n', n=po)[0]["cVenCode"]
    other = next(r["cVenCode"] for r in sql(config, "erp", 'SELECT "cVenCode" FROM "Vendor"')
                 if r["cVenCode"] != supplier)
    first = sql(config, "oa", "SELECT d.id, d.sl FROM formtable_main_12_dt1 d JOIN formtable_main_12 m "
                "ON m.id = d.mainid WHERE m.requestid = :r ORDER BY d.xh", r=int(rid))[0]
    sql(config, "oa", "UPDATE formtable_main_12 SET gys = :g WHERE requestid = :r", g=other, r=int(rid))
    sql(config, "oa", "UPDATE formtable_main_12_dt1 SET sl = :q WHERE id = :i", q=float(first["sl"]) + 5,
        i=first["id"])

    assert run_flows(config, flows=["purchase_order"]).status == "success"
    stored = flow_diffs(config, "approval_amended")[po]
    changed = json.loads(stored["detail"])["changed"]
    by_field = {(c["line"], c["field"]): c for c in changed}
    assert by_field[(None, "cVenCode")] == {"field": "cVenCode", "line": None, "erp": supplier, "oa": other}
    quantity = by_field[(1, "iQuantity")]
    assert float(quantity["oa"]) - float(quantity["erp"]) == pytest.approx(5)
    assert (None, "cMemo") not in by_field  # the flow's own [OA已变更] flag in front of the memo is no change
    zh = labels.describe(stored["detail"], "zh-CN")
    assert f"供应商（cVenCode）：ERP单据为 {supplier}，OA现为 {other}" in zh and "第1行 数量（iQuantity）" in zh
    assert f"supplier (cVenCode): {supplier} in the ERP document, {other} in the OA now" in labels.describe(
        stored["detail"], "en")


# --------------------------------------------------------------------------- finding 16: amounts with 2 decimals


def test_amount_mismatch_values_have_two_decimals(project: ProjectConfig) -> None:
    config = project
    assert run_flows(config, flows=["purchase_order"]).status == "success"
    po = created_link(config)["po_no"]
    poid = sql(config, "erp", 'SELECT "POID" FROM "PO_Pomain" WHERE "cPOID" = :n', n=po)[0]["POID"]
    sql(config, "erp", 'UPDATE "PO_Podetails" SET "iSum" = 10 WHERE "POID" = :i AND "ivouchrowno" = 1', i=poid)
    assert run_flows(config, flows=["purchase_order"]).status == "success"
    stored = {r["field"]: r for r in sql(config, "recon", "SELECT * FROM erpoa_difference WHERE entity = "
                                         "'purchase_order' AND class = 'audit_amount_mismatch' AND golden_key = :k",
                                         k=po)}
    row = stored["line 1.iSum"]
    assert row["erp_value"] == "10.00"
    assert row["oa_value"] is not None and len(row["oa_value"].split(".")[1]) >= 2
    assert [amount_text(v) for v in (10.0, 55115.2, 1.2345, "3", None)] == ["10.00", "55115.20", "1.2345", "3.00",
                                                                           None]


def test_days_waiting_count_in_the_project_timezone(project: ProjectConfig) -> None:
    """Approval and archive times are naive in `run.timezone`; the days waiting since were counted from the
    server's clock, so a request archived a minute ago in a zone ahead of the server waited -1 days."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import yaml

    data = yaml.safe_load(project.config_path.read_text(encoding="utf-8"))
    data.setdefault("run", {})["timezone"] = "Pacific/Kiritimati"  # UTC+14: ahead of any server's clock
    project.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_project(project.config_path)
    rid = sorted(_forced(config))[0]
    just_now = datetime.now(ZoneInfo("Pacific/Kiritimati")).replace(tzinfo=None) - timedelta(minutes=1)
    sql(config, "oa", "UPDATE workflow_requestlog SET operatedate = :d, operatetime = :t "
        "WHERE requestid = :r AND logtype = 'e'", d=just_now.strftime("%Y-%m-%d"), t=just_now.strftime("%H:%M:%S"),
        r=int(rid))
    waiting = audit_views(config, ["purchase_order"])["req_without_po"].set_index("request_id")
    assert int(waiting.at[rid, "waiting_days"]) == 0, waiting.loc[rid]
