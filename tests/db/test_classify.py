"""`classify_db_error` on the errors real drivers raise: transient or terminal, the connection named, a fix given.

Each error comes from a real connection attempt (a closed port, a database or user that does not
exist, a host name DNS does not know, an ODBC driver that is not installed, a missing SQLite folder),
made through the engines of `etl.db.connect` so that the error carries the connection's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from etl.config.project import ConnectionConfig
from etl.db import connect
from etl.db.connect import check_engines, dispose_all, engine_for, name_connections
from etl.errors import ConfigError, SourceUnavailableError, TerminalError, classify_db_error, is_transient_db_error


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    dispose_all()


def _error(url: str, name: str = "target", **odbc: str) -> tuple[BaseException, ConnectionConfig]:
    """The exception connecting through `engine_for` raises, the connection registered under `name`."""
    conn = ConnectionConfig(**odbc) if odbc else ConnectionConfig(url=url)
    name_connections({name: conn})
    try:
        with engine_for(conn).connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:
        return exc, conn
    raise AssertionError(f"{url} connected")


def _classified(url: str, name: str = "target") -> tuple[BaseException, str]:
    exc, conn = _error(url, name)
    error = classify_db_error(exc, what="department: extract")
    message = str(error)
    assert message.startswith(f"department: extract: connections.{name} ({conn.display}): "), message
    assert "will be retried" not in message
    return error, message


@pytest.mark.postgres
def test_postgres_refused_is_transient_and_names_the_connection() -> None:
    error, message = _classified("postgresql+psycopg://root@127.0.0.1:1/test", "recon")
    assert isinstance(error, SourceUnavailableError) and error.exit_code == 6
    assert "database unavailable" in message and "check that the database server is running" in message


@pytest.mark.postgres
def test_postgres_missing_database_is_terminal_with_a_fix() -> None:
    error, message = _classified("postgresql+psycopg://root@127.0.0.1:5432/fixerr_no_such_db")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert 'database "fixerr_no_such_db" does not exist' in message
    assert "create the database, or fix the database name" in message


@pytest.mark.postgres
def test_postgres_unknown_role_is_terminal_with_a_fix() -> None:
    error, message = _classified("postgresql+psycopg://fixerr_nobody@127.0.0.1:5432/test")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert "check the user and password" in message


@pytest.mark.mariadb
def test_mariadb_access_denied_has_a_fix() -> None:
    error, message = _classified("mysql+pymysql://fixerr_nobody:wrong@127.0.0.1:3306/test")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert "Access denied" in message and "check the user and password" in message
    assert "wrong" not in message  # the password is masked in the URL shown


@pytest.mark.mariadb
def test_mariadb_missing_database_and_refused_port() -> None:
    error, message = _classified("mysql+pymysql://root@127.0.0.1:3306/fixerr_no_such_db")
    assert isinstance(error, ConfigError) and "create the database" in message
    error, message = _classified("mysql+pymysql://root@127.0.0.1:1/test")
    assert isinstance(error, SourceUnavailableError)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://root@fixerr-no-such-host.invalid:5432/test", marks=pytest.mark.postgres),
        pytest.param("mysql+pymysql://root@fixerr-no-such-host.invalid:3306/test", marks=pytest.mark.mariadb),
        pytest.param("mysql+mysqldb://root@fixerr-no-such-host.invalid:3306/test", marks=pytest.mark.mariadb),
    ],
)
def test_an_unknown_host_is_terminal_on_every_driver(url: str) -> None:
    # psycopg says "failed to resolve host", PyMySQL 2003 "Name or service not known", mysqlclient 2005:
    # a host name DNS does not know is a typo in the config, not an outage, on all of them alike.
    exc, _ = _error(url)
    assert not is_transient_db_error(exc)
    error = classify_db_error(exc, what="extract")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert "not known to DNS: fix the host" in str(error)


def test_a_temporary_dns_failure_stays_transient() -> None:
    exc = OSError("could not connect: [Errno -3] Temporary failure in name resolution")
    assert is_transient_db_error(exc)


@pytest.mark.odbc
@pytest.mark.parametrize("dialect", ["mssql", "mysql"])
def test_a_missing_odbc_driver_is_a_config_error_on_every_dialect(dialect: str) -> None:
    # Over mssql+pyodbc SQLAlchemy marks unixODBC's "Can't open lib" (state 01000) as a lost connection.
    odbc = "Driver={ODBC Driver 18 for SQL Server};Server=127.0.0.1;UID=sa;PWD=fixerr-secret"
    exc, conn = _error("", "erp", odbc=odbc, dialect=dialect)
    assert conn.display.endswith("PWD=***")
    assert not is_transient_db_error(exc)
    error = classify_db_error(exc, what="extract")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    message = str(error)
    assert "connections.erp" in message and "driver not found" in message
    assert "odbcinst -q -d" in message
    assert "fixerr-secret" not in message.split("): driver not found", maxsplit=1)[0]


def test_a_missing_sqlite_folder_names_the_connection(tmp_path: Path) -> None:
    error, message = _classified(f"sqlite:///{tmp_path / 'no-such-dir' / 'target.db'}")
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert "unable to open database file" in message and "the folder of this SQLite file must exist" in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg3://root@127.0.0.1/test", "'postgresql+psycopg3' is not a known dialect+driver"),
        ("postgres://root@127.0.0.1/test", "'postgres' is not a known dialect+driver"),
        ("mysql+mysqlconnector://root:fixerr-pw@127.0.0.1/test", "the Python driver of 'mysql+mysqlconnector'"),
    ],
)
def test_a_wrong_driver_name_is_a_config_error_naming_the_connection(url: str, says: str) -> None:
    conns = {"erp": ConnectionConfig(url="sqlite://"), "target": ConnectionConfig(url=url)}
    name_connections(conns)
    with pytest.raises(ConfigError) as caught:
        check_engines(conns)
    (issue,) = caught.value.issues
    assert issue.path == "connections.target"
    assert says in issue.message and "postgresql+psycopg://" in issue.message
    assert str(caught.value).startswith("connections.target: ")  # no empty file name before it (": ...")
    assert "fixerr-pw" not in str(caught.value)


def test_an_unnamed_connection_is_described_by_its_masked_url() -> None:
    conn = ConnectionConfig(url="postgresql+psycopg://u:fixerr-pw@127.0.0.1:1/x")
    connect._NAMES.pop(conn.sqlalchemy_url(), None)
    assert connect.describe(conn) == "connection postgresql+psycopg://u:***@127.0.0.1:1/x"


@pytest.mark.postgres
def test_missing_grants_stay_terminal_not_a_config_error() -> None:
    # The user and database are right; the server's grants are what is missing: exit 1 with the fix, not exit 2.
    admin = engine_for(ConnectionConfig(url="postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    with admin.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS fixerr_grants CASCADE"))
        c.execute(text("DO $$ BEGIN CREATE ROLE fixerr_nogrant LOGIN; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
        c.execute(text("CREATE SCHEMA fixerr_grants"))
        c.execute(text("CREATE TABLE fixerr_grants.t (id int)"))
    conn = ConnectionConfig(url="postgresql+psycopg://fixerr_nogrant@127.0.0.1:5432/test")
    name_connections({"erp": conn})
    try:
        with engine_for(conn).connect() as c:
            c.execute(text("SELECT id FROM fixerr_grants.t"))
    except Exception as exc:
        error = classify_db_error(exc, what="extract")
    else:
        raise AssertionError("read without a grant")
    finally:
        dispose_all()
        with admin.begin() as c:
            c.execute(text("DROP SCHEMA fixerr_grants CASCADE"))
            c.execute(text("DROP ROLE fixerr_nogrant"))
    assert type(error) is TerminalError and error.exit_code == 1
    assert "permission denied" in str(error) and "grant this connection's user the rights" in str(error)


@pytest.mark.postgres
@pytest.mark.mariadb
def test_check_engines_reports_every_refused_connection_at_once(tmp_path: Path) -> None:
    connections = {
        "target": ConnectionConfig(url="postgresql+psycopg://root@127.0.0.1:5432/fixerr_no_such_db"),
        "erp": ConnectionConfig(url="mysql+pymysql://fixerr_nobody@127.0.0.1:3306/test"),
        "oa": ConnectionConfig(url=f"sqlite:///{tmp_path / 'no-such-dir' / 'oa.db'}"),
        "recon": ConnectionConfig(url="postgresql+psycopg://root@127.0.0.1:1/test"),  # down: left to the retries
        "fine": ConnectionConfig(url="mysql+pymysql://root@127.0.0.1:3306/test"),
    }
    check_engines(connections)  # without `connect` nothing is asked of the servers
    with pytest.raises(ConfigError) as caught:
        check_engines(connections, connect=True)
    issues = {issue.path: issue.message for issue in caught.value.issues}
    assert sorted(issues) == ["connections.erp", "connections.oa", "connections.target"]
    assert 'database "fixerr_no_such_db" does not exist' in issues["connections.target"]
    assert "create the database" in issues["connections.target"]
    assert "Access denied" in issues["connections.erp"] and "check the user and password" in issues["connections.erp"]
    assert "no-such-dir of this SQLite file does not exist" in issues["connections.oa"]
    assert not (tmp_path / "no-such-dir").exists()
