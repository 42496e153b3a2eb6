"""Engines for configured connections: read-only where the driver allows, secrets kept out of logs."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from etl.config.project import ConnectionConfig, mask_secrets, sqlite_file
from etl.errors import (
    ConfigError,
    ConfigIssue,
    classify_db_error,
    connection_fix,
    driver_detail,
    is_connection_settings_error,
)

log = logging.getLogger("erpoa.db")
_ENGINES: dict[tuple[str, bool], Engine] = {}
_LOCK = threading.Lock()
SQLITE_BUSY_MS = 30_000
#: The project's names of each connection URL (`name_connections`), for error messages that name them.
_NAMES: dict[str, tuple[str, ...]] = {}
#: The dialect+driver names the tool is built and tested with (docs/configuration.md).
SUPPORTED_DRIVERS = ("postgresql+psycopg", "mysql+mysqldb", "mysql+pymysql", "mssql+pyodbc", "sqlite")


def name_connections(connections: Mapping[str, ConnectionConfig]) -> None:
    """Remember the names a project gives its connections: errors then say `connections.target (url)`."""
    by_url: dict[str, list[str]] = {}
    for name, conn in connections.items():
        by_url.setdefault(conn.sqlalchemy_url(), []).append(name)
    with _LOCK:
        _NAMES.update({url: tuple(names) for url, names in by_url.items()})


def connection_names(conn: ConnectionConfig) -> list[str]:
    """`connections.<name>` for each name the project gives this connection (see `name_connections`)."""
    return [f"connections.{name}" for name in _NAMES.get(conn.sqlalchemy_url(), ())]


def describe(conn: ConnectionConfig) -> str:
    """The connection as error messages name it: `connections.target (postgresql+psycopg://u:***@host/db)`."""
    names = connection_names(conn)
    return f"{', '.join(names)} ({conn.display})" if names else f"connection {conn.display}"


def log_label(conn: ConnectionConfig) -> str:
    """The connection as DEBUG lines name it: `describe` with the password left out rather than masked
    (`connections.target (postgresql+psycopg://u@host/db)`), so that a short password's `***` never shows."""
    if conn.kind == "odbc":
        parts = conn.display.split(";")
        shown = ";".join(p for p in parts if not re.fullmatch(r"(?i)\s*(?:PWD|PASSWORD)\s*=\s*\*\*\*\s*", p))
    else:
        shown = re.sub(r"(?i)^([a-z0-9+.-]+://[^:/@]*):\*\*\*@", r"\1@", conn.display)
    names = connection_names(conn)
    return f"{', '.join(names)} ({shown})" if names else f"connection {shown}"


def dialect_of(conn: ConnectionConfig) -> str:
    """`postgresql`, `mysql`, `sqlite` or `mssql`."""
    if conn.kind == "odbc":
        assert conn.dialect is not None
        return conn.dialect
    name = make_url(conn.sqlalchemy_url()).get_backend_name()
    return "mysql" if name == "mariadb" else name


def engine_for(conn: ConnectionConfig, *, read_only: bool = False) -> Engine:
    """A (cached) SQLAlchemy engine for `conn`; sources pass read_only=True."""
    url = conn.sqlalchemy_url()
    key = (url, read_only)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create(conn, url, read_only)
            _ENGINES[key] = engine
        return engine


def dispose_all() -> None:
    """Close every cached engine (tests and forked workers)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _create(conn: ConnectionConfig, url: str, read_only: bool) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        # An unparsable URL may hide its password from mask_secrets: show only the scheme.
        scheme = re.match(r"^[A-Za-z0-9+]*", url)
        raise _engine_error(
            conn,
            f"a connection URL starting '{scheme.group(0) if scheme else ''}' is not a valid SQLAlchemy URL "
            "(dialect+driver://user:password@host:port/database); the value is not shown as it may hold a password",
        ) from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": conn.pool_pre_ping, "connect_args": dict(conn.connect_args)}
    if backend == "sqlite":
        kwargs["poolclass"] = NullPool
        kwargs["connect_args"].setdefault("timeout", SQLITE_BUSY_MS / 1000)
    elif backend == "postgresql" and read_only and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        # connect_args replace the URL's own `options` (e.g. a search_path), so carry them over.
        url_options = parsed.query.get("options", "")
        url_options = " ".join(url_options) if isinstance(url_options, tuple) else url_options
        options = f"{url_options} {kwargs['connect_args'].get('options', '')}".strip()
        kwargs["connect_args"]["options"] = f"{options} -c default_transaction_read_only=on".strip()
    if backend == "mssql" and conn.fast_executemany:
        kwargs["fast_executemany"] = True
    if backend in ("mysql", "mariadb"):
        kwargs["pool_recycle"] = 3600
        if parsed.get_driver_name() == "mysqldb" and "conv" not in kwargs["connect_args"]:
            from etl.db.mysqlclient import converters

            kwargs["connect_args"]["conv"] = converters()
    try:
        engine = create_engine(url, hide_parameters=True, **kwargs)
    except Exception as exc:  # driver missing, bad URL options
        raise _engine_error(conn, _driver_problem(parsed.drivername, exc)) from None
    _install_session_settings(engine, backend, read_only)
    if backend == "sqlite" and read_only:
        _open_sqlite_read_only(engine)
    _name_errors(engine, conn)
    _log_connections(engine, conn, read_only)
    log.debug("engine created for %s: %s, %s, pool %s", log_label(conn), engine.dialect.name,
              "read-only" if read_only else "read-write", type(engine.pool).__name__)
    return engine


def _log_connections(engine: Engine, conn: ConnectionConfig, read_only: bool) -> None:
    """DEBUG lines for each connection the engine opens (SQLite's, one per use, are not worth a line each), and
    each one it finds dead or invalidates."""
    access = "read-only" if read_only else "read-write"
    if not isinstance(engine.pool, NullPool):

        @event.listens_for(engine, "connect")
        def _opened(_dbapi_conn: Any, _record: Any) -> None:
            log.debug("connection opened to %s (%s)", log_label(conn), access)

    @event.listens_for(engine, "invalidate")
    def _invalidated(_dbapi_conn: Any, _record: Any, exception: BaseException | None) -> None:
        why = mask_secrets(driver_detail(exception)) if exception is not None else "invalidated"
        log.debug("connection to %s discarded: %s", log_label(conn), why)


def _open_sqlite_read_only(engine: Engine) -> None:
    """Have a read-only engine of a SQLite file open it with `mode=ro`, and a file that does not exist as an
    empty in-memory database: a read (`erpoa plan` before the first sync) never creates the file.

    Decided at each connection (SQLite engines do not pool them), so a file created later is read.
    """
    path = sqlite_file(engine.url.database)
    if path is None:
        return  # in memory, or a URI the project wrote itself: opened as written

    @event.listens_for(engine, "do_connect")
    def _open(dialect: Any, _record: Any, _cargs: list[Any], cparams: dict[str, Any]) -> Any:
        params = {k: v for k, v in cparams.items() if k != "uri"}
        if path.exists():
            return dialect.loaded_dbapi.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, **params)
        return dialect.loaded_dbapi.connect(":memory:", **params)


def _driver_problem(drivername: str, exc: Exception) -> str:
    """Why `create_engine` refused a URL, and the fix."""
    from sqlalchemy.exc import NoSuchModuleError

    supported = ", ".join(f"{d}://" for d in SUPPORTED_DRIVERS)
    if isinstance(exc, NoSuchModuleError):
        return (
            f"'{drivername}' is not a known dialect+driver; write one of {supported} "
            "(or give `odbc:` and `dialect:` for an ODBC connection string)"
        )
    if isinstance(exc, ImportError):
        return (
            f"the Python driver of '{drivername}' is not installed ({mask_secrets(str(exc))}); install it, "
            f"or use one of {supported}"
        )
    return f"cannot create an engine: {mask_secrets(str(exc))}"


def _engine_error(conn: ConnectionConfig, message: str) -> ConfigError:
    """A ConfigError that names the connection (`connections.target: ...`) and shows its masked URL."""
    names = connection_names(conn)
    if conn.url is not None and not message.startswith("a connection URL"):  # an unparsable URL is never shown
        message = f"{conn.display}: {message}"
    if not names:
        return ConfigError(message)
    return ConfigError([ConfigIssue(file="", line=None, column=None, path=name, message=message) for name in names])


def _name_errors(engine: Engine, conn: ConnectionConfig) -> None:
    """Have every error of the engine (connecting included) carry the connection's name for `classify_db_error`."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        label = describe(conn)
        for error in (context.sqlalchemy_exception, context.original_exception):
            if error is not None and getattr(error, "erpoa_connection", None) is None:
                # A C extension's exception type may have no __dict__: that one just goes unnamed.
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(error, "erpoa_connection", label)  # noqa: B010 - an attribute exceptions do not declare


def check_engines(connections: Mapping[str, ConnectionConfig], *, connect: bool = False) -> None:
    """Create the engine of each connection (by name): a ConfigError naming every connection whose dialect+driver
    is unknown or not installed, before any data is read. ODBC connections are checked when they connect (the
    driver manager loads the driver then).

    With `connect`, each server is also asked for a connection (SQLite: its file's folder must exist), so that
    settings the server refuses (a host DNS does not know, a wrong user or password, a database that does not
    exist) are reported with the rest, before the run writes anything. A server that does not answer is left to
    the run's retries.
    """
    issues: list[ConfigIssue] = []
    for name, conn in connections.items():
        if conn.kind == "odbc":  # read through pyodbc itself (`etl.db.extract`); no engine unless a target
            continue
        try:
            engine = engine_for(conn)
        except ConfigError as exc:
            issues.extend(i for i in exc.issues if i not in issues)
            continue
        refused = _refused_settings(engine, conn) if connect else None
        if refused is not None:
            issues.append(ConfigIssue(file="", line=None, column=None, path=f"connections.{name}",
                                      message=f"{conn.display}: {refused}"))
    if issues:
        raise ConfigError(issues)


def check_sources_exist(connections: Mapping[str, ConnectionConfig]) -> None:
    """ConfigError naming every SQLite file of these source connections that does not exist: a source is read,
    never created (opened for writing, a mistyped path made a new, empty database and a "no such table" error)."""
    issues = []
    for name, conn in connections.items():
        if conn.url is None or not conn.url.get_secret_value().startswith("sqlite"):
            continue
        file = sqlite_file(make_url(conn.url.get_secret_value()).database)
        path = None if file is None else file.expanduser()
        if path is not None and path.parent.is_dir() and not path.exists():
            issues.append(ConfigIssue(file="", line=None, column=None, path=f"connections.{name}",
                                      message=f"{conn.display}: the SQLite file {path} does not exist; fix the path "
                                      "(a source is read, never created)"))
    if issues:
        raise ConfigError(issues)


def _refused_settings(engine: Engine, conn: ConnectionConfig) -> str | None:
    """Why the server refuses this connection's settings (the driver's words and the fix), or None."""
    if engine.dialect.name == "sqlite":
        file = sqlite_file(engine.url.database)
        if file is None:
            return None
        folder = file.expanduser().parent
        if folder.is_dir():
            return None
        return f"the folder {folder} of this SQLite file does not exist; create it or fix the path"
    try:
        with engine_for(conn, read_only=True).connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:
        if not is_connection_settings_error(exc):
            return None
        return f"{mask_secrets(driver_detail(exc))}; {connection_fix(exc)}"
    return None


def _install_session_settings(engine: Engine, backend: str, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            if backend == "sqlite":
                cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
                if read_only:
                    cursor.execute("PRAGMA query_only = ON")
                else:
                    cursor.execute("PRAGMA journal_mode = WAL")
            elif backend in ("mysql", "mariadb") and read_only:
                # Steward queries quote identifiers with "..." on every database (ANSI SQL).
                cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
        finally:
            cursor.close()


def check_connection(conn: ConnectionConfig, name: str) -> None:
    """Open and close a connection; raise a classified error naming the connection."""
    from sqlalchemy import text

    log.debug("checking %s", log_label(conn))
    try:
        with engine_for(conn).connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:
        raise classify_db_error(exc, what="connecting", connection=f"connections.{name} ({conn.display})") from None


def no_pad_binary_collation(engine: Engine) -> str:
    """A binary collation that does not ignore trailing blanks, where the server has one.

    `utf8mb4_bin` compares with PAD SPACE: 'A1 ' and 'A1' would be one key and the
    upsert of the second would silently overwrite the first.
    """
    with engine.connect() as conn:
        known = {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT collation_name FROM information_schema.collations "
                    "WHERE collation_name IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')"
                )
            )
        }
    return next((c for c in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin") if c in known), "utf8mb4_bin")


def byte_exact_tables(engine: Engine, tables: Iterable[Table]) -> str:
    """On MariaDB/MySQL, have `tables` created in utf8mb4 with `no_pad_binary_collation`; returns it.

    Sets the tables' dialect options before `create_all`. Tables that exist keep theirs: the
    entity tables until converted by hand (docs/security.md), the store's by its `migrate`.
    """
    collation = no_pad_binary_collation(engine)
    for table in tables:
        table.dialect_options["mysql"]["charset"] = "utf8mb4"
        table.dialect_options["mysql"]["collate"] = collation
    return collation
