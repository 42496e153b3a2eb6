"""The DAG end to end with `dag.test()`: ERP on MariaDB, OA on PostgreSQL, Connections from AIRFLOW_CONN_*.

The same data synced by `erpoa sync --full-refresh` into a second target gives the
same target rows and the same reconciliation figures. Also: connection building,
secret masking and the fallback to the project config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from etl import logs
from etl.cli.app import app
from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.demo.generate import DemoSize, build_demo
from etl.engine.pipeline import load_project_mappings
from etl.errors import ConfigError
from etl.store import schema as s
from tests.airflow.helpers import (
    airflow_home_fixture,  # noqa: F401
    airflow_uri,
    asset_events,
    decoded,
    extra_pg_schema,
    is_plain_json,
    load_dag,
    run_dag,
    store_figures,
    store_rows,
    table_names,
    target_rows,
    task_states,
    xcoms,
)

pytestmark = pytest.mark.airflow

SIZE = DemoSize(departments=12, employees=120, requisitions=80, contracts=30)
ENTITIES = ("department", "employee", "contract", "purchase")
XCOM_MAX_BYTES = 4096


@pytest.fixture(scope="module")
def dag(airflow_home: Path) -> Any:
    return load_dag()


def failed_tasks(states: dict[tuple[str, int], tuple[str | None, int]]) -> dict[str, Any]:
    return {f"{t}[{i}]": st for (t, i), st in states.items() if st[0] not in ("success", "skipped")}


@pytest.mark.postgres
@pytest.mark.mariadb
def test_dag_run_equals_cli_sync(
    dag: Any, pg_url: str, mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_demo(mariadb_url, pg_url, SIZE, seed=11)
    with extra_pg_schema(pg_url) as dag_target, extra_pg_schema(pg_url) as cli_target:
        # The DAG's erpoa.yaml points erp, oa and target at files that do not exist: only the
        # Airflow Connections make the run work. recon is not an Airflow Connection: it comes from the file.
        absent = tmp_path / "absent"
        dag_recon = f"sqlite:///{tmp_path / 'dag' / 'recon.db'}"
        config_dag = write_project(
            tmp_path / "dag", {**{n: f"sqlite:///{absent}/{n}.db" for n in ("erp", "oa", "target")}, "recon": dag_recon}
        )
        monkeypatch.setenv("AIRFLOW_CONN_ERPOA_ERP", airflow_uri(mariadb_url))
        monkeypatch.setenv("AIRFLOW_CONN_ERPOA_OA", airflow_uri(pg_url))
        monkeypatch.setenv("AIRFLOW_CONN_ERPOA_TARGET", airflow_uri(dag_target))

        dag_run = run_dag(dag, {"config_path": str(config_dag), "full_refresh": True})

        states = task_states(dag_run)
        assert dag_run.state == "success", failed_tasks(states)
        assert failed_tasks(states) == {}
        assert states[("plan", -1)][0] == "skipped"
        for entity in ENTITIES:
            assert states[(f"{entity}.publish", -1)] == ("success", 1)
            assert {i for (t, i) in states if t == f"{entity}.extract"} == {0, 1}  # erp, oa
            assert states[(f"{entity}.prebuild", -1)] == ("success", 1)
        run_id = next(decoded(v)["run_id"] for t, _, k, v in xcoms(dag_run) if t == "start_run")
        # First loads into PostgreSQL: each entity's new mirror was built beside its merge tasks (the
        # store is SQLite here, so its cross-reference is loaded by the publish), and swapped in.
        built = {t: decoded(v)["built"] for t, _, _, v in xcoms(dag_run) if t.endswith(".prebuild")}
        assert built == {f"{e}.prebuild": ["mirror"] for e in ENTITIES}
        assert not any(name.endswith("_next") for name in table_names(dag_target))

        cli_recon = f"sqlite:///{tmp_path / 'cli' / 'recon.db'}"
        config_cli = write_project(
            tmp_path / "cli", {"erp": mariadb_url, "oa": pg_url, "target": cli_target, "recon": cli_recon}
        )
        done = CliRunner().invoke(app, ["sync", "--full-refresh", "--no-flows", "--config", str(config_cli), "--json"])
        assert done.exit_code == 0, done.output
        cli_run_id = json.loads(done.stdout)["run_id"]

        mappings = load_project_mappings(load_project(config_cli))
        for entity in ENTITIES:
            mapping = mappings.entity(entity)
            columns = [*mapping.fields, "_key", "_active", "_presence", "_hash"]
            published = target_rows(dag_target, mapping.target.table, columns)
            assert published, entity
            assert published == target_rows(cli_target, mapping.target.table, columns), entity

    figures = store_figures(dag_recon, run_id)
    assert set(figures) == set(ENTITIES)
    assert all(f["status"] == "success" for f in figures.values())
    assert figures == store_figures(cli_recon, cli_run_id)
    for table, columns in (
        (s.quarantine, ["entity", "source", "src_id", "golden_key", "stage", "field", "rule", "value", "status"]),
        (s.xref, ["entity", "source", "src_id", "golden_key", "active"]),
        (s.watermarks, ["entity", "source", "value", "value_type"]),
        (s.differences, ["entity", "class", "golden_key", "field", "status", "run_count"]),
        (s.gaps, ["entity", "source", "field", "value", "count"]),
    ):
        assert store_rows(dag_recon, table, columns) == store_rows(cli_recon, table, columns), table.name
    assert store_rows(dag_recon, s.locks, ["name"]) == []
    assert store_rows(dag_recon, s.runs, ["run_id", "trigger", "mode", "status"]) == [
        (run_id, "airflow", "full", "success")
    ]
    assert asset_events(dag_run) == sorted(f"erpoa://target/{mappings.entity(e).target.table}" for e in ENTITIES)


def test_xcom_carries_run_ids_and_counts_only(dag: Any, tmp_path: Path) -> None:
    """Every XCom of a run and of a dry run is small plain JSON: run info, source lists, partitions, counts."""
    build_demo(f"sqlite:///{tmp_path / 'erp.db'}", f"sqlite:///{tmp_path / 'oa.db'}", SIZE, seed=3)
    config = write_project(tmp_path)
    recon = f"sqlite:///{tmp_path / 'recon.db'}"
    dag_run = run_dag(dag, {"config_path": str(config), "entities": ["department"]})
    assert dag_run.state == "success", failed_tasks(task_states(dag_run))
    values = {(t, i): decoded(v) for t, i, _, v in xcoms(dag_run)}
    assert {k for _, _, k, _ in xcoms(dag_run)} == {"return_value"}
    for (task_id, _), data in values.items():
        assert is_plain_json(data), task_id
        assert len(json.dumps(data)) <= XCOM_MAX_BYTES, task_id
    assert values[("department.prepare", -1)] == ["erp", "oa"]
    assert values[("department.plan_partitions", -1)] == [{"index": 0, "of": 1}]
    assert values[("department.prebuild", -1)]["built"] == []  # a SQLite target: nothing to build
    assert values[("department.extract", 0)]["source"] == "erp"
    assert values[("department.extract", 0)]["read"] > 0
    inserted = values[("department.publish", -1)]["inserted"]
    assert inserted > 0
    assert values[("finish_run", -1)]["status"] == "success"
    assert ("employee.prepare", -1) not in values  # not selected: skipped

    plan_run = run_dag(
        dag, {"config_path": str(config), "entities": ["department"], "dry_run": True, "full_refresh": True}
    )
    states = task_states(plan_run)
    assert plan_run.state == "success", failed_tasks(states)
    assert states[("plan", -1)][0] == "success"
    assert all(st[0] == "skipped" for (t, _), st in states.items() if "." in t)
    planned = {t: decoded(v) for t, _, _, v in xcoms(plan_run)}
    assert set(planned) == {"start_run", "plan", "finish_run"}
    assert all(is_plain_json(v) and len(json.dumps(v)) <= XCOM_MAX_BYTES for v in planned.values())
    assert planned["plan"]["status"] == "planned"
    assert [(e["entity"], e["unchanged"], e["inserted"]) for e in planned["plan"]["entities"]] == [
        ("department", inserted, 0)
    ]
    assert len(store_rows(recon, s.runs, ["run_id"])) == 1  # a dry run records nothing


# Connections ------------------------------------------------------------------------------------------


def airflow_connection(uri: str, conn_id: str = "c") -> Any:
    from airflow.sdk import Connection

    return Connection(conn_id=conn_id, uri=uri)


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "postgres://etl:p%40ss%3Aw0rd@db.example:5432/md?options=-csearch_path%3Dstage&sslmode=require",
            "postgresql+psycopg://etl:p%40ss%3Aw0rd@db.example:5432/md?options=-csearch_path%3Dstage&sslmode=require",
        ),
        ("mysql://root@10.0.0.5:3306/u8", "mysql+pymysql://root@10.0.0.5:3306/u8?charset=utf8mb4"),
        ("mysql://root@h/u8?connect_timeout=5", "mysql+pymysql://root@h/u8?charset=utf8mb4&connect_timeout=5"),
        ("sqlite:////var/lib/erpoa/target.db", "sqlite:////var/lib/erpoa/target.db"),
        (
            "mssql://sa:pw@sql.example:1433/UFDATA?driver=ODBC+Driver+18+for+SQL+Server",
            "mssql+pyodbc://sa:pw@sql.example:1433/UFDATA?driver=ODBC+Driver+18+for+SQL+Server",
        ),
        ("postgres://u@h/db?sqlalchemy_scheme=postgresql%2Bpsycopg2", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_airflow_connection_becomes_sqlalchemy_url(airflow_home: Path, uri: str, url: str) -> None:
    from etl.orchestration.connections import connection_config

    conn = connection_config(airflow_connection(uri))
    assert conn.kind == "url"
    assert conn.sqlalchemy_url() == url


def test_an_airflow_mysql_connection_with_another_charset_is_refused(airflow_home: Path) -> None:
    """`charset=gbk` (or utf8, latin1) cannot carry 4-byte characters: refused as in erpoa.yaml."""
    from etl.errors import ConfigError
    from etl.orchestration.connections import connection_config

    with pytest.raises(ConfigError, match=r"Airflow connection 'c' cannot be used: url: .*charset=gbk cannot hold"):
        connection_config(airflow_connection("mysql://root@h/u8?charset=gbk"))


def test_odbc_connections_and_own_extras(airflow_home: Path) -> None:
    from etl.orchestration.connections import connection_config

    odbc = connection_config(
        airflow_connection("mssql://?odbc_connect=DSN%3Du8%3BUID%3Dsa%3BPWD%3DS3cret%21&db_schema=dbo&read_only=true")
    )
    assert odbc.kind == "odbc"
    assert odbc.dialect == "mssql"
    assert odbc.schema_ == "dbo"
    assert odbc.read_only is True
    assert "S3cret!" in odbc.secrets
    built = connection_config(airflow_connection("odbc://sa:S3cret%21@sqlhost:1433/UFDATA?driver=ODBC+Driver+18"))
    assert built.odbc is not None
    assert (
        built.odbc.get_secret_value()
        == "DRIVER={ODBC Driver 18};SERVER=sqlhost,1433;DATABASE=UFDATA;UID={sa};PWD={S3cret!}"
    )
    with pytest.raises(ConfigError, match="type 'http'"):
        connection_config(airflow_connection("http://example.com"))


def test_connection_secrets_are_masked_in_both_loggers(airflow_home: Path) -> None:
    from airflow.sdk.log import redact

    from etl.orchestration.connections import connection_config, register_secrets

    conn = connection_config(airflow_connection("postgres://etl:Tr1cky%2Fpass%40word@db/md"))
    register_secrets(conn.secrets)
    line = f"connect failed for {conn.sqlalchemy_url()} with Tr1cky/pass@word"
    assert "Tr1cky" not in logs.redact(line)
    assert "Tr1cky" not in str(redact(line))


def test_connection_ids_from_defaults_environment_and_params(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.orchestration.connections import conn_ids

    monkeypatch.setenv("ERPOA_CONN_ID_OA", "ecology_prod")
    ids = conn_ids({"target": "dw_target"})
    assert ids == {"erp": "erpoa_erp", "oa": "ecology_prod", "target": "dw_target", "recon": "erpoa_recon"}


def test_config_falls_back_to_the_file_and_airflow_replaces_what_it_defines(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.orchestration.connections import load_config

    path = write_project(tmp_path)
    text = path.read_text(encoding="utf-8")
    # A target whose password exists only outside Airflow: fine when Airflow defines erpoa_target.
    path.write_text(
        text.replace(
            f"sqlite:///{tmp_path.resolve().as_posix()}/target.db", "postgresql+psycopg://etl:${NOT_SET_PW}@h/db"
        ),
        encoding="utf-8",
    )
    monkeypatch.delenv("NOT_SET_PW", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_PW"):
        load_config(path)
    monkeypatch.setenv("AIRFLOW_CONN_ERPOA_TARGET", f"sqlite:///{tmp_path / 'af_target.db'}")
    config = load_config(path)
    assert config.connection("target").sqlalchemy_url() == f"sqlite:///{tmp_path / 'af_target.db'}"
    assert config.connection("erp").sqlalchemy_url().endswith("/erp.db")
    assert config.config_path == path.resolve()
    assert config.resolve(config.mappings) == tmp_path.resolve() / "mappings"
