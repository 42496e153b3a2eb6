"""A run's report lists the quarantine findings the run closed, those gone from the source among them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig
from etl.engine.pipeline import open_store, run_sync
from etl.report.build import collect, write_reports
from etl.report.html import render_html
from tests.helpers.project import execute_sql, make_project

pytestmark = pytest.mark.sqlite


@pytest.fixture
def closed(tmp_path: Path) -> tuple[ProjectConfig, str, set[int]]:
    """A demo project whose second (incremental) run found two quarantined records deleted at the source: the
    unmapped OA department (a finding of one record) and the employee with the malformed ID number (a gate
    finding naming its ERP and OA records). Returns the config, the second run's id and the findings' ids."""
    config, manifest = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    rows = open_store(config).quarantine()
    department = str(manifest["unmapped_oa_department"]["oa_id"])
    code = manifest["invalid_id_number"]["code"]
    employee = rows[rows["stage"].str.startswith("gate") & (rows["golden_key"] == code)]
    ids = json.loads(employee["src_id"].item())
    oa, erp = (config.connection(name).sqlalchemy_url() for name in ("oa", "erp"))
    execute_sql(oa, f'DELETE FROM "HrmDepartment" WHERE id = {department}')
    execute_sql(oa, f'DELETE FROM "HrmResource" WHERE id = {ids["oa"]}')
    execute_sql(erp, f"DELETE FROM hr_hi_person WHERE \"cPsn_Num\" = '{ids['erp']}'")
    second, _ = run_sync(config, entities=["department", "employee"])
    assert second.status == "success", second.message
    gone = rows[(rows["src_id"] == department) | (rows["id"] == employee["id"].item())]
    return config, second.run_id, {int(i) for i in gone["id"]}


def _payload(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def test_the_report_lists_and_counts_the_findings_its_run_closed_as_vanished(closed) -> None:
    config, run_id, gone = closed
    store_rows = open_store(config).quarantine(status=None)
    assert set(store_rows.loc[store_rows["id"].isin(gone), "status"]) == {"vanished"}
    data = collect(config, run_id)
    listed = data.quarantine.set_index("id")
    assert gone <= set(listed.index), listed
    assert set(listed.loc[sorted(gone), "status"]) == {"vanished"}
    assert data.kpis["quarantine_vanished"] == 2  # distinct source records (the gate finding names one record)
    page = render_html(data, "en")
    q = _payload(page)["quarantine"]
    status, qid = q["columns"].index("status"), q["columns"].index("id")
    assert {r[status] for r in q["rows"] if r[qid] in gone} == {"Gone from the source"}
    assert "2 gone from the source" in page
    paths = write_reports(config, run_id, lang="en", out_dir=Path(str(config.config_path)).parent / "report")
    csv = pd.read_csv(paths["quarantine_csv"], dtype=str, keep_default_na=False)
    assert set(csv.loc[csv["id"].astype(int).isin(gone), "status"]) == {"vanished"}
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["kpis"]["quarantine_vanished"] == 2


def test_an_earlier_runs_report_does_not_count_what_a_later_run_closed(closed) -> None:
    config, run_id, gone = closed
    first = str(open_store(config).runs(10)[-1]["run_id"])
    assert first != run_id
    data = collect(config, first)
    assert gone <= set(data.quarantine["id"])  # recorded by that run (their status is as of now)
    assert data.kpis["quarantine_vanished"] == 0
