"""Fixtures shared by the engine's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig
from etl.engine.pipeline import run_sync
from tests.helpers.project import THREE, TINY, make_project, urls_for


@pytest.fixture
def synced(tmp_path: Path) -> tuple[ProjectConfig, dict[str, Any]]:
    """A demo project on SQLite after its first full sync: the planted problems are quarantined.

    (`test_sweep.py` has a fixture of its own by this name.)
    """
    config, manifest = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    return config, manifest


@pytest.fixture(params=THREE)
def department_synced(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectConfig:
    """A tiny demo project on SQLite, PostgreSQL and MariaDB (one each) after a full sync of department."""
    urls = urls_for(request.param, request, tmp_path)
    config, _ = make_project(tmp_path / "project", urls, size=TINY)
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    return config
