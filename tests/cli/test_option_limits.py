"""Count options of the list commands: `--limit 0` shows all in `reconcile list` as in `quarantine list`, a negative
`--limit` and a `status --runs` below 1 are refused as usage errors (exit 2) instead of showing odd slices."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.db.connect import dispose_all
from tests.helpers.project import tiny_sqlite_project

pytestmark = pytest.mark.sqlite


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny demo project after a full sync (runs, differences and quarantined rows in its store)."""
    config = tiny_sqlite_project(tmp_path_factory.mktemp("limits"))
    done = CliRunner().invoke(app, ["sync", "--full-refresh", "--no-flows", "--config", str(config), "--json"])
    assert done.exit_code in (0, 4), done.output  # 4: the tiny demo's planted problems may stop a gate
    dispose_all()
    return str(config)


def _run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, list(args))
    return done.exit_code, done.output


def _json(*args: str) -> dict:
    code, output = _run(*args, "--json")
    assert code == 0, output
    return json.loads(output)


def test_reconcile_list_limit_0_shows_all_like_quarantine_list(project: str) -> None:
    every = _json("reconcile", "list", "--limit", "0", "--config", project)
    assert every["total"] >= 2
    assert len(every["rows"]) == every["total"]
    code, text = _run("reconcile", "list", "--limit", "0", "--config", project)
    assert code == 0 and f"differences: {every['total']}\n" in text  # no "showing 0"
    quarantined = _json("quarantine", "list", "--limit", "0", "--config", project)
    assert len(quarantined["rows"]) == quarantined["total"] > 0


def test_reconcile_list_limit_n_shows_n_and_says_so(project: str) -> None:
    one = _json("reconcile", "list", "--limit", "1", "--config", project)
    assert len(one["rows"]) == 1 < one["total"]
    code, text = _run("reconcile", "list", "--limit", "1", "--config", project)
    assert code == 0 and f"differences: {one['total']}, showing 1" in text


@pytest.mark.parametrize("command", [["reconcile", "list"], ["quarantine", "list"]])
def test_a_negative_limit_is_a_usage_error(command: list[str], project: str) -> None:
    code, output = _run(*command, "--limit", "-1", "--config", project)
    assert code == 2, output
    assert "Invalid value for '--limit'" in output and "0" in output
    assert "differences:" not in output and "quarantine (" not in output


def test_limit_0_is_documented_in_help() -> None:
    code, output = _run("reconcile", "list", "--help")
    assert code == 0 and "0 shows all" in output


def test_status_runs_below_1_is_a_usage_error(project: str) -> None:
    code, output = _run("status", "--runs", "0", "--config", project)
    assert code == 2, output
    assert "Invalid value for '--runs'" in output
    assert "No runs yet" not in output
    assert len(_json("status", "--runs", "1", "--config", project)["runs"]) == 1


def test_quarantine_retry_refuses_a_negative_wait(project: str) -> None:
    """As `run.lock_wait_seconds` does (`erpoa sync --wait` is declared in the sync command, not checked here)."""
    code, output = _run("quarantine", "retry", "department", "--wait", "-5", "--config", project)
    assert code == 2, output
    assert "Invalid value for '--wait'" in output
    assert "replayed" not in output
