"""`start_run` checks what `erpoa sync` checks before reading any data: the entities' expectation suites too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.config.project import load_project
from etl.engine.pipeline import open_store
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
