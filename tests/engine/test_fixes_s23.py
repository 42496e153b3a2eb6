"""Engine fixes of session 23.

* A sync in which no source has a watermark yet (a first sync) reads everything and is recorded as `full`, not
  `incremental`; the next one, which reads from the watermarks, is `incremental`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.engine.pipeline import open_store, run_sync
from tests.helpers.project import TINY, make_project


@pytest.mark.sqlite
def test_a_first_sync_is_recorded_full_and_the_next_incremental(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"), size=TINY)
    first, _ = run_sync(config, entities=["department", "employee"])
    second, _ = run_sync(config, entities=["department", "employee"])
    assert (first.mode, second.mode) == ("full", "incremental")
    recorded = {r["run_id"]: r["mode"] for r in open_store(config).runs(10)}
    assert recorded == {first.run_id: "full", second.run_id: "incremental"}
