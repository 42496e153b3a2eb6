"""The Excel workbook of a large run: what the streamed data sheets hold, read back with openpyxl.

The data rows of the workbook's sheets are written as worksheet XML by `etl.report.excel._SheetRows` rather than
cell by cell by openpyxl; these tests check that the workbook holds what openpyxl itself writes: values, types,
number formats, the quote-prefix guard, status fills, frozen header, auto-filter and column widths.
"""

from __future__ import annotations

import json
import re
import tracemalloc
import warnings
import zipfile
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook

from etl.report import excel, labels
from etl.report.build import ReportData
from etl.report.excel import GAP_SHEET_COLUMNS, QUARANTINE_SHEET_COLUMNS, write_excel

pytestmark = pytest.mark.unit

N = 6000  # contract differences
T0 = datetime(2026, 11, 1, 8, 0, 0)
DATETIME_FORMAT = "yyyy-mm-dd h:mm:ss"


def _difference(i: int) -> dict:
    """Contract difference `i`: every 3rd numeric (amounts), every 50th a formula-like text, statuses in turn."""
    status = ("open", "accepted", "fixed", "superseded")[i % 4]
    row = {
        "diff_id": f"{i:016x}",
        "entity": "contract",
        "class": "field_mismatch",
        "golden_key": f"HT{i:08d}",
        "field": "name",
        "erp_value": f"名称{i}",
        "oa_value": f"Name {i}",
        "target_value": f"名称{i}",
        "detail": json.dumps({"code": "value"}),
        "first_seen_at": T0 + timedelta(seconds=i),
        "last_seen_at": T0 + timedelta(days=3),
        "run_count": i % 7 + 1,
        "status": status,
        "signed_by": "张三" if status == "accepted" else None,
        "signed_at": T0 + timedelta(days=1) if status == "accepted" else None,
        "note": None,
    }
    if i % 3 == 0:
        row.update(
            field="amount",
            erp_value=f"-{i}.40",
            oa_value=f"{i}",
            target_value=f"{i}.125",
            detail=json.dumps({"code": "numeric", "delta": f"-{2 * i}.40", "tolerance": "0.01"}),
        )
    elif i % 50 == 1:
        row.update(erp_value=f'=HYPERLINK("http://x/{i}")', oa_value=f"+86 {i}", target_value=f"@{i}", note=" a & b ")
    return row


def _data(n: int = N) -> ReportData:
    diffs = pd.DataFrame(
        [_difference(i) for i in range(n)]
        + [{**_difference(0), "diff_id": f"e{i}", "entity": "employee", "golden_key": f"E{i}"} for i in range(3)]
    )
    quarantine = pd.DataFrame(
        {
            "entity": "contract",
            "source": ["erp", "oa"] * (n // 4),
            "src_id": [str(10_000 + i) for i in range(n // 2)],
            "golden_key": [f"HT{i:08d}" for i in range(n // 2)],
            "field": "amount",
            "rule": "not_null",
            "value": [f"-{i}.5" if i % 2 else f"=cmd{i}" for i in range(n // 2)],
            "reason": [f"value {i} fails the gate" for i in range(n // 2)],
            "run_id": "r1",
            "status": ["open", "resolved"] * (n // 4),
        }
    )
    gaps = pd.DataFrame(
        {
            "entity": ["contract"],
            "source": ["erp"],
            "field": ["dept"],
            "value": ["X1"],
            "code_table": ["dept"],
            "policy": ["pass"],
            "count": [4],
        }
    )
    entities = [
        {
            "entity": e,
            "status": "success",
            "by_class": {"field_mismatch": int((diffs["entity"] == e).sum())},
            "diff_total": int((diffs["entity"] == e).sum()),
        }
        for e in ("contract", "employee")
    ]
    return ReportData(
        project="p",
        run={"run_id": "r1", "status": "success", "started_at": T0},
        entities=entities,
        differences=diffs,
        quarantine=quarantine,
        gaps=gaps,
        trend=[],
        kpis={"total": len(diffs)},
        pii={},
        generated_at=datetime(2026, 12, 6, 10),
        entity_order=["contract", "employee"],
    )


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory):
    path = write_excel(_data(), "zh-CN", tmp_path_factory.mktemp("xlsx") / "r.xlsx")
    return path, load_workbook(path)


def _row(ws, r: int) -> dict[int, object]:
    return {c.column: c for c in ws[r]}


def test_a_large_difference_sheet_keeps_values_types_and_formats(book) -> None:
    _, wb = book
    assert wb.sheetnames == ["汇总", "合同 (contract)", "员工 (employee)", "隔离记录", "映射缺口"]
    ws = wb["合同 (contract)"]
    assert ws.max_row == N + 1 and ws.max_column == 15
    keys = [v for (v,) in ws.iter_rows(min_row=2, min_col=2, max_col=2, values_only=True)]
    assert keys == [f"HT{i:08d}" for i in range(N)]
    for i in (0, 3, 2997, N - 3):  # numeric: numbers with a thousands format of their own decimals
        cells = _row(ws, i + 2)
        assert (cells[4].value, cells[4].data_type, cells[4].number_format) == (-(i + 0.4), "n", "#,##0.00")
        assert (cells[5].value, cells[5].data_type, cells[5].number_format) == (i, "n", "#,##0")
        assert (cells[6].value, cells[6].number_format) == (i + 0.125, "#,##0.000")
        assert cells[7].value == f"差额 -{2 * i}.40，超出容差 ±0.01" and cells[7].data_type == "s"
        assert not cells[4].quotePrefix
    for i in (1, 2951):  # formula-like text: stored as text with the quote-prefix style
        cells = _row(ws, i + 2)
        assert cells[4].value == f'=HYPERLINK("http://x/{i}")' and cells[4].data_type == "s"
        assert cells[4].quotePrefix and cells[5].quotePrefix and cells[6].quotePrefix
        assert cells[5].value == f"+86 {i}" and cells[6].value == f"@{i}"
        assert cells[14].value == " a & b " and not cells[14].quotePrefix
        assert cells[4].number_format == "General"
    for i in (2, 4, 5, N - 1):  # text, dates, counts, statuses
        cells = _row(ws, i + 2)
        assert cells[1].value == "字段不一致" and cells[3].value == "名称 name"
        assert cells[4].value == f"名称{i}" and cells[4].data_type == "s" and not cells[4].quotePrefix
        assert cells[8].value == T0 + timedelta(seconds=i) and cells[8].number_format == DATETIME_FORMAT
        assert cells[9].value == T0 + timedelta(days=3) and cells[9].is_date
        assert cells[10].value == i % 7 + 1 and cells[10].data_type == "n"
        assert cells[15].value == f"{i:016x}"
    fills = {_row(ws, i + 2)[11].value: _row(ws, i + 2)[11].fill.fgColor.rgb for i in range(4)}
    colours = {"open": "00FFF4E5", "accepted": "00E8F6EE", "fixed": "00EAF1FB", "superseded": "00000000"}
    assert fills == {labels.status_label("zh-CN", s): rgb for s, rgb in colours.items()}
    accepted = _row(ws, 1 + 2)
    assert accepted[12].value == "张三" and accepted[13].value == T0 + timedelta(days=1)
    assert accepted[13].number_format == DATETIME_FORMAT
    assert 12 not in _row(ws, 0 + 2) or _row(ws, 0 + 2)[12].value is None


def test_large_sheets_keep_the_header_style_frozen_pane_filter_and_widths(book) -> None:
    _, wb = book
    expected = {
        "合同 (contract)": (excel.DIFF_SHEET_COLUMNS, N),
        "员工 (employee)": (excel.DIFF_SHEET_COLUMNS, 3),
        "隔离记录": (QUARANTINE_SHEET_COLUMNS, N // 2),
        "映射缺口": (GAP_SHEET_COLUMNS, 1),
    }
    for name, (columns, rows) in expected.items():
        ws = wb[name]
        assert ws.freeze_panes == "A2", name
        assert ws.auto_filter.ref == f"A1:{chr(64 + len(columns))}{rows + 1}", name
        assert ws.max_row == rows + 1, name
        header = _row(ws, 1)
        assert [header[c].value for c in sorted(header)] == [labels.text("zh-CN", k) for k, _ in columns], name
        for cell in header.values():
            assert cell.fill.fgColor.rgb == "0017325C" and cell.font.b and cell.font.color.rgb == "00FFFFFF"
            assert cell.alignment.vertical == "center"
    widths = {k: wb["合同 (contract)"].column_dimensions[k].width for k in "ABDGHO"}
    assert widths == {"A": 12, "B": 12, "D": 29, "G": 31, "H": 21, "O": 18}  # D: =HYPERLINK("http://x/1951")
    quarantine = wb["隔离记录"]
    first, second = _row(quarantine, 2), _row(quarantine, 3)
    assert first[7].value == "=cmd0" and first[7].quotePrefix and first[2].value == "ERP"
    assert second[7].value == "-1.5" and second[7].data_type == "s" and not second[7].quotePrefix
    assert [first[10].value, second[10].value] == [labels.status_label("zh-CN", s) for s in ("open", "resolved")]
    assert _row(wb["映射缺口"], 2)[7].value == 4


def test_a_truncated_sheet_says_so_below_the_filtered_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the sheet limit (200,000) scaled down: the rows beyond it are left out and the sheet says how many there are
    monkeypatch.setattr(excel, "SHEET_ROW_LIMIT", 100)
    wb = load_workbook(write_excel(_data(300), "en", tmp_path / "r.xlsx"))
    ws = wb[labels.entity_label("en", "contract")]
    assert ws.auto_filter.ref == "A1:O101" and ws.max_row == 103
    assert all(c.value is None for c in ws[102])
    assert ws.cell(103, 1).value == labels.text("en", "truncated", shown=100, total=300)
    assert ws.cell(101, 2).value == "HT00000099"


def test_writing_large_sheets_holds_chunks_of_rows_in_memory_not_the_sheets(tmp_path: Path) -> None:
    data = _data(30_000)  # 30,000 differences and 15,000 quarantine rows
    tracemalloc.start()
    try:
        write_excel(data, "en", tmp_path / "r.xlsx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # about 17 MB whatever the number of rows; building every row's cells first took 60 MB here (370 MB at 200,000)
    assert peak < 30 * 2**20
    quarantine = load_workbook(tmp_path / "r.xlsx", read_only=True)["Quarantine"]
    assert sum(1 for _ in quarantine.iter_rows(min_col=3, max_col=3, values_only=True)) == 15_001


def _sheet_data(xml: str) -> str:
    return re.search(r"<sheetData>(.*)</sheetData>", xml, re.S).group(1)  # type: ignore[union-attr]


ODD_VALUES = [
    "",
    "  ",
    " x",
    "x ",
    "a&b<c>d]]>",
    "#N/A",
    "#DIV/0!",
    "=x",
    "=",
    "+86 138",
    "-A",
    "-",
    "@S",
    "-185.40",
    " 12 ",
    "1e5",
    "x" * 40_000,
    "名称 ",
    "\nline\n",
    "a\tb",
    "'quoted",
    "\ud800x",
    None,
    np.nan,
    pd.NaT,
    pd.NA,
    0,
    -3,
    np.int64(5),
    2**70,
    1.5,
    -0.0,
    1e-300,
    float("inf"),
    np.float32(0.1),
    True,
    np.bool_(False),
    Decimal("1.25"),
    datetime(2026, 1, 2, 3, 4, 5, 678),
    pd.Timestamp("2026-02-03 04:05:06"),
    date(2026, 1, 2),
    datetime(1900, 2, 28),
    time(3, 4, 5),
    timedelta(hours=5, seconds=1),
]


def test_streamed_rows_are_the_xml_openpyxl_writes_for_the_same_cells(tmp_path: Path) -> None:
    """Every kind of value, plain and with a cell style, against openpyxl's own write-only serialisation."""
    fill = excel.STATUS_FILLS["open"]
    rows = [
        ODD_VALUES,
        [excel._Styled(v, "fill:open", {"fill": fill}) for v in ODD_VALUES],
        [excel._number(v) for v in ("-185.40", "1,000", "7", " 3.25 ", None, "=1", "0.000")],
        [],
        ["last"],
    ]

    def cell(ws, value):
        if isinstance(value, excel._Styled):
            return excel._cell(ws, value.value, **value.style)
        return excel._cell(ws, value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pd.Timestamp -> datetime
        reference = Workbook(write_only=True)
        ws = reference.create_sheet("s")
        for row in rows:
            ws.append([cell(ws, v) for v in row])
        reference.save(tmp_path / "reference.xlsx")
        streamed = Workbook(write_only=True)
        ws = streamed.create_sheet("s")
        out = excel._SheetRows(ws, tmp_path / "rows.xml", first_row=1)
        for row in rows:
            out.append(row)
        out.close()
        streamed.save(tmp_path / "streamed.xlsx")
    with zipfile.ZipFile(tmp_path / "reference.xlsx") as a, zipfile.ZipFile(tmp_path / "streamed.xlsx") as b:
        expected = _sheet_data(a.read("xl/worksheets/sheet1.xml").decode())
        assert a.read("xl/styles.xml") == b.read("xl/styles.xml")
    written = (tmp_path / "rows.xml").read_text(encoding="utf-8")
    assert written == expected
    assert 'xml:space="preserve"' in written and 't="e"' in written and 't="b"' in written


def test_pandas_missing_values_are_blank_cells(tmp_path: Path) -> None:
    data = _data(12)
    data.quarantine["golden_key"] = pd.array([None] * len(data.quarantine), dtype="string[pyarrow]")
    data.quarantine["src_id"] = pd.array([1, None] * (len(data.quarantine) // 2), dtype="Int64")
    data.gaps["count"] = pd.array([None], dtype="Int64")
    wb = load_workbook(write_excel(data, "en", tmp_path / "r.xlsx"))
    quarantine = wb["Quarantine"]
    assert [quarantine.cell(r, 3).value for r in (2, 3)] == [1, None]
    assert quarantine.cell(2, 4).value is None and wb["Mapping gaps"].cell(2, 7).value is None
