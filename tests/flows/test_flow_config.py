"""Flow files: the demo ones load; broken ones give `file:line:col key.path: message` and exit code 2.

Also the pure parts: document numbers, and the approval engines other than e-cology
(status field, Flowable) on small hand-made tables.
"""

from __future__ import annotations

import ast
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from etl.cli import flow_cmds
from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.demo.generate import DemoSize, create_oa, generate_demo
from etl.errors import ConfigError, DataError
from etl.flows import load_flows
from etl.flows.approval import read_approvals
from etl.flows.docno import format_number, next_number, sequence_of
from etl.flows.model import DocNoRule, EcologyApproval, FlowableApproval, StatusFieldApproval

REPO = Path(__file__).resolve().parents[2]
LOCATED = re.compile(r"^mappings/flows/broken\.yaml:\d+:\d+ [\w.\[\]]+: .+")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p")


def _broken(project: Path, edit: tuple[str, str]) -> list[str]:
    """Write the demo purchase_order flow with one edit as `broken.yaml`; return the issues."""
    text = (REPO / "mappings/flows/purchase_order.yaml").read_text(encoding="utf-8")
    assert edit[0] in text, edit[0]
    folder = project.parent / "mappings/flows"
    for path in folder.glob("*.yaml"):
        path.unlink()
    (folder / "broken.yaml").write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_flows(load_project(project))
    return [str(i) for i in caught.value.issues]


@pytest.mark.unit
def test_demo_flows_load(project: Path) -> None:
    flows = load_flows(load_project(project))
    assert set(flows.flows) == {"purchase_order", "contract_archive"}
    po = flows.flows["purchase_order"]
    assert po.approval.engine == "ecology" and po.docno is not None and po.target.link.table == "erpoa_po_link"
    assert "department" in flows.code_tables


@pytest.mark.unit
def test_dag_has_one_task_per_flow(project: Path) -> None:
    tree = ast.parse((REPO / "dags/erpoa_approvals.py").read_text(encoding="utf-8"))
    flows = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "FLOWS")
    assert set(flows) == set(load_flows(load_project(project)).flows)


BROKEN = {
    "unknown_key": (("writeback:\n", "writback:\n"), "writback", "did you mean 'writeback'"),
    "bad_transform": (("[nfkc, trim, upper], required: true, length: 20", "[nfkc, trimm], required: true"),
                      "fields.header.cVenCode.transforms[1]", "transform 'trimm' not found"),
    "unknown_code_table": (("{lookup: department}", "{lookup: departments}"), "fields.header.cDepCode.transforms[3]",
                           "code table 'departments' not found"),
    "unknown_engine": (("engine: ecology", "engine: weaver"), "approval", "weaver"),
    "write_connection": (("  fallback_connection: oa             #", "  #"), "writeback.connection",
                         "connection 'oa_write' is not defined"),
    "writeback_hashed": (("field: erp_po_no", "field: gys"), "writeback.field", "mapped or hashed"),
    "negative_width": (("width: 4", "width: 0"), "docno.width", "expected a whole number from 1 to 10"),
    "bad_check": (("check: positive", "check: big"), "fields.lines.iQuantity.check", "positive"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_flow_files_are_located(case: str, project: Path) -> None:
    edit, path, message = BROKEN[case]
    issues = _broken(project, edit)
    hit = [i for i in issues if f" {path}" in i and message in i]
    assert hit, issues
    assert all(LOCATED.match(i) for i in hit), hit


@pytest.mark.unit
def test_yaml_syntax_error_is_located(project: Path) -> None:
    issues = _broken(project, ("  workflow_id: 12", "  workflow_id: [12"))
    assert any(re.match(r"^mappings/flows/broken\.yaml:\d+:\d+: YAML syntax error", i) for i in issues), issues


@pytest.mark.unit
def test_cli_check_and_run_exit_2_on_broken_files(project: Path) -> None:
    _broken(project, ("writeback:\n", "writback:\n"))
    root = typer.Typer()
    root.callback()(lambda: None)
    flow_cmds.register(root)
    runner = CliRunner()
    for args in (["flows", "check"], ["flows", "run"], ["flows", "audit"]):
        result = runner.invoke(root, [*args, "--config", str(project)])
        assert result.exit_code == 2, (args, result.output)
        assert "broken.yaml:" in result.output and "writback" in result.output
    result = runner.invoke(root, ["flows", "check", "--config", str(project), "--json"])
    assert result.exit_code == 2 and '"exit_code": 2' in result.output


@pytest.mark.unit
def test_document_numbers() -> None:
    rule = DocNoRule(prefix="PO", date_format="%Y%m%d", width=4)
    day = date(2026, 11, 24)
    assert format_number(rule, day, 1) == "PO202611240001"
    assert sequence_of(rule, day, "PO202611240017") == 17
    assert sequence_of(rule, day, "PO2026112400171") is None and sequence_of(rule, day, "PO2026110001") is None
    with pytest.raises(DataError):
        format_number(rule, day, 10_000)
    engine = sa.create_engine("sqlite://")
    po = sa.Table("PO_Pomain", sa.MetaData(), sa.Column("cPOID", sa.String(30)))
    po.create(engine)
    with engine.begin() as conn:
        conn.execute(po.insert(), [{"cPOID": n} for n in ("PO2026112401", "PO202611240007", "PO20261124ABCD",
                                                            "PO202611230099", "XPO202611240050")])
        assert next_number(conn, po.c.cPOID, rule, day) == "PO202611240008"
        assert next_number(conn, po.c.cPOID, rule, date(2026, 11, 25)) == "PO202611250001"


@pytest.fixture(scope="module")
def demo_oa(tmp_path_factory: pytest.TempPathFactory) -> tuple[sa.Engine, dict]:
    size = DemoSize(departments=12, employees=40, requisitions=30, contracts=8)
    url = f"sqlite:///{tmp_path_factory.mktemp('oa') / 'oa.db'}"
    create_oa(url, size, seed=5)
    return sa.create_engine(url), generate_demo(size, seed=5).manifest.to_dict()


@pytest.mark.sqlite
def test_status_field_engine(demo_oa: tuple[sa.Engine, dict]) -> None:
    engine, manifest = demo_oa
    spec = StatusFieldApproval(engine="status_field", table="workflow_requestbase", key="requestid", field="status",
                               approved=["归档"], rejected=["退回"], withdrawn=["撤回"], deleted_column="deleted",
                               where={"workflowid": 12}, approved_at=["lastoperatedate", "lastoperatetime"],
                               approver="lastoperator", users={"code_transforms": ["strip_zeros", {"pad_zeros": 6}]})
    with engine.connect() as conn:
        states = read_approvals(conn, spec)
    for name, ids in manifest["requisition_requests"].items():
        assert set(states.loc[[str(i) for i in ids], "state"]) == {name}, name
    approved = states[states["state"] == "approved"]
    assert approved["approved_at"].notna().all() and approved["approver"].str.fullmatch(r"\d{6}").all()


@pytest.mark.sqlite
def test_ecology_engine(demo_oa: tuple[sa.Engine, dict], tmp_path: Path) -> None:
    engine, manifest = demo_oa
    spec = EcologyApproval(engine="ecology", workflow_id=12)
    forced = {str(r) for r in manifest["force_archived_requests"]}
    returned, rejected = [r for r in sorted(manifest["requisition_requests"]["approved"]) if str(r) not in forced][:2]
    log = sa.table("workflow_requestlog", *map(sa.column, ("logid", "requestid", "operator", "operatedate",
                                                           "operatetime", "logtype")))
    with engine.begin() as conn:
        # 退回 to an intermediate node, approved again without a new 提交; and a late rejection
        conn.execute(log.insert(), [
            {"logid": 900_001, "requestid": returned, "operator": 2, "operatedate": "2026-12-01",
             "operatetime": "08:00:00", "logtype": "3"},
            {"logid": 900_002, "requestid": returned, "operator": 3, "operatedate": "2026-12-01",
             "operatetime": "09:00:00", "logtype": "0"},
            {"logid": 900_003, "requestid": rejected, "operator": 2, "operatedate": "2026-12-02",
             "operatetime": "08:00:00", "logtype": "3"},
        ])
    try:
        with engine.connect() as conn:
            states = read_approvals(conn, spec)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(log).where(log.c.logid >= 900_000))
    for name, ids in manifest["requisition_requests"].items():
        expected = {str(i): name for i in ids} | (dict.fromkeys(forced, "held") if name == "approved" else {})
        expected.update({str(rejected): "rejected"} if name == "approved" else {})
        assert states.loc[list(expected), "state"].to_dict() == expected, name
    assert states.at[str(returned), "approved_at"] == pd.Timestamp("2026-12-01 09:00:00")
    assert pd.isna(states.at[str(rejected), "approved_at"]) and pd.isna(states.at[str(rejected), "approver"])
    assert states.loc[states["state"] == "approved", "approver"].notna().all()


@pytest.mark.unit
def test_flowable_engine() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ACT_HI_PROCINST (ID_ TEXT, BUSINESS_KEY_ TEXT, PROC_DEF_ID_ TEXT, "
                             "START_TIME_ TIMESTAMP, END_TIME_ TIMESTAMP, DELETE_REASON_ TEXT)")
        conn.exec_driver_sql("CREATE TABLE ACT_HI_VARINST (PROC_INST_ID_ TEXT, NAME_ TEXT, TEXT_ TEXT)")
        conn.exec_driver_sql("CREATE TABLE ACT_HI_TASKINST (PROC_INST_ID_ TEXT, ASSIGNEE_ TEXT, END_TIME_ TIMESTAMP)")
        procs = [("p1", "R1", "2026-01-01", "2026-01-03", None), ("p2", "R2", "2026-01-01", "2026-01-02", None),
                 ("p3", "R3", "2026-01-01", None, None), ("p4", "R4", "2026-01-01", "2026-01-02", "withdrawn"),
                 ("p5", "R5", "2026-01-01", "2026-01-02", None), ("p6", "R5", "2026-02-01", "2026-02-03", None)]
        for pid, key, start, end, reason in procs:
            conn.exec_driver_sql("INSERT INTO ACT_HI_PROCINST VALUES (?, ?, 'purchase:3:77', ?, ?, ?)",
                                 (pid, key, start, end, reason))
        for pid, outcome in (("p1", "approve"), ("p2", "reject"), ("p5", "reject"), ("p6", "approve")):
            conn.exec_driver_sql("INSERT INTO ACT_HI_VARINST VALUES (?, 'outcome', ?)", (pid, outcome))
        for pid, who, end in (("p1", "li", "2026-01-02 10:00:00"), ("p1", "wang", "2026-01-03 09:30:00"),
                              ("p6", "zhao", "2026-02-03 08:00:00")):
            conn.exec_driver_sql("INSERT INTO ACT_HI_TASKINST VALUES (?, ?, ?)", (pid, who, end))
    spec = FlowableApproval(engine="flowable", process_key="purchase")
    with engine.connect() as conn:
        states = read_approvals(conn, spec)
    assert states["state"].to_dict() == {"R1": "approved", "R2": "rejected", "R3": "running", "R4": "withdrawn",
                                         "R5": "approved"}
    assert (states.at["R1", "approver"], str(states.at["R1", "approved_at"])) == ("oa:wang", "2026-01-03 09:30:00")
    assert states.at["R5", "approver"] == "oa:zhao"
