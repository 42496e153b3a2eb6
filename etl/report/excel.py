"""The Excel workbook: a summary sheet, one sheet of differences per entity, quarantine and gaps.

Every data sheet has its header row frozen, an auto-filter and column widths
that fit the content; values are text as the report shows them (masked where
personal), except the values of numeric differences, which are numbers finance can
sum. The workbook is built in openpyxl's write-only mode; the data rows of the
large sheets (up to 200,000 each) are streamed to disk as worksheet XML by
`_SheetRows`, the way openpyxl writes them but without building an element per
cell (openpyxl's serialiser took most of the time), and spliced into the saved
workbook. Memory stays bounded: rows are read from the frames a chunk at a time.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import chain, islice
from math import isfinite, isnan
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, NamedTuple

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.compat import safe_string
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel, to_ISO8601
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
#: Text starting with one of these is a formula to Excel (guarded by the quote-prefix style, see `_cell`).
_FORMULA_STARTS = ("=", "+", "-", "@")
#: Rows of a data sheet whose values set its column widths.
_FIT_SAMPLE = 2000
#: Rows taken from a frame at a time (as Python lists, one per column).
_CHUNK = 10_000
#: Rows of worksheet XML buffered before they are written to the file.
_FLUSH = 500


def _plain(value: Any) -> Any:
    """A value openpyxl can store: None for missing, Python scalars for numpy/pandas ones."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _guarded(value: Any) -> bool:
    """True for text Excel would read as a formula (``= + - @``) that is not a number such as ``-185.4``."""
    return isinstance(value, str) and value[:1] in _FORMULA_STARTS and not _NUMBER.fullmatch(value)


def _new_cell(ws: WriteOnlyWorksheet, value: Any, guard: bool, style: dict[str, Any]) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, value=value)
    if guard:
        cell.data_type = "s"
        cell.quotePrefix = True
    for name, setting in style.items():
        setattr(cell, name, setting)
    return cell


def _cell(ws: WriteOnlyWorksheet, value: Any, **style: Any) -> Any:
    """A cell that shows `value` unchanged and is never evaluated as a formula.

    Text starting with ``=`` (which openpyxl would store as a formula) or with ``+ - @`` (which Excel
    reads as a formula when the cell is edited) is stored as a string with the quote-prefix style,
    unless it is a number such as ``-185.4``: no apostrophe is ever added to the value.
    """
    value = _plain(value)
    guard = _guarded(value)
    if not guard and not style:
        return value
    return _new_cell(ws, value, guard, style)


class _Styled(NamedTuple):
    """A value of a data row with cell attributes of its own; `key` names the attributes (one style per key)."""

    value: Any
    key: str
    style: dict[str, Any]


def _number(value: Any) -> Any:
    """A numeric difference value as a number with a thousands format of its own decimals (text if not a number)."""
    value = _plain(value)
    match = _NUMBER.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return value
    decimals = len(match.group(1) or "")
    number_format = "#,##0" + ("." + "0" * decimals if decimals else "")
    return _Styled(float(value), number_format, {"number_format": number_format})


def _header(ws: WriteOnlyWorksheet, values: list[str], *, wrap: bool = False) -> list[Any]:
    return [
        _cell(ws, v, fill=HEADER_FILL, font=HEADER_FONT, alignment=Alignment(wrap_text=wrap, vertical="center"))
        for v in values
    ]


def _escape(text: str) -> str:
    """Text as XML character data (what ElementTree writes)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _inline_text(value: str) -> str:
    """The ``<is>`` element of a text cell, spaces at either end preserved as openpyxl marks them."""
    stripped = value.strip()
    if stripped and value != stripped:
        return f'<is><t xml:space="preserve">{_escape(value)}</t></is>'
    return f"<is><t>{_escape(value)}</t></is>"


class _SheetRows:
    """The data rows of a write-only sheet, written to `path` as the worksheet XML openpyxl writes for them.

    openpyxl builds and serialises an ElementTree element per cell, which is most of the time of a sheet of
    200,000 rows. This writes the same XML with string operations. Cells are what `_cell` makes of each value
    (a `_Styled` value with its attributes); their styles come from openpyxl: the first cell of each style is
    built as a WriteOnlyCell and its style id reused, so the workbook's style table is the one openpyxl
    writes. Values of other types (bool, Decimal, date, time, error codes, text openpyxl refuses, …) go
    through a WriteOnlyCell too.
    """

    def __init__(self, ws: WriteOnlyWorksheet, path: Path, first_row: int) -> None:
        self.ws = ws
        self.path = path
        self.row = first_row
        self._epoch = ws.parent.epoch
        self._styles: dict[tuple[str, bool, type | None], str] = {}
        self._buffer: list[str] = []
        self._letters: list[str] = []
        # as openpyxl (ElementTree) writes its sheet files
        self._file = path.open("w", encoding="utf-8", errors="xmlcharrefreplace", newline="")

    def append(self, values: Sequence[Any]) -> None:
        ref = str(self.row)
        letters = self._letters
        if len(values) > len(letters):
            letters.extend(get_column_letter(c) for c in range(len(letters) + 1, len(values) + 1))
        cells = "".join([self._cell(letter + ref, v) for letter, v in zip(letters, values, strict=False)])
        self._buffer.append(f'<row r="{ref}">{cells}</row>')
        self.row += 1
        if len(self._buffer) >= _FLUSH:
            self._flush()

    def close(self) -> None:
        if not self._file.closed:
            self._flush()
            self._file.close()

    def _flush(self) -> None:
        self._file.write("".join(self._buffer))
        self._buffer.clear()

    def _cell(self, ref: str, item: Any) -> str:
        """What `_cell` makes of `item` (plain or `_Styled`), as XML; the common cases without a WriteOnlyCell."""
        kind = type(item)
        key, style = "", None
        if kind is str or kind is int:
            value = item
        elif item is None:
            return ""
        elif kind is float:
            if isnan(item):
                return ""
            value = item
        else:
            if kind is _Styled:
                value, key, style = _plain(item.value), item.key, item.style
            else:
                value = _plain(item)
                if value is None:
                    return ""
            kind = type(value)
        if kind is str:
            guard = _guarded(value)
            if (
                len(value) <= 32767
                and not (value[:1] == "#" and value in ERROR_CODES)
                and not ILLEGAL_CHARACTERS_RE.search(value)
            ):
                s = self._style(value, guard, key, style) if guard or style else ""
                if not value:
                    return f'<c r="{ref}"{s} t="inlineStr" />'
                return f'<c r="{ref}"{s} t="inlineStr">{_inline_text(value)}</c>'
            return self._other(ref, value, guard, style)
        if (kind is int or kind is float) and isfinite(value):
            s = self._style(value, False, key, style) if style else ""
            return f'<c r="{ref}"{s} t="n"><v>{value:.16g}</v></c>'
        if kind is datetime and value.tzinfo is None:
            serial = to_excel(value, self._epoch)
            return f'<c r="{ref}"{self._style(value, False, key, style)} t="n"><v>{serial:.16g}</v></c>'
        return self._other(ref, value, False, style)

    def _style(self, value: Any, guard: bool, key: str, style: dict[str, Any] | None) -> str:
        """The `` s="…"`` attribute of a str, int, float or datetime cell with these attributes."""
        kind = type(value) if type(value) is datetime else None  # a datetime gets a date format
        found = self._styles.get((key, guard, kind))
        if found is None:
            cell = _new_cell(self.ws, value, guard, style or {})
            found = self._styles[(key, guard, kind)] = f' s="{cell.style_id}"' if cell.has_style else ""
        return found

    def _other(self, ref: str, value: Any, guard: bool, style: dict[str, Any] | None) -> str:
        """Any cell, from a WriteOnlyCell as openpyxl writes it (openpyxl.cell._writer.etree_write_cell)."""
        cell = _new_cell(self.ws, value, guard, style or {})
        if cell.value is None and not cell.has_style:
            return ""
        value, kind = cell.value, cell.data_type
        attrs = f' r="{ref}"' + (f' s="{cell.style_id}"' if cell.has_style else "")
        if kind == "d":
            if getattr(value, "tzinfo", None) is not None:
                raise TypeError(
                    "Excel does not support timezones in datetimes. "
                    "The tzinfo in the datetime/time object must be set to None."
                )
            if self.ws.parent.iso_dates and not isinstance(value, timedelta):
                value = to_ISO8601(value)
            else:
                kind, value = "n", to_excel(value, self._epoch)
        if kind != "f":
            attrs += ' t="inlineStr"' if kind == "s" else f' t="{kind}"'
        if value is None or value == "":
            return f"<c{attrs} />"
        if kind == "f":
            return f"<c{attrs}><f>{_escape(value[1:])}</f><v /></c>"
        if kind == "s":
            return f"<c{attrs}>{_inline_text(value)}</c>"
        text = safe_string(value)
        return f"<c{attrs}><v>{_escape(text)}</v></c>" if text else f"<c{attrs}><v /></c>"


def _table(
    ws: WriteOnlyWorksheet, headers: list[tuple[str, int]], rows: Iterable[Sequence[Any]], lang: str, path: Path
) -> _SheetRows:
    """A data sheet: frozen, filtered header row and `rows` (plain values or `_Styled` ones), streamed to `path`.

    The caller may append more rows (below the filtered range) and closes the writer.
    """
    rows = iter(rows)
    sample = list(islice(rows, _FIT_SAMPLE))
    _fit(ws, headers, sample, lang)
    ws.freeze_panes = "A2"
    ws.append(_header(ws, [labels.text(lang, key) for key, _ in headers]))
    out = _SheetRows(ws, path, first_row=2)
    try:
        for row in chain(sample, rows):
            out.append(row)
    except BaseException:
        out.close()
        raise
    # written at the end of the sheet, when the workbook is saved
    ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{max(out.row - 1, 2)}"
    return out


def _fit(ws: WriteOnlyWorksheet, headers: list[tuple[str, int]], rows: list[Sequence[Any]], lang: str) -> None:
    """Widen columns to their longest value (CJK characters count double), within limits."""
    for col, (key, width) in enumerate(headers, start=1):
        sample = [labels.text(lang, key), *(_shown(r[col - 1]) for r in rows[:_FIT_SAMPLE])]
        longest = max((_display_width(v) for v in sample), default=width)
        ws.column_dimensions[get_column_letter(col)].width = max(8, min(60, max(width if not rows else 8, longest + 2)))


def _shown(value: Any) -> Any:
    if isinstance(value, _Styled):
        return value.value
    return value.value if isinstance(value, Cell) else value


def _display_width(value: Any) -> int:
    if value is None:
        return 0
    text = str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _summary(ws: WriteOnlyWorksheet, data: ReportData, lang: str) -> None:
    widths = [22, 24, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 26]
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
    # as the HTML says: sign-off and quarantine status are today's, not the run's
    note = labels.text(lang, "as_of", at=data.generated_at.isoformat(sep=" "), run=run.get("run_id"))
    ws.append([_cell(ws, note, font=Font(italic=True, color="7A8699"))])
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
        "diff_from_run",
    ]
    ws.append(_header(ws, [labels.text(lang, key) for key in cols]))
    flows = set(data.flows)
    for e in data.entities:
        ws.append([_entity_cell(ws, lang, e, key, e["entity"] in flows) for key in cols])
    if flows:
        note = labels.text(lang, "flows_note", flows=", ".join(labels.entity_label(lang, f) for f in data.flows))
        ws.append([_cell(ws, note, font=Font(italic=True, color="7A8699"))])
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


#: Figures a flow's row counts with words of its own (a number format, so they stay numbers), and those it has not.
_FLOW_WORDS = ("read_oa", "inserted", "updated")
_FLOW_BLANK = ("read_erp", "unchanged", "inactivated")


def _entity_cell(ws: WriteOnlyWorksheet, lang: str, entity: dict[str, Any], key: str, flow: bool) -> Any:
    """One cell of the summary's entity table; a flow's `inserted` reads `787 生成` (created), still a number."""
    value = _entity_value(lang, entity, key)
    if flow and key in _FLOW_BLANK:
        value = None
    if flow and key in _FLOW_WORDS and isinstance(value, int):
        word = labels.text(lang, f"flow_{key}").replace('"', "")
        return _cell(ws, value, border=Border(bottom=THIN), number_format=f'#,##0" {word}"')
    return _cell(ws, value, border=Border(bottom=THIN))


def _entity_value(lang: str, entity: dict[str, Any], key: str) -> Any:
    if key == "entity":
        return labels.entity_label(lang, entity["entity"])
    if key == "status":
        return labels.run_status_label(lang, entity.get("status"))
    if key == "diff_from_run":
        # differences of an entity this run did not reconcile come from its last successful run
        return entity.get("reference_run") if entity.get("differences_from_other_run") else None
    return entity.get(key)


def _tuples(frame: pd.DataFrame, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of `frame` as tuples of `columns` (None for a column it lacks), a chunk at a time.

    Values are what ``to_dict("records")`` gives, except pandas' NA, which `_plain` takes as None.
    """
    for start in range(0, len(frame), _CHUNK):
        part = frame.iloc[start : start + _CHUNK]
        yield from zip(*(part[c].tolist() if c in part.columns else [None] * len(part) for c in columns), strict=True)


_DIFF_FIELDS = (
    "class",
    "entity",
    "golden_key",
    "field",
    "erp_value",
    "oa_value",
    "target_value",
    "detail",
    "first_seen_at",
    "last_seen_at",
    "run_count",
    "status",
    "signed_by",
    "signed_at",
    "note",
    "diff_id",
)


def _diff_rows(frame: pd.DataFrame, lang: str) -> Iterator[list[Any]]:
    for (
        cls, entity, golden_key, field, erp, oa, target, detail, first_seen, last_seen, run_count, status,
        signed_by, signed_at, note, diff_id,
    ) in _tuples(frame.head(SHEET_ROW_LIMIT), _DIFF_FIELDS):  # fmt: skip
        parsed = labels.parse_detail(detail)
        numeric = parsed.get("code") == "numeric" or cls in _NUMERIC_CLASSES
        row = [
            labels.class_label(lang, cls, entity),
            golden_key,
            labels.field_label(lang, field),
            erp,
            labels.flow_value(lang, cls, oa),
            target,
            labels.describe(parsed, lang, erp_value=erp, oa_value=oa),
            first_seen,
            last_seen,
            run_count,
            labels.status_label(lang, status),
            signed_by,
            signed_at,
            note,
            diff_id,
        ]
        if numeric:
            for c in _VALUE_COLUMNS:
                row[c] = _number(row[c])
        fill = STATUS_FILLS.get(str(status))
        if fill is not None:
            row[_STATUS_COLUMN] = _Styled(row[_STATUS_COLUMN], f"fill:{status}", {"fill": fill})
        yield row


def _quarantine_rows(data: ReportData, lang: str) -> Iterator[list[Any]]:
    frame = data.quarantine.head(SHEET_ROW_LIMIT).reindex(columns=[c for c, _ in QUARANTINE_SHEET_COLUMNS])
    flows = set(data.flows)
    for r in frame.itertuples(index=False):
        yield [
            labels.entity_label(lang, r.entity),
            str(r.source or "").upper(),
            r.src_id,
            r.golden_key,
            labels.field_label(lang, r.field),
            r.rule,
            r.value,
            labels.reason_text(lang, r.reason) if r.entity in flows and isinstance(r.reason, str) else r.reason,
            r.run_id,
            labels.status_label(lang, r.status),
        ]


def _gap_rows(data: ReportData, lang: str) -> Iterator[list[Any]]:
    for r in data.gaps.reindex(columns=[c for c, _ in GAP_SHEET_COLUMNS]).itertuples(index=False):
        yield [
            labels.entity_label(lang, r.entity),
            str(r.source or "").upper(),
            labels.field_label(lang, r.field),
            r.value,
            r.code_table,
            r.policy,
            r.count,
        ]


def write_excel(data: ReportData, lang: str, path: Path) -> Path:
    """Write the workbook to `path`."""
    lang = labels.lang_of(lang)
    path = Path(path)
    wb = Workbook(write_only=True)
    used: set[str] = set()
    sheets: list[tuple[WriteOnlyWorksheet, _SheetRows]] = []
    with TemporaryDirectory(prefix="erpoa-xlsx-") as tmp:
        folder = Path(tmp)

        def table(name: str, headers: list[tuple[str, int]], rows: Iterable[Sequence[Any]]) -> _SheetRows:
            ws = wb.create_sheet(_sheet_name(name, used))
            sheets.append((ws, _table(ws, headers, rows, lang, folder / f"{len(sheets)}.xml")))
            return sheets[-1][1]

        try:
            _summary(wb.create_sheet(_sheet_name(labels.text(lang, "sheet_summary"), used)), data, lang)
            for entity, frame in entity_frames(data):
                rows = table(labels.entity_label(lang, entity), DIFF_SHEET_COLUMNS, _diff_rows(frame, lang))
                if len(frame) > SHEET_ROW_LIMIT:
                    rows.append([])
                    rows.append([labels.text(lang, "truncated", shown=SHEET_ROW_LIMIT, total=len(frame))])
            table(labels.text(lang, "sheet_quarantine"), QUARANTINE_SHEET_COLUMNS, _quarantine_rows(data, lang))
            table(labels.text(lang, "sheet_gaps"), GAP_SHEET_COLUMNS, _gap_rows(data, lang))
        finally:
            for _, rows in sheets:
                rows.close()
        book = folder / "book.xlsx"
        wb.save(book)
        _splice(book, path, {ws.path.lstrip("/"): rows.path for ws, rows in sheets})
    return path


def _splice(book: Path, path: Path, rows: dict[str, Path]) -> None:
    """Copy the workbook `book` to `path`, with the rows of each sheet file named in `rows` after its header row."""
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as dest:
        for info in src.infolist():
            data = src.read(info)
            extra = rows.get(info.filename)
            if extra is None or not extra.stat().st_size:
                dest.writestr(info, data)
                continue
            xml = data.decode("utf-8")
            at = xml.index("</sheetData>")
            head, tail = xml[:at].encode("utf-8"), xml[at:].encode("utf-8")
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.compress_type = info.compress_type
            entry.external_attr = info.external_attr
            entry.file_size = len(head) + extra.stat().st_size + len(tail)  # decides on ZIP64, as ZipFile.write does
            with dest.open(entry, "w") as out, extra.open("rb") as part:
                out.write(head)
                shutil.copyfileobj(part, out, 1 << 20)
                out.write(tail)
