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
from etl.report.build import HTML_ROW_LIMIT, NOT_RECONCILED, ReportData

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
    "class_label",
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
# Texts of this page that `labels` does not have (yet).
_TEXT = {
    "zh-CN": {
        "run_not_success": "本次运行状态为“{status}”，未全部成功。",
        "no_message": "未记录原因。",
        "entity_message": "{entity}：{message}",
        "from_run_title": "本次运行未成功对账该实体；差异与签核来自其最近一次成功对账的运行 {run}",
        "not_reconciled": "从未对账",
        "estimated": "本报告（含趋势图）用到的以下实体的部分运行早于逐次记录差异的存储版本（4）：这些运行的差异按"
        "首次与最近发现的运行推算，期间消失后又重现的差异也会被计入：{entities}。",
        "q_rows": "{n} 行",
        "q_rows_title": "隔离行数（本次运行记录的、以往仍待处理的及本次运行关闭的）；"
        "上方“隔离记录”卡片按源记录去重，只计仍待处理的",
        "q_closed": "本次运行关闭的源记录：已解决 {resolved} 条，{vanished} 条源记录已删除。",
        "truncated_by_entity": "按实体和类别均衡截取（每组先列未处理和新增），仅嵌入 {shown} / {total} 条；"
        "完整清单见 CSV / Excel。",
    },
    "en": {
        "run_not_success": "This run's status is “{status}”: it did not fully succeed.",
        "no_message": "No reason was recorded.",
        "entity_message": "{entity}: {message}",
        "from_run_title": "Not reconciled successfully in this run; differences and sign-off come from its last "
        "successful reconciliation, run {run}",
        "not_reconciled": "not reconciled",
        "estimated": "Some runs this report (or its trend) uses for these entities predate the per-run record "
        "of differences (store schema 4): for those runs, differences are estimated from the first and last run "
        "that saw each one, which also counts a difference that went away in between and came back: {entities}.",
        "q_rows": "{n} rows",
        "q_rows_title": "Quarantine rows (recorded by this run, earlier ones still open, and those this run "
        "closed); the Quarantined card above counts distinct source records still open",
        "q_closed": "Source records this run closed: {resolved} resolved, {vanished} gone from the source.",
        "truncated_by_entity": "Balanced across entities and classes (open and new first in each): {shown} of "
        "{total} embedded; the CSV and Excel files have them all.",
    },
}


def _t(lang: str, key: str, **params: Any) -> str:
    return (_TEXT[lang].get(key) or labels.TEXT[lang][key]).format(**params)

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


def _block(frame: pd.DataFrame, columns: list[str], limit: int, total: int | None = None) -> dict[str, Any]:
    """Rows to embed; `total` is how many there are in all (the frame may already be a cut)."""
    part = frame.reindex(columns=columns).head(limit)
    rows = [[_plain(v) for v in row] for row in part.itertuples(index=False, name=None)]
    return {"columns": columns, "rows": rows, "total": len(frame) if total is None else total}


def balanced_head(frame: pd.DataFrame, limit: int, groups: list[str]) -> pd.DataFrame:
    """At most `limit` rows, taken in turn from each group so that no group is left out; order kept.

    Within a group, open differences come first, then new ones.
    """
    if len(frame) <= limit:
        return frame
    first = pd.DataFrame(
        {
            "_closed": frame["status"].ne("open") if "status" in frame else False,
            "_old": ~frame["new"].fillna(False).astype(bool) if "new" in frame else False,
            "_pos": range(len(frame)),
        },
        index=frame.index,
    )
    keys = [frame[g].fillna("") for g in groups if g in frame]
    ranked = first.sort_values(["_closed", "_old", "_pos"], kind="stable")
    turn = ranked.groupby([k.loc[ranked.index] for k in keys], sort=False).cumcount() if keys else ranked["_pos"]
    chosen = ranked.assign(_turn=turn).sort_values(["_turn", "_pos"], kind="stable").head(limit)
    return frame.loc[chosen.sort_values("_pos").index]


def _diff_rows(data: ReportData, lang: str) -> pd.DataFrame:
    frame = balanced_head(data.differences, HTML_ROW_LIMIT, ["entity", "class"]).copy()
    details = [labels.parse_detail(d) for d in frame.get("detail", pd.Series(dtype=object))]
    frame["detail_text"] = [
        labels.describe(d, lang, erp_value=e, oa_value=o)
        for d, e, o in zip(details, frame.get("erp_value", []), frame.get("oa_value", []), strict=True)
    ]
    frame["class_label"] = [labels.class_label(lang, c, e) for c, e in zip(frame.get("class", []),
                                                                           frame.get("entity", []), strict=True)]
    frame["oa_value"] = [labels.flow_value(lang, c, v) for c, v in zip(frame.get("class", []),
                                                                       frame.get("oa_value", []), strict=True)]
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


def _status_text(lang: str, status: Any) -> str:
    if status == NOT_RECONCILED:
        return _t(lang, "not_reconciled")
    return labels.status_label(lang, None if status is None else str(status))


def _entity_cell(e: dict[str, Any], lang: str) -> str:
    """The entity's name, and the run its differences come from when that is not this run."""
    text = _e(labels.entity_label(lang, e["entity"]))
    run = e.get("reference_run")
    if run and e.get("differences_from_other_run"):
        title = _e(_t(lang, "from_run_title", run=run))
        text += f' <span class="muted from-run" title="{title}">{_e(_t(lang, "from_run", run=run))}</span>'
    return text


def _notices(data: ReportData, lang: str) -> str:
    """A warning when the run did not succeed (with its masked reasons), and notes on what the figures mean."""
    out = []
    status = str(data.run.get("status") or "")
    if status != "success":
        reasons = [
            _t(lang, "entity_message", entity=labels.entity_label(lang, e["entity"]), message=e["message"])
            for e in data.entities
            if e.get("message")
        ]
        if data.message and not reasons:
            reasons.append(data.message)
        items = "".join(f"<li>{_e(r)}</li>" for r in reasons) or f"<li>{_e(_t(lang, 'no_message'))}</li>"
        head = _e(_t(lang, "run_not_success", status=_status_text(lang, status)))
        out.append(
            f'<section class="card banner warn" id="run-banner" role="alert"><b>{head}</b><ul>{items}</ul></section>'
        )
    notes = []
    if data.estimated:
        names = ", ".join(labels.entity_label(lang, e) for e in data.estimated)
        notes.append(_t(lang, "estimated", entities=names))
    notes.append(_t(lang, "as_of", at=data.generated_at.isoformat(sep=" "), run=data.run.get("run_id")))
    out.append('<section class="card banner info" id="report-notes">' + "".join(f"<p>{_e(n)}</p>" for n in notes))
    out.append("</section>")
    return "".join(out)


#: Columns of a flow's row that mean something else for a flow, and those that mean nothing.
FLOW_WORDS = ("read_oa", "inserted", "updated")
FLOW_BLANK = ("read_erp", "unchanged", "inactivated")


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
    flows = set(data.flows)
    for e in data.entities:
        cells = []
        flow = e["entity"] in flows
        for col, numeric in cols:
            value = e.get(col)
            if flow and col in FLOW_WORDS and value is not None:
                # a flow creates and adopts documents: its figures carry their own words
                word = f' <span class="muted flow-word">{_e(labels.text(lang, "flow_" + col))}</span>'
                cells.append(f'<td class="num">{int(value or 0):,}{word}</td>')
            elif flow and col in FLOW_BLANK:
                cells.append('<td class="num muted"></td>')
            elif col == "entity":
                cells.append(f"<td>{_entity_cell(e, lang)}</td>")
            elif col == "status":
                title = f' title="{_e(e["message"])}"' if e.get("message") else ""
                pill = _e(_status_text(lang, value))
                cells.append(f'<td><span class="pill st-{_e(value)}"{title}>{pill}</span></td>')
            elif value is None:
                cells.append(f'<td class="{"num" if numeric else ""} muted"></td>')
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


def _flows_note(data: ReportData, lang: str) -> list[str]:
    """What the figures of the approval flows' rows count, when the table has any."""
    if not data.flows:
        return []
    return [labels.text(lang, "flows_note", flows=", ".join(labels.entity_label(lang, f) for f in data.flows))]


def _closed_note(data: ReportData, lang: str) -> list[str]:
    """The sentence counting the quarantined source records the run closed, when it closed any."""
    resolved, vanished = data.kpis.get("quarantine_resolved", 0), data.kpis.get("quarantine_vanished", 0)
    return [_t(lang, "q_closed", resolved=f"{resolved:,}", vanished=f"{vanished:,}")] if resolved or vanished else []


DIFF_STATUSES = ("open", "accepted", "fixed")


def _class_label(data: ReportData, lang: str, cls: str) -> str:
    """A class's label for the charts and the filter: the flows' own wordings of a shared audit class, joined."""
    frame = data.differences
    entities = frame.loc[frame["class"] == cls, "entity"].unique() if "class" in frame else []
    found = list(dict.fromkeys(labels.class_label(lang, cls, e) for e in sorted(entities)))
    return " / ".join(found) if found else labels.class_label(lang, cls)


def render_html(data: ReportData, lang: str = "zh-CN") -> str:
    """The report page of `data` in `lang` (zh-CN or en)."""
    lang = labels.lang_of(lang)
    t = labels.TEXT[lang]
    diffs = _diff_rows(data, lang)
    quarantine = data.quarantine.copy()
    if "status" in quarantine:
        quarantine["status"] = [labels.status_label(lang, v) for v in quarantine["status"]]
    if "reason" in quarantine and data.flows:
        flows = quarantine["entity"].isin(data.flows)
        quarantine.loc[flows, "reason"] = [labels.reason_text(lang, r) for r in quarantine.loc[flows, "reason"]]
    field_labels = {f: labels.field_label(lang, f) for f in labels.FIELD_LABELS_ZH} if lang == "zh-CN" else {}
    if lang == "zh-CN" and "field" in data.differences:
        # the flows' line columns (`line 1.iSum`) read 第1行 价税合计（iSum）
        lines = {f for f in data.differences["field"].dropna().unique() if str(f).startswith("line ")}
        field_labels.update({f: labels.field_label(lang, f) for f in sorted(lines)})
    n_runs = len(data.trend)
    payload = {
        "lang": lang,
        "t": t,
        "run": {k: _plain(v) for k, v in data.run.items()},
        "classes": [
            {
                "id": c,
                "label": _class_label(data, lang, c),
                "help": labels.CLASS_HELP[lang].get(c, ""),
                "color": CLASS_COLORS.get(c, EXTRA_COLORS[i % len(EXTRA_COLORS)]),
                "order": i,
            }
            for i, c in enumerate(data.classes)
        ],
        "statuses": labels.STATUS_LABELS[lang],
        # a difference is only ever open, accepted or fixed: the filter offers those
        "diffStatuses": [s for s in DIFF_STATUSES if s in set(data.differences.get("status", []))] or list(
            DIFF_STATUSES),
        "entities": [
            {**e, "label": labels.entity_label(lang, e["entity"]), "short": labels.entity_short(lang, e["entity"])}
            for e in data.entities
        ],
        "trend": data.trend,
        "trendTitle": labels.text(lang, "chart_trend", n=n_runs),
        "diffs": {
            **_block(diffs, DIFF_FIELDS, HTML_ROW_LIMIT, total=len(data.differences)),
            "note": _t(lang, "truncated_by_entity", shown=f"{len(diffs):,}", total=f"{len(data.differences):,}"),
        },
        "quarantine": {
            **_block(quarantine, QUARANTINE_FIELDS, HTML_ROW_LIMIT),
            "note": labels.text(lang, "truncated", shown=f"{HTML_ROW_LIMIT:,}", total=f"{len(quarantine):,}"),
        },
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
        "run_status_label": _status_text(lang, data.run.get("status")),
        "sec_entities": t["sec_entities"],
        "sec_entities_note": " ".join([t["sec_entities_note"], *_flows_note(data, lang)]),
        "chart_by_class": t["chart_by_class"],
        "chart_by_class_note": t["chart_by_class_note"],
        "chart_trend": labels.text(lang, "chart_trend", n=n_runs),
        "chart_trend_note": t["chart_trend_note"],
        "sec_differences": t["sec_differences"],
        "sec_differences_note": t["sec_differences_note"],
        "diff_count": f"{total:,}",
        "diff_truncated": _t(lang, "truncated_by_entity", shown=f"{len(diffs):,}", total=f"{total:,}")
        if total > len(diffs)
        else "",
        "sec_quarantine": t["sec_quarantine"],
        "sec_quarantine_note": " ".join([t["sec_quarantine_note"], *_closed_note(data, lang)]),
        "q_count": _t(lang, "q_rows", n=f"{q_total:,}"),
        "q_count_title": _t(lang, "q_rows_title"),
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
        notices=_notices(data, lang),
        kpis=_kpis(data, lang),
        entity_table=_entity_table(data, lang),
        css=_asset("report.css"),
        data=_json_for_script(payload),
        js=_asset("report.js"),
    )
    # One pass over the template: inserted text is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: rendered.get(m.group(1), ""), _asset("template.html"))
