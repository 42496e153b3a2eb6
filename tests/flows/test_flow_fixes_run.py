"""Fixes of the review of the approval flows (/tmp/review-flows.md #3, #4, #6, #7, #8, #9), on real SQLite databases.

- an unexpected error in one flow fails that flow only, and the run is always finished;
- `erpoa sync` says (exit code, JSON status) when the flows fail or a flow file is invalid; a broken file
  disables only its own flow;
- `exists:` holds a request whose vendor, item or requester the ERP does not know;
- `flows check` reports every problem at once (schema and cross-checks), and hashed columns the header
  query does not select;
- quarantine rows of flows carry NULL (not "nan") for empty values and name the line of a line problem.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from etl import faults
from etl.cli import flow_cmds
from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.demo.generate import DemoSize
from etl.engine.lock import entity_lock
from etl.errors import ConfigError
from etl.flows import load_flows
from etl.flows.model import FieldSpec, apply_fields
from etl.flows.run import run_flows
from etl.store.repo import Store
from tests.helpers.project import make_project, source_sql

REPO = Path(__file__).resolve().parents[2]
SIZE = DemoSize(departments=12, employees=60, requisitions=36, contracts=10)
PO_FILE = "mappings/flows/purchase_order.yaml"


@pytest.fixture
def project(tmp_path: Path) -> tuple[ProjectConfig, dict[str, Any]]:
    folder = tmp_path / "p"
    config, manifest = make_project(folder, sqlite_urls(folder), size=SIZE, seed=11)
    yield config, manifest
    dispose_all()


def _edit(config: ProjectConfig, name: str, *edits: tuple[str, str]) -> None:
    path = config.resolve(config.mappings) / "flows" / name
    text = path.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")


def _runs(config: ProjectConfig) -> dict[str, tuple[str, str | None]]:
    return {r[0]: (r[1], r[2]) for r in source_sql(config, "recon", "SELECT run_id, status, message FROM erpoa_run")}


def _publishable(config: ProjectConfig, m: dict[str, Any]) -> list[str]:
    """Approved requisitions a run creates a PO for (not held, no PO keyed in before)."""
    negative = {d["sqdh"] for d in m["negative_quantity_lines"]}
    forms = source_sql(config, "oa", "SELECT requestid, sqdh FROM formtable_main_12")
    held = {str(r) for r, no in forms if no in negative}
    held |= {str(m["requisition_unknown_requester"]["requestid"])} | {str(r) for r in m["force_archived_requests"]}
    held |= {str(p["requestid"]) for p in m["purchase_orders_from_oa"]}
    return sorted({str(r) for r in m["requisition_requests"]["approved"]} - held)


def _po_requests(config: ProjectConfig) -> set[str]:
    return {str(r[0]) for r in source_sql(config, "erp", 'SELECT "cDefine10" FROM "PO_Pomain"') if r[0] is not None}


# --------------------------------------------------------------------------- #3 an unexpected error in one flow


def _raise_at(monkeypatch: pytest.MonkeyPatch, name: str, error: BaseException) -> None:
    """Fault injection: the first time the flows reach the point `name`, raise `error` (a bug, an interrupt)."""
    real = faults.point
    hits = {"n": 0}

    def point(at: str) -> None:
        if at == name:
            hits["n"] += 1
            if hits["n"] == 1:
                raise error
        real(at)

    monkeypatch.setattr(faults, "point", point)


@pytest.mark.sqlite
def test_an_unexpected_error_fails_its_flow_only_and_the_run_is_finished(
        project: tuple[ProjectConfig, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    config, m = project
    secret = "postgresql+psycopg://erpoa:hunter2@oa.example/ecology"
    # contract_archive runs first (file order): it reads its approvals, then meets a bug
    _raise_at(monkeypatch, "flow.approvals_read", RuntimeError(f"boom while reading {secret}"))
    summary = run_flows(config)
    by_flow = {r.flow: r for r in summary.flows}
    broken, other = by_flow["contract_archive"], by_flow["purchase_order"]
    assert (broken.status, broken.error, broken.exit_code) == ("failed", "RuntimeError", 1)
    assert broken.message is not None and broken.message.startswith("internal error: RuntimeError: boom")
    assert "hunter2" not in broken.message and "hunter2" not in (summary.message or "")
    assert other.status == "success" and other.created > 0
    assert set(_publishable(config, m)) <= _po_requests(config)
    assert summary.status == "partial" and summary.exit_code == 1
    status, message = _runs(config)[summary.run_id]
    assert status == "partial" and "internal error" in (message or "") and "hunter2" not in (message or "")


@pytest.mark.sqlite
def test_an_interrupt_finishes_the_run_as_failed(project: tuple[ProjectConfig, dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = project
    _raise_at(monkeypatch, "flow.differences_recorded", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_flows(config)
    assert [s for s, _ in _runs(config).values()] == ["failed"]
    assert "interrupted: KeyboardInterrupt" in (next(iter(_runs(config).values()))[1] or "")


# --------------------------------------------------------------------------- #4 sync's exit code and status


def _sync(config: ProjectConfig, *args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["sync", "--config", str(config.config_path), "--json", *args])
    dispose_all()
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.mark.sqlite
def test_sync_exits_2_when_a_flow_file_is_invalid_and_runs_the_other_flows(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    before = _po_requests(config)
    _edit(config, "purchase_order.yaml", ("[nfkc, trim, upper], required: true, length: 20",
                                          "[nfkc, trimm, upper], required: true, length: 20"))
    code, out, err = _sync(config)
    assert code == 2 and out["status"] == "partial" and out["exit_code"] == 2
    assert all(e["status"] == "success" for e in out["entities"])
    flows = {r["flow"]: r for r in out["flows"]["flows"]}
    assert flows["contract_archive"]["status"] == "success" and flows["contract_archive"]["adopted"] > 0
    assert (flows["purchase_order"]["status"], flows["purchase_order"]["error"]) == ("failed", "ConfigError")
    assert out["flows"]["status"] == "partial" and out["flows"]["exit_code"] == 2
    located = f"{PO_FILE}:64:46 fields.header.cVenCode.transforms[1]: transform 'trimm' not found"
    assert any(i.startswith(located) for i in out["flows"]["issues"]), out["flows"]["issues"]
    assert located in err
    assert _po_requests(config) == before
    # `flows check` and `flows run` still refuse the project as a whole
    root = typer.Typer()
    root.callback()(lambda: None)
    flow_cmds.register(root)
    for args in (["flows", "check"], ["flows", "run"]):
        assert CliRunner().invoke(root, [*args, "--config", str(config.config_path)]).exit_code == 2


@pytest.mark.sqlite
def test_sync_exit_code_follows_the_first_failed_flow(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    code, out, _ = _sync(config, "--no-flows")
    assert code == 0 and out["status"] == "success" and out["flows"] is None
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    # another process runs the purchase order flow: its lock is taken, the contracts still run
    with entity_lock(store.engine, "flow:purchase_order", "erp_write:PO_Pomain", "other-run"):
        code, out, _ = _sync(config)
    store.engine.dispose()
    flows = {r["flow"]: r for r in out["flows"]["flows"]}
    assert (flows["purchase_order"]["error"], flows["purchase_order"]["exit_code"]) == ("LockedError", 5)
    assert flows["contract_archive"]["status"] == "success"
    assert code == 5 and out["status"] == "partial" and out["exit_code"] == 5
    code, out, _ = _sync(config)
    assert code == 0 and out["status"] == "success" and out["flows"]["status"] == "success"


# --------------------------------------------------------------------------- #6 exists: unknown ERP master data


@pytest.mark.sqlite
def test_unknown_vendor_item_and_requester_are_held(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, m = project
    vendor, item, person, fine = _publishable(config, m)[:4]
    source_sql(config, "oa", "UPDATE formtable_main_12 SET gys = 'ZZ999' WHERE requestid = :r", r=int(vendor))
    source_sql(config, "oa", "UPDATE formtable_main_12_dt1 SET wlbm = 'NOPE-1' WHERE xh = 2 AND mainid = "
         "(SELECT id FROM formtable_main_12 WHERE requestid = :r)", r=int(item))
    # a requester HR knows (HrmResource.workcode) but U8 does not (hr_hi_person)
    code = source_sql(config, "oa", 'SELECT r.workcode FROM formtable_main_12 m JOIN "HrmResource" r ON r.id = m.sqr '
                "WHERE m.requestid = :r", r=int(person))[0][0]
    source_sql(config, "erp", 'DELETE FROM hr_hi_person WHERE "cPsn_Num" = :c', c=f"{int(code.strip()):06d}")
    result = run_flows(config, flows=["purchase_order"]).flows[0]
    assert result.status == "success"
    pos = _po_requests(config)
    assert fine in pos and not {vendor, item, person} & pos
    rows = source_sql(config, "recon", "SELECT src_id, field, rule, value, reason FROM erpoa_quarantine "
                "WHERE entity = 'purchase_order' AND status = 'open'")
    found = {r[0]: r[1:] for r in rows if r[0] in (vendor, item, person)}
    assert found[vendor] == ("cVenCode", "unknown_cVenCode", "ZZ999",
                             "cVenCode 'ZZ999' not found in the ERP's Vendor.cVenCode")
    assert found[item] == ("lines[2].cInvCode", "unknown_cInvCode", "NOPE-1",
                           "line 2: cInvCode 'NOPE-1' not found in the ERP's Inventory.cInvCode")
    assert found[person][:2] == ("cPersonCode", "unknown_cPersonCode")
    assert "not found in the ERP's hr_hi_person.cPsn_Num" in found[person][3]
    # fixed in the OA: the next run creates the PO and resolves the quarantine row
    source_sql(config, "oa", "UPDATE formtable_main_12 SET gys = (SELECT gys FROM formtable_main_12 "
               "WHERE requestid = :f) WHERE requestid = :r", r=int(vendor), f=int(fine))
    run_flows(config, flows=["purchase_order"])
    assert vendor in _po_requests(config)


@pytest.mark.sqlite
def test_an_exists_table_or_column_the_erp_lacks_is_a_located_config_error(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    _edit(config, "purchase_order.yaml", ("exists: {table: Vendor, column: cVenCode}",
                                          "exists: {table: Vendors, column: cVenCode}"),
          ("exists: {table: Inventory, column: cInvCode}", "exists: {table: Inventory, column: cInvCod}"))
    summary = run_flows(config)
    result = {r.flow: r for r in summary.flows}["purchase_order"]
    assert (result.status, result.error, result.exit_code) == ("failed", "ConfigError", 2)
    assert re.search(rf"{PO_FILE}:\d+:\d+ fields\.header\.cVenCode\.exists\.table: table 'Vendors' not found; "
                     "did you mean 'Vendor'", result.message or ""), result.message
    assert re.search(rf"{PO_FILE}:\d+:\d+ fields\.lines\.cInvCode\.exists\.column: column of Inventory 'cInvCod' "
                     "not found; did you mean 'cInvCode'", result.message or ""), result.message
    assert summary.exit_code == 2 and {r.flow: r.status for r in summary.flows}["contract_archive"] == "success"


@pytest.mark.unit
def test_exists_is_validated_with_its_location(tmp_path: Path) -> None:
    config = load_project(write_project(tmp_path / "p"))
    _edit(config, "purchase_order.yaml",
          ("exists: {table: Vendor, column: cVenCode}", "exists: {table: Vendor, colum: cVenCode}"),
          ("exists: {table: hr_hi_person, column: cPsn_Num}", "exists: {table: 'hr; drop', column: cPsn_Num}"),
          ("exists: {table: Inventory, column: cInvCode}",
           "exists: {table: Inventory, column: cInvCode, connection: erp_read}"))
    with pytest.raises(ConfigError) as caught:
        load_flows(config)
    issues = [str(i) for i in caught.value.issues]
    assert any(re.match(rf"{PO_FILE}:\d+:\d+ fields\.header\.cVenCode\.exists\.colum: unknown key 'colum'; "
                        "did you mean 'column'", i) for i in issues), issues
    assert any(re.match(rf"{PO_FILE}:\d+:\d+ fields\.header\.cPersonCode\.exists: table 'hr; drop' is not a plain "
                        r"identifier \(letters, digits, _ ; optionally schema\.table\)$", i) for i in issues), issues
    assert any(re.match(rf"{PO_FILE}:\d+:\d+ fields\.lines\.cInvCode\.exists\.connection: connection 'erp_read' not "
                        "found", i) for i in issues), issues


@pytest.mark.unit
def test_apply_fields_checks_exists_against_the_values_passed() -> None:
    from etl.flows.model import ExistsSpec  # imported here: the test must fail, not break the module, without it

    spec = {"cVenCode": FieldSpec.model_validate({"from": "gys", "exists": {"table": "Vendor", "column": "cVenCode"}})}
    raw = pd.DataFrame({"gys": ["V01", " V02 ", "ZZ9", None]}, index=["1", "2", "3", "4"])
    known = {ExistsSpec(table="Vendor", column="cVenCode").key: {"V01", "V02"}}
    _, problems = apply_fields(raw, spec, known, as_of=date(2026, 1, 1), timezone="Asia/Shanghai")
    assert problems[["row", "rule", "value"]].to_numpy().tolist() == [["3", "unknown_cVenCode", "ZZ9"]]
    _, unchecked = apply_fields(raw, spec, {}, as_of=date(2026, 1, 1), timezone="Asia/Shanghai")
    assert unchecked.empty


# --------------------------------------------------------------------------- #7 and #8 flows check


@pytest.mark.unit
def test_check_reports_schema_and_cross_check_issues_at_once(tmp_path: Path) -> None:
    config = load_project(write_project(tmp_path / "p"))
    _edit(config, "purchase_order.yaml", ("workflow_id: 12", "workflow_id: twelve"),
          ("table: erpoa_po_link", "table: erpoa po link"),
          ("[nfkc, trim, upper], required: true, length: 20", "[nfkc, trimm, upper], required: true, length: 20"),
          ("compare_lines: [iQuantity, iSum]", "compare_lines: [iQuantity, iSumm]"),
          ("cDepCode:\n      from: departmentcode", "cDepCode:\n      from: departmentcode\n      type: text"))
    with pytest.raises(ConfigError) as caught:
        load_flows(config)
    issues = {i.path: i.message for i in caught.value.issues}
    assert "twelve" in issues["approval.ecology.workflow_id"]
    assert issues["target.link"] == ("table 'erpoa po link' is not a plain identifier (letters, digits, _ ; "
                                     "optionally schema.table)")
    assert issues["fields.header.cVenCode.transforms[1]"].startswith("transform 'trimm' not found")
    assert issues["audit.compare_lines[1]"].startswith("mapped column 'iSumm' not found; did you mean 'iSum'?")
    assert "fields.header.cDepCode.type" in issues
    assert all(str(i).startswith(f"{PO_FILE}:") for i in caught.value.issues)


@pytest.mark.unit
def test_identifier_message_offers_query_only_where_there_is_one(tmp_path: Path) -> None:
    config = load_project(write_project(tmp_path / "p"))
    _edit(config, "purchase_order.yaml", ("    id: id\n    request_id: requestid",
                                          "    id: form id\n    request_id: requestid"),
          ("table: erpoa_po_link", "table: erpoa-po-link"))
    with pytest.raises(ConfigError) as caught:
        load_flows(config)
    plain = "is not a plain identifier (letters, digits, _ ; optionally schema.table)"
    assert {i.path: i.message for i in caught.value.issues} == {
        "source.header": f"id 'form id' {plain}; use `query:` for anything more complex",  # the header has one
        "target.link": f"table 'erpoa-po-link' {plain}",  # the link table has no `query:`
    }


@pytest.mark.unit
def test_check_reports_hashed_columns_the_header_query_does_not_select(tmp_path: Path) -> None:
    config = load_project(write_project(tmp_path / "p"))
    _edit(config, "purchase_order.yaml", ("hash_header: [sqr, sqbm, gys, bz, hjje]",
                                          "hash_header: [sqr, sqbm, gys, bz, hjjee]"),
          ("request_id: requestid             # the OA", "request_id: reqid             # the OA"))
    with pytest.raises(ConfigError) as caught:
        load_flows(config)
    issues = [str(i) for i in caught.value.issues]
    assert any(re.match(rf"{PO_FILE}:\d+:\d+ changes\.hash_header\[4\]: column 'hjjee' not found; did you mean "
                        r"'hjje'\? known: .*\(the columns source\.header\.query selects\)$", i) for i in issues), issues
    assert any(" source.header.request_id: column 'reqid' not found" in i for i in issues), issues
    assert len(issues) == 2


@pytest.mark.unit
def test_header_query_columns() -> None:
    from etl.flows import query_columns

    assert query_columns("SELECT m.id, m.requestid, r.workcode, COUNT(*) AS n, x y, [a b], \"C\" FROM t m") == [
        "id", "requestid", "workcode", "n", "y", "a b", "C"]
    for unknown in ("SELECT * FROM t", "SELECT m.*, r.workcode FROM t", "SELECT a + b FROM t",
                    "SELECT a FROM t UNION SELECT b FROM u", "WITH q AS (SELECT 1 AS a) SELECT a FROM q"):
        assert query_columns(unknown) is None, unknown


# --------------------------------------------------------------------------- #9 quarantine values and lines


@pytest.mark.unit
def test_empty_values_are_none_and_line_problems_name_their_line() -> None:
    from etl.flows.model import LINE_OWNER

    fields = {"iQuantity": FieldSpec.model_validate({"from": "sl", "type": "decimal", "scale": 2,
                                                     "required": True, "check": "positive"})}
    lines = pd.DataFrame({"sl": [3.0, None, -2.0, 1.0], LINE_OWNER: ["7", "7", "7", "8"]})
    _, problems = apply_fields(lines, fields, {}, as_of=date(2026, 1, 1), timezone="Asia/Shanghai")
    rows = problems.sort_values("row").to_dict(orient="records")
    assert [(r["row"], r["field"], r["rule"], r["value"]) for r in rows] == [
        (1, "lines[2].iQuantity", "required", None), (2, "lines[3].iQuantity", "positive", "-2")]
    assert rows[1]["reason"] == "line 3: iQuantity must be positive"
    header = pd.DataFrame({"sl": [None]}, index=["100039"])
    _, problems = apply_fields(header, fields, {}, as_of=date(2026, 1, 1), timezone="Asia/Shanghai")
    assert problems.at[0, "value"] is None and problems.at[0, "field"] == "iQuantity"


@pytest.mark.sqlite
def test_quarantine_rows_of_a_run_name_the_line(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, m = project
    run_flows(config, flows=["purchase_order"])
    rows = source_sql(config, "recon", "SELECT src_id, field, rule, value, reason FROM erpoa_quarantine "
                "WHERE entity = 'purchase_order' AND status = 'open'")
    ids = {no: str(r) for r, no in source_sql(config, "oa", "SELECT requestid, sqdh FROM formtable_main_12")}
    for bad in m["negative_quantity_lines"]:
        n = bad["line_no"]
        assert (ids[bad["sqdh"]], f"lines[{n}].iQuantity", "positive") in {r[:3] for r in rows}
        assert any(r[0] == ids[bad["sqdh"]] and r[4] == f"line {n}: iQuantity must be positive" for r in rows)
    unknown = str(m["requisition_unknown_requester"]["requestid"])
    assert [r[3] for r in rows if r[0] == unknown] == [None]


@pytest.mark.sqlite
def test_flows_run_exits_with_the_failed_flows_code(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    args = ["flows", "run", "--config", str(config.config_path), "--json"]
    assert CliRunner().invoke(app, args).exit_code == 0  # creates the store
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    with entity_lock(store.engine, "flow:purchase_order", "erp_write:PO_Pomain", "other-run"):
        done = CliRunner().invoke(app, args)
    store.engine.dispose()
    assert done.exit_code == 5, done.stdout  # locked, as `erpoa sync` says it (was 1 for any failure)
    assert json.loads(done.stdout)["exit_code"] == 5


@pytest.mark.sqlite
def test_quarantine_list_shows_an_empty_value_as_empty_not_nan(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, m = project
    run_flows(config, flows=["purchase_order"])
    unknown = str(m["requisition_unknown_requester"]["requestid"])
    done = CliRunner().invoke(app, ["quarantine", "list", "--entity", "purchase_order", "--config",
                                    str(config.config_path)], terminal_width=400)
    assert done.exit_code == 0, done.output
    line = next(row for row in done.stdout.splitlines() if unknown in row and "cPersonCode" in row)
    assert "nan" not in line.split(), line


# --------------------------------------------------------------------------- a linked request put on hold


@pytest.mark.sqlite
def test_a_linked_request_put_on_hold_is_a_difference_not_a_cancellation(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, m = project
    run_flows(config, flows=["purchase_order"])
    rid = _publishable(config, m)[0]
    assert rid in _po_requests(config)
    # force-archived (强制归档, logtype e) with its approval gone: e-cology's `force_archived: hold`
    source_sql(config, "oa", "UPDATE workflow_requestlog SET logtype = 'e' WHERE requestid = :r AND logtype = '0'",
         r=int(rid))

    result = run_flows(config, flows=["purchase_order"]).flows[0]

    assert (result.created, result.cancelled, result.amended) == (0, 0, 0)
    memo = source_sql(config, "erp", 'SELECT "cMemo" FROM "PO_Pomain" WHERE "cDefine10" = :r', r=rid)
    assert len(memo) == 1 and not str(memo[0][0] or "").startswith("[OA")  # not flagged as withdrawn
    diffs = source_sql(config, "recon", "SELECT class, detail FROM erpoa_difference WHERE entity = 'purchase_order' "
                 "AND class LIKE 'approval_%'")
    assert [(c, json.loads(d)["state"], json.loads(d)["oa_request_id"]) for c, d in diffs] == [
        ("approval_held", "held", rid)]
    listed = CliRunner().invoke(app, ["reconcile", "list", "--class", "approval_held", "--config",
                                      str(config.config_path)])
    assert listed.exit_code == 0, listed.output
