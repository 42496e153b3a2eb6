"""Fixes of the reconciliation report: per-run presence, failed runs, unreconciled entities, counts, truncation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, select, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import open_store, run_sync
from etl.reconcile.store import DifferenceStore
from etl.report import html as report_html
from etl.report.build import collect, summary
from etl.report.html import render_html
from etl.store import schema as s
from etl.store.repo import Store
from tests.helpers.project import make_project

pytestmark = pytest.mark.sqlite
RUNS = [f"20260101T00000{i}-fxh00{i}" for i in range(1, 6)]


@pytest.fixture
def project(tmp_path: Path) -> ProjectConfig:
    """Demo sources and a project, with an empty store (runs are recorded by each test)."""
    config, _ = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    return config


def _diff(diff_id: str, key: str, cls: str = "field_mismatch") -> dict[str, Any]:
    return {
        "diff_id": diff_id,
        "class": cls,
        "golden_key": key,
        "field": "amount" if cls == "field_mismatch" else None,
        "erp_value": "1.00",
        "oa_value": "2.00",
        "target_value": "1.00",
        "detail": None,
    }


def _reconcile(
    store: Store, run_id: str, found: dict[str, list[dict[str, Any]]], *, failed: dict[str, str] | None = None
) -> None:
    """A reconcile run that found `found` (entity -> differences); `failed` entities fail with a message."""
    failed = failed or {}
    store.start_run(run_id, trigger="reconcile", mode="reconcile", mapping_version="1", entities=[*found, *failed])
    for entity, diffs in found.items():
        frame = pd.DataFrame(diffs, columns=list(_diff("x", "x")))
        DifferenceStore(store.engine).record(entity, run_id, frame)
        store.record_entity(run_id, entity, status="success", read_erp=10, read_oa=10)
    for entity, message in failed.items():
        store.record_entity(run_id, entity, status="failed", message=message)
    status = "success" if not failed else ("failed" if not found else "partial")
    store.finish_run(run_id, status, "; ".join(f"{n}: failed" for n in failed) or None)


def _payload(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


# --------------------------------------------------------------------------- #1 presence per run


def test_a_past_run_shows_only_the_differences_that_run_found(project: ProjectConfig) -> None:
    store = open_store(project)
    a, b, c = _diff("a" * 16, "HT1"), _diff("b" * 16, "HT2"), _diff("c" * 16, "HT3")
    _reconcile(store, RUNS[0], {"contract": [a, b, c]})
    _reconcile(store, RUNS[1], {"contract": [a]})  # b and c went away
    _reconcile(store, RUNS[2], {"contract": [a, b]})  # b came back (reopened)

    second = collect(project, RUNS[1])
    assert set(second.differences["diff_id"]) == {a["diff_id"]}
    assert second.kpis["total"] == 1 and second.kpis["resolved"] == 2
    assert [t["total"] for t in second.trend] == [3, 1]
    assert second.estimated == [] and not second.latest
    contract = next(e for e in second.entities if e["entity"] == "contract")
    assert contract["diff_total"] == 1 and contract["by_class"] == {"field_mismatch": 1}

    third = collect(project, RUNS[2])
    assert set(third.differences["diff_id"]) == {a["diff_id"], b["diff_id"]}
    assert [t["total"] for t in third.trend] == [3, 1, 2] and third.latest

    page = render_html(second, "en")
    assert "as of when this report was generated" in page and RUNS[1] in page


def test_a_store_of_schema_3_is_migrated_and_its_old_runs_are_labelled_estimated(project: ProjectConfig) -> None:
    store = open_store(project)
    a, b = _diff("a" * 16, "HT1"), _diff("b" * 16, "HT2")
    _reconcile(store, RUNS[0], {"contract": [a, b]})
    _reconcile(store, RUNS[1], {"contract": [a]})
    _reconcile(store, RUNS[2], {"contract": [a, b]})
    # Turn the store into one of schema version 3: no per-run record.
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE erpoa_difference_seen"))
        conn.execute(text("DROP TABLE erpoa_reconciliation"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 3"))

    store = open_store(project)  # migrates
    with store.engine.connect() as conn:
        assert conn.execute(select(s.schema_version.c.version)).scalar() == s.SCHEMA_VERSION
        assert conn.execute(select(s.difference_seen)).all() == []
    old = collect(project, RUNS[1])
    # Before the record, presence is the first/last rule (b counts), and the report says it is estimated.
    assert set(old.differences["diff_id"]) == {a["diff_id"], b["diff_id"]}
    assert old.estimated == ["contract"]
    assert summary(old)["presence_estimated_for"] == ["contract"]
    assert "differences are estimated from the first and last run" in render_html(old, "en")

    _reconcile(store, RUNS[3], {"contract": [b]})
    new = collect(project, RUNS[3])
    assert set(new.differences["diff_id"]) == {b["diff_id"]} and new.kpis["resolved"] == 1  # a, estimated at run 3
    assert new.estimated == ["contract"], "the trend still covers the estimated runs"
    assert [t["total"] for t in new.trend] == [2, 2, 2, 1]
    with store.engine.connect() as conn:
        seen = conn.execute(select(s.difference_seen.c.diff_id).where(s.difference_seen.c.run_id == RUNS[3]))
        assert [r[0] for r in seen] == [b["diff_id"]]


# --------------------------------------------------------------------------- #4 failed runs, #5 never reconciled


def test_a_failed_run_says_why_masked_and_where_its_figures_come_from(project: ProjectConfig) -> None:
    store = open_store(project)
    _reconcile(store, RUNS[0], {"contract": [_diff("a" * 16, "HT1")]})
    reason = "contract: reading OA failed: (sqlite3.OperationalError) no such table: oa_contract "
    reason += "[url postgresql://etl:Sup3rSecretPw@db.example/oa]"
    _reconcile(store, RUNS[1], {}, failed={"contract": reason})

    data = collect(project, RUNS[1])
    for lang, from_run in (("zh-CN", f"差异来自运行 {RUNS[0]}"), ("en", f"differences from run {RUNS[0]}")):
        page = render_html(data, lang)
        banner = re.search(r'<section class="card banner warn" id="run-banner".*?</section>', page, re.S)
        assert banner and "no such table: oa_contract" in banner.group(0)
        assert "Sup3rSecretPw" not in page and "***" in banner.group(0)
        assert from_run in page
    contract = next(e for e in data.entities if e["entity"] == "contract")
    assert contract["status"] == "failed" and contract["reference_run"] == RUNS[0]
    assert contract["differences_from_other_run"] and contract["diff_total"] == 1
    assert "no such table" in contract["message"] and "Sup3rSecretPw" not in contract["message"]

    ok = render_html(collect(project, RUNS[0]), "en")
    assert 'id="run-banner"' not in ok


def test_entities_never_reconciled_are_listed_as_such_with_blank_figures(project: ProjectConfig) -> None:
    store = open_store(project)
    _reconcile(store, RUNS[0], {"department": [_diff("d" * 16, "D1", "only_in_erp")]})
    data = collect(project, RUNS[0])
    rows = {e["entity"]: e for e in json.loads(json.dumps(summary(data), default=str))["entities"]}
    assert list(rows)[:4] == ["department", "employee", "contract", "purchase"]
    for entity in ("employee", "contract", "purchase"):
        assert rows[entity]["status"] == "not_reconciled"
        assert rows[entity]["diff_total"] is None and rows[entity]["read_erp"] is None
    assert rows["department"]["diff_total"] == 1
    page = render_html(data, "zh-CN")
    assert page.count("从未对账") >= 3
    assert "请购明细" in page


# --------------------------------------------------------------------------- #6 one meaning per word


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    folder = tmp_path_factory.mktemp("fxh_counts") / "project"
    config, _ = make_project(folder, sqlite_urls(folder))
    result, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    assert result.status == "success", result.message
    return config


def test_status_reconcile_and_report_agree_on_differences_new_and_open(synced: ProjectConfig) -> None:
    runner = CliRunner()
    cfg = ["--config", str(synced.config_path)]
    rec = runner.invoke(app, ["reconcile", *cfg, "--json"])
    assert rec.exit_code == 0, rec.output
    result = json.loads(rec.stdout)
    run_id = result["run_id"]
    report = collect(synced, run_id)
    ents = {e["entity"]: e for e in report.entities}

    st = runner.invoke(app, ["status", *cfg, "--json"])
    assert st.exit_code == 0, st.output
    last = {r["entity"]: r for r in json.loads(st.stdout)["last_run_entities"]}
    for name, stats in result["entities"].items():
        assert stats["total"] == ents[name]["diff_total"] == last[name]["differences"]
        assert stats["new"] == ents[name]["diff_new"] == last[name]["new"]
        assert stats["open"] == stats["open_total"] == ents[name]["diff_open"]
    contract = result["entities"]["contract"]
    assert contract["open"] != contract["new_or_reopened"], "the demo has differences open since the sync"
    engine = create_engine(synced.connection("recon").sqlalchemy_url())
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(s.entity_runs.c.entity, s.entity_runs.c.differences).where(s.entity_runs.c.run_id == run_id)
            ).all()
        )
    engine.dispose()
    # The stored column keeps one meaning on every path: what turned open in the run (alerts, Airflow results).
    assert stored == {n: st_["new_or_reopened"] for n, st_ in result["entities"].items()}

    console = runner.invoke(app, ["status", *cfg])
    assert "new" in console.stdout


def test_quarantine_header_counts_rows_and_the_status_is_translated(synced: ProjectConfig) -> None:
    data = collect(synced)
    assert not data.quarantine.empty
    page = render_html(data, "zh-CN")
    q = _payload(page)["quarantine"]
    status = q["columns"].index("status")
    assert {r[status] for r in q["rows"]} <= {"待处理", "已接受", "已修复"} and q["rows"]
    assert re.search(r'<h2>隔离记录 <span class="count" title="[^"]+">[\d,]+ 行</span>', page)


# --------------------------------------------------------------------------- #3 truncation


def test_truncated_details_keep_every_entity_and_the_real_total(
    project: ProjectConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(project)
    many = [_diff(f"{i:016x}", f"HT{i:05d}") for i in range(120)]
    few = [_diff(f"f{i:015x}", f"P{i}", "only_in_oa") for i in range(3)]
    _reconcile(store, RUNS[0], {"contract": many, "purchase": few})
    monkeypatch.setattr(report_html, "HTML_ROW_LIMIT", 40)
    page = render_html(collect(project, RUNS[0]), "en")
    diffs = _payload(page)["diffs"]
    entity = diffs["columns"].index("entity")
    assert len(diffs["rows"]) == 40 and diffs["total"] == 123
    assert sum(r[entity] == "purchase" for r in diffs["rows"]) == 3
    assert "40 of 123" in diffs["note"] and "fullTotal: D.diffs.total" in page
