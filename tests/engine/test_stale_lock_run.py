"""A sync killed while holding an entity's lock: the next sync takes the stale lock over and marks the killed run
failed, so `erpoa status` no longer shows it running forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.engine.pipeline import open_store, run_sync
from tests.helpers.project import tiny_sqlite_project


def _killed_sync(config_path: Path) -> None:
    """`erpoa sync department` in a subprocess that SIGKILLs itself at its first publish, holding the lock."""
    proc = subprocess.run(
        [sys.executable, "-m", "etl.cli.app", "sync", "department", "--no-flows", "--config", str(config_path)],
        env={**os.environ, "ERPOA_FAULT": "publish.begin:1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.sqlite
def test_taking_over_a_dead_runs_lock_marks_that_run_failed(tmp_path: Path) -> None:
    config_path = tiny_sqlite_project(tmp_path)
    _killed_sync(config_path)
    config = load_project(config_path)
    (killed,) = open_store(config, read_only=True).runs()
    assert killed["status"] == "running" and killed["finished_at"] is None

    summary, _ = run_sync(config, entities=["department"])  # takes over the killed run's stale lock
    assert summary.status == "success", summary.message
    store = open_store(config, read_only=True)
    runs = {r["run_id"]: r for r in store.runs()}
    entities = store.entity_runs(killed["run_id"])
    dispose_all()
    # The entity it was syncing is failed too, with the same reason (it stayed `running` under the failed run).
    assert [(e["entity"], e["status"]) for e in entities] == [("department", "failed")]
    assert "ended without finishing" in entities[0]["message"]

    dead = runs[killed["run_id"]]
    assert dead["status"] == "failed"
    assert dead["finished_at"] is not None
    assert f"pid {killed['pid']}" in dead["message"]
    assert "ended without finishing" in dead["message"]
    assert f"taken over by run {summary.run_id}" in dead["message"]
    assert runs[summary.run_id]["status"] == "success"


@pytest.mark.sqlite
def test_a_finished_run_keeps_its_status(tmp_path: Path) -> None:
    """Only a run still `running` is marked: a finished one whose lock row names a dead process keeps its own."""
    from etl.engine.lock import _host, lock_name
    from etl.engine.pipeline import load_project_mappings
    from etl.store import schema as s
    from etl.store.repo import now

    config = load_project(tiny_sqlite_project(tmp_path))
    first, _ = run_sync(config, entities=["department"])
    assert first.status == "success", first.message
    target = load_project_mappings(config).entity("department").target
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open_store(config).engine.begin() as conn:  # a lock row left behind by the finished run
        conn.execute(
            s.locks.insert().values(
                name=lock_name("department", f"{target.connection}:{target.table}"),
                owner=first.run_id,
                host=_host(),
                pid=dead.pid,
                acquired_at=now(),
            )
        )
    second, _ = run_sync(config, entities=["department"])
    assert second.status == "success", second.message
    runs = {r["run_id"]: r for r in open_store(config, read_only=True).runs()}
    dispose_all()
    assert runs[first.run_id]["status"] == "success"
    assert "ended without finishing" not in (runs[first.run_id]["message"] or "")
