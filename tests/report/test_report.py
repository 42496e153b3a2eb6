"""Reports of a demo sync: Excel, CSV and HTML are complete, self-contained and mask personal data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import open_store, run_sync
from etl.reconcile.store import DifferenceStore
from etl.report.build import write_reports
from tests.helpers.project import make_project

pytestmark = pytest.mark.sqlite
ENTITIES = ["department", "employee", "contract", "purchase"]
RESOURCE_URL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("report") / "project"
    config, manifest = make_project(folder, sqlite_urls(folder))
    summary, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    assert summary.status == "success", summary.message
    paths = write_reports(config, summary.run_id)
    return config, manifest, summary, paths


def _pii_values(config) -> set[str]:
    engine = create_engine(config.connection("target").sqlalchemy_url())
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT mobile, id_number FROM md_employee")).all()
    engine.dispose()
    return {v for row in rows for v in row if v}


def _xlsx_text(path: Path) -> str:
    wb = load_workbook(path, read_only=True)
    parts = []
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            parts.extend(str(v) for v in row if v is not None)
    return "\n".join(parts)


def test_files_go_to_the_run_folder(demo) -> None:
    config, _, summary, paths = demo
    assert {"html", "excel", "csv", "quarantine_csv", "gaps_csv", "json"} <= set(paths)
    folder = config.resolve(config.reports) / summary.run_id
    assert all(p.parent == folder and p.stat().st_size > 0 for p in paths.values())


def test_csv_parses_and_matches_the_store(demo) -> None:
    config, _, _, paths = demo
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    stored = DifferenceStore(open_store(config).engine).frame()
    assert len(csv) == len(stored) and set(csv["diff_id"]) == set(stored["diff_id"])
    assert {
        "diff_id",
        "entity",
        "class",
        "golden_key",
        "field",
        "erp_value",
        "oa_value",
        "target_value",
        "detail_code",
        "detail_text",
        "status",
        "first_seen_at",
        "run_count",
    } <= set(csv.columns)
    amount = csv[(csv["entity"] == "contract") & (csv["field"] == "amount")].iloc[0]
    assert amount["detail_code"] == "numeric" and "差额" in amount["detail_text"]
    quarantine = pd.read_csv(paths["quarantine_csv"], dtype=str, keep_default_na=False)
    assert {"entity", "source", "src_id", "rule", "reason"} <= set(quarantine.columns)
    assert "duplicate_key" in set(quarantine["rule"]) and "raw" not in quarantine.columns
    summary = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert summary["kpis"]["total"] == len(csv) and summary["kpis"]["new"] == len(csv)
    assert [e["entity"] for e in summary["entities"]] == ENTITIES


def test_excel_has_summary_entity_quarantine_and_gap_sheets(demo) -> None:
    _, _, _, paths = demo
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    wb = load_workbook(paths["excel"])
    assert wb.sheetnames == [
        "汇总",
        "部门 (department)",
        "员工 (employee)",
        "合同 (contract)",
        "请购明细 (purchase)",
        "隔离记录",
        "映射缺口",
    ]
    for entity, name in zip(ENTITIES, wb.sheetnames[1:5], strict=True):
        ws = wb[name]
        header = [c.value for c in ws[1]]
        assert header[:12] == [
            "类别",
            "业务键",
            "字段",
            "ERP值",
            "OA值",
            "目标值",
            "说明",
            "首次发现",
            "最近发现",
            "次数",
            "状态",
            "签核人",
        ]
        assert ws.max_row - 1 == int((csv["entity"] == entity).sum())
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:")
        assert ws.column_dimensions["G"].width >= 20
    quarantine = wb["隔离记录"]
    assert quarantine.max_row - 1 == len(pd.read_csv(paths["quarantine_csv"]))
    assert wb["汇总"]["A1"].value == "主数据对账报告"


def test_html_is_self_contained(demo) -> None:
    _, _, summary, paths = demo
    page = paths["html"].read_text(encoding="utf-8")
    assert not RESOURCE_URL.search(page)
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page and "<link" not in page
    assert page.count("<script") == 2 and "<style>" in page
    assert summary.run_id in page and "主数据对账报告" in page
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert data is not None
    payload = json.loads(data.group(1))
    assert payload["diffs"]["total"] == len(pd.read_csv(paths["csv"]))
    assert {c["id"] for c in payload["classes"]} >= {"only_in_erp", "field_mismatch", "target_drift"}


def test_personal_data_is_masked_everywhere(demo) -> None:
    config, _, _, paths = demo
    raw = _pii_values(config)
    assert raw
    outputs = {
        "html": paths["html"].read_text(encoding="utf-8"),
        "csv": paths["csv"].read_text(encoding="utf-8"),
        "quarantine": paths["quarantine_csv"].read_text(encoding="utf-8"),
        "excel": _xlsx_text(paths["excel"]),
    }
    result = CliRunner().invoke(
        app, ["reconcile", "list", "--entity", "employee", "--config", str(config.config_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    outputs["cli"] = result.output
    for name, content in outputs.items():
        leaked = [v for v in raw if v in content]
        assert not leaked, f"{name} shows personal data: {leaked[:3]}"
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    mobiles = csv[(csv["entity"] == "employee") & (csv["field"] == "mobile")]
    assert not mobiles.empty
    values = [v for v in pd.concat([mobiles["erp_value"], mobiles["oa_value"]]) if v]
    assert values and all(re.fullmatch(r"\d{3}\*{4}\d{4}", v) for v in values)


def test_english_report_and_datadocs_link(demo, tmp_path: Path) -> None:
    config, _, summary, _ = demo
    out = tmp_path / "en"
    (out / "datadocs").mkdir(parents=True)
    (out / "datadocs" / "index.html").write_text("<html></html>", encoding="utf-8")
    paths = write_reports(config, summary.run_id, lang="en", out_dir=out, last_runs=3)
    page = paths["html"].read_text(encoding="utf-8")
    assert "Master Data Reconciliation Report" in page and '<html lang="en">' in page
    assert 'href="datadocs/index.html"' in page
    wb = load_workbook(paths["excel"], read_only=True)
    assert wb.sheetnames[0] == "Summary" and "Quarantine" in wb.sheetnames
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    assert csv["detail_text"].str.len().gt(0).all()
    assert not csv["detail_text"].str.contains("差额|两系统|编码表|中没有").any()


def test_cli_report_and_sign_off(demo, tmp_path: Path) -> None:
    config, _, summary, _ = demo
    runner = CliRunner()
    cfg = str(config.config_path)
    listed = json.loads(
        runner.invoke(app, ["reconcile", "list", "--class", "duplicate_key", "--config", cfg, "--json"]).output
    )
    assert listed["total"] == 3
    target = listed["rows"][0]["diff_id"]
    done = runner.invoke(
        app, ["reconcile", "accept", target[:10], "--by", "李审计", "--note", "已核实", "--config", cfg]
    )
    assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["report", "--config", cfg, "--out", str(tmp_path / "r"), "--last", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["run_id"] == summary.run_id and payload["kpis"]["accepted"] == 1
    csv = pd.read_csv(payload["paths"]["csv"], dtype=str, keep_default_na=False).set_index("diff_id")
    assert csv.at[target, "status"] == "accepted" and csv.at[target, "note"] == "已核实"
    reopened = runner.invoke(app, ["reconcile", "reopen", target, "--by", "李审计", "--config", cfg, "--json"])
    assert json.loads(reopened.output)["rows"][0]["status"] == "open"
    bad = runner.invoke(app, ["report", "--config", cfg, "--run", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    bad = runner.invoke(app, ["reconcile", "list", "--class", "nonsense", "--config", cfg])
    assert bad.exit_code == 2
    help_text = runner.invoke(app, ["reconcile", "--help"]).output
    assert "accept" in help_text and "list" in help_text
