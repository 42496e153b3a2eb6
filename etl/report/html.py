"""The self-contained HTML report: inline CSS, vanilla JS, charts as inline SVG, data embedded as JSON.

Nothing is fetched when the page opens: no CDN, no fonts, no images. Headline
figures and the entity table are rendered here (readable without JavaScript and
in print); charts and the filterable tables are drawn by `report.js`.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any

import pandas as pd

from etl.report import labels
from etl.report.build import HTML_ROW_LIMIT, ReportData

CLASS_COLORS = {
    "only_in_erp": "#2f6fdb",
    "only_in_oa": "#0e9bb0",
    "field_mismatch": "#e08a00",
    "mapping_gap": "#7a4fd6",
    "duplicate_key": "#d6407f",
    "orphan_reference": "#c8102e",
    "target_drift": "#5b6b82",
}
EXTRA_COLORS = ["#3d8b6d", "#a86b2d", "#6b7fd7", "#b0508a", "#4f9aa8", "#8a8f2e"]
KPI_COLORS = {
    "total": "#17325c",
    "open": "#e08a00",
    "accepted": "#1a7f4b",
    "new": "#c8102e",
    "resolved": "#2f6fdb",
    "quarantined": "#7a4fd6",
}
DIFF_FIELDS = [
    "diff_id",
    "entity",
    "class",
    "golden_key",
    "field",
    "erp_value",
    "oa_value",
    "target_value",
    "detail_text",
    "status",
    "signed_by",
    "signed_at",
    "note",
    "first_run_id",
    "last_run_id",
    "first_seen_at",
    "last_seen_at",
    "run_count",
    "new",
    "record",
    "golden",
]
QUARANTINE_FIELDS = [
    "id",
    "run_id",
    "entity",
    "source",
    "src_id",
    "golden_key",
    "field",
    "rule",
    "value",
    "reason",
    "status",
]
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
GAP_FIELDS = ["entity", "source", "field", "value", "code_table", "policy", "count"]


def _asset(name: str) -> str:
    return resources.files("etl.report").joinpath(name).read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar."""
    if value is None:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return None if pd.isna(value) else str(value)[:19]
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")[:19] if hasattr(value, "hour") else value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if value is pd.NaT:
        return None
    return value


def _block(frame: pd.DataFrame, columns: list[str], limit: int) -> dict[str, Any]:
    part = frame.reindex(columns=columns).head(limit)
    rows = [[_plain(v) for v in row] for row in part.itertuples(index=False, name=None)]
    return {"columns": columns, "rows": rows, "total": len(frame)}


def _diff_rows(data: ReportData, lang: str) -> pd.DataFrame:
    frame = data.differences.head(HTML_ROW_LIMIT).copy()
    details = [labels.parse_detail(d) for d in frame.get("detail", pd.Series(dtype=object))]
    frame["detail_text"] = [
        labels.describe(d, lang, erp_value=e, oa_value=o)
        for d, e, o in zip(details, frame.get("erp_value", []), frame.get("oa_value", []), strict=True)
    ]
    frame["record"] = [d.get("record") for d in details]
    frame["golden"] = [d.get("golden") for d in details]
    return frame


def _json_for_script(payload: Any) -> str:
    text = json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":"))
    # Inside <script> only "</" and "<!--" are dangerous; escaping every <, > and & is simplest.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _meta(data: ReportData, lang: str) -> str:
    run = data.run
    items = [
        ("project", data.project, False),
        ("run", run.get("run_id"), True),
        ("started", _plain(run.get("started_at")), False),
        ("finished", _plain(run.get("finished_at")), False),
        ("trigger", run.get("trigger"), False),
        ("mode", run.get("mode"), False),
        ("mapping_version", run.get("mapping_version"), True),
        ("generated", data.generated_at.isoformat(sep=" "), False),
    ]
    out = [
        f"<div><dt>{_e(labels.text(lang, k))}</dt>"
        f'<dd class="{"mono" if mono else ""}" title="{_e(v)}">{_e(v or "—")}</dd></div>'
        for k, v, mono in items
    ]
    if data.datadocs:
        out.append(
            f"<div><dt>{_e(labels.text(lang, 'datadocs'))}</dt>"
            f'<dd><a href="{_e(data.datadocs)}">{_e(data.datadocs)}</a></dd></div>'
        )
    return "".join(out)


def _kpis(data: ReportData, lang: str) -> str:
    k = data.kpis
    cards = [
        ("total", k["total"]),
        ("open", k["open"]),
        ("accepted", k["accepted"]),
        ("new", k["new"]),
        ("resolved", k["resolved"]),
        ("quarantine", k["quarantined"]),
    ]
    out = []
    for key, value in cards:
        color = KPI_COLORS.get(key, KPI_COLORS["quarantined"])
        out.append(
            f'<div class="card kpi" style="--kc:{color}" id="kpi-{key}">'
            f'<div class="label">{_e(labels.text(lang, "kpi_" + key))}</div>'
            f'<div class="value">{value:,}</div>'
            f'<div class="hint">{_e(labels.text(lang, "kpi_" + key + "_sub"))}</div></div>'
        )
    return "".join(out)


def _entity_table(data: ReportData, lang: str) -> str:
    cols = [
        ("entity", False),
        ("status", False),
        ("read_erp", True),
        ("read_oa", True),
        ("inserted", True),
        ("updated", True),
        ("unchanged", True),
        ("inactivated", True),
        ("quarantined", True),
        ("diff_total", True),
        ("diff_open", True),
        ("diff_accepted", True),
        ("seconds", True),
    ]
    head = "".join(f'<th class="{"num" if n else ""}">{_e(labels.text(lang, c))}</th>' for c, n in cols)
    body = []
    for e in data.entities:
        cells = []
        for col, numeric in cols:
            value = e.get(col)
            if col == "entity":
                text = _e(labels.entity_label(lang, e["entity"]))
                if not e.get("in_run"):
                    run = _e(e.get("reference_run") or "")
                    text += f' <span class="muted mono" title="{_e(labels.text(lang, "run"))}">{run}</span>'
                cells.append(f"<td>{text}</td>")
            elif col == "status":
                cells.append(f'<td><span class="pill st-{_e(value)}">{_e(value)}</span></td>')
            elif col == "seconds":
                cells.append(f'<td class="num">{float(value or 0):.2f}</td>')
            elif col == "diff_open" and value:
                cells.append(f'<td class="num" style="color:#9a4a00;font-weight:700">{int(value):,}</td>')
            else:
                cells.append(f'<td class="{"num" if numeric else ""}">{int(value or 0):,}</td>')
        body.append(f'<tr data-entity="{_e(e["entity"])}">{"".join(cells)}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(cols)}" class="muted">{_e(labels.text(lang, "none"))}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(data: ReportData, lang: str = "zh-CN") -> str:
    """The report page of `data` in `lang` (zh-CN or en)."""
    lang = labels.lang_of(lang)
    t = labels.TEXT[lang]
    diffs = _diff_rows(data, lang)
    field_labels = {f: labels.field_label(lang, f) for f in labels.FIELD_LABELS_ZH} if lang == "zh-CN" else {}
    n_runs = len(data.trend)
    payload = {
        "lang": lang,
        "t": t,
        "run": {k: _plain(v) for k, v in data.run.items()},
        "classes": [
            {
                "id": c,
                "label": labels.class_label(lang, c),
                "help": labels.CLASS_HELP[lang].get(c, ""),
                "color": CLASS_COLORS.get(c, EXTRA_COLORS[i % len(EXTRA_COLORS)]),
                "order": i,
            }
            for i, c in enumerate(data.classes)
        ],
        "statuses": labels.STATUS_LABELS[lang],
        "entities": [
            {**e, "label": labels.entity_label(lang, e["entity"]), "short": labels.entity_short(lang, e["entity"])}
            for e in data.entities
        ],
        "trend": data.trend,
        "trendTitle": labels.text(lang, "chart_trend", n=n_runs),
        "diffs": _block(diffs, DIFF_FIELDS, HTML_ROW_LIMIT),
        "quarantine": _block(data.quarantine, QUARANTINE_FIELDS, HTML_ROW_LIMIT),
        "gaps": _block(data.gaps, GAP_FIELDS, HTML_ROW_LIMIT),
        "pii": data.pii,
        "fieldLabels": field_labels,
        "signer": "姓名" if lang == "zh-CN" else "NAME",
    }
    total, q_total = len(data.differences), len(data.quarantine)
    values = {
        "lang": lang,
        "title": t["title"],
        "subtitle": t["subtitle"],
        "project": data.project,
        "run_id": str(data.run.get("run_id")),
        "run_status": str(data.run.get("status") or ""),
        "run_status_label": str(data.run.get("status") or ""),
        "sec_entities": t["sec_entities"],
        "sec_entities_note": t["sec_entities_note"],
        "chart_by_class": t["chart_by_class"],
        "chart_by_class_note": t["chart_by_class_note"],
        "chart_trend": labels.text(lang, "chart_trend", n=n_runs),
        "chart_trend_note": t["chart_trend_note"],
        "sec_differences": t["sec_differences"],
        "sec_differences_note": t["sec_differences_note"],
        "diff_count": f"{total:,}",
        "diff_truncated": labels.text(lang, "truncated", shown=f"{HTML_ROW_LIMIT:,}", total=f"{total:,}")
        if total > HTML_ROW_LIMIT
        else "",
        "sec_quarantine": t["sec_quarantine"],
        "sec_quarantine_note": t["sec_quarantine_note"],
        "q_count": f"{q_total:,}",
        "q_truncated": labels.text(lang, "truncated", shown=f"{HTML_ROW_LIMIT:,}", total=f"{q_total:,}")
        if q_total > HTML_ROW_LIMIT
        else "",
        "sec_gaps": t["sec_gaps"],
        "sec_gaps_note": t["sec_gaps_note"],
        "gap_count": f"{len(data.gaps):,}",
        "masked": t["masked"],
        "footer": t["footer"],
        "generated": t["generated"],
        "generated_at": data.generated_at.isoformat(sep=" "),
    }
    rendered = {key: _e(value) for key, value in values.items()}
    rendered.update(
        meta=_meta(data, lang),
        kpis=_kpis(data, lang),
        entity_table=_entity_table(data, lang),
        css=_asset("report.css"),
        data=_json_for_script(payload),
        js=_asset("report.js"),
    )
    # One pass over the template: inserted text is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: rendered.get(m.group(1), ""), _asset("template.html"))
