"""Airflow fixes of session 23.

* A schedule variable that is not a cron expression names the variable when the DAG file is bagged: Airflow 3's
  `CronTriggerTimetable` accepts any text and failed later with its own words (`Exactly 5, 6 or 7 columns ...`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.airflow.helpers import DAGS, airflow_home_fixture  # noqa: F401


@pytest.mark.parametrize(
    ("name", "variable", "value"),
    [
        ("erpoa_master_data.py", "ERPOA_SCHEDULE", "bogus"),
        ("erpoa_approvals.py", "ERPOA_APPROVALS_SCHEDULE", "61 * * * *"),
    ],
)
def test_a_bad_schedule_names_the_variable(
    airflow_home: Path, monkeypatch: pytest.MonkeyPatch, name: str, variable: str, value: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(variable, value)
    [error] = DagBag(str(DAGS / name)).import_errors.values()
    assert f"{variable}={value!r} is not a cron expression" in error, error
    assert "or none" in error
