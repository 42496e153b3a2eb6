"""Every error the tool raises, classified once.

Terminal errors (bad configuration, bad data, a failed quality gate) fail fast and
are never retried. Transient errors (a database that is restarting, a lost
connection, a deadlock) are retried with backoff by the caller. `classify_db_error`
is the one place that decides which database errors are which.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class ErpOaError(Exception):
    """Root of all erp-oa-sync errors. `exit_code` is what the CLI exits with."""

    exit_code = 1
    retryable = False


class TerminalError(ErpOaError):
    """Will fail again on retry: fix the input, then rerun."""


class TransientError(ErpOaError):
    """May succeed on retry: a database was unavailable or a lock could not be taken."""

    retryable = True


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration or mapping file, located as precisely as known."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if not where:  # an issue not tied to a file (e.g. a connection's driver): no leading ": "
            return f"{self.path}: {self.message}" if self.path else self.message
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(TerminalError):
    """Configuration, mapping or suite files are invalid. Carries every issue found."""

    exit_code = 2

    def __init__(self, issues: Iterable[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(file="", line=None, column=None, path="", message=issues)]
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(self.render())

    def render(self) -> str:
        """All issues, one per line."""
        return "\n".join(str(issue).strip() for issue in self.issues)


class DataError(TerminalError):
    """Source data cannot be processed as configured (e.g. a source column disappeared)."""

    exit_code = 3


class SchemaDriftError(DataError):
    """A source table no longer has a column the mapping reads, or its type changed."""


class UnmappedValueError(DataError):
    """A code lookup with policy `fail` met values that no code table entry maps."""


class IntegrityError(DataError):
    """A cross-entity reference is broken and the policy says `fail`."""


class QualityGateError(TerminalError):
    """The Great Expectations gate refused to publish an entity's batch."""

    exit_code = 4


class LockedError(ErpOaError):
    """Another sync holds the lock for this entity and target."""

    exit_code = 5


class SourceUnavailableError(TransientError):
    """A database could not be reached or dropped the connection."""

    exit_code = 6


# SQLSTATE classes and driver error codes that mean "try again".
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "HYT00", "HYT01")
_TRANSIENT_MYSQL_CODES = {1205, 1213, 2002, 2003, 2006, 2013, 2055, 1040, 1927, 1053}
_TRANSIENT_TEXT = (
    "server closed the connection",
    "connection refused",
    "lost connection",
    "terminating connection",
    "connection reset",
    "database is locked",
    "deadlock",
    "lock wait timeout",
    "could not connect",
    "can't connect",
    "connection timed out",
    "gone away",
    "connection was killed",
    "connection already closed",
    "the database system is starting up",
    "the database system is shutting down",
)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    for attr in ("sqlstate", "pgcode"):
        value = getattr(orig, attr, None)
        if isinstance(value, str):
            return value
    args = getattr(orig, "args", ())
    # pyodbc puts the SQLSTATE first in args.
    if args and isinstance(args[0], str) and len(args[0]) == 5 and args[0][:2].isalnum():
        return args[0]
    return None


#: The native error of a MariaDB or MySQL ODBC driver's message as pyodbc words it:
#: `[HY000] [ma-3.1.15]Can't connect to server on '127.0.0.1' (115) (2002) (SQLDriverConnect)`.
_ODBC_MYSQL_NATIVE = re.compile(r"\[(?:ma-[\d.]+|mysql)\].*\((\d+)\) \(SQL\w+\)\s*$", re.I | re.S)


def _mysql_code(exc: BaseException) -> int | None:
    """The MySQL/MariaDB error number: the first argument of mysqlclient's and PyMySQL's errors, or the native
    error a MariaDB/MySQL ODBC driver gives pyodbc (whose SQLSTATE, often HY000, says little)."""
    orig = getattr(exc, "orig", exc)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    if len(args) >= 2 and isinstance(args[1], str) and (native := _ODBC_MYSQL_NATIVE.search(args[1])):
        return int(native.group(1))
    return None


#: A driver that cannot be loaded: retrying cannot help (SQLAlchemy's mssql+pyodbc even reports the
#: unixODBC warning state 01000 of "Can't open lib" as a lost connection).
_MISSING_DRIVER_TEXT = (
    "can't open lib",
    "data source name not found",
    "specified driver could not be loaded",
    "driver's sqlallochandle on sql_handle_env failed",
)
#: A host name that does not exist (EAI_NONAME): a typo in the URL does not heal with backoff, while a DNS
#: server that did not answer ("temporary failure in name resolution", EAI_AGAIN) may, and is transient.
_UNKNOWN_HOST_TEXT = (
    "name or service not known",
    "nodename nor servname provided",
    "no address associated with hostname",
    "unknown mysql server host",
    "unknown server host",
    "could not translate host name",
    "failed to resolve host",
)
_UNKNOWN_HOST_MYSQL_CODES = {2005}


def _driver_text(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).lower()


def is_missing_driver(exc: BaseException) -> bool:
    """True when an ODBC driver (or DSN) named by a connection is not installed."""
    text = _driver_text(exc)
    return _sqlstate(exc) in ("IM002", "IM003") or any(fragment in text for fragment in _MISSING_DRIVER_TEXT)


def _unknown_host(exc: BaseException, text: str) -> bool:
    if "temporary failure in name resolution" in text:
        return False
    return _mysql_code(exc) in _UNKNOWN_HOST_MYSQL_CODES or any(f in text for f in _UNKNOWN_HOST_TEXT)


def is_transient_db_error(exc: BaseException) -> bool:
    """True when a database error is worth retrying (connection lost, deadlock, lock timeout)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ErpOaError):
        return False
    text = _driver_text(exc)
    # Checked before the driver's own verdict (`connection_invalidated`, SQLSTATE class 08, MySQL 2003),
    # which calls both "connection lost".
    if is_missing_driver(exc) or _unknown_host(exc, text):
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state and (state.startswith(_TRANSIENT_SQLSTATES[0]) or state in _TRANSIENT_SQLSTATES[1:]):
        return True
    code = _mysql_code(exc)
    if code in _TRANSIENT_MYSQL_CODES:
        return True
    return any(fragment in text for fragment in _TRANSIENT_TEXT)


#: (patterns of the driver's message, MySQL error codes, the fix, whether the fix is in the connection's own
#: settings), first match wins. A wrong user, password, database name or SQLite path is a configuration error
#: (exit 2) like a wrong host; missing grants are the server's to fix (exit 1).
_FIXES: tuple[tuple[tuple[str, ...], frozenset[int], str, bool], ...] = (
    (
        ("password authentication failed", "access denied", "no pg_hba.conf entry", 'role ".*" does not exist',
         "login failed"),
        frozenset({1044, 1045, 1698}),
        "check the user and password of this connection (the password belongs in an environment variable, "
        "${VAR}) and that the server grants this user access to the database from this host",
        True,
    ),
    (
        ('database ".*" does not exist', "unknown database", "cannot open database"),
        frozenset({1049}),
        "create the database, or fix the database name at the end of this connection's URL",
        True,
    ),
    (
        ("unable to open database file",),
        frozenset(),
        "the folder of this SQLite file must exist and be writable by this user; create it or fix the path",
        True,
    ),
    (
        ("permission denied", "command denied"),
        frozenset({1142, 1227}),
        "grant this connection's user the rights the sync needs (docs/security.md)",
        False,
    ),
)


def _settings_fix(exc: BaseException, text: str, code: int | None) -> tuple[str, bool] | None:
    """The first `_FIXES` entry the error matches: its fix and whether the connection's settings are wrong."""
    for patterns, codes, fix, in_settings in _FIXES:
        if code in codes or any(re.search(pattern, text) for pattern in patterns):
            return fix, in_settings
    return None


def is_connection_settings_error(exc: BaseException) -> bool:
    """True when a database error says the connection's own settings are wrong: an ODBC driver that is not
    installed, a host DNS does not know, a wrong user or password, a database or SQLite folder that does not
    exist. Such an error is a ConfigError (exit 2): the fix is in the configuration, and no retry heals it."""
    text = _driver_text(exc)
    if is_missing_driver(exc) or _unknown_host(exc, text):
        return True
    found = _settings_fix(exc, text, _mysql_code(exc))
    return found is not None and found[1]


def connection_fix(exc: BaseException) -> str | None:
    """What to do about a database error, as one clause: the fix for a bad host, user, database, driver or an
    unreachable server; None when the error names no connection problem (e.g. a SQL error)."""
    text = _driver_text(exc)
    code = _mysql_code(exc)
    if is_missing_driver(exc):
        return (
            "install the ODBC driver this connection names, or name one that is installed "
            "(`odbcinst -q -d` lists the drivers of odbcinst.ini; a DSN must be in odbc.ini)"
        )
    if _unknown_host(exc, text):
        return "the host name of this connection is not known to DNS: fix the host in its URL"
    found = _settings_fix(exc, text, code)
    if found is not None:
        return found[0]
    unreachable = ("refused", "could not connect", "can't connect", "timed out", "timeout expired")
    if is_transient_db_error(exc) and any(f in text for f in unreachable):
        return "check that the database server is running and reachable at the host and port of this connection"
    return None


def driver_detail(exc: BaseException) -> str:
    """The first line of the driver's own message (of `exc.orig` when SQLAlchemy wrapped it), else the class name."""
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__


def classify_db_error(exc: BaseException, *, what: str, connection: str | None = None) -> ErpOaError:
    """Wrap a driver/SQLAlchemy error into a transient or terminal erp-oa-sync error.

    `what` says what was being done ("extracting employee from erp"); `connection` names the
    connection with its masked URL (`connections.target (postgresql+psycopg://...)`), else the one
    `etl.db.connect` attached to the error, if any. The message ends with the fix where one is known
    and never promises a retry: callers that retry say so in their own log lines. A missing ODBC driver,
    an unknown host, a wrong user or password and a missing database or SQLite folder are ConfigErrors
    (exit 2, `is_connection_settings_error`), never retried. Connection URLs in the driver message are
    masked by the caller's redaction.
    """
    if isinstance(exc, ErpOaError):
        return exc
    detail = driver_detail(exc)
    where = connection or getattr(exc, "erpoa_connection", None)
    head = f"{what}: {where}" if where else what
    fix = connection_fix(exc)
    tail = f"; {fix}" if fix else ""
    if is_missing_driver(exc):
        return ConfigError(f"{head}: driver not found ({detail}){tail}")
    if is_connection_settings_error(exc):
        return ConfigError(f"{head}: {detail}{tail}")
    if is_transient_db_error(exc):
        return SourceUnavailableError(f"{head}: database unavailable ({detail}){tail}")
    return TerminalError(f"{head}: {detail}{tail}")
