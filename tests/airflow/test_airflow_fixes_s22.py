"""Fixes of the Airflow review (b.md): figures of failed entities, alerts when erpoa.yaml does not load, the last
try's messages, the approvals DAG's runs, locks of killed DAG runs, Airflow-specific hints, DAG settings, log
noise and asset events.

Real `dag.test()` runs on SQLite demo projects; a task body called directly is what a task (or its retry) runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.demo.generate import DemoSize, build_demo
from etl.engine.lock import entity_lock
from etl.engine.pipeline import run_sync
from etl.errors import LockedError, QualityGateError, SourceUnavailableError
from etl.orchestration import errors as orchestration_errors
from etl.orchestration import locking
from etl.store import schema as s
from etl.store.repo import Store
from tests.airflow.helpers import (
    DAGS,
    airflow_home_fixture,  # noqa: F401
    decoded,
    load_dag,
    run_dag,
    store_figures,
    store_rows,
    task_states,
    xcoms,
)
from tests.notify.recorders import HttpRecorder

pytestmark = pytest.mark.airflow

SIZE = DemoSize(departments=12, employees=60, requisitions=30, contracts=20)
READ = ("read_erp", "read_oa", "read_total", "quarantined")
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(scope="module")
def dag(airflow_home: Path) -> Any:
    return load_dag()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SQLite demo ERP and OA databases, shared read-only by the master-data tests."""
    folder = tmp_path_factory.mktemp("sources")
    urls = {"erp": f"sqlite:///{folder / 'erp.db'}", "oa": f"sqlite:///{folder / 'oa.db'}"}
    build_demo(urls["erp"], urls["oa"], SIZE, seed=29)
    return urls


def pulled(dag_run: Any) -> dict[tuple[str, int], Any]:
    return {(t, i): decoded(v) for t, i, _, v in xcoms(dag_run)}


def refuse_department(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quality gate refuses department (in the DAG and in `run_sync` alike)."""
    from etl.engine import publish as publish_stage

    gate = publish_stage.gate_decision

    def refuse(ctx: Any, entity: str, read_total: int, **kwargs: Any) -> None:
        if entity == "department":
            raise QualityGateError(f"{entity}: quality gate refused to publish: 1 of the {read_total} read")
        gate(ctx, entity, read_total, **kwargs)

    monkeypatch.setattr(publish_stage, "gate_decision", refuse)


# Finding 1 and 8: a failed entity keeps its figures; messages name each entity once, skipped is skipped ----------


def test_a_refused_entity_keeps_the_figures_the_cli_records_and_messages_name_it_once(
    dag: Any, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_department(monkeypatch)
    entities = ["department", "employee", "purchase"]
    config = write_project(tmp_path / "dag", sources)
    dag_run = run_dag(dag, {"config_path": str(config), "entities": entities, "full_refresh": True})
    assert dag_run.state == "failed"
    recon = f"sqlite:///{tmp_path / 'dag' / 'recon.db'}"
    run_id = pulled(dag_run)[("start_run", -1)]["run_id"]

    cli = load_project(write_project(tmp_path / "cli", sources))
    summary, _ = run_sync(cli, entities=entities, full_refresh=True)
    assert summary.status == "failed"

    dag_figures = store_figures(recon, run_id)["department"]
    cli_figures = store_figures(f"sqlite:///{tmp_path / 'cli' / 'recon.db'}", summary.run_id)["department"]
    assert dag_figures["status"] == cli_figures["status"] == "failed"
    assert dag_figures["read_total"] > 0
    assert {k: dag_figures[k] for k in READ} == {k: cli_figures[k] for k in READ}

    messages = dict(store_rows(recon, s.entity_runs, ["entity", "message"], run_id=run_id))
    assert messages["employee"] == "skipped: department failed"
    assert messages["purchase"] == "skipped: department failed and employee skipped"  # as the CLI words it
    assert dict(store_rows(f"sqlite:///{tmp_path / 'cli' / 'recon.db'}", s.entity_runs, ["entity", "message"],
                           run_id=summary.run_id))["purchase"] == messages["purchase"]
    [(run_message,)] = store_rows(recon, s.runs, ["message"], run_id=run_id)
    assert "department: department:" not in run_message
    assert run_message.startswith("department: quality gate refused to publish: 1 of the ")


# Finding 4: the last try says the task failed for good and what to clear -------------------------------------


def test_a_transient_error_on_the_last_try_says_it_failed_after_the_tries_and_what_to_clear(
    airflow_home: Path, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import extract as extract_stage

    def unavailable(ctx: Any, entity: str, source: str) -> Any:
        raise SourceUnavailableError(f"{source}: database unavailable: connection refused")

    monkeypatch.setattr(extract_stage, "extract_source", unavailable)
    no_retry = load_dag(ERPOA_RETRIES="0")  # the first try is the last
    config = write_project(tmp_path, sources)

    dag_run = run_dag(no_retry, {"config_path": str(config), "entities": ["department"]})

    assert dag_run.state == "failed"
    assert task_states(dag_run)[("department.extract", 0)] == ("failed", 1)
    recon = f"sqlite:///{tmp_path / 'recon.db'}"
    run_id = pulled(dag_run)[("start_run", -1)]["run_id"]
    [(status, message)] = store_rows(recon, s.entity_runs, ["status", "message"], run_id=run_id)
    assert status == "failed"
    assert "retried by Airflow" not in message
    assert "failed after 1 try" in message
    assert "clear department.prepare" in message
    [(run_message,)] = store_rows(recon, s.runs, ["message"], run_id=run_id)
    assert "retried by Airflow" not in run_message and "failed after 1 try" in run_message


def test_a_lock_still_held_on_the_last_try_does_not_promise_another(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'recon.db'}")
    Store(engine).migrate()
    with entity_lock(engine, "department", "target:md_department", "cli-run"):
        with pytest.raises(LockedError, match="retried with backoff"):
            locking.acquire(engine, "department", "target:md_department", "dag-run")
        monkeypatch.setattr(orchestration_errors, "tries", lambda: (3, 3))
        with pytest.raises(LockedError) as raised:
            locking.acquire(engine, "department", "target:md_department", "dag-run")
    assert "retried with backoff" not in str(raised.value)
    assert "try 3 of 3" in str(raised.value)
    engine.dispose()


# Finding 2: a config that does not load is alerted through its notify: section; nothing claims otherwise -------


def test_a_config_that_does_not_load_is_alerted_and_finish_run_does_not_claim_it_was(
    dag: Any, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl.notify.alerts import airflow_failure_callback
    from etl.orchestration import tasks

    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    config = write_project(tmp_path, sources)
    text = config.read_text(encoding="utf-8").replace("chunk_size: 20000", 'chunk_size: "lots"')
    assert 'chunk_size: "lots"' in text
    config.write_text(text + "notify:\n  - {type: wecom, name: ops, url_env: F5_WECOM_URL}\n", encoding="utf-8")

    with HttpRecorder() as wecom:
        monkeypatch.setenv("F5_WECOM_URL", wecom.url("/cgi-bin/webhook/send?key=f5"))
        dag_run = run_dag(dag, {"config_path": str(config)})
        requests = wecom.requests

    assert dag_run.state == "failed"
    assert task_states(dag_run)[("start_run", -1)] == ("failed", 1)
    assert len(requests) == 1  # start_run's failure, from the notify: section of the file that does not load
    assert "chunk_size" in requests[0].json["markdown"]["content"]

    with pytest.raises(AirflowFailException) as raised:
        tasks.finish_run(None)
    caplog.set_level(logging.INFO, logger="erpoa.notify")
    airflow_failure_callback({"exception": raised.value})
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "erpoa.notify")
    assert "already alerted by the task itself" not in said
    assert "start_run" in said


# Finding 8: hints that apply to Airflow; a DAG plan has no samples -----------------------------------------------


def test_a_missing_config_names_the_dags_settings_not_the_cli_option(airflow_home: Path, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl.orchestration import tasks

    with pytest.raises(AirflowFailException) as raised:
        tasks.start_run(
            {"config_path": str(tmp_path / "erpoa.yml")},
            dag_id="erpoa_master_data",
            dag_run="manual__f5",
            started=None,
            known_entities=("department",),
        )
    message = str(raised.value)
    assert "--config" not in message
    assert "config_path param" in message and "ERPOA_CONFIG" in message


def test_a_dag_run_points_to_what_it_keeps_not_to_samples_or_data_docs(tmp_path: Path) -> None:
    """A DAG's plan keeps no samples and a DAG run's gate no Data Docs (they run in separate tasks): a refused
    gate points to `erpoa plan` and to the merge_validate tasks' log there, to the samples and Data Docs in the CLI."""
    import yaml

    from tests.helpers.project import tiny_sqlite_project

    config_path = tiny_sqlite_project(tmp_path)
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["run"] = {**data.get("run", {}), "max_quarantined_rows": 0}  # the demo's departments hold one bad row
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_project(config_path)
    said = {}
    for trigger in ("cli", "airflow"):
        for dry_run in (True, False):
            summary, ctx = run_sync(config, entities=["department"], dry_run=dry_run, trigger=trigger)
            ctx.close()
            said[trigger, dry_run] = summary.entities[0].message or ""
    assert "its samples show the rows quarantined" in said["cli", True]
    assert "the DAG's plan keeps no samples: run `erpoa plan` for them" in said["airflow", True]
    assert said["cli", False].endswith("and the Data Docs of the run.")
    assert said["airflow", False].endswith("and the log of department's merge_validate tasks.")


# Finding 6: a lock left by a killed DAG run says how to release it ----------------------------------------------


def test_a_lock_held_by_a_dag_run_tells_the_cli_to_clear_its_finish_run(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'recon.db'}")
    store = Store(engine)
    store.migrate()
    store.start_run("20261206T225555.374838-10724f", trigger="airflow", mode="full", mapping_version="v",
                    entities=["department"])
    locking.acquire(engine, "department", "target:md_department", "20261206T225555.374838-10724f")
    with pytest.raises(LockedError) as raised, entity_lock(engine, "department", "target:md_department", "cli-run"):
        pass
    message = str(raised.value)
    assert "--wait" not in message and "wait for it to finish" not in message
    assert "Airflow DAG run" in message and "20261206T225555.374838-10724f" in message
    assert "clear its finish_run task" in message

    store.start_run("cli-holder", trigger="cli", mode="full", mapping_version="v", entities=["employee"])
    with (
        entity_lock(engine, "employee", "target:md_employee", "cli-holder"),
        pytest.raises(LockedError, match="--wait SECONDS"),  # a CLI holder: waiting does help
        entity_lock(engine, "employee", "target:md_employee", "cli-run"),
    ):
        pass
    engine.dispose()


# Finding 5: the approvals DAG records one run per flow task, trigger airflow, and a skip as skipped ---------------


def test_a_flow_task_records_one_airflow_run_per_dag_run_and_a_skip_as_skipped(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowSkipException

    from etl.flows import run as flow_run
    from etl.orchestration import flows

    build_demo(f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'oa.db'}", SIZE, seed=5)
    config = write_project(tmp_path)
    recon = f"sqlite:///{tmp_path / 'recon.db'}"
    params = {"config_path": str(config)}
    names = ("erp", "oa", "recon", "erp_write", "oa_write")
    started = datetime(2026, 12, 6, 22, 0).astimezone()
    locked = flow_run._locked

    def held(*args: Any, **kwargs: Any) -> Any:
        raise LockedError("flow:purchase_order: another sync holds the lock (cli-run on vm since now); "
                          "wait for it to finish, or pass --wait SECONDS to queue behind it")

    monkeypatch.setattr(flow_run, "_locked", held)
    for _ in range(2):  # the task and a retry of it
        with pytest.raises(AirflowSkipException, match="holds its lock"):
            flows.run_flow("purchase_order", params, names=names, dag_id="erpoa_approvals", dag_run="manual__f5",
                           started=started)
    runs = store_rows(recon, s.runs, ["run_id", "trigger", "status"])
    assert [(t, st) for _, t, st in runs] == [("airflow", "skipped")]
    assert store_rows(recon, s.entity_runs, ["entity", "status"]) == [("purchase_order", "skipped")]

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise SourceUnavailableError("oa: database unavailable: connection refused")

    monkeypatch.setattr(flow_run, "_locked", unavailable)
    for _ in range(2):  # two tries of the next DAG run's task: one run, its message names the flow once
        with pytest.raises(SourceUnavailableError):
            flows.run_flow("contract_archive", params, names=names, dag_id="erpoa_approvals", dag_run="manual__f6",
                           started=started)
    monkeypatch.setattr(orchestration_errors, "tries", lambda: (2, 2))
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="failed after 2 tries"):
        flows.run_flow("contract_archive", params, names=names, dag_id="erpoa_approvals", dag_run="manual__f6",
                       started=started)
    runs = store_rows(recon, s.runs, ["trigger", "status", "message"])
    assert len(runs) == 2
    [failed] = [r for r in runs if r[1] == "failed"]
    assert failed[0] == "airflow"
    assert failed[2].count("contract_archive") == 1 and "failed after 2 tries" in failed[2]
    monkeypatch.setattr(flow_run, "_locked", locked)
    monkeypatch.undo()

    monkeypatch.setenv("ERPOA_RETRIES", "0")
    bag = DagBag(str(DAGS / "erpoa_approvals.py"))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.dags["erpoa_approvals"].test(run_conf=params)
    assert dag_run.state == "success", task_states(dag_run)
    triggers = store_rows(recon, s.runs, ["trigger", "status", "entities"])
    assert ("airflow", "success", "purchase_order") in triggers
    assert ("airflow", "success", "contract_archive") in triggers
    assert len(triggers) == 4
    assert not [t for t in triggers if t[0] == "flows"]


# Finding 11: bad DAG settings name the variable ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("ERPOA_RETRIES", "three", "ERPOA_RETRIES='three' is not a whole number"),
        ("ERPOA_TIMEZONE", "Asia/Shangai", "ERPOA_TIMEZONE='Asia/Shangai' is not a known time zone"),
        ("ERPOA_RETRY_DELAY_SECONDS", "1m", "ERPOA_RETRY_DELAY_SECONDS='1m' is not a number of seconds"),
    ],
)
def test_a_bad_dag_setting_names_the_variable(
    airflow_home: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(variable, value)
    for name in ("erpoa_master_data.py", "erpoa_approvals.py"):
        bag = DagBag(str(DAGS / name))
        [error] = bag.import_errors.values()
        assert said in error, error


# Finding 9 and 10: connections logged once per run, a publish's XCom and asset event say what it wrote -------------


def test_connections_are_logged_once_per_run_and_publish_reports_what_it_wrote(
    dag: Any, sources: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from etl.orchestration import connections

    config = write_project(tmp_path, sources)
    caplog.set_level(logging.INFO, logger="erpoa.airflow")
    connections.load_config(config, strict=True)
    assert not [r for r in caplog.records if "is not defined" in r.getMessage()]  # every task but start_run
    connections.load_config(config, strict=True, verbose=True)
    assert len([r for r in caplog.records if "is not defined" in r.getMessage()]) == 4  # start_run, once per run

    runs = [run_dag(dag, {"config_path": str(config), "entities": ["department"]}) for _ in range(2)]
    extras = []
    for dag_run in runs:
        assert dag_run.state == "success", task_states(dag_run)
        assert pulled(dag_run)[("department.publish", -1)]["status"] == "published"
        with create_session() as session:
            events = session.scalars(
                select(AssetEvent).where(AssetEvent.source_dag_id == dag_run.dag_id,
                                         AssetEvent.source_run_id == dag_run.run_id)
            ).all()
            extras += [dict(e.extra) for e in events]
    first, second = extras
    assert first["entity"] == "department" and first["inserted"] > 0 and first["changed"] is True
    assert second["inserted"] == second["updated"] == second["inactivated"] == 0 and second["changed"] is False
