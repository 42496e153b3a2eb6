"""Report fixes found by exploratory test C (session 22), on report data built in memory.

- the Excel summary carries the HTML's notes: "as of now" and "differences from run X" (finding 8);
- the HTML status filter of differences offers only the differences' statuses (finding 9);
- the HTML labels `audit_req_without_po` per flow, as the workbook does (finding 10);
- flow rows read as flows: created, adopted, approvals (finding 6);
- zh-CN text of the flows is Chinese: OA values, reasons, the held state (finding 11);
- an amended request's changed fields are in the report text (finding 7).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import load_workbook

from etl.reconcile.compare import CLASSES
from etl.report import labels
from etl.report.build import ReportData
from etl.report.excel import GAP_SHEET_COLUMNS, QUARANTINE_SHEET_COLUMNS, write_excel
from etl.report.html import render_html

DIFF_COLUMNS = ["diff_id", "entity", "class", "golden_key", "field", "erp_value", "oa_value", "target_value",
                "detail", "first_seen_at", "last_seen_at", "run_count", "status", "signed_by", "signed_at", "note"]
HELD = {"state": "held", "approved_at": None, "approver": None,
        "reason": "强制归档 (force-archived by an administrator)", "archived_at": "2026-02-03 20:08:23",
        "archived_by": "000169"}
AMENDED = {"oa_request_id": "100009", "state": "approved", "hash_at_creation": "ef79", "hash_now": "80ce",
           "changed": [{"field": "cVenCode", "line": None, "erp": "04004", "oa": "02002"}]}


def _diff(entity: str, cls: str, key: str, oa: str | None, detail: dict[str, Any], status: str = "open",
          erp: str | None = None, field: str | None = None) -> dict[str, Any]:
    return {"diff_id": f"{entity}-{cls}-{key}", "entity": entity, "class": cls, "golden_key": key, "field": field,
            "erp_value": erp, "oa_value": oa, "target_value": None, "detail": json.dumps(detail, ensure_ascii=False),
            "status": status}


def _entity(entity: str, *, reference_run: str = "r2", inserted: int = 0, updated: int = 0,
            read_oa: int = 0) -> dict[str, Any]:
    return {"entity": entity, "status": "success", "read_erp": 0, "read_oa": read_oa, "inserted": inserted,
            "updated": updated, "unchanged": 0, "inactivated": 0, "quarantined": 0, "seconds": 1.0, "in_run": True,
            "reference_run": reference_run, "differences_from_other_run": reference_run != "r2", "message": None,
            "diff_total": 1, "diff_open": 1, "diff_accepted": 0, "diff_fixed": 0, "diff_new": 0, "by_class": {}}


def _data() -> ReportData:
    diffs = [
        _diff("department", "field_mismatch", "D01", "a", {"code": "value"}, status="accepted", field="name"),
        _diff("purchase_order", "audit_req_without_po", "100073", "QG-2026-000072", HELD),
        _diff("contract_archive", "audit_req_without_po", "200001", "HT-1", {**HELD, "state": "approved",
                                                                             "approver": "000100",
                                                                             "reason": "not created yet"}),
        _diff("purchase_order", "approval_cancelled", "PO1", "100001 (rejected)",
              {"oa_request_id": "100001", "state": "rejected", "hash_at_creation": "a", "hash_now": "a"},
              erp="PO1"),
        _diff("purchase_order", "approval_amended", "PO7", "100009 (amended)", AMENDED, erp="PO7"),
        _diff("purchase_order", "audit_po_without_req", "PO-MANUAL-1", "none", {"reason": "no OA request id"}),
        _diff("purchase_order", "audit_amount_mismatch", "PO9", "200.00", {"oa_request_id": "100011"}, erp="210.00",
              field="line 2.iSum"),
    ]
    quarantine = [{"entity": "purchase_order", "source": "oa", "src_id": "100573", "field": "lines[1].iQuantity",
                   "rule": "positive", "value": "-8.38", "reason": "line 1: iQuantity must be positive",
                   "run_id": "r2", "status": "open"}]
    return ReportData(
        project="p", run={"run_id": "r2", "status": "success"},
        entities=[_entity("department", reference_run="r1"), _entity("purchase_order", inserted=787, updated=8,
                                                                     read_oa=814),
                  _entity("contract_archive", inserted=4, updated=41)],
        differences=pd.DataFrame(diffs).reindex(columns=DIFF_COLUMNS),
        quarantine=pd.DataFrame(quarantine).reindex(columns=[c for c, _ in QUARANTINE_SHEET_COLUMNS]),
        gaps=pd.DataFrame(columns=[c for c, _ in GAP_SHEET_COLUMNS]), trend=[], pii={},
        kpis=dict.fromkeys(["total", "open", "accepted", "new", "resolved", "quarantined"], 1),
        generated_at=datetime(2026, 12, 7, 8, 0), entity_order=["department", "purchase_order", "contract_archive"],
        flows=["purchase_order", "contract_archive"],
        classes=[*CLASSES, "approval_amended", "approval_cancelled", "audit_po_without_req", "audit_req_without_po"],
    )


def _payload(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match
    return dict(json.loads(match.group(1)))


def _rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an embedded table (columns once, rows as lists)."""
    return [dict(zip(block["columns"], r, strict=True)) for r in block["rows"]]


def _summary_rows(path: Path) -> list[list[Any]]:
    ws = load_workbook(path).worksheets[0]
    return [[c for c in row if c.value is not None] for row in ws.iter_rows() if any(c.value for c in row)]


def test_excel_summary_says_as_of_and_which_run_differences_come_from(tmp_path: Path) -> None:
    rows = _summary_rows(write_excel(_data(), "zh-CN", tmp_path / "r.xlsx"))
    texts = [str(c.value) for row in rows for c in row]
    assert any(t.startswith("状态、签核、备注") and "2026-12-07 08:00:00" in t and "r2" in t for t in texts)
    header = next(row for row in rows if row[0].value == "实体")
    assert [c.value for c in header][-1] == "差异来自运行"
    department = next(row for row in rows if row[0].value == "部门 (department)")
    assert department[-1].value == "r1"  # reconciled in r1, not in this run
    orders = next(row for row in rows if row[0].value == "采购订单流程 (purchase_order)")
    assert orders[-1].value != "r1"

    en = [str(c.value) for row in _summary_rows(write_excel(_data(), "en", tmp_path / "e.xlsx")) for c in row]
    assert any(t.startswith("Status, sign-off") for t in en) and "Differences from run" in en


def test_html_status_filter_offers_only_difference_statuses() -> None:
    page = render_html(_data(), "zh-CN")
    payload = _payload(page)
    assert payload["diffStatuses"] == ["open", "accepted"]
    assert "D.diffStatuses.map" in page and "Object.keys(D.statuses).map" not in page


def test_html_labels_the_audit_class_per_flow() -> None:
    payload = _payload(render_html(_data(), "zh-CN"))
    rows = {(r["entity"], r["class"]): r for r in _rows(payload["diffs"])}
    assert rows[("purchase_order", "audit_req_without_po")]["class_label"] == "请购无采购订单"
    assert rows[("contract_archive", "audit_req_without_po")]["class_label"] == "已审批合同申请无ERP合同"
    label = next(c["label"] for c in payload["classes"] if c["id"] == "audit_req_without_po")
    assert label == "已审批合同申请无ERP合同 / 请购无采购订单"
    assert "已审批申请无ERP单据" not in json.dumps(payload, ensure_ascii=False)
    en = _payload(render_html(_data(), "en"))
    assert {r["class_label"] for r in _rows(en["diffs"]) if r["class"] == "audit_req_without_po"} == {
        "Requisition without PO", "Approved contract request without ERP contract"}


def test_flow_rows_use_flow_words_in_html_and_excel(tmp_path: Path) -> None:
    page = render_html(_data(), "zh-CN")
    row = re.search(r'<tr data-entity="purchase_order">(.*?)</tr>', page, re.S)
    assert row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    plain = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
    # entity, status, read ERP (blank), read OA, inserted, updated, unchanged (blank), inactivated (blank), ...
    assert plain[2:8] == ["", "814 审批", "787 生成", "8 沿用", "", ""]
    department = re.search(r'<tr data-entity="department">(.*?)</tr>', page, re.S)
    assert department and "flow-word" not in department.group(1)
    assert "新增为本次生成的ERP单据数" in page

    ws = load_workbook(write_excel(_data(), "zh-CN", tmp_path / "r.xlsx")).worksheets[0]
    orders = next(r for r in ws.iter_rows() if r[0].value == "采购订单流程 (purchase_order)")
    assert (orders[4].value, orders[4].number_format) == (787, '#,##0" 生成"')
    assert (orders[5].value, orders[5].number_format) == (8, '#,##0" 沿用"')
    assert orders[2].value is None  # a flow reads no ERP rows to compare
    en = load_workbook(write_excel(_data(), "en", tmp_path / "e.xlsx")).worksheets[0]
    orders = next(r for r in en.iter_rows() if r[0].value == "Purchase order flow")
    assert orders[4].number_format == '#,##0" created"' and orders[5].number_format == '#,##0" adopted"'


def test_zh_report_text_of_the_flows_is_chinese(tmp_path: Path) -> None:
    payload = _payload(render_html(_data(), "zh-CN"))
    rows = {r["golden_key"]: r for r in _rows(payload["diffs"])}
    assert rows["PO1"]["oa_value"] == "100001（已驳回）"
    assert rows["PO7"]["oa_value"] == "100009（已修改）"
    assert rows["PO-MANUAL-1"]["oa_value"] == "无"
    assert rows["PO-MANUAL-1"]["detail_text"] == "ERP单据未关联到已审批的OA申请：没有OA申请号"
    assert rows["100073"]["detail_text"].startswith("OA申请待核实（未经审批") and "已暂扣" not in json.dumps(
        payload, ensure_ascii=False)
    assert _rows(payload["quarantine"])[0]["reason"] == "第1行：数量（iQuantity）必须大于0"

    wb = load_workbook(write_excel(_data(), "zh-CN", tmp_path / "r.xlsx"))
    orders = [[c.value for c in r] for r in wb["采购订单流程 (purchase_order)"].iter_rows(min_row=2)]
    by_key = {r[1]: r for r in orders}
    assert by_key["PO1"][4] == "100001（已驳回）" and by_key["PO-MANUAL-1"][4] == "无"
    assert [c.value for c in wb["隔离记录"][2]][7] == "第1行：数量（iQuantity）必须大于0"

    en = {r["golden_key"]: r for r in _rows(_payload(render_html(_data(), "en"))["diffs"])}
    assert en["PO1"]["oa_value"] == "100001 (rejected)" and en["PO-MANUAL-1"]["oa_value"] == "none"
    assert labels.reason_text("zh-CN", "duplicate: OA request 200002 is already linked to PO-MANUAL-1") == (
        "重复：OA申请 200002 已关联到 PO-MANUAL-1")
    assert labels.reason_text("zh-CN", "OA request held: 强制归档 (force-archived by an administrator)") == (
        "OA申请待核实：管理员强制归档，未经审批")
    assert labels.reason_text("zh-CN", "cPersonCode is required but empty") == "请购人（cPersonCode）为必填项，但为空"
    assert labels.reason_text("zh-CN", "request number QG-1 already has PO PO2 (OA request 3)") == (
        "请购单号 QG-1 已有采购订单 PO2（OA申请 3）")  # the flows' duplicate_request_no hold
    assert labels.reason_text("zh-CN", "something new") == "something new"


def test_amended_difference_names_the_changed_fields(tmp_path: Path) -> None:
    rows = {r["golden_key"]: r for r in _rows(_payload(render_html(_data(), "zh-CN"))["diffs"])}
    assert rows["PO7"]["detail_text"] == (
        "OA申请 100009 在生成ERP单据后被修改：供应商（cVenCode）：ERP单据为 04004，OA现为 02002")
    wb = load_workbook(write_excel(_data(), "en", tmp_path / "e.xlsx"))
    texts = [r[6] for r in wb["Purchase order flow"].iter_rows(min_row=2, values_only=True)]
    assert ("OA request 100009 was changed after the ERP document was created: supplier (cVenCode): 04004 in the "
            "ERP document, 02002 in the OA now") in texts
    # recorded before the fields were compared: the sentence without a list
    old = {k: v for k, v in AMENDED.items() if k != "changed"}
    assert labels.describe(old, "zh-CN") == "OA申请 100009 在生成ERP单据后被修改"


def test_flow_line_fields_read_as_line_and_column_in_zh(tmp_path: Path) -> None:
    payload = _payload(render_html(_data(), "zh-CN"))
    assert payload["fieldLabels"]["line 2.iSum"] == "第2行 价税合计（iSum）"
    wb = load_workbook(write_excel(_data(), "zh-CN", tmp_path / "r.xlsx"))
    row = next(r for r in wb["采购订单流程 (purchase_order)"].iter_rows(min_row=2) if r[1].value == "PO9")
    assert row[2].value == "第2行 价税合计（iSum）"
    assert (row[3].value, row[3].number_format, row[4].value) == (210, "#,##0.00", 200)
    assert labels.field_label("en", "line 2.iSum") == "line 2.iSum"
