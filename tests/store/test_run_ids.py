"""Run ids order runs: the store picks "the last complete read", the last run and superseded findings by id."""

from __future__ import annotations

from datetime import datetime

import pytest

from etl.orchestration.tasks import make_run_id
from etl.store.repo import new_run_id

pytestmark = pytest.mark.unit


def test_run_ids_made_one_after_the_other_sort_in_that_order() -> None:
    # Most of these fall in one second: ids of whole seconds sorted them by their random suffix.
    ids = [new_run_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_an_airflow_run_id_sorts_with_the_clis_and_after_the_old_ids_of_its_second() -> None:
    started = datetime(2026, 12, 6, 13, 30, 5, 250_000).astimezone()
    airflow = make_run_id("erpoa_master_data", "manual__1", started)
    assert airflow == make_run_id("erpoa_master_data", "manual__1", started)  # the same on every retry
    assert airflow.startswith(f"{started:%Y%m%dT%H%M%S}.250000-")
    assert "20261206T133005-ffffff" < airflow < "20261206T133006-000000"  # ids written by earlier versions
    assert len(new_run_id()) <= 40  # the store's run id columns
