"""An entity whose lock another sync holds fails alone: the run's other entities, the approval flows and the summary
go on as for any failed entity (`erpoa sync` used to print only the lock error and skip flows and alerts)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.engine.lock import lock_name
from etl.engine.pipeline import open_store
from etl.store import schema as store_schema
from tests.helpers.project import make_project, urls_for


@pytest.mark.sqlite
def test_a_locked_entity_fails_alone_and_the_run_reports_everything(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    store = open_store(config)
    store.migrate()
    with store.engine.begin() as conn:  # a live sync (this process) holds contract's lock
        conn.execute(store_schema.locks.insert().values(
            name=lock_name("contract", "target:md_contract"), owner="other-run", host=socket.gethostname()[:100],
            pid=os.getpid(),
        ))
    done = CliRunner().invoke(app, ["sync", "--full-refresh", "--json", "--config", str(config.config_path)])
    assert done.exit_code == 5, done.output
    out = json.loads(done.stdout)
    by_name = {e["entity"]: e for e in out["entities"]}
    contract = by_name.pop("contract")
    assert (contract["status"], contract["error"], contract["exit_code"]) == ("failed", "LockedError", 5)
    assert "another sync holds the lock" in contract["message"] and "other-run" in contract["message"]
    assert {e["status"] for e in by_name.values()} == {"success"} and by_name["purchase"]["inserted"] > 0
    assert out["status"] == "partial" and out["exit_code"] == 5
    assert out["flows"] is not None and out["flows"]["flows"], out["flows"]  # the approval flows ran
    runs = store.runs(1)
    assert (runs[0]["run_id"], runs[0]["status"]) == (out["run_id"], "partial")

    text = CliRunner().invoke(app, ["sync", "department", "contract", "--config", str(config.config_path)])
    assert text.exit_code == 5, text.output
    assert "department" in text.output and "another sync holds the lock" in text.output


@pytest.mark.sqlite
def test_status_says_why_an_entity_failed(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    store = open_store(config)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(store_schema.locks.insert().values(
            name=lock_name("department", "target:md_department"), owner="other-run", host=socket.gethostname()[:100],
            pid=os.getpid(),
        ))
    done = CliRunner().invoke(app, ["sync", "department", "employee", "--config", str(config.config_path)])
    assert done.exit_code == 5, done.output
    shown = CliRunner().invoke(app, ["status", "--config", str(config.config_path)], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    assert "\ndepartment: another sync holds the lock" in shown.output, shown.output
    assert "employee: skipped: department failed" in shown.output, shown.output


@pytest.mark.sqlite
def test_flows_run_and_reconcile_run_wait_for_a_lock_as_their_message_says(tmp_path: Path) -> None:
    """The lock message says "pass --wait SECONDS": `flows run` and `reconcile run` take it as `sync` and
    `quarantine retry` do; the run queues behind the holder and goes on when it lets go."""
    import threading

    from etl.engine import lock
    from etl.flows import load_flows

    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    store = open_store(config)
    store.migrate()
    spec = load_flows(config).flows["purchase_order"]
    held = [
        lock_name("flow:purchase_order", f"{spec.target.connection}:{spec.target.header.table}"),
        lock_name("department", "target:md_department"),
    ]
    path = str(config.config_path)

    def hold() -> None:
        with store.engine.begin() as conn:
            for name in held:
                conn.execute(store_schema.locks.insert().values(
                    name=name, owner="other-run", host=socket.gethostname()[:100], pid=os.getpid()))

    def let_go_soon() -> threading.Timer:
        timer = threading.Timer(1.5, lambda: lock.release(store.engine, "other-run"))
        timer.start()
        return timer

    hold()
    refused = CliRunner().invoke(app, ["flows", "run", "--flow", "purchase_order", "--config", path])
    assert refused.exit_code == 5 and "pass --wait SECONDS" in refused.output, refused.output
    # a held lock is no error of the flow: logged as a warning
    assert "WARNING erpoa.flows: flow:purchase_order: another sync holds the lock" in refused.output, refused.output
    assert "ERROR erpoa.flows" not in refused.output
    timer = let_go_soon()
    waited = CliRunner().invoke(app, ["flows", "run", "--flow", "purchase_order", "--wait", "30", "--config", path])
    timer.join()
    assert waited.exit_code != 5 and "holds the lock" not in waited.output, waited.output
    hold()
    locked = CliRunner().invoke(app, ["reconcile", "run", "department", "--config", path, "--json"])
    assert locked.exit_code != 0 and "holds the lock" in locked.stdout, locked.output
    timer = let_go_soon()
    reconciled = CliRunner().invoke(app, ["reconcile", "run", "department", "--wait", "30", "--config", path, "--json"])
    timer.join()
    assert reconciled.exit_code == 0, reconciled.output
    assert json.loads(reconciled.stdout)["entities"]["department"].get("status") != "failed", reconciled.output
