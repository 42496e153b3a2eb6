"""Collect what a reconciliation report shows and write it as HTML, Excel and CSV.

`write_reports(config, run_id)` writes into `<reports>/<run_id>/`:
`reconciliation.html` (self-contained), `reconciliation.xlsx`,
`differences.csv`, `quarantine.csv`, `gaps.csv` and `summary.json`. Values of
fields marked `pii: true` in the mappings are masked in all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from etl import logs
from etl.config.project import ProjectConfig
from etl.errors import ConfigError
from etl.mapping.loader import MappingSet
from etl.reconcile.compare import CLASSES
from etl.reconcile.store import DifferenceStore
from etl.report import labels
from etl.store.repo import Store

DIFF_COLUMNS = [
    "diff_id",
    "entity",
    "class",
    "golden_key",
    "field",
    "erp_value",
    "oa_value",
    "target_value",
    "detail",
    "status",
    "signed_by",
    "signed_at",
    "note",
    "first_run_id",
    "last_run_id",
    "first_seen_at",
    "last_seen_at",
    "run_count",
    "present",
]
QUARANTINE_COLUMNS = [
    "id",
    "run_id",
    "entity",
    "source",
    "src_id",
    "golden_key",
    "stage",
    "field",
    "rule",
    "value",
    "reason",
    "status",
    "created_at",
]
GAP_COLUMNS = ["entity", "source", "field", "value", "code_table", "policy", "count"]
#: Statuses of the quarantine findings a run closed that its report lists (a superseded one's newer row is listed).
CLOSED = ("resolved", "vanished")
FIGURES = ["read_erp", "read_oa", "inserted", "updated", "unchanged", "inactivated", "quarantined"]
HTML_ROW_LIMIT = 20_000
SHEET_ROW_LIMIT = 200_000


# --------------------------------------------------------------------------- masking


def mask_value(value: Any) -> Any:
    """Mask personal data, keeping enough to recognise it: `138****1234`, `3301**********1234`, `z***@example.com`."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return value
    return logs.mask_personal(str(value))


def pii_fields(mappings: MappingSet) -> dict[str, set[str]]:
    """entity -> fields marked `pii: true`."""
    return {name: set(m.pii_fields) for name, m in mappings.entities.items()}


def mask_differences(frame: pd.DataFrame, mappings: MappingSet) -> pd.DataFrame:
    """Differences with pii values masked (values, keys made of pii fields, and the details' record)."""
    if frame.empty:
        return frame
    out = frame.copy()
    pii = pii_fields(mappings)
    for entity, names in pii.items():
        if not names:
            continue
        in_entity = out["entity"] == entity
        rows = in_entity & out["field"].isin(names)
        for col in ("erp_value", "oa_value", "target_value"):
            out.loc[rows, col] = out.loc[rows, col].map(mask_value)
        key_fields = set(mappings.entity(entity).key)
        if key_fields & names:
            out.loc[in_entity, "golden_key"] = out.loc[in_entity, "golden_key"].map(mask_value)
        touched = in_entity & out["detail"].notna()
        out.loc[touched, "detail"] = [
            _mask_detail(d, names, bool(f in names))
            for d, f in zip(out.loc[touched, "detail"], out.loc[touched, "field"], strict=True)
        ]
    return out


def _mask_detail(detail: str, names: set[str], field_is_pii: bool) -> str:
    data = labels.parse_detail(detail)
    if not data:
        return detail
    record = data.get("record")
    if isinstance(record, dict):
        data["record"] = {k: mask_value(v) if k in names else v for k, v in record.items()}
    if field_is_pii:
        for key in ("golden", "value"):
            if key in data:
                data[key] = mask_value(data[key])
    return json.dumps(data, ensure_ascii=False)


def mask_rows(frame: pd.DataFrame, mappings: MappingSet, column: str = "value") -> pd.DataFrame:
    """Quarantine or gap rows with the pii `column` masked (and the raw record withheld)."""
    if frame.empty:
        return frame
    out = frame.copy()
    for entity, names in pii_fields(mappings).items():
        if names:
            rows = (out["entity"] == entity) & out["field"].isin(names)
            out.loc[rows, column] = out.loc[rows, column].map(mask_value)
            key_fields = set(mappings.entity(entity).key)
            if key_fields & names and "golden_key" in out:
                sel = out["entity"] == entity
                out.loc[sel, "golden_key"] = out.loc[sel, "golden_key"].map(mask_value)
    if "raw" in out:
        out = out.drop(columns="raw")
    return out


# --------------------------------------------------------------------------- collecting


@dataclass
class ReportData:
    """Everything one report shows; values already masked."""

    project: str
    run: dict[str, Any]
    entities: list[dict[str, Any]]
    differences: pd.DataFrame
    quarantine: pd.DataFrame
    gaps: pd.DataFrame
    trend: list[dict[str, Any]]
    kpis: dict[str, int]
    pii: dict[str, list[str]]
    generated_at: datetime
    datadocs: str | None = None
    entity_order: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    # Entities whose differences of the reference run were recorded before schema version 4: their presence is
    # estimated from the first and last run that saw each difference.
    estimated: list[str] = field(default_factory=list)
    # False for a report of an earlier run: sign-off status and notes are always as of `generated_at`.
    latest: bool = True
    # The run's message, masked; the reason a run that did not succeed gives.
    message: str | None = None
    # Entities that are approval flows (their rows count created and adopted documents, not inserted and updated).
    flows: list[str] = field(default_factory=list)


def _reference_runs(history: pd.DataFrame, upto: str) -> dict[str, str]:
    """entity -> the latest run (<= upto) that reconciled it successfully."""
    ok = history[(history["run_id"] <= upto) & (history["status"] == "success")]
    return ok.groupby("entity")["run_id"].max().to_dict()


@dataclass
class Presence:
    """Which differences each reconciliation found: recorded per run, or estimated for runs before schema 4."""

    seen: set[tuple[str, str]]  # (run_id, diff_id)
    recorded: set[tuple[str, str]]  # (run_id, entity) whose findings are recorded

    @classmethod
    def load(cls, differences: DifferenceStore, run_ids: Iterable[str]) -> Presence:
        """The recorded findings of `run_ids`."""
        ids = sorted(set(run_ids))
        rec = differences.reconciliations(ids)
        seen = differences.seen(ids)
        return cls(
            seen=set(zip(seen["run_id"], seen["diff_id"], strict=True)),
            recorded=set(zip(rec["run_id"], rec["entity"], strict=True)),
        )

    def at(self, diffs: pd.DataFrame, refs: Mapping[str, str]) -> pd.Series:
        """Differences present in each entity's reference run.

        Recorded runs answer exactly; an older run falls back to "first seen at or before it, last seen
        at or after it", which also counts a difference that went away in between and came back.
        """
        if diffs.empty:
            return pd.Series(False, index=diffs.index, dtype=bool)
        ref = diffs["entity"].map(refs)
        estimate = ref.notna() & (diffs["first_run_id"] <= ref) & (diffs["last_run_id"] >= ref)
        pairs = list(zip(ref, diffs["entity"], strict=True))
        recorded = pd.Series([p in self.recorded for p in pairs], index=diffs.index, dtype=bool)
        exact = pd.Series(
            [(r, d) in self.seen for r, d in zip(ref, diffs["diff_id"], strict=True)], index=diffs.index, dtype=bool
        )
        return exact.where(recorded, estimate).astype(bool)

    def estimated(self, refs: Mapping[str, str]) -> list[str]:
        """Entities whose reference run predates the per-run record."""
        return sorted(e for e, r in refs.items() if (r, e) not in self.recorded)


def _masked_message(message: Any, secrets: Iterable[str]) -> str | None:
    """A run or entity message as every other output shows it: secrets and URL passwords as `***`."""
    if message is None or (not isinstance(message, str) and pd.isna(message)) or not str(message).strip():
        return None
    return logs.redact_with(logs.redact(str(message)), secrets)


def _entity_history(store: Store) -> pd.DataFrame:
    from sqlalchemy import select

    from etl.store import schema as s

    cols = ["run_id", "entity", "status", *FIGURES, "differences", "seconds_total", "message"]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*[s.entity_runs.c[c] for c in cols])).all()
    return pd.DataFrame(rows, columns=cols)


def collect(
    config: ProjectConfig,
    run_id: str | None = None,
    *,
    last_runs: int = 10,
    out_dir: Path | None = None,
    mappings: MappingSet | None = None,
) -> ReportData:
    """Read the store for the report of `run_id` (default: the latest run)."""
    from etl.engine.pipeline import load_project_mappings, open_store
    from etl.reconcile.run import census_gaps

    mappings = mappings or load_project_mappings(config)
    store = open_store(config)
    runs = pd.DataFrame(store.runs(100_000))
    if runs.empty:
        raise ConfigError("there are no runs yet; run `erpoa sync` (or `erpoa demo`) first")
    if run_id is None:
        run_id = str(runs["run_id"].iloc[0])
    if run_id not in set(runs["run_id"]):
        known = ", ".join(runs["run_id"].head(5))
        raise ConfigError(f"run '{run_id}' is not in the store; recent runs: {known} (see `erpoa status`)")
    run = runs[runs["run_id"] == run_id].iloc[0].to_dict()
    history = _entity_history(store)
    refs = _reference_runs(history, run_id)
    seen = set(refs) | set(history.loc[history["run_id"] == run_id, "entity"])
    # Every mapped entity in dependency order (never reconciled ones too: "0 differences" must not hide "not
    # checked"), then anything else that records differences (e.g. the approval flows).
    order = list(mappings.order())
    order += sorted(seen - set(order))

    store_diffs = DifferenceStore(store.engine)
    all_diffs = store_diffs.frame(present=None)
    if all_diffs.empty:
        all_diffs = pd.DataFrame(columns=DIFF_COLUMNS)
    in_run = set(history.loc[(history["run_id"] == run_id) & (history["status"] == "success"), "entity"])
    previous = _previous_runs(history, in_run, run_id)
    trend_runs = _trend_runs(runs, history, run_id, last_runs)
    trend_refs = {r: _reference_runs(history, r) for r in trend_runs}
    presence = Presence.load(
        store_diffs, [*refs.values(), *previous.values(), *(v for t in trend_refs.values() for v in t.values())]
    )
    diffs = all_diffs[presence.at(all_diffs, refs)].copy()
    diffs["new"] = diffs["first_run_id"] == run_id
    resolved = 0
    if previous and not all_diffs.empty:
        resolved = int((presence.at(all_diffs, previous) & ~presence.at(all_diffs, refs)).sum())
    diffs = mask_differences(diffs, mappings)
    diffs["_order"] = diffs["class"].map({c: i for i, c in enumerate(CLASSES)}).fillna(len(CLASSES))
    diffs = diffs.sort_values(["entity", "_order", "golden_key", "field"], na_position="first").drop(columns="_order")

    q = store.quarantine(status=None)
    closed = (q["resolved_run_id"] == run_id) & q["status"].isin(CLOSED)
    q = q[(q["run_id"] == run_id) | ((q["status"] == "open") & (q["run_id"] <= run_id)) | closed]
    closed_records = _closed_records(q, run_id)
    q = mask_rows(q, mappings)
    gaps = pd.concat(
        [census_gaps(store, e, run_id).assign(entity=e) for e in order] or [pd.DataFrame(columns=GAP_COLUMNS)],
        ignore_index=True,
    )
    gaps = mask_rows(gaps.reindex(columns=GAP_COLUMNS), mappings)

    this_run = history[history["run_id"] == run_id].set_index("entity")
    secrets = config.secrets()
    entities = [_entity_row(entity, this_run, refs, diffs, run_id, secrets) for entity in order]
    classes = [*CLASSES, *sorted(set(all_diffs["class"].dropna()) - set(CLASSES))]
    trend = _trend(runs, trend_refs, presence, all_diffs, classes)
    estimated = sorted(
        set(presence.estimated(refs)) | {e for t in trend_refs.values() for e in presence.estimated(t)}
    )
    kpis = {
        "total": len(diffs),
        "open": int((diffs["status"] == "open").sum()),
        "accepted": int((diffs["status"] == "accepted").sum()),
        "fixed": int((diffs["status"] == "fixed").sum()),
        "new": int(diffs["new"].sum()),
        "resolved": resolved,
        "quarantined": int(q.loc[q["status"] == "open", ["entity", "source", "src_id"]].drop_duplicates().shape[0]),
        **closed_records,
        "gaps": len(gaps),
    }
    folder = out_dir or (config.resolve(config.reports) / run_id)
    datadocs = "datadocs/index.html" if (folder / "datadocs" / "index.html").exists() else None
    flow_names = _flow_names(config)
    return ReportData(
        project=config.project,
        run={k: (None if pd.isna(v) else v) if not isinstance(v, str) else v for k, v in run.items()},
        entities=entities,
        differences=diffs.reset_index(drop=True),
        quarantine=q.reset_index(drop=True),
        gaps=gaps.reset_index(drop=True),
        trend=trend,
        kpis=kpis,
        pii={e: sorted(n) for e, n in pii_fields(mappings).items() if n},
        generated_at=datetime.now().replace(microsecond=0),
        datadocs=datadocs,
        entity_order=order,
        classes=classes,
        estimated=estimated,
        latest=run_id == str(runs["run_id"].iloc[0]),
        message=_masked_message(run.get("message"), secrets) if run.get("status") != "success" else None,
        flows=[e for e in order if e in flow_names],
    )


def _flow_names(config: ProjectConfig) -> set[str]:
    """The names of the project's approval flows (valid or not), whose rows the report words as flows."""
    from etl.flows import load_flows

    flowset = load_flows(config, keep_going=True)
    return set(flowset.flows) | set(flowset.broken)


NOT_RECONCILED = "not_reconciled"


def _closed_records(q: pd.DataFrame, run_id: str) -> dict[str, int]:
    """Distinct source records (an integrity or gate finding: its golden record's, as one) whose quarantine
    findings `run_id` closed: `quarantine_resolved` (published, or the rule now passes), `quarantine_vanished`
    (gone from the source)."""
    mine = q[q["resolved_run_id"] == run_id]
    return {
        f"quarantine_{status}": int(
            mine.loc[mine["status"] == status, ["entity", "source", "src_id"]].drop_duplicates().shape[0]
        )
        for status in CLOSED
    }


def _entity_row(
    entity: str,
    this_run: pd.DataFrame,
    refs: Mapping[str, str],
    diffs: pd.DataFrame,
    run_id: str,
    secrets: Iterable[str],
) -> dict[str, Any]:
    """One entity's line: this run's figures, and the differences of its reference run.

    An entity neither in this run nor reconciled before is `not_reconciled`, with blank figures.
    """
    in_run = entity in this_run.index
    figures = this_run.loc[entity].to_dict() if in_run else {}
    reference = refs.get(entity)
    if not in_run and reference is None:
        blank: dict[str, Any] = dict.fromkeys([*FIGURES, "seconds", "diff_total", "diff_open", "diff_accepted"])
        return {
            "entity": entity,
            "status": NOT_RECONCILED,
            **blank,
            "diff_fixed": None,
            "diff_new": None,
            "in_run": False,
            "reference_run": None,
            "differences_from_other_run": False,
            "message": None,
            "by_class": {},
        }
    mine = diffs[diffs["entity"] == entity]
    return {
        "entity": entity,
        "status": figures.get("status") or "-",
        **{k: _int(figures.get(k)) for k in FIGURES},
        "seconds": float(figures.get("seconds_total") or 0.0),
        "in_run": in_run,
        "reference_run": reference,
        # differences come from `reference_run`: for an entity that failed in this run, an earlier one
        "differences_from_other_run": reference != run_id,
        "message": _masked_message(figures.get("message"), secrets) if figures.get("status") != "success" else None,
        "diff_total": len(mine),
        "diff_open": int((mine["status"] == "open").sum()),
        "diff_accepted": int((mine["status"] == "accepted").sum()),
        "diff_fixed": int((mine["status"] == "fixed").sum()),
        "diff_new": int(mine["new"].sum()),
        "by_class": {c: int(n) for c, n in mine["class"].value_counts().items()},
    }


def _previous_runs(history: pd.DataFrame, entities: Iterable[str], run_id: str) -> dict[str, str]:
    """entity -> its last successful run before `run_id` (to count what this run resolved)."""
    previous = {}
    for entity in entities:
        earlier = history[
            (history["entity"] == entity) & (history["run_id"] < run_id) & (history["status"] == "success")
        ]
        if not earlier.empty:
            previous[entity] = str(earlier["run_id"].max())
    return previous


def _int(value: Any) -> int:
    try:
        return 0 if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return 0


def _trend_runs(runs: pd.DataFrame, history: pd.DataFrame, upto: str, last: int) -> list[str]:
    """The last `last` runs up to `upto` that reconciled something, oldest first."""
    reconciled = set(history.loc[history["status"] == "success", "run_id"])
    chosen = runs[(runs["run_id"] <= upto) & runs["run_id"].isin(reconciled)].sort_values("run_id").tail(max(1, last))
    return [str(r) for r in chosen["run_id"]]


def _trend(
    runs: pd.DataFrame,
    trend_refs: Mapping[str, Mapping[str, str]],
    presence: Presence,
    diffs: pd.DataFrame,
    classes: list[str],
) -> list[dict[str, Any]]:
    """Per run of `trend_refs`: differences present by class, carrying each entity's last state."""
    chosen = runs[runs["run_id"].isin(list(trend_refs))].sort_values("run_id")
    out = []
    for row in chosen.itertuples(index=False):
        refs = trend_refs[str(row.run_id)]
        present = diffs[presence.at(diffs, refs)] if not diffs.empty else diffs
        counts = present["class"].value_counts().to_dict() if not present.empty else {}
        new = int((present["first_run_id"] == row.run_id).sum()) if not present.empty else 0
        out.append(
            {
                "run_id": str(row.run_id),
                "started_at": str(row.started_at)[:16] if row.started_at is not None else "",
                "trigger": str(row.trigger),
                "by_class": {c: int(counts.get(c, 0)) for c in classes},
                "total": int(sum(counts.values())),
                "new": new,
            }
        )
    return out


# --------------------------------------------------------------------------- writing


def _csv_frame(data: ReportData, lang: str) -> pd.DataFrame:
    frame = data.differences.reindex(columns=[*DIFF_COLUMNS, "new"]).copy()
    details = [labels.parse_detail(d) for d in frame["detail"]]
    frame.insert(frame.columns.get_loc("detail"), "detail_code", [str(d.get("code") or "") for d in details])
    frame["detail_text"] = [
        labels.describe(d, lang, erp_value=e, oa_value=o)
        for d, e, o in zip(details, frame["erp_value"], frame["oa_value"], strict=True)
    ]
    return frame


def _safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def write_reports(
    config: ProjectConfig,
    run_id: str | None = None,
    *,
    lang: str = "zh-CN",
    out_dir: Path | None = None,
    last_runs: int = 10,
) -> dict[str, Path]:
    """Write the HTML, Excel and CSV reports of a run; returns {"html", "excel", "csv", ...: path}.

    Default folder: `<config.reports>/<run_id>/` (run_id: the latest run).
    """
    from etl.report.excel import write_excel
    from etl.report.html import render_html

    lang = labels.lang_of(lang)
    data = collect(config, run_id, last_runs=last_runs, out_dir=out_dir)
    folder = out_dir or (config.resolve(config.reports) / _safe_name(str(data.run["run_id"])))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": folder / "reconciliation.html",
        "excel": folder / "reconciliation.xlsx",
        "csv": folder / "differences.csv",
        "quarantine_csv": folder / "quarantine.csv",
        "gaps_csv": folder / "gaps.csv",
        "json": folder / "summary.json",
    }
    paths["html"].write_text(render_html(data, lang), encoding="utf-8")
    write_excel(data, lang, paths["excel"])
    _csv_frame(data, lang).to_csv(paths["csv"], index=False, encoding="utf-8")
    data.quarantine.reindex(columns=QUARANTINE_COLUMNS).to_csv(paths["quarantine_csv"], index=False, encoding="utf-8")
    data.gaps.reindex(columns=GAP_COLUMNS).to_csv(paths["gaps_csv"], index=False, encoding="utf-8")
    paths["json"].write_text(json.dumps(summary(data), ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return paths


def summary(data: ReportData) -> dict[str, Any]:
    """The report's headline figures as plain data (summary.json, `erpoa report --json`)."""
    return {
        "project": data.project,
        "run": data.run,
        "generated_at": data.generated_at.isoformat(sep=" "),
        "message": data.message,
        "status_as_of": data.generated_at.isoformat(sep=" "),
        "latest_run": data.latest,
        "presence_estimated_for": data.estimated,
        "kpis": data.kpis,
        "entities": data.entities,
        "trend": data.trend,
    }


def entity_frames(data: ReportData) -> Iterable[tuple[str, pd.DataFrame]]:
    """(entity, its differences) in dependency order."""
    for entity in data.entity_order:
        yield entity, data.differences[data.differences["entity"] == entity]
