"""The Excel workbook: a summary sheet, one sheet of differences per entity, quarantine and gaps.

Every data sheet has its header row frozen, an auto-filter and column widths
that fit the content; values are text as the report shows them (masked where
personal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

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


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        # A leading = would make Excel evaluate source data as a formula.
        return "'" + value
    return value


def _table(
    ws: Worksheet, headers: list[tuple[str, int]], rows: list[list[Any]], lang: str, *, start_row: int = 1
) -> None:
    for col, (key, width) in enumerate(headers, start=1):
        cell = ws.cell(row=start_row, column=col, value=labels.text(lang, key))
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
        cell.alignment = Alignment(vertical="center")
        ws.column_dimensions[get_column_letter(col)].width = width
    for r, row in enumerate(rows, start=start_row + 1):
        for c, value in enumerate(row, start=1):
            ws.cell(row=r, column=c, value=_cell(value))
    last = get_column_letter(len(headers))
    ws.freeze_panes = ws.cell(row=start_row + 1, column=1)
    ws.auto_filter.ref = f"A{start_row}:{last}{max(start_row + len(rows), start_row + 1)}"
    ws.row_dimensions[start_row].height = 22


def _fit(ws: Worksheet, headers: list[tuple[str, int]], rows: list[list[Any]], lang: str) -> None:
    """Widen columns to their longest value (CJK characters count double), within limits."""
    for col, (key, width) in enumerate(headers, start=1):
        sample = [labels.text(lang, key), *(r[col - 1] for r in rows[:2000])]
        longest = max((_display_width(v) for v in sample), default=width)
        ws.column_dimensions[get_column_letter(col)].width = max(8, min(60, max(width if not rows else 8, longest + 2)))


def _display_width(value: Any) -> int:
    if value is None:
        return 0
    text = str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _summary(wb: Workbook, data: ReportData, lang: str, used: set[str]) -> None:
    ws = wb.active
    assert ws is not None
    ws.title = _sheet_name(labels.text(lang, "sheet_summary"), used)
    ws["A1"] = labels.text(lang, "xls_title")
    ws["A1"].font = TITLE_FONT
    run = data.run
    meta = [
        ("project", data.project),
        ("run", run.get("run_id")),
        ("started", run.get("started_at")),
        ("finished", run.get("finished_at")),
        ("trigger", run.get("trigger")),
        ("mode", run.get("mode")),
        ("run_status", run.get("status")),
        ("mapping_version", run.get("mapping_version")),
        ("generated", data.generated_at),
    ]
    row = 3
    for key, value in meta:
        ws.cell(row=row, column=1, value=labels.text(lang, key)).font = Font(color="7A8699")
        ws.cell(row=row, column=2, value=_cell(value))
        row += 1
    row += 1
    ws.cell(row=row, column=1, value=labels.text(lang, "kpis")).font = SECTION_FONT
    row += 1
    kpis = [
        ("kpi_total", "total"),
        ("kpi_open", "open"),
        ("kpi_accepted", "accepted"),
        ("kpi_new", "new"),
        ("kpi_resolved", "resolved"),
        ("kpi_quarantine", "quarantined"),
    ]
    for col, (label, key) in enumerate(kpis, start=1):
        ws.cell(row=row, column=col, value=labels.text(lang, label)).font = Font(bold=True, color="4A5568")
        value = ws.cell(row=row + 1, column=col, value=int(data.kpis.get(key, 0)))
        value.font = Font(bold=True, size=14)
    row += 3
    ws.cell(row=row, column=1, value=labels.text(lang, "sec_entities")).font = SECTION_FONT
    row += 1
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
    for c, key in enumerate(cols, start=1):
        cell = ws.cell(row=row, column=c, value=labels.text(lang, key))
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
    for e in data.entities:
        row += 1
        for c, key in enumerate(cols, start=1):
            value = labels.entity_label(lang, e["entity"]) if key == "entity" else e.get(key)
            cell = ws.cell(row=row, column=c, value=_cell(value))
            cell.border = Border(bottom=THIN)
    row += 2
    ws.cell(row=row, column=1, value=labels.text(lang, "by_class_entity")).font = SECTION_FONT
    row += 1
    used = {c for e in data.entities for c in e["by_class"]}
    classes = [c for c in data.classes if c in CLASSES or c in used]
    header = [
        labels.text(lang, "entity"),
        *(labels.class_label(lang, c) for c in classes),
        labels.text(lang, "diff_total"),
    ]
    for c, value in enumerate(header, start=1):
        cell = ws.cell(row=row, column=c, value=value)
        cell.fill, cell.font = HEADER_FILL, HEADER_FONT
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for e in data.entities:
        row += 1
        values = [labels.entity_label(lang, e["entity"]), *(e["by_class"].get(c, 0) for c in classes), e["diff_total"]]
        for c, value in enumerate(values, start=1):
            ws.cell(row=row, column=c, value=value).border = Border(bottom=THIN)
    row += 2
    ws.cell(row=row, column=1, value=labels.text(lang, "masked")).font = Font(italic=True, color="7A8699")
    widths = [22, 24, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12]
    for c, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = width


def _diff_rows(frame: pd.DataFrame, lang: str) -> list[list[Any]]:
    rows = []
    for rec in frame.head(SHEET_ROW_LIMIT).to_dict("records"):
        rows.append(
            [
                labels.class_label(lang, rec["class"]),
                rec.get("golden_key"),
                labels.field_label(lang, rec.get("field")),
                rec.get("erp_value"),
                rec.get("oa_value"),
                rec.get("target_value"),
                labels.describe(rec.get("detail"), lang, erp_value=rec.get("erp_value"), oa_value=rec.get("oa_value")),
                rec.get("first_seen_at"),
                rec.get("last_seen_at"),
                rec.get("run_count"),
                labels.status_label(lang, rec.get("status")),
                rec.get("signed_by"),
                rec.get("signed_at"),
                rec.get("note"),
                rec.get("diff_id"),
            ]
        )
    return rows


def write_excel(data: ReportData, lang: str, path: Path) -> Path:
    """Write the workbook to `path`."""
    lang = labels.lang_of(lang)
    wb = Workbook()
    used: set[str] = set()
    _summary(wb, data, lang, used)
    for entity, frame in entity_frames(data):
        ws = wb.create_sheet(_sheet_name(labels.entity_label(lang, entity), used))
        rows = _diff_rows(frame, lang)
        _table(ws, DIFF_SHEET_COLUMNS, rows, lang)
        _fit(ws, DIFF_SHEET_COLUMNS, rows, lang)
        for i, status in enumerate(frame["status"].head(len(rows)), start=2):
            fill = STATUS_FILLS.get(str(status))
            if fill is not None:
                ws.cell(row=i, column=11).fill = fill
        if len(frame) > SHEET_ROW_LIMIT:
            ws.cell(
                row=len(rows) + 3,
                column=1,
                value=labels.text(lang, "truncated", shown=SHEET_ROW_LIMIT, total=len(frame)),
            )
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
            r.status,
        ]
        for r in q.reindex(columns=[c for c, _ in QUARANTINE_SHEET_COLUMNS]).itertuples(index=False)
    ]
    _table(ws, QUARANTINE_SHEET_COLUMNS, q_rows, lang)
    _fit(ws, QUARANTINE_SHEET_COLUMNS, q_rows, lang)
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
    _fit(ws, GAP_SHEET_COLUMNS, g_rows, lang)
    wb.save(path)
    return path
