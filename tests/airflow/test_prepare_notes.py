"""The notes of `prepare` in the Airflow DAG: the entity's stored message says what `erpoa sync` says.

`etl.engine.pipeline.prepare_entity` returns what changed in the entity's tables and, for an incremental
read, that the mappings changed since it was last synced. The CLI puts them in the entity's message; the
DAG's `prepare` task must too, and its later tasks (merge, publish, reconcile, a transient failure in
between) must keep them. Two identical SQLite projects: one synced by the DAG, its twin by the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project
from etl.engine.pipeline import run_sync
from etl.errors import SourceUnavailableError
from tests.airflow.helpers import airflow_home_fixture, load_dag, run_dag, task_states  # noqa: F401
from tests.helpers.project import replace_in, tiny_sqlite_project

pytestmark = [pytest.mark.airflow, pytest.mark.sqlite]

FIELD = "  updated_at: {type: datetime, compare: false}\n"
SOURCE = "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"


def _twins(tmp_path: Path) -> tuple[Path, Path]:
    """Two identical projects (sources, mappings, target, store), each with department synced once by the CLI."""
    configs = []
    for name in ("dag", "cli"):
        (tmp_path / name).mkdir()
        config = tiny_sqlite_project(tmp_path / name)
        summary, ctx = run_sync(load_project(config), entities=["department"], full_refresh=True)
        ctx.close()
        assert summary.status == "success", summary.message
        configs.append(config)
    return configs[0], configs[1]


def _edit(config: Path, *replacements: tuple[str, str]) -> None:
    replace_in(config.parent / "mappings" / "department.yaml", *replacements)


def _status_message(config: Path) -> str | None:
    """The department's message in `erpoa status --json` (the last run's entities)."""
    done = CliRunner().invoke(app, ["status", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    (row,) = [r for r in json.loads(done.stdout)["last_run_entities"] if r["entity"] == "department"]
    assert row["status"] == "success", row
    return row["message"]


def _dag_sync(config: Path) -> None:
    dag = load_dag(ERPOA_RETRY_DELAY_SECONDS="1")  # fresh: a module-scoped DAG leaks params between runs
    dag_run = run_dag(dag, {"config_path": str(config), "entities": ["department"]})
    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states[("department.merge_validate", 0)] == ("success", 2)  # the transient failure was retried


def _cli_sync(config: Path) -> None:
    done = CliRunner().invoke(app, ["sync", "department", "--no-flows", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output


def _fail_first(real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, failing its first call with a transient error (Airflow retries the task)."""
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise SourceUnavailableError("target: database unavailable; will be retried")
        return real(*args, **kwargs)

    return wrapper


def test_schema_changes_applied_by_prepare_stay_in_the_entitys_message(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import build

    dag_config, cli_config = _twins(tmp_path)
    new_field = (FIELD, FIELD + "  leader: {type: string, length: 20}\n")
    new_source = (SOURCE, SOURCE + "      leader: {from: cDepLeader, transforms: [trim]}\n")
    for config in (dag_config, cli_config):
        _edit(config, new_field, new_source)

    with monkeypatch.context() as patch:
        patch.setattr(build, "build_partition", _fail_first(build.build_partition))
        _dag_sync(dag_config)
    _cli_sync(cli_config)

    message = _status_message(dag_config)
    assert message is not None and "added column md_department.leader" in message, message
    assert "department is read completely to fill them" in message, message
    assert "transient" not in message, message
    assert message == _status_message(cli_config)


def test_the_changed_mappings_note_stays_in_the_entitys_message(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import build

    dag_config, cli_config = _twins(tmp_path)
    for config in (dag_config, cli_config):  # a new mapping version, the same tables: read incrementally
        _edit(config, (FIELD, FIELD.rstrip("\n") + "  # reviewed by the steward\n"))

    with monkeypatch.context() as patch:
        patch.setattr(build, "build_partition", _fail_first(build.build_partition))
        _dag_sync(dag_config)
    _cli_sync(cli_config)

    message = _status_message(dag_config)
    assert message is not None and "the mappings changed since department was last synced" in message, message
    assert "`erpoa sync department --full-refresh` re-maps them" in message, message
    assert message == _status_message(cli_config)
