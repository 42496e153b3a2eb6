"""Shared fixtures: private PostgreSQL schemas and MariaDB databases, created and dropped per test.

When `CI` is set, a database tier that cannot connect fails the run (after one
attempt to start the server); it is never skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN = os.environ.get("ERPOA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN = os.environ.get("ERPOA_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
REPO = Path(__file__).resolve().parents[1]
_START = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd && sleep 3",
}
_status: dict[str, str | None] = {}


def _reachable(kind: str, url: str) -> str | None:
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


def _require(kind: str, url: str) -> None:
    if kind not in _status:
        problem = _reachable(kind, url)
        if problem:
            subprocess.run(_START[kind], shell=True, check=False, capture_output=True)
            problem = _reachable(kind, url)
        _status[kind] = problem
    problem = _status[kind]
    if problem:
        message = f"{kind} server not reachable at {url}: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run every database tier)")
        pytest.skip(message)


@contextmanager
def _fresh_pg_schema() -> Iterator[str]:
    _require("postgres", PG_ADMIN)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh PostgreSQL schema, dropped afterwards."""
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def pg_url_b() -> Iterator[str]:
    """A second fresh schema, for tests that compare two runs side by side."""
    with _fresh_pg_schema() as url:
        yield url


@contextmanager
def _fresh_mariadb() -> Iterator[str]:
    _require("mariadb", MARIADB_ADMIN)
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    try:
        yield MARIADB_ADMIN.replace("/test?", f"/{name}?")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A URL of a fresh MariaDB database (PyMySQL), dropped afterwards."""
    with _fresh_mariadb() as url:
        yield url


@pytest.fixture
def mariadb_c_url() -> Iterator[str]:
    """A URL of another fresh MariaDB database through mysqlclient, the C driver (`mysql+mysqldb`)."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError as exc:
        message = f"mysqlclient is not installed ({exc}); run make setup (needs libmariadb-dev)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with _fresh_mariadb() as url:
        yield url.replace("mysql+pymysql://", "mysql+mysqldb://", 1)


@pytest.fixture
def sqlite_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    from etl.db.connect import dispose_all

    dispose_all()
