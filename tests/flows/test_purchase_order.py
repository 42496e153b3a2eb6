"""Purchase requisition -> purchase order on SQLite, PostgreSQL and MariaDB.

Approved requisitions get exactly one PO (lines, amounts, number format), nothing
else does; pre-existing POs carrying the request id are linked, not duplicated;
reruns create nothing; changes after creation are reported, not applied; a failed
write-back is reported and completed by the next run; `erpoa xref` works both ways.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.demo.anomalies import canonical_workcode
from etl.demo.generate import DemoSize
from etl.flows.run import run_flows
from etl.store.repo import Store
from tests.helpers.project import make_project, urls_for

SIZE = DemoSize(departments=12, employees=60, requisitions=36, contracts=10)
DB_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
PO, LINES, FORM, DT1 = "PO_Pomain", "PO_Podetails", "formtable_main_12", "formtable_main_12_dt1"


def select(config: ProjectConfig, conn_name: str, table: str, *columns: str, where: Any = None) -> list[dict]:
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    t = sa.table(table, *(sa.column(c) for c in columns))
    stmt = sa.select(*t.c)
    if where is not None:
        stmt = stmt.where(where(t))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]
    finally:
        engine.dispose()


def execute(config: ProjectConfig, conn_name: str, stmt: Any) -> None:
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    finally:
        engine.dispose()


def today(config: ProjectConfig) -> datetime:
    return datetime.now(ZoneInfo(config.run.timezone))


def expected_requests(config: ProjectConfig, m: dict) -> tuple[set[str], set[str]]:
    """(approved requisitions that must get a PO, approved ones that cannot: bad data or force-archived)."""
    approved = {str(r) for r in m["requisition_requests"]["approved"]}
    negative = {d["sqdh"] for d in m["negative_quantity_lines"]}
    forms = select(config, "oa", FORM, "requestid", "sqdh")
    held = {str(f["requestid"]) for f in forms if f["sqdh"] in negative}
    held |= {str(m["requisition_unknown_requester"]["requestid"])} | {str(r) for r in m["force_archived_requests"]}
    return approved - held, approved & held


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ProjectConfig, dict]:
    urls = urls_for(request.param, request, tmp_path / "p")
    config, manifest = make_project(tmp_path / "p", urls, size=SIZE, seed=11)
    return config, manifest


def pos_by_request(config: ProjectConfig) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in select(config, "erp", PO, "POID", "cPOID", "dPODate", "cVenCode", "cDepCode", "cPersonCode", "cMemo",
                      "cDefine10"):
        out.setdefault(str(row["cDefine10"]), []).append(row)
    return out


def lines_of(config: ProjectConfig, poid: int) -> list[tuple]:
    rows = select(config, "erp", LINES, "POID", "ivouchrowno", "cInvCode", "iQuantity", "iUnitPrice", "iSum",
                  where=lambda t: t.c["POID"] == poid)
    return sorted((r["ivouchrowno"], r["cInvCode"], float(r["iQuantity"]), float(r["iUnitPrice"]), float(r["iSum"]))
                  for r in rows)


@pytest.mark.parametrize("project", DB_BACKENDS, indirect=True)
def test_exactly_one_po_per_approved_requisition(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    day = today(config)
    taken = f"PO{day:%Y%m%d}0001"  # keyed in the ERP by a buyer today: the flow must not reuse the number
    execute(config, "erp", sa.table(PO, sa.column("POID"), sa.column("cPOID"), sa.column("cMemo")).insert().values(
        POID=999, cPOID=taken, cMemo="buyer"))
    must, cannot = expected_requests(config, m)
    preexisting = {str(p["requestid"]): p["cPOID"] for p in m["purchase_orders_from_oa"]}
    assert preexisting and set(preexisting) <= must

    summary = run_flows(config, flows=["purchase_order"])
    result = summary.flows[0]
    assert summary.status == "success", summary.message
    assert (result.created, result.adopted, result.unmapped) == (len(must) - len(preexisting), len(preexisting), 3)

    pos = pos_by_request(config)
    assert {r for r in pos if r != "None"} == must
    assert all(len(pos[r]) == 1 for r in must)
    for status in ("rejected", "withdrawn", "running", "deleted"):
        assert not {str(r) for r in m["requisition_requests"][status]} & set(pos), status
    assert not cannot & set(pos)
    assert {pos[r][0]["cPOID"] for r in preexisting} == set(preexisting.values())

    forms = {str(f["requestid"]): f for f in select(config, "oa", FORM, "id", "requestid", "gys", "sqr", "sqbm",
                                                    "erp_po_no")}
    people = {p["id"]: p["workcode"] for p in select(config, "oa", "HrmResource", "id", "workcode")}
    dept = {d["oa_id"]: d["erp_code"] for d in m["department_mapping"]}
    created = sorted(pos[r][0]["cPOID"] for r in must - set(preexisting))
    assert all(re.fullmatch(rf"PO{day:%Y%m%d}\d{{4}}", n) for n in created)
    assert [int(n[-4:]) for n in created] == list(range(2, len(created) + 2))
    for rid in must - set(preexisting):
        head, form = pos[rid][0], forms[rid]
        assert str(head["dPODate"])[:10] == f"{day:%Y-%m-%d}" and head["POID"] > 999
        assert (head["cVenCode"], head["cDepCode"], head["cPersonCode"]) == (
            form["gys"], dept[form["sqbm"]], canonical_workcode(people[form["sqr"]]))
        oa_lines = select(config, "oa", DT1, "mainid", "xh", "wlbm", "sl", "dj", "je",
                          where=lambda t, f=form: t.c.mainid == f["id"])
        expected = [(i, r["wlbm"], float(r["sl"]), float(r["dj"]), float(r["je"]))
                    for i, r in enumerate(sorted(oa_lines, key=lambda r: r["xh"]), start=1)]
        assert lines_of(config, head["POID"]) == expected
    for rid in must:
        assert forms[rid]["erp_po_no"] == pos[rid][0]["cPOID"]
    assert all(forms[r]["erp_po_no"] is None for r in set(forms) - must)

    links = {str(r["oa_request_id"]): r for r in select(config, "erp", "erpoa_po_link", "oa_request_id", "po_no",
                                                          "origin", "approved_at", "approver")}
    assert set(links) == must and {r for r, v in links.items() if v["origin"] == "adopted"} == set(preexisting)
    assert all(v["approved_at"] is not None and re.fullmatch(r"\d{6}", v["approver"]) for v in links.values())
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    rid = sorted(must)[0]
    both = store.xref("purchase_order", rid)
    assert {(x["source"], x["src_id"]) for x in both} == {("oa", rid), ("erp", links[rid]["po_no"])}
    assert both[0]["detail"]["approver"] == links[rid]["approver"] and both[0]["detail"]["approved_at"]
    store.engine.dispose()

    again = run_flows(config, flows=["purchase_order"]).flows[0]
    assert (again.created, again.adopted, again.written_back, again.status) == (0, 0, 0, "success")
    assert pos_by_request(config) == pos


@pytest.mark.parametrize("project", DB_BACKENDS, indirect=True)
def test_changes_after_creation_are_reported_not_applied(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    run_flows(config, flows=["purchase_order"])
    must, _ = expected_requests(config, m)
    adopted = {str(p["requestid"]) for p in m["purchase_orders_from_oa"]}
    amended, deleted, withdrawn = sorted(must - adopted)[:3]
    pos = pos_by_request(config)
    before = {r: lines_of(config, pos[r][0]["POID"]) for r in (amended, deleted, withdrawn)}
    form_id = next(f["id"] for f in select(config, "oa", FORM, "id", "requestid") if str(f["requestid"]) == amended)
    dt1 = sa.table(DT1, sa.column("mainid"), sa.column("sl"))
    execute(config, "oa", sa.update(dt1).where(dt1.c.mainid == form_id).values(sl=dt1.c.sl + 1))
    base = sa.table("workflow_requestbase", sa.column("requestid"), sa.column("deleted"),
                    sa.column("currentnodetype"))
    execute(config, "oa", sa.update(base).where(base.c.requestid == int(deleted)).values(deleted=1))
    execute(config, "oa", sa.update(base).where(base.c.requestid == int(withdrawn)).values(currentnodetype="0"))
    log = sa.table("workflow_requestlog", *(sa.column(c) for c in (
        "logid", "requestid", "operator", "operatedate", "operatetime", "logtype")))
    execute(config, "oa", log.insert().values(logid=999_999, requestid=int(withdrawn), operator=1,
                                              operatedate="2026-12-30", operatetime="09:00:00", logtype="7"))

    first = run_flows(config, flows=["purchase_order"]).flows[0]
    second = run_flows(config, flows=["purchase_order"]).flows[0]
    assert (first.created, first.amended, first.cancelled) == (0, 1, 2)
    assert (second.created, second.amended, second.cancelled) == (0, 1, 2)
    after = pos_by_request(config)
    for rid in (amended, deleted, withdrawn):
        assert len(after[rid]) == 1 and after[rid][0]["cPOID"] == pos[rid][0]["cPOID"]
        assert lines_of(config, after[rid][0]["POID"]) == before[rid]
    assert after[amended][0]["cMemo"].startswith("[OA已变更]") and not after[amended][0]["cMemo"].startswith(
        "[OA已变更][OA已变更]")
    assert after[deleted][0]["cMemo"].startswith("[OA已撤销]")
    diffs = select(config, "recon", "erpoa_difference", "diff_id", "entity", "class", "golden_key", "status",
                   "run_count", "detail", where=lambda t: t.c.entity == "purchase_order")
    changes = {(d["class"], d["golden_key"]): d for d in diffs if d["class"].startswith("approval_")}
    assert set(changes) == {("approval_amended", pos[amended][0]["cPOID"]),
                            ("approval_cancelled", pos[deleted][0]["cPOID"]),
                            ("approval_cancelled", pos[withdrawn][0]["cPOID"])}
    assert all(d["status"] == "open" and d["run_count"] == 2 for d in changes.values())
    states = {json.loads(d["detail"])["state"] for (c, _), d in changes.items() if c == "approval_cancelled"}
    assert states == {"deleted", "withdrawn"}


def _with_oa_write(config: ProjectConfig, url: str) -> ProjectConfig:
    assert config.config_path is not None
    data = yaml.safe_load(config.config_path.read_text(encoding="utf-8"))
    data["connections"]["oa_write"] = {"url": url}
    config.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    dispose_all()
    return load_project(config.config_path)


@pytest.mark.parametrize("project", DB_BACKENDS[:2], indirect=True)
def test_failed_writeback_is_reported_then_completed(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    oa_url = config.connection("oa").sqlalchemy_url()
    if oa_url.startswith("sqlite"):
        locked = oa_url.replace("sqlite:///", "sqlite:///file:") + "?mode=ro&uri=true"
    else:
        locked = oa_url + "%20-cdefault_transaction_read_only%3Don"
    config = _with_oa_write(config, locked)
    must, _ = expected_requests(config, m)

    summary = run_flows(config, flows=["purchase_order"])
    result = summary.flows[0]
    assert summary.status == "partial" and result.status == "partial"
    assert result.created + result.adopted == len(must) and result.writeback_pending == len(must)
    assert "write-back" in (result.message or "") and "retried on the next run" in (result.message or "")
    assert all(f["erp_po_no"] is None for f in select(config, "oa", FORM, "erp_po_no"))

    config = _with_oa_write(config, oa_url)
    result = run_flows(config, flows=["purchase_order"]).flows[0]
    assert (result.status, result.created, result.written_back, result.writeback_pending) == (
        "success", 0, len(must), 0)
    links = {str(r["oa_request_id"]): r["po_no"] for r in select(config, "erp", "erpoa_po_link", "oa_request_id",
                                                                   "po_no")}
    shown = {str(f["requestid"]): f["erp_po_no"] for f in select(config, "oa", FORM, "requestid", "erp_po_no")}
    assert {r: shown[r] for r in links} == links


@pytest.mark.parametrize("project", DB_BACKENDS[:1], indirect=True)
def test_xref_both_ways_via_cli(project: tuple[ProjectConfig, dict]) -> None:
    from etl.cli.app import app

    config, m = project
    run_flows(config, flows=["purchase_order"])
    must, _ = expected_requests(config, m)
    rid = sorted(must)[-1]
    po_no = pos_by_request(config)[rid][0]["cPOID"]
    runner = CliRunner()
    for key in (rid, po_no):
        result = runner.invoke(app, ["xref", "purchase_order", key, "--config", str(config.config_path), "--json"])
        assert result.exit_code == 0, result.output
        links = json.loads(result.output)["links"]
        assert {(x["source"], x["src_id"]) for x in links} == {("oa", rid), ("erp", po_no)}
        detail = links[0]["detail"]
        assert detail["po_no"] == po_no and detail["oa_request_id"] == rid
        assert detail["approved_at"] and re.fullmatch(r"\d{6}", detail["approver"]) and detail["approver_name"]
    human = runner.invoke(app, ["xref", "purchase_order", rid, "--config", str(config.config_path)])
    assert human.exit_code == 0 and po_no in human.output


@pytest.mark.parametrize("project", DB_BACKENDS[:1], indirect=True)
def test_dry_run_writes_nothing(project: tuple[ProjectConfig, dict]) -> None:
    config, m = project
    must, _ = expected_requests(config, m)
    summary = run_flows(config, dry_run=True)
    po = next(f for f in summary.flows if f.flow == "purchase_order")
    assert summary.status == "planned" and po.created + po.adopted == len(must)
    engine = sa.create_engine(config.connection("erp").sqlalchemy_url())
    assert not sa.inspect(engine).has_table("erpoa_po_link")
    engine.dispose()
    assert all(f["erp_po_no"] is None for f in select(config, "oa", FORM, "erp_po_no"))
    preexisting = {str(p["requestid"]) for p in m["purchase_orders_from_oa"]}
    assert {r for r in pos_by_request(config) if r != "None"} == preexisting


@pytest.mark.parametrize("project", DB_BACKENDS[:1], indirect=True)
def test_a_document_the_erp_refuses_is_held_and_the_rest_published(project: tuple[ProjectConfig, dict]) -> None:
    from etl.flows.audit import audit_views

    config, m = project
    must, _ = expected_requests(config, m)
    refused = sorted(must - {str(p["requestid"]) for p in m["purchase_orders_from_oa"]})[2]
    trigger = sa.text(f"CREATE TRIGGER refuse BEFORE INSERT ON PO_Pomain WHEN NEW.cDefine10 = '{refused}' "
                      "BEGIN SELECT RAISE(ABORT, 'vendor blocked'); END")
    execute(config, "erp", trigger)
    result = run_flows(config, flows=["purchase_order"]).flows[0]
    assert result.status == "partial" and result.refused == 1  # held, retried by the next run: exit 1
    assert set(pos_by_request(config)) - {"None"} == must - {refused}
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    held = store.quarantine(entity="purchase_order")
    assert set(held.loc[held["rule"] == "erp_refused", "src_id"]) == {refused}
    waiting = audit_views(config, ["purchase_order"])["req_without_po"].set_index("request_id")
    assert "vendor blocked" in waiting.at[refused, "reason"]

    execute(config, "erp", sa.text("DROP TRIGGER refuse"))
    again = run_flows(config, flows=["purchase_order"]).flows[0]
    assert again.created == 1 and set(pos_by_request(config)) - {"None"} == must
    assert store.quarantine(entity="purchase_order").query("rule == 'erp_refused'").empty
    store.engine.dispose()


@pytest.mark.parametrize("project", DB_BACKENDS[1:], indirect=True)
def test_a_write_back_table_the_oa_lacks_is_found_before_any_po(project: tuple[ProjectConfig, dict]) -> None:
    """On the servers, the failed read of the missing table must not spoil the reads that follow it."""
    config, _ = project
    path = config.resolve(config.mappings) / "flows" / "purchase_order.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  table: formtable_main_12\n  key: requestid",
                                 "  table: formtable_main_99\n  key: requestid", 1), encoding="utf-8")
    before = pos_by_request(config)  # the POs buyers keyed in
    result = run_flows(config, flows=["purchase_order"]).flows[0]
    assert result.status == "failed" and result.error == "ConfigError", result
    assert "writeback.table: table 'formtable_main_99' cannot be read in the OA" in (result.message or "")
    assert pos_by_request(config) == before
