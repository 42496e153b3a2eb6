"""Review fixes of the reconciliation report: personal data in reasons, Excel cells, labels, --class, tolerance text."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls
from etl.engine.build import mask_personal_data
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import run_sync
from etl.mapping import registry
from etl.mapping.loader import load_mappings
from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.registry import TransformContext
from etl.reconcile.compare import _mismatch_details
from etl.report import labels
from etl.report.build import ReportData, write_reports
from etl.report.excel import GAP_SHEET_COLUMNS, QUARANTINE_SHEET_COLUMNS, write_excel
from etl.validate.gate import _describe
from tests.conftest import REPO
from tests.helpers.project import TINY, execute_sql, make_project

pytestmark = pytest.mark.sqlite
ID_PATTERN = "[0-9]{17}[0-9X]"


def _all_text(url: str) -> str:
    """Every value of every table of a database, as text."""
    engine = create_engine(url)
    try:
        parts = []
        with engine.connect() as conn:
            for name in inspect(engine).get_table_names():
                quoted = engine.dialect.identifier_preparer.quote(name)
                parts.extend(repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {quoted}")))
        return "\n".join(parts)
    finally:
        engine.dispose()


def _employee_mapping() -> EntityMapping:
    return load_mappings(REPO / "mappings").entity("employee")


def _xlsx_text(path: Path) -> str:
    wb = load_workbook(path, read_only=True)
    return "\n".join(str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v)


@pytest.fixture(scope="module")
def bad_ids(tmp_path_factory: pytest.TempPathFactory):
    """A demo whose employee.id_number (pii) must match an ID pattern, with two ERP ID numbers broken."""
    folder = tmp_path_factory.mktemp("pii") / "project"
    urls = sqlite_urls(folder)
    config, _ = make_project(folder, urls, size=TINY)
    path = folder / "mappings" / "employee.yaml"
    spec = path.read_text(encoding="utf-8")
    plain = "id_number: {from: cPsnIDNum, transforms: [nfkc, trim, upper]}"
    assert plain in spec
    path.write_text(
        spec.replace(plain, plain.replace("upper]", f"upper, {{match: '{ID_PATTERN}'}}]")),
        encoding="utf-8",
    )
    engine = create_engine(urls["erp"])
    with engine.connect() as conn:
        people = conn.execute(text("SELECT cPsn_Num, cPsnIDNum FROM hr_hi_person ORDER BY cPsn_Num LIMIT 2")).all()
    engine.dispose()
    execute_sql(urls["erp"], "UPDATE hr_hi_person SET cPsnIDNum = cPsnIDNum || 'Y' WHERE cPsn_Num = :n",
                [{"n": n} for n, _ in people])
    broken = [f"{v}Y" for _, v in people]
    summary, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    paths = write_reports(config, summary.run_id)
    return config, urls, broken, paths


def test_reason_of_a_pii_field_quotes_no_full_id_number(bad_ids) -> None:
    config, urls, broken, paths = bad_ids
    runner = CliRunner()
    listed = runner.invoke(app, ["quarantine", "list", "--config", str(config.config_path), "--json"])
    assert listed.exit_code == 0, listed.output
    outputs = {
        "store": _all_text(urls["recon"]),
        "cli": listed.output,
        "html": paths["html"].read_text(encoding="utf-8"),
        "quarantine_csv": paths["quarantine_csv"].read_text(encoding="utf-8-sig"),
        "csv": paths["csv"].read_text(encoding="utf-8-sig"),
        "excel": _xlsx_text(paths["excel"]),
    }
    assert "does not match" in outputs["quarantine_csv"]  # the rows were quarantined by the match transform
    for name, content in outputs.items():
        for value in broken:
            assert value[:-1] not in content, f"{name} shows the ID number {value}"


def _match_reason(values: list[str], *, pii: bool) -> str:
    ctx = TransformContext(
        field="id_number", source="erp", frame=pd.DataFrame(), code_tables={}, as_of=date.today(), pii=pii
    )
    tdef = registry.get("match")
    tdef.fn(pd.Series(values, dtype="string"), registry.parse_args(tdef, {"pattern": ID_PATTERN}), ctx)
    return ctx.rejections[0].reason


def test_reason_of_a_pii_field_quotes_a_masked_value_of_its_own_row_only() -> None:
    assert _match_reason(["11010519491231002XY"], pii=True) == f"'1101***********02XY' does not match {ID_PATTERN}"
    same = _match_reason(["11010519491231002XY"] * 2, pii=True)
    assert same == f"2 values do not match {ID_PATTERN}, e.g. '1101***********02XY'"
    mixed = _match_reason(["11010519491231002XY", "310115198404288573Y"], pii=True)
    assert mixed == f"2 values do not match {ID_PATTERN}"
    assert "'310115198404288573Y'" in _match_reason(["11010519491231002XY", "310115198404288573Y"], pii=False)


def test_stored_reasons_of_pii_fields_are_masked_too() -> None:
    """Defence in depth: a reason quoting raw values (an older version, another transform) is masked on store."""
    frame = pd.DataFrame({
        "field": ["id_number", "id_number", "name"],
        "value": ["310115198404288573Y", "33010619900528367", "张三丰"],
        "reason": [
            f"'310115198404288573Y' does not match {ID_PATTERN}",
            f"2 values do not match {ID_PATTERN}, e.g. '310115198404288573Y', '33010619900528367'",
            "'张三丰' is longer than 2 characters",
        ],
    })
    out = mask_personal_data(frame, _employee_mapping())
    assert out["reason"].tolist() == [
        f"'3101***********573Y' does not match {ID_PATTERN}",
        f"2 values do not match {ID_PATTERN}, e.g. '3101***********573Y', '3301*********8367'",
        "'张三丰' is longer than 2 characters",
    ]


def test_gate_messages_of_pii_columns_quote_masked_values() -> None:
    kwargs = {"column": "id_number", "regex": ID_PATTERN}
    result = {"unexpected_count": 2, "element_count": 30, "partial_unexpected_list": ["310115198404288573Y"]}
    assert "'3101***********573Y'" in _describe(kwargs, result, pii=True)
    assert "310115198404288573Y" not in _describe(kwargs, result, pii=True)
    assert "'310115198404288573Y'" in _describe(kwargs, result)


# --- Excel cells, labels (review #7, #8) ------------------------------------------------------------------------


def _report_data(differences: list[dict], quarantine: list[dict], *, run_status: str = "partial") -> ReportData:
    diffs = pd.DataFrame(differences).reindex(columns=[
        "diff_id", "entity", "class", "golden_key", "field", "erp_value", "oa_value", "target_value", "detail",
        "first_seen_at", "last_seen_at", "run_count", "status", "signed_by", "signed_at", "note",
    ])
    entities = [
        {"entity": e, "status": "failed" if e == "contract" else "success", "by_class": {}, "diff_total": 0}
        for e in dict.fromkeys(diffs["entity"])
    ]
    return ReportData(
        project="p", run={"run_id": "r1", "status": run_status}, entities=entities, differences=diffs,
        quarantine=pd.DataFrame(quarantine).reindex(columns=[c for c, _ in QUARANTINE_SHEET_COLUMNS]),
        gaps=pd.DataFrame(columns=[c for c, _ in GAP_SHEET_COLUMNS]), trend=[], kpis={}, pii={},
        generated_at=datetime(2026, 1, 1), entity_order=list(dict.fromkeys(diffs["entity"])),
    )


def _diff(entity: str, cls: str, field: str | None, erp: str | None, oa: str | None, detail: dict, n: int = 0) -> dict:
    return {"diff_id": f"{entity}{n}", "entity": entity, "class": cls, "golden_key": f"K{n}", "field": field,
            "erp_value": erp, "oa_value": oa, "target_value": erp, "detail": json.dumps(detail), "status": "open"}


def test_excel_keeps_values_numbers_are_numbers_and_formulas_are_text(tmp_path: Path) -> None:
    numeric = {"code": "numeric", "delta": "-285.40", "tolerance": "0.01"}
    data = _report_data(
        [
            _diff("contract", "field_mismatch", "amount", "-185.40", "100.00", numeric, 1),
            _diff("contract", "field_mismatch", "name", "=HYPERLINK(\"http://x\")", "+86 138", {"code": "value"}, 2),
            _diff("contract", "field_mismatch", "kind", "@SUM(A1)", "-A", {"code": "value"}, 3),
        ],
        [{"entity": "contract", "source": "erp", "src_id": "1", "field": "amount", "rule": "gate",
          "value": "-185.4", "reason": "x", "run_id": "r1", "status": "open"}],
    )
    path = write_excel(data, "zh-CN", tmp_path / "r.xlsx")
    wb = load_workbook(path)
    ws = wb["合同 (contract)"]
    amount = {c.column: c for c in ws[2]}
    assert amount[4].value == -185.4 and amount[4].data_type == "n" and amount[4].number_format == "#,##0.00"
    assert amount[5].value == 100 and amount[5].number_format == "#,##0.00"
    name = {c.column: c for c in ws[3]}
    assert name[4].value == '=HYPERLINK("http://x")' and name[4].data_type == "s" and name[4].quotePrefix
    assert name[5].value == "+86 138" and name[5].data_type == "s" and name[5].quotePrefix
    kind = {c.column: c for c in ws[4]}
    assert kind[4].value == "@SUM(A1)" and kind[4].quotePrefix and kind[5].value == "-A"
    quarantine = wb["隔离记录"]
    values = [c.value for c in quarantine[2]]
    assert values[6] == "-185.4" and values[9] == "待处理"
    cells = [v for sheet in wb.worksheets for row in sheet.iter_rows(values_only=True) for v in row]
    assert not any(isinstance(v, str) and v.startswith("'") for v in cells)


def test_excel_and_labels_translate_statuses_and_flow_classes(tmp_path: Path) -> None:
    held = {"state": "held", "approved_at": None, "approver": "000159", "reason": "2 approval rows disagree"}
    data = _report_data(
        [
            _diff("contract", "field_mismatch", "n", "1", "2", {"code": "numeric", "delta": "-1"}, 1),
            _diff("contract_archive", "audit_req_without_po", None, None, "HT1", held, 2),
            _diff("purchase_order", "audit_req_without_po", None, None, "QG1", held, 3),
            _diff("purchase_order", "audit_amount_mismatch", "line 1.iSum", "10.5", "11", {"oa_request_id": "77"}, 4),
        ],
        [],
    )
    wb = load_workbook(write_excel(data, "zh-CN", tmp_path / "r.xlsx"))
    summary = [v for r in wb["汇总"].iter_rows(values_only=True) for v in r if v is not None]
    assert "部分成功" in summary and "失败" in summary and "partial" not in summary
    archive = [c.value for c in wb["合同归档流程 (contract_archive)"][2]]
    assert archive[0] == "已审批合同申请无ERP合同"
    assert archive[6].startswith("OA申请待核实") and "None" not in archive[6]
    orders = wb["采购订单流程 (purchase_order)"]
    assert orders.cell(2, 1).value == "请购无采购订单"
    assert orders.cell(3, 7).value == "与OA申请 77 的数值不一致" and orders.cell(3, 4).value == 10.5
    assert wb["合同 (contract)"].cell(2, 7).value == "差额 -1"
    assert labels.class_label("en", "audit_req_without_po", "contract_archive") == (
        "Approved contract request without ERP contract"
    )
    for lang in labels.LANGS:
        for status in ("success", "partial", "failed", "running", "planned", "open", "resolved", "superseded"):
            assert labels.run_status_label(lang, status) != status
    assert labels.entity_label("en", "purchase_order") == "Purchase order flow"
    assert labels.describe({"reason": "OA request not found"}, "en") == (
        "ERP document not linked to an approved OA request: OA request not found"
    )


# --- CLI --class, tolerance text (review #9, #10) ----------------------------------------------------------------


def test_reconcile_list_accepts_flow_classes(bad_ids) -> None:
    config = bad_ids[0]
    runner = CliRunner()
    args = ["reconcile", "list", "--config", str(config.config_path), "--json", "--class"]
    assert runner.invoke(app, [*args, "audit_amount_mismatch"]).exit_code == 0
    assert runner.invoke(app, [*args, "approval_amended"]).exit_code == 0
    assert runner.invoke(app, [*args, "nonsense"]).exit_code == 2


def test_tolerance_is_quoted_only_for_tolerant_comparisons_with_the_fields_decimals() -> None:
    def detail(spec: dict) -> dict:
        return json.loads(_mismatch_details(pd.Series(["1.5"]), pd.Series(["2"]), CanonicalField(**spec))[0])

    assert detail({"type": "integer"}) == {"code": "numeric", "delta": "-0"}
    assert detail({"type": "integer", "tolerance": 2})["tolerance"] == "2"
    assert detail({"type": "decimal", "scale": 6})["tolerance"] == "0.0000005"
    assert detail({"type": "decimal", "scale": 2})["tolerance"] == "0.005"
    assert detail({"type": "decimal", "scale": 2, "tolerance": 0.01})["tolerance"] == "0.01"
    assert labels.describe({"code": "numeric", "delta": "-1"}, "zh-CN") == "差额 -1"
