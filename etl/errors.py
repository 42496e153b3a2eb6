"""Every error the tool raises, classified once.

Terminal errors (bad configuration, bad data, a failed quality gate) fail fast and
are never retried. Transient errors (a database that is restarting, a lost
connection, a deadlock) are retried with backoff by the caller. `classify_db_error`
is the one place that decides which database errors are which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_transient_db_error(exc: BaseException) -> bool:
    """True when a database error is worth retrying (connection lost, deadlock, lock timeout)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state and (state.startswith(_TRANSIENT_SQLSTATES[0]) or state in _TRANSIENT_SQLSTATES[1:]):
        return True
    code = _mysql_code(exc)
    if code in _TRANSIENT_MYSQL_CODES:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(fragment in text for fragment in _TRANSIENT_TEXT)


def classify_db_error(exc: BaseException, *, what: str) -> ErpOaError:
    """Wrap a driver/SQLAlchemy error into a transient or terminal erp-oa-sync error.

    `what` says what was being done ("extracting employee from erp"); the driver
    message is kept but connection URLs in it are masked by the caller's redaction.
    """
    if isinstance(exc, ErpOaError):
        return exc
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    if is_transient_db_error(exc):
        return SourceUnavailableError(f"{what}: database unavailable ({detail}); will be retried")
    return TerminalError(f"{what}: {detail}")
