"""The DAG's run message names cursor values in the future, as `erpoa sync` does (session 23): the note was only
logged in the extract task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project
from etl.engine.pipeline import run_sync
from tests.airflow.helpers import airflow_home_fixture, load_dag, run_dag, task_states  # noqa: F401
from tests.helpers.project import tiny_sqlite_project

pytestmark = [pytest.mark.airflow, pytest.mark.sqlite]


def test_a_future_cursor_value_is_named_in_the_dag_runs_message(airflow_home: Path, tmp_path: Path) -> None:
    config = tiny_sqlite_project(tmp_path)
    summary, ctx = run_sync(load_project(config), entities=["department"], full_refresh=True)
    ctx.close()
    assert summary.status == "success", summary.message
    engine = create_engine(f"sqlite:///{config.parent / 'erp.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE Department SET dModifyDate = '2099-01-01 00:00:00.000000' WHERE rowid = 1"))
    engine.dispose()
    dag_run = run_dag(load_dag(), {"config_path": str(config), "entities": ["department"]})
    assert dag_run.state == "success", task_states(dag_run)
    done = CliRunner().invoke(app, ["status", "--config", str(config), "--json"])
    (row,) = [r for r in json.loads(done.stdout)["last_run_entities"] if r["entity"] == "department"]
    assert row["status"] == "success", row
    assert "have a cursor dModifyDate later than a day from now" in (row["message"] or ""), row
