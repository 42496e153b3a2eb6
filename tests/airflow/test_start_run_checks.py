"""The Airflow DAG does what `erpoa sync` does: `start_run` checks the entities' expectation suites before reading
any data, and an incremental run closes the findings of records its sweep did not find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import load_project
from etl.engine.pipeline import open_store, run_sync
from tests.airflow.helpers import airflow_home_fixture  # noqa: F401
from tests.helpers.project import tiny_sqlite_project

pytestmark = [pytest.mark.airflow, pytest.mark.sqlite]


def test_a_broken_suite_fails_start_run_before_any_run_is_recorded(airflow_home: Path, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl.orchestration import tasks

    config = tiny_sqlite_project(tmp_path)
    suite = config.parent / "expectations" / "department.json"
    data = json.loads(suite.read_text(encoding="utf-8"))
    data["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nmae"}})
    suite.write_text(json.dumps(data, indent=2), encoding="utf-8")

    with pytest.raises(AirflowFailException, match=r"department\.json.*nmae"):
        tasks.start_run(
            {"config_path": str(config), "entities": ["department"]},
            dag_id="erpoa_master_data",
            dag_run="manual__suite",
            started=None,
            known_entities=("department", "employee", "contract", "purchase"),
        )
    store = open_store(load_project(config), read_only=True)
    assert store.runs() == []  # nothing recorded, nothing read


def test_an_incremental_dag_run_closes_the_finding_of_a_record_deleted_at_the_source(
    airflow_home: Path, tmp_path: Path
) -> None:
    """The sweep runs in the extract task, the closing in the publish task: the answer travels in the stage."""
    from tests.airflow.helpers import load_dag, run_dag, task_states
    from tests.helpers.project import execute_sql, make_project

    config, manifest = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    summary, ctx = run_sync(config, full_refresh=True, entities=["department"])
    ctx.close()
    assert summary.status == "success", summary.message
    oa_id = str(manifest["unmapped_oa_department"]["oa_id"])

    def statuses() -> set[str]:
        rows = open_store(config, read_only=True).quarantine(entity="department", status=None)
        return set(rows.loc[rows["src_id"] == oa_id, "status"])

    assert statuses() == {"open"}  # never published: the mirror does not hold it
    execute_sql(config.connection("oa").sqlalchemy_url(), f'DELETE FROM "HrmDepartment" WHERE id = {oa_id}')
    dag_run = run_dag(load_dag(), {"config_path": str(config.config_path), "entities": ["department"]})
    assert dag_run.state == "success", task_states(dag_run)
    assert statuses() == {"vanished"}
