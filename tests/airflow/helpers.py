"""Airflow fixtures and helpers for tests/airflow.

Import a fixture function (`airflow_home_fixture`, `fast_retry_dag_fixture`) into a
test module to make its fixture (`airflow_home`, `fast_retry_dag`) available there.

`airflow_home` points Airflow at a temporary home with a SQLite metadata database,
migrated once per session with `airflow db migrate` in a subprocess; Airflow is
imported only after that, so the developer's own ~/airflow is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, create_engine, inspect, select, text
from sqlalchemy import table as sql_table

from etl.store import schema as s

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILE = DAGS / "erpoa_master_data.py"
DAG_ID = "erpoa_master_data"
ENTITY_FIGURES = (
    "status",
    "read_erp",
    "read_oa",
    "read_total",
    "inserted",
    "updated",
    "unchanged",
    "inactivated",
    "quarantined",
    "differences",
)


def airflow_env(home: Path) -> dict[str, str]:
    """Environment of an isolated Airflow installation in `home`."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAG_DISCOVERY_SAFE_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


@pytest.fixture(scope="session", name="airflow_home")
def airflow_home_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A migrated Airflow metadata database in a temporary AIRFLOW_HOME, for the whole session."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home)
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    airflow_cli = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow_cli), "db", "migrate"],
        check=False,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        patch.undo()
        pytest.fail(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    if "airflow.settings" in sys.modules:
        # Airflow was imported before this fixture: point its ORM at the new database.
        from airflow import settings

        settings.dispose_orm()
        settings.SQL_ALCHEMY_CONN = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        settings.configure_orm()
    try:
        yield home
    finally:
        patch.undo()


def load_dag(**env: str) -> Any:
    """Parse dags/erpoa_master_data.py (with `env` set while parsing) and return the DAG."""
    from airflow.dag_processing.dagbag import DagBag

    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    try:
        bag = DagBag(str(DAG_FILE))
    finally:
        patch.undo()
    assert not bag.import_errors, bag.import_errors
    return bag.dags[DAG_ID]


@pytest.fixture(scope="module", name="fast_retry_dag")
def fast_retry_dag_fixture(airflow_home: Path) -> Any:
    """The DAG with a one-second retry delay, so retries happen within a test."""
    return load_dag(ERPOA_RETRY_DELAY_SECONDS="1")


def run_dag(dag: Any, conf: dict[str, Any]) -> Any:
    """`dag.test()` with `conf` as params; returns the DagRun."""
    return dag.test(run_conf=conf)


def task_states(dag_run: Any) -> dict[tuple[str, int], tuple[str | None, int]]:
    """(task_id, map_index) -> (state, try_number) of a finished DagRun."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        return {(ti.task_id, ti.map_index): (str(ti.state) if ti.state else None, ti.try_number) for ti in tis}


def xcoms(dag_run: Any) -> list[tuple[str, int, str, Any]]:
    """(task_id, map_index, key, value) of every XCom the DagRun pushed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        return [(x.task_id, x.map_index, x.key, x.value) for x in rows]


def asset_events(dag_run: Any) -> list[str]:
    """URIs of the asset events the DagRun emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return sorted(r[0] for r in rows)


def is_plain_json(value: Any, depth: int = 0) -> bool:
    """True for JSON made of dicts, lists, strings, numbers, booleans and None only."""
    if depth > 6:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        return all(is_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_json(v, depth + 1) for k, v in value.items())
    return False


def decoded(value: Any) -> Any:
    """An XCom value as stored (JSON text or already decoded)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@contextmanager
def extra_pg_schema(pg_url: str) -> Iterator[str]:
    """A URL (same server as `pg_url`) whose search_path is another fresh schema, dropped afterwards."""
    base = pg_url.split("?", 1)[0]
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def airflow_uri(sqlalchemy_url: str) -> str:
    """The Airflow connection URI (AIRFLOW_CONN_*) of a SQLAlchemy URL."""
    for prefix, scheme in (("postgresql+psycopg://", "postgres://"), ("mysql+pymysql://", "mysql://")):
        if sqlalchemy_url.startswith(prefix):
            return scheme + sqlalchemy_url[len(prefix) :]
    return sqlalchemy_url


def target_rows(url: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """`columns` of every row of `table`, ordered by `_key`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stmt = select(*[column(c) for c in columns]).select_from(sql_table(table)).order_by(column("_key"))
            return [tuple(r) for r in conn.execute(stmt)]
    finally:
        engine.dispose()


def table_names(url: str) -> list[str]:
    """The tables of the database (schema) at `url`."""
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def store_figures(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    """entity -> the entity-run figures of `run_id` in the store at `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(s.entity_runs).where(s.entity_runs.c.run_id == run_id)).mappings().all()
        return {r["entity"]: {k: r[k] for k in ENTITY_FIGURES} for r in rows}
    finally:
        engine.dispose()


def store_rows(url: str, table: Any, columns: list[str], **where: Any) -> list[tuple[Any, ...]]:
    """Sorted `columns` of the rows of a store table matching `where`."""
    engine = create_engine(url)
    try:
        stmt = select(*[table.c[c] for c in columns])
        for key, value in where.items():
            stmt = stmt.where(table.c[key] == value)
        with engine.connect() as conn:
            return sorted((tuple(r) for r in conn.execute(stmt)), key=repr)
    finally:
        engine.dispose()


def last_run_id(url: str) -> str:
    """The newest run id in the store at `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(select(s.runs.c.run_id).order_by(s.runs.c.started_at.desc(), s.runs.c.run_id.desc()))
                .scalars()
                .first()
            )
    finally:
        engine.dispose()
