"""Fixtures shared by the engine's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig
from etl.engine.pipeline import run_sync
from tests.helpers.project import make_project


@pytest.fixture
def synced(tmp_path: Path) -> tuple[ProjectConfig, dict[str, Any]]:
    """A demo project on SQLite after its first full sync: the planted problems are quarantined.

    (`test_sweep.py` has a fixture of its own by this name.)
    """
    config, manifest = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    return config, manifest
