"""The Excel workbook: a summary sheet, one sheet of differences per entity, quarantine and gaps.

Every data sheet has its header row frozen, an auto-filter and column widths
that fit the content; values are text as the report shows them (masked where
personal), except the values of numeric differences, which are numbers finance can
sum. The workbook is written in openpyxl's write-only mode: row by row, in constant
memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from etl.reconcile.compare import CLASSES
from etl.report import labels
from etl.report.build import SHEET_ROW_LIMIT, ReportData, entity_frames

HEADER_FILL = PatternFill("solid", fgColor="17325C")
HEADER_FONT = Font(bold=True, color="FFFFFF")
TITLE_FONT = Font(bold=True, size=16, color="17325C")
SECTION_FONT = Font(bold=True, size=12, color="17325C")
THIN = Side(style="thin", color="D9DEE7")
STATUS_FILLS = {
    "open": PatternFill("solid", fgColor="FFF4E5"),
    "accepted": PatternFill("solid", fgColor="E8F6EE"),
    "fixed": PatternFill("solid", fgColor="EAF1FB"),
}
DIFF_SHEET_COLUMNS = [
    ("class", 16),
    ("golden_key", 18),
    ("field", 18),
    ("erp_value", 22),
    ("oa_value", 22),
    ("target_value", 22),
    ("detail", 44),
    ("first_seen", 19),
    ("last_seen", 19),
    ("run_count", 8),
    ("status", 10),
    ("signed_by", 12),
    ("signed_at", 19),
    ("note", 30),
    ("diff_id", 18),
]
QUARANTINE_SHEET_COLUMNS = [
    ("entity", 14),
    ("source", 8),
    ("src_id", 14),
    ("golden_key", 18),
    ("field", 18),
    ("rule", 22),
    ("value", 22),
    ("reason", 50),
    ("run_id", 24),
    ("status", 11),
]
GAP_SHEET_COLUMNS = [
    ("entity", 14),
    ("source", 8),
    ("field", 18),
    ("value", 24),
    ("code_table", 16),
    ("policy", 10),
    ("count", 8),
]
_INVALID = str.maketrans(dict.fromkeys("[]:*?/\\", "_"))


def _sheet_name(name: str, used: set[str]) -> str:
    base = name.translate(_INVALID)[:31] or "sheet"
    out, n = base, 2
    while out.lower() in used:
        out = f"{base[:28]}_{n}"
        n += 1
    used.add(out.lower())
    return out


_NUMBER = re.compile(r"[+-]?\d+(?:\.(\d+))?")
#: Difference classes whose ERP/OA/target values are numbers (when `detail` says so or always).
_NUMERIC_CLASSES = {"audit_amount_mismatch"}
#: The value columns of a difference sheet (0-based), written as numbers for numeric differences.
_VALUE_COLUMNS = (3, 4, 5)
_STATUS_COLUMN = 10


def _plain(value: Any) -> Any:
    """A value openpyxl can store: None for missing, Python scalars for numpy/pandas ones."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _cell(ws: WriteOnlyWorksheet, value: Any, **style: Any) -> Any:
    """A cell that shows `value` unchanged and is never evaluated as a formula.

    Text starting with ``=`` (which openpyxl would store as a formula) or with ``+ - @`` (which Excel
    reads as a formula when the cell is edited) is stored as a string with the quote-prefix style,
    unless it is a number such as ``-185.4``: no apostrophe is ever added to the value.
    """
    value = _plain(value)
    guard = isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not _NUMBER.fullmatch(value)
    if not guard and not style:
        return value
    cell = WriteOnlyCell(ws, value=value)
    if guard:
        cell.data_type = "s"
        cell.quotePrefix = True
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _number(ws: WriteOnlyWorksheet, value: Any) -> Any:
    """A numeric difference value as a number with a thousands format of its own decimals (text if not a number)."""
    value = _plain(value)
    match = _NUMBER.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return _cell(ws, value)
    decimals = len(match.group(1) or "")
    return _cell(ws, float(value), number_format="#,##0" + ("." + "0" * decimals if decimals else ""))


def _header(ws: WriteOnlyWorksheet, values: list[str], *, wrap: bool = False) -> list[Any]:
    return [
        _cell(ws, v, fill=HEADER_FILL, font=HEADER_FONT, alignment=Alignment(wrap_text=wrap, vertical="center"))
        for v in values
    ]


def _table(ws: WriteOnlyWorksheet, headers: list[tuple[str, int]], rows: list[list[Any]], lang: str) -> None:
    """A data sheet: frozen, filtered header row and `rows` (already cells or plain values)."""
    _fit(ws, headers, rows, lang)
    ws.freeze_panes = "A2"
    last = get_column_letter(len(headers))
    ws.auto_filter.ref = f"A1:{last}{max(1 + len(rows), 2)}"
    ws.append(_header(ws, [labels.text(lang, key) for key, _ in headers]))
    for row in rows:
        ws.append([v if isinstance(v, Cell) else _cell(ws, v) for v in row])


def _fit(ws: WriteOnlyWorksheet, headers: list[tuple[str, int]], rows: list[list[Any]], lang: str) -> None:
    """Widen columns to their longest value (CJK characters count double), within limits."""
    for col, (key, width) in enumerate(headers, start=1):
        sample = [labels.text(lang, key), *(_shown(r[col - 1]) for r in rows[:2000])]
        longest = max((_display_width(v) for v in sample), default=width)
        ws.column_dimensions[get_column_letter(col)].width = max(8, min(60, max(width if not rows else 8, longest + 2)))


def _shown(value: Any) -> Any:
    return value.value if isinstance(value, Cell) else value


def _display_width(value: Any) -> int:
    if value is None:
        return 0
    text = str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _summary(ws: WriteOnlyWorksheet, data: ReportData, lang: str) -> None:
    widths = [22, 24, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]
    for c, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = width
    ws.append([_cell(ws, labels.text(lang, "xls_title"), font=TITLE_FONT)])
    ws.append([])
    run = data.run
    meta = [
        ("project", data.project),
        ("run", run.get("run_id")),
        ("started", run.get("started_at")),
        ("finished", run.get("finished_at")),
        ("trigger", run.get("trigger")),
        ("mode", run.get("mode")),
        ("run_status", labels.run_status_label(lang, run.get("status"))),
        ("mapping_version", run.get("mapping_version")),
        ("generated", data.generated_at),
    ]
    for key, value in meta:
        ws.append([_cell(ws, labels.text(lang, key), font=Font(color="7A8699")), _cell(ws, value)])
    ws.append([])
    ws.append([_cell(ws, labels.text(lang, "kpis"), font=SECTION_FONT)])
    kpis = [
        ("kpi_total", "total"),
        ("kpi_open", "open"),
        ("kpi_accepted", "accepted"),
        ("kpi_new", "new"),
        ("kpi_resolved", "resolved"),
        ("kpi_quarantine", "quarantined"),
    ]
    ws.append([_cell(ws, labels.text(lang, label), font=Font(bold=True, color="4A5568")) for label, _ in kpis])
    ws.append([_cell(ws, int(data.kpis.get(key, 0)), font=Font(bold=True, size=14)) for _, key in kpis])
    ws.append([])
    ws.append([_cell(ws, labels.text(lang, "sec_entities"), font=SECTION_FONT)])
    cols = [
        "entity",
        "status",
        "read_erp",
        "read_oa",
        "inserted",
        "updated",
        "unchanged",
        "inactivated",
        "quarantined",
        "diff_total",
        "diff_open",
        "diff_accepted",
    ]
    ws.append(_header(ws, [labels.text(lang, key) for key in cols]))
    for e in data.entities:
        ws.append([_cell(ws, _entity_value(lang, e, key), border=Border(bottom=THIN)) for key in cols])
    ws.append([])
    ws.append([_cell(ws, labels.text(lang, "by_class_entity"), font=SECTION_FONT)])
    used = {c for e in data.entities for c in e["by_class"]}
    classes = [c for c in data.classes if c in CLASSES or c in used]
    header = [
        labels.text(lang, "entity"),
        *(labels.class_label(lang, c) for c in classes),
        labels.text(lang, "diff_total"),
    ]
    ws.append(_header(ws, header, wrap=True))
    for e in data.entities:
        values = [labels.entity_label(lang, e["entity"]), *(e["by_class"].get(c, 0) for c in classes), e["diff_total"]]
        ws.append([_cell(ws, v, border=Border(bottom=THIN)) for v in values])
    ws.append([])
    ws.append([_cell(ws, labels.text(lang, "masked"), font=Font(italic=True, color="7A8699"))])


def _entity_value(lang: str, entity: dict[str, Any], key: str) -> Any:
    if key == "entity":
        return labels.entity_label(lang, entity["entity"])
    if key == "status":
        return labels.run_status_label(lang, entity.get("status"))
    return entity.get(key)


def _diff_rows(ws: WriteOnlyWorksheet, frame: pd.DataFrame, lang: str) -> list[list[Any]]:
    rows = []
    for rec in frame.head(SHEET_ROW_LIMIT).to_dict("records"):
        detail = labels.parse_detail(rec.get("detail"))
        numeric = detail.get("code") == "numeric" or rec["class"] in _NUMERIC_CLASSES
        row = [
            labels.class_label(lang, rec["class"], rec.get("entity")),
            rec.get("golden_key"),
            labels.field_label(lang, rec.get("field")),
            rec.get("erp_value"),
            rec.get("oa_value"),
            rec.get("target_value"),
            labels.describe(detail, lang, erp_value=rec.get("erp_value"), oa_value=rec.get("oa_value")),
            rec.get("first_seen_at"),
            rec.get("last_seen_at"),
            rec.get("run_count"),
            labels.status_label(lang, rec.get("status")),
            rec.get("signed_by"),
            rec.get("signed_at"),
            rec.get("note"),
            rec.get("diff_id"),
        ]
        if numeric:
            for c in _VALUE_COLUMNS:
                row[c] = _number(ws, row[c])
        fill = STATUS_FILLS.get(str(rec.get("status")))
        if fill is not None:
            row[_STATUS_COLUMN] = _cell(ws, row[_STATUS_COLUMN], fill=fill)
        rows.append(row)
    return rows


def write_excel(data: ReportData, lang: str, path: Path) -> Path:
    """Write the workbook to `path`."""
    lang = labels.lang_of(lang)
    wb = Workbook(write_only=True)
    used: set[str] = set()
    _summary(wb.create_sheet(_sheet_name(labels.text(lang, "sheet_summary"), used)), data, lang)
    for entity, frame in entity_frames(data):
        ws = wb.create_sheet(_sheet_name(labels.entity_label(lang, entity), used))
        _table(ws, DIFF_SHEET_COLUMNS, _diff_rows(ws, frame, lang), lang)
        if len(frame) > SHEET_ROW_LIMIT:
            ws.append([])
            ws.append([labels.text(lang, "truncated", shown=SHEET_ROW_LIMIT, total=len(frame))])
    ws = wb.create_sheet(_sheet_name(labels.text(lang, "sheet_quarantine"), used))
    q = data.quarantine.head(SHEET_ROW_LIMIT)
    q_rows = [
        [
            labels.entity_label(lang, r.entity),
            str(r.source or "").upper(),
            r.src_id,
            r.golden_key,
            labels.field_label(lang, r.field),
            r.rule,
            r.value,
            r.reason,
            r.run_id,
            labels.status_label(lang, r.status),
        ]
        for r in q.reindex(columns=[c for c, _ in QUARANTINE_SHEET_COLUMNS]).itertuples(index=False)
    ]
    _table(ws, QUARANTINE_SHEET_COLUMNS, q_rows, lang)
    ws = wb.create_sheet(_sheet_name(labels.text(lang, "sheet_gaps"), used))
    g_rows = [
        [
            labels.entity_label(lang, r.entity),
            str(r.source or "").upper(),
            labels.field_label(lang, r.field),
            r.value,
            r.code_table,
            r.policy,
            r.count,
        ]
        for r in data.gaps.reindex(columns=[c for c, _ in GAP_SHEET_COLUMNS]).itertuples(index=False)
    ]
    _table(ws, GAP_SHEET_COLUMNS, g_rows, lang)
    wb.save(path)
    return path
