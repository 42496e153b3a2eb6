"""Safe retries: transient errors are retried by Airflow and converge on a clean run; terminal ones fail at once.

Also the error classification and the cross-task entity lock on their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.exc import OperationalError

from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.demo.generate import DemoSize, build_demo
from etl.engine.hooks import default_hooks
from etl.engine.lock import entity_lock
from etl.engine.pipeline import load_project_mappings, run_sync
from etl.errors import (
    ConfigError,
    DataError,
    LockedError,
    QualityGateError,
    SourceUnavailableError,
    UnmappedValueError,
)
from etl.orchestration import locking
from etl.orchestration.errors import airflow_errors, is_transient
from etl.store import schema as s
from etl.store.repo import Store, now
from tests.airflow.helpers import (
    airflow_home_fixture,  # noqa: F401
    fast_retry_dag_fixture,  # noqa: F401
    last_run_id,
    run_dag,
    store_figures,
    store_rows,
    target_rows,
    task_states,
)
from tests.notify.recorders import HttpRecorder

pytestmark = pytest.mark.airflow

SIZE = DemoSize(departments=12, employees=60, requisitions=30, contracts=20)
WECOM_KEY = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa"


def db_error(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(message))


# Classification ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (SourceUnavailableError("erp: database unavailable"), True),
        (LockedError("department: another sync holds the lock"), True),
        (db_error("server closed the connection unexpectedly"), True),
        (db_error("deadlock detected"), True),
        (db_error("Lock wait timeout exceeded; try restarting transaction"), True),
        (ConnectionResetError("reset by peer"), True),
        (QualityGateError("department: quality gate refused to publish"), False),
        (ConfigError("bad config"), False),
        (DataError("column gone"), False),
        (UnmappedValueError("unknown code"), False),
        (db_error('syntax error at or near "SELEC"'), False),
        (KeyError("bug"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_terminal_errors_fail_the_task_without_retry(airflow_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    seen: list[tuple[str, bool]] = []
    with (
        pytest.raises(
            AirflowFailException, match=r"department: publish: QualityGateError: .*gate refused \*\*\*"
        ) as info,
        airflow_errors(
            "department: publish",
            redact=lambda text: text.replace("s3cret", "***"),
            on_error=lambda exc, message, transient: seen.append((message, transient)),
        ),
    ):
        raise QualityGateError("gate refused s3cret")
    assert isinstance(info.value.__cause__, QualityGateError)
    assert seen == [("gate refused ***", False)]


def test_transient_errors_are_reraised_for_airflow_to_retry(airflow_home: Path) -> None:
    seen: list[bool] = []
    error = db_error("server closed the connection unexpectedly")
    with (
        pytest.raises(OperationalError) as info,
        airflow_errors("x", on_error=lambda exc, message, transient: seen.append(transient)),
    ):
        raise error
    assert info.value is error
    assert seen == [True]


def test_airflow_signals_pass_through(airflow_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    def boom(*args: Any) -> None:
        raise AssertionError("on_error must not run for Airflow's own exceptions")

    with pytest.raises(AirflowSkipException), airflow_errors("x", on_error=boom):
        raise AirflowSkipException("not selected")


def test_a_failing_failure_hook_does_not_hide_the_error(airflow_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    def broken(*args: Any) -> None:
        raise RuntimeError("store is down")

    with pytest.raises(AirflowFailException, match="DataError"), airflow_errors("x", on_error=broken):
        raise DataError("bad data")


# The entity lock across tasks -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = create_engine(f"sqlite:///{tmp_path / 'recon.db'}")
    store = Store(engine)
    store.migrate()
    yield store
    engine.dispose()


def test_lock_is_held_across_tasks_and_retries(store: Store) -> None:
    locking.acquire(store.engine, "employee", "target:md_employee", "run-a")
    locking.acquire(store.engine, "employee", "target:md_employee", "run-a")  # a retried prepare
    assert locking.held_by(store.engine, "run-a") == ["sync:employee@target:md_employee"]
    with pytest.raises(LockedError, match="run-a"):
        locking.acquire(store.engine, "employee", "target:md_employee", "run-b")
    with pytest.raises(LockedError), entity_lock(store.engine, "employee", "target:md_employee", "cli-run"):
        pass
    assert locking.release(store.engine, "run-b") == 0
    assert locking.release(store.engine, "run-a") == 1
    locking.acquire(store.engine, "employee", "target:md_employee", "run-b")
    assert locking.held_by(store.engine, "run-b") == ["sync:employee@target:md_employee"]


def test_lock_of_a_finished_run_is_stale(store: Store) -> None:
    store.start_run("run-a", trigger="airflow", mode="full", mapping_version="v", entities=["employee"])
    locking.acquire(store.engine, "employee", "target:md_employee", "run-a")
    with pytest.raises(LockedError):
        locking.acquire(store.engine, "employee", "target:md_employee", "run-b")
    store.finish_run("run-a", "failed")  # killed before finish_run released it
    locking.acquire(store.engine, "employee", "target:md_employee", "run-b")
    assert locking.held_by(store.engine, "run-a") == []


def test_lock_of_a_dead_cli_process_is_taken_over_and_a_live_one_waited_for(store: Store) -> None:
    import socket

    host = socket.gethostname()[:100]
    with store.engine.begin() as conn:
        conn.execute(
            insert(s.locks).values(
                name="sync:contract@target:md_contract", owner="cli", host=host, pid=os.getpid(), acquired_at=now()
            )
        )
    sleeps: list[float] = []
    with pytest.raises(LockedError):
        locking.acquire(store.engine, "contract", "target:md_contract", "run-b", wait_seconds=0.2, sleep=sleeps.append)
    assert sleeps
    with store.engine.begin() as conn:
        conn.execute(s.locks.update().values(pid=2**22 + 12345))  # no such process
    locking.acquire(store.engine, "contract", "target:md_contract", "run-b")
    assert locking.held_by(store.engine, "run-b") == ["sync:contract@target:md_contract"]


# Retries in a real DAG run --------------------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """SQLite demo sources (shared, read-only) and a project for the DAG."""
    build_demo(f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'oa.db'}", SIZE, seed=23)
    return write_project(
        tmp_path / "dag", {"erp": f"sqlite:///{tmp_path / 'erp.db'}", "oa": f"sqlite:///{tmp_path / 'oa.db'}"}
    )


def fail_first(fn: Callable[..., Any], error: BaseException, calls: list[str]) -> Callable[..., Any]:
    def wrapper(ctx: Any, entity: str, *args: Any) -> Any:
        calls.append(entity)
        if len(calls) == 1:
            raise error
        return fn(ctx, entity, *args)

    return wrapper


def canonical(url: str, config_path: Path, entity: str) -> list[tuple[Any, ...]]:
    mapping = load_project_mappings(load_project(config_path)).entity(entity)
    return target_rows(url, mapping.target.table, [*mapping.fields, "_key", "_active", "_presence", "_hash"])


def test_transient_failures_are_retried_and_converge_on_a_clean_run(
    fast_retry_dag: Any, demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import build, publish

    publish_calls: list[str] = []
    merge_calls: list[str] = []
    monkeypatch.setattr(
        publish,
        "publish",
        fail_first(
            publish.publish, SourceUnavailableError("target: database unavailable; will be retried"), publish_calls
        ),
    )
    monkeypatch.setattr(
        build,
        "build_partition",
        fail_first(build.build_partition, db_error("server closed the connection"), merge_calls),
    )

    dag_run = run_dag(fast_retry_dag, {"config_path": str(demo), "entities": ["department"], "full_refresh": True})

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states[("department.publish", -1)] == ("success", 2)
    assert states[("department.merge_validate", 0)] == ("success", 2)
    assert (publish_calls, merge_calls) == (["department", "department"], ["department", "department"])
    monkeypatch.undo()

    clean = write_project(
        tmp_path / "clean",
        {"erp": f"sqlite:///{tmp_path / 'erp.db'}", "oa": f"sqlite:///{tmp_path / 'oa.db'}"},
    )
    config = load_project(clean)
    summary, _ = run_sync(config, entities=["department"], full_refresh=True, hooks=default_hooks(config))
    assert summary.status == "success"

    dag_dir, clean_dir = demo.parent, clean.parent
    assert canonical(f"sqlite:///{dag_dir / 'target.db'}", demo, "department") == canonical(
        f"sqlite:///{clean_dir / 'target.db'}", clean, "department"
    )
    dag_recon, clean_recon = f"sqlite:///{dag_dir / 'recon.db'}", f"sqlite:///{clean_dir / 'recon.db'}"
    assert store_figures(dag_recon, last_run_id(dag_recon)) == store_figures(clean_recon, summary.run_id)
    columns = ["entity", "source", "src_id", "golden_key", "stage", "rule", "status"]
    assert store_rows(dag_recon, s.quarantine, columns) == store_rows(clean_recon, s.quarantine, columns)
    assert store_rows(dag_recon, s.locks, ["name"]) == []


def test_terminal_failure_fails_without_retry_releases_the_lock_and_alerts(
    fast_retry_dag: Any, demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import publish

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    calls: list[str] = []

    def refuse(ctx: Any, entity: str, read_total: int) -> None:
        calls.append(entity)
        raise QualityGateError(f"{entity}: quality gate refused to publish: expect_column_values_to_be_unique failed.")

    monkeypatch.setattr(publish, "gate_decision", refuse)
    with demo.open("a", encoding="utf-8") as f:
        f.write("notify:\n  - {type: wecom, name: ops, url_env: ERPOA_TEST_WECOM_URL}\n")

    with HttpRecorder() as wecom:
        monkeypatch.setenv("ERPOA_TEST_WECOM_URL", wecom.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"))
        dag_run = run_dag(fast_retry_dag, {"config_path": str(demo), "entities": ["department", "employee"]})
        requests = wecom.requests

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("department.publish", -1)] == ("failed", 1)
    assert states[("department.reconcile", -1)][0] == "upstream_failed"
    assert states[("employee.prepare", -1)][0] == "skipped"  # it depends on department
    assert states[("employee.extract", -1)][0] == "skipped"
    assert states[("finish_run", -1)] == ("failed", 1)
    assert calls == ["department"]

    recon = f"sqlite:///{demo.parent / 'recon.db'}"
    run_id = last_run_id(recon)
    assert store_rows(recon, s.runs, ["status"], run_id=run_id) == [("failed",)]
    assert store_rows(recon, s.entity_runs, ["entity", "status", "message"], run_id=run_id)[1:] == [
        ("employee", "skipped", "skipped: department failed")
    ]
    assert store_rows(recon, s.entity_runs, ["entity", "status"], run_id=run_id)[0] == ("department", "failed")
    assert "quality gate refused" in store_rows(recon, s.entity_runs, ["message"], run_id=run_id)[0][0]
    assert store_rows(recon, s.locks, ["name"]) == []
    assert target_rows(f"sqlite:///{demo.parent / 'target.db'}", "md_department", ["_key"]) == []

    assert len(requests) == 1  # from finish_run; its own deliberate failure is not alerted twice
    content = requests[0].json["markdown"]["content"]
    assert "质量门禁未通过" in content
    assert "department" in content
    assert "employee" in content  # named as skipped because of it
    assert run_id in content
    assert dag_run.run_id in content
    assert WECOM_KEY not in content
