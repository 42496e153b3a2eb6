"""The Airflow-side fixes of the review: cleared tasks and the entity lock, disabled flows, failing dry runs,
the `entities` and `connections` params, connection extras and one alert per failure.

Real `dag.test()` runs on SQLite demo projects; a task body called directly is what a cleared task runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy import table as sql_table

from etl.cli.demo_cmd import write_project
from etl.demo.generate import DemoSize, build_demo
from etl.errors import ConfigError, LockedError, QualityGateError
from etl.orchestration import locking
from etl.store import schema as s
from tests.airflow.helpers import (
    DAGS,
    airflow_home_fixture,  # noqa: F401
    decoded,
    load_dag,
    run_dag,
    store_rows,
    table_names,
    target_rows,
    task_states,
    xcoms,
)
from tests.notify.recorders import HttpRecorder

pytestmark = pytest.mark.airflow

SIZE = DemoSize(departments=12, employees=60, requisitions=30, contracts=20)
LOCK = "sync:department@target:md_department"


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


def count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        if not inspect(engine).has_table(table):
            return 0
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(sql_table(table))).scalar_one())
    finally:
        engine.dispose()


# 1. Cleared tasks of a finished run ------------------------------------------------------------------


def test_cleared_stages_need_the_entity_lock_and_a_cleared_prepare_reopens_the_run(
    dag: Any, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from etl.engine import publish as publish_stage
    from etl.orchestration import tasks

    gate = publish_stage.gate_decision
    calls: list[str] = []

    def refuse_first(ctx: Any, entity: str, read_total: int) -> None:
        calls.append(entity)
        if len(calls) == 1:
            raise QualityGateError(f"{entity}: quality gate refused to publish")
        gate(ctx, entity, read_total)

    monkeypatch.setattr(publish_stage, "gate_decision", refuse_first)
    config = write_project(tmp_path, sources)
    recon, target = f"sqlite:///{tmp_path / 'recon.db'}", f"sqlite:///{tmp_path / 'target.db'}"
    dag_run = run_dag(dag, {"config_path": str(config), "entities": ["department"]})
    assert dag_run.state == "failed"
    values = pulled(dag_run)
    run = values[("start_run", -1)]
    run_id = run["run_id"]
    extracted = [values[("department.extract", 0)], values[("department.extract", 1)]]
    merged = [values[("department.merge_validate", 0)]]
    assert store_rows(recon, s.runs, ["status"], run_id=run_id) == [("failed",)]
    assert store_rows(recon, s.locks, ["name"]) == []
    store = create_engine(recon)

    # The operator clears `publish` alone while another sync holds the lock: it refuses and writes nothing.
    locking.acquire(store, "department", "target:md_department", "cli-run")
    with pytest.raises(AirflowFailException, match=r"no longer holds the entity lock.*clear department\.prepare"):
        tasks.publish(run, "department", extracted, merged)
    assert target_rows(target, "md_department", ["_key"]) == []
    assert store_rows(recon, s.runs, ["status"], run_id=run_id) == [("failed",)]
    locking.release(store, "cli-run")
    # Nobody holds it either: still refused, the run's staging may be gone.
    with pytest.raises(AirflowFailException, match="nobody holds it now"):
        tasks.reconcile(run, "department", {"entity": "department"})

    # Clearing from `prepare`: the run is running again before it takes the lock, so nobody takes it over.
    assert tasks.prepare(run, "department") == ["erp", "oa"]
    assert store_rows(recon, s.runs, ["status", "finished_at"], run_id=run_id) == [("running", None)]
    assert store_rows(recon, s.locks, ["name", "owner"]) == [(LOCK, run_id)]
    with pytest.raises(LockedError, match=run_id):
        locking.acquire(store, "department", "target:md_department", "cli-run")

    # The cleared tasks run on and converge on a successful run.
    extracted = [tasks.extract(run, "department", source) for source in ("erp", "oa")]
    merged = [tasks.merge_validate(run, "department", p) for p in tasks.plan_partitions(run, "department")]
    tasks.prebuild(run, "department")
    published = tasks.publish(run, "department", extracted, merged)
    assert published["inserted"] > 0
    tasks.reconcile(run, "department", published)
    assert tasks.finish_run(run)["status"] == "success"
    assert store_rows(recon, s.runs, ["status"], run_id=run_id) == [("success",)]
    assert store_rows(recon, s.locks, ["name"]) == []
    assert len(target_rows(target, "md_department", ["_key"])) == published["inserted"]
    store.dispose()


# 2 and 10. The approvals DAG ---------------------------------------------------------------------------


def test_a_disabled_flow_is_skipped_naming_its_file_and_writes_nothing(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from etl.orchestration import flows

    build_demo(f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'oa.db'}", SIZE, seed=5)
    config = write_project(tmp_path)
    spec = tmp_path / "mappings" / "flows" / "contract_archive.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "\nenabled: false\n", encoding="utf-8")
    erp, recon = f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'recon.db'}"
    contracts = count(erp, "CM_Contract")

    monkeypatch.setenv("ERPOA_RETRIES", "0")  # a failure fails at once instead of waiting for retries
    bag = DagBag(str(DAGS / "erpoa_approvals.py"))
    assert not bag.import_errors, bag.import_errors
    approvals = bag.dags["erpoa_approvals"]

    dag_run = approvals.test(run_conf={"config_path": str(config)})

    states = task_states(dag_run)
    assert states[("contract_archive", -1)][0] == "skipped"
    assert states[("purchase_order", -1)][0] == "success"
    assert {t for t, _, _, _ in xcoms(dag_run)} == {"purchase_order"}
    assert count(erp, "CM_Contract") == contracts
    assert count(erp, "erpoa_contract_link") == 0
    assert [e for (e,) in store_rows(recon, s.entity_runs, ["entity"])] == ["purchase_order"]
    with pytest.raises(AirflowSkipException, match=r"disabled \(enabled: false in mappings/flows/contract_archive"):
        flows.run_flow("contract_archive", {"config_path": str(config)}, names=("erp", "oa", "recon"))
    assert approvals.max_active_runs == 1
    assert "skip (not queue)" not in approvals.doc_md  # 10: the next run waits; only a CLI run makes it skip
    assert approvals.params["connections"] == {}  # 4: ERPOA_CONN_ID_<NAME> of the worker applies

    # A broken flow file fails its own flow's task only, naming the problem; the other flows run.
    spec.write_text(spec.read_text(encoding="utf-8").replace("\nenabled: false\n", "\n"), encoding="utf-8")
    orders = tmp_path / "mappings" / "flows" / "purchase_order.yaml"
    body = orders.read_text(encoding="utf-8")
    orders.write_text(body.replace("[nfkc, trim, upper]", "[nfkc, trimm, upper]", 1), encoding="utf-8")
    assert flows.run_flow("contract_archive", {"config_path": str(config)}, names=("erp", "oa", "recon"))["created"]
    assert count(erp, "CM_Contract") > contracts
    with pytest.raises(AirflowFailException, match=r"(?s)purchase_order\.yaml is invalid.*\.yaml:\d+:\d+ .*'trimm'"):
        flows.run_flow("purchase_order", {"config_path": str(config)}, names=("erp", "oa", "recon"))


# 6. Dry runs --------------------------------------------------------------------------------------------


def test_a_dry_run_whose_plan_fails_fails(dag: Any, sources: dict[str, str], tmp_path: Path) -> None:
    create_engine(f"sqlite:///{tmp_path / 'empty.db'}").connect().close()
    config = write_project(tmp_path, {**sources, "erp": f"sqlite:///{tmp_path / 'empty.db'}"})

    dag_run = run_dag(dag, {"config_path": str(config), "entities": ["department"], "dry_run": True})

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("plan", -1)][0] == "success"
    assert pulled(dag_run)[("plan", -1)]["status"] == "failed"
    assert states[("finish_run", -1)][0] == "failed"


# 3, 4, 5 and 7. Params -----------------------------------------------------------------------------------


def test_an_undefined_conn_id_fails_start_run_with_one_alert(
    dag: Any, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    config = write_project(tmp_path, sources)
    with config.open("a", encoding="utf-8") as f:
        f.write("notify:\n  - {type: wecom, name: ops, url_env: FXA_WECOM_URL}\n")

    with HttpRecorder() as wecom:
        monkeypatch.setenv("FXA_WECOM_URL", wecom.url("/cgi-bin/webhook/send?key=fxa"))
        dag_run = run_dag(dag, {"config_path": str(config), "connections": {"target": "fxa_dw_tset"}})
        requests = wecom.requests

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("start_run", -1)] == ("failed", 1)  # a ConfigError: no retry
    assert states[("finish_run", -1)][0] == "failed"
    assert len(requests) == 1  # from start_run; finish_run does not alert the same cause again
    assert "fxa_dw_tset" in requests[0].json["markdown"]["content"]
    assert table_names(f"sqlite:///{tmp_path / 'target.db'}") == []  # not published into the file's target


def test_connections_param_names_are_checked(dag: Any, sources: dict[str, str], tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

    from etl.orchestration import tasks

    config = write_project(tmp_path, sources)
    with pytest.raises(ParamValidationError):
        dag.params.get_param("connections").resolve({"TARGET": "dw_test"})
    with pytest.raises(AirflowFailException, match=r"unknown connection name 'TARGET'.*use erp, oa, target, recon"):
        tasks.start_run(
            {"config_path": str(config), "connections": {"TARGET": "dw_test"}},
            dag_id="erpoa_master_data",
            dag_run="manual__fxa",
            started=None,
            known_entities=("department",),
        )


def test_defaults_leave_entities_to_erpoa_yaml_and_conn_ids_to_the_worker(
    airflow_home: Path, sources: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.orchestration import tasks

    monkeypatch.delenv("ERPOA_CONN_ID_TARGET", raising=False)
    fresh = load_dag()  # parsed without ERPOA_CONN_ID_TARGET, as on a dag processor that lacks it
    defaults = fresh.params.dump()
    assert defaults["entities"] == []
    assert defaults["connections"] == {}

    config = write_project(tmp_path / "p", sources)
    config.write_text(config.read_text(encoding="utf-8").replace("run:\n", "run:\n  entities: [department]\n"))
    worker_target = f"sqlite:///{tmp_path / 'worker_target.db'}"
    monkeypatch.setenv("ERPOA_CONN_ID_TARGET", "fxa_worker_target")
    monkeypatch.setenv("AIRFLOW_CONN_FXA_WORKER_TARGET", worker_target)

    dag_run = run_dag(fresh, {"config_path": str(config)})

    assert dag_run.state == "success", task_states(dag_run)
    run = pulled(dag_run)[("start_run", -1)]
    assert run["entities"] == ["department"]  # run.entities of erpoa.yaml
    assert run["connections"]["target"] == "fxa_worker_target"  # the worker's ERPOA_CONN_ID_TARGET
    assert target_rows(worker_target, "md_department", ["_key"])
    assert table_names(f"sqlite:///{tmp_path / 'p' / 'target.db'}") == []

    # A project that does not map every entity: the defaults sync what it maps.
    monkeypatch.delenv("ERPOA_CONN_ID_TARGET")
    partial = write_project(tmp_path / "q", sources)
    (tmp_path / "q" / "mappings" / "purchase.yaml").unlink()
    info = tasks.start_run(
        {**defaults, "config_path": str(partial)},
        dag_id="erpoa_master_data",
        dag_run="manual__fxa",
        started=None,
        known_entities=("department", "employee", "contract", "purchase"),
    )
    assert info["entities"] == ["department", "employee", "contract"]


# 8 and 9. Connection extras -----------------------------------------------------------------------------


def connection(conn_type: str, extra: dict[str, Any] | None = None, **fields: Any) -> Any:
    from airflow.sdk import Connection

    return Connection(conn_id="fxa", conn_type=conn_type, extra=json.dumps(extra or {}), **fields)


def test_mysql_ssl_extra_becomes_connect_args_and_other_objects_are_refused(airflow_home: Path) -> None:
    from etl.orchestration.connections import connection_config

    ssl = {"ca": "/etc/ssl/ca.pem", "cert": "/etc/ssl/c.pem", "key": "/etc/ssl/k.pem"}
    fields = {"host": "db", "schema": "u8", "login": "r", "password": "x"}
    for given in (ssl, json.dumps(ssl)):
        conn = connection_config(connection("mysql", {"ssl": given, "connect_args": {"connect_timeout": 5}}, **fields))
        assert conn.connect_args == {"connect_timeout": 5, "ssl": ssl}
        assert conn.sqlalchemy_url() == "mysql+pymysql://r:x@db/u8?charset=utf8mb4"
    with pytest.raises(ConfigError, match="extra 'ssl' must be an object"):
        connection_config(connection("mysql", {"ssl": "yes"}, **fields))
    with pytest.raises(ConfigError, match="'fxa': extra 'ssl' is an object"):
        connection_config(connection("postgres", {"ssl": ssl}, **fields))


def test_odbc_connect_takes_login_and_password_from_the_fields_in_braces(airflow_home: Path) -> None:
    from etl.orchestration.connections import connection_config

    base = "DRIVER={ODBC Driver 18 for SQL Server};SERVER=u8db;DATABASE=U8"
    conn = connection_config(connection("mssql", {"odbc_connect": base}, login="dom;ain\\etl", password="a}b;c"))
    assert conn.odbc is not None
    assert conn.odbc.get_secret_value() == base + ";UID={dom;ain\\etl};PWD={a}}b;c}"
    given = connection_config(connection("mssql", {"odbc_connect": base + ";uid=sa;PWD={p}"}, login="x", password="y"))
    assert given.odbc is not None
    assert given.odbc.get_secret_value() == base + ";uid=sa;PWD={p}"


# The gate of an incremental run in the DAG, whose tasks are separate processes ----------------------------------


def test_the_dags_gate_does_not_count_again_what_a_published_run_quarantined(
    airflow_home: Path, tmp_path: Path
) -> None:
    """Counted again, a re-read record a published run had quarantined refused every DAG run (exit 4)."""
    import sqlalchemy as sa

    from etl.config.project import load_project
    from etl.engine.pipeline import open_store, run_sync

    folder = tmp_path / "p"
    folder.mkdir()
    urls = {"erp": f"sqlite:///{folder / 'erp.db'}", "oa": f"sqlite:///{folder / 'oa.db'}"}
    build_demo(urls["erp"], urls["oa"], SIZE, seed=29)
    config = load_project(write_project(folder, urls))
    first, _ = run_sync(config, full_refresh=True, entities=["department", "employee"])
    assert first.status == "success", first.message
    held = open_store(config).quarantine(entity="employee", status="open")
    held = held[(held["source"] == "oa") & (held["rule"] == "lookup:department")]
    assert len(held)
    oa = sa.create_engine(urls["oa"])
    with oa.begin() as conn:
        ids = [int(held["src_id"].iloc[0]), *[r[0] for r in conn.execute(sa.text(
            'SELECT id FROM "HrmResource" ORDER BY id LIMIT 2'))]]
        conn.execute(sa.text('UPDATE "HrmResource" SET modified = :now WHERE id IN (:a, :b, :c)'),
                     {"now": "2099-01-01 00:00:00", "a": ids[0], "b": ids[1], "c": ids[2]})
    oa.dispose()

    fresh = load_dag()  # the module's DAG keeps the params of the runs before (a dry run, connections)
    dag_run = run_dag(fresh, {"config_path": str(config.config_path), "entities": ["employee"]})

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    run_id = pulled(dag_run)[("start_run", -1)]["run_id"]
    employee = open_store(config).entity_run(run_id, "employee")
    assert employee is not None and employee["status"] == "success" and employee["read_total"] >= 3, employee
