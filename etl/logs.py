"""Logging: human or JSON lines on stderr, with every known secret redacted."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from typing import Any

# A masked value never runs past a double quote or a backslash: `redact` also cleans serialised JSON,
# whose string delimiters and escapes must survive.
_URL_PASSWORD = re.compile(r"([a-z0-9+]+://[^:/@\s\"]*):([^@\s\"]+)@", re.I)
_ODBC_PASSWORD = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(\{[^}\"]*\}|[^;\s\"\\]*)")


class RedactingFilter(logging.Filter):
    """Replace secrets (and any password in a URL or ODBC string) in log records."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _URL_PASSWORD.sub(r"\1:***@", text)
        return _ODBC_PASSWORD.sub(lambda m: f"{m.group(1)}=***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is when a record is emitted, not as it was when logging was set up.

    Test runners and embedding applications swap `sys.stderr`; a handler bound to the old
    stream would fail with "I/O operation on closed file" on every record.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


_FILTER = RedactingFilter()


def setup(level: str = "WARNING", fmt: str = "text", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the `erpoa` loggers; returns the redacting filter (add secrets as they become known)."""
    _FILTER.secrets = sorted({*_FILTER.secrets, *(s for s in secrets if s)}, key=len, reverse=True)
    logger = logging.getLogger("erpoa")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_erpoa", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler._erpoa = True  # type: ignore[attr-defined]
        handler.addFilter(_FILTER)
        logger.addHandler(handler)
        logger.propagate = False
    for existing in logger.handlers:
        existing.setFormatter(
            JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s")
        )
    for noisy in ("great_expectations", "airflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return _FILTER


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more secrets to redact."""
    _FILTER.secrets = sorted({*_FILTER.secrets, *(s for s in secrets if s)}, key=len, reverse=True)


def redact(text: str) -> str:
    """Redact known secrets from any text (reports, messages, JSON output)."""
    return _FILTER.redact(text)


def mask_personal(value: object) -> object:
    """Mask personal data, keeping enough to recognise it: `138****1234`, `3301**********1234`, `z***@example.com`.

    The one masking of the project: stored quarantine rows, gate results and reports
    (`etl.report.build.mask_value`) all use it.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return value
    value = value if isinstance(value, str) else str(value)
    if "@" in value:
        local, _, domain = value.partition("@")
        return (local[:1] + "***@" + domain) if local else "***@" + domain
    n = len(value)
    if n >= 15:
        head, tail = 4, 4
    elif n >= 7:
        head, tail = 3, 4
    elif n >= 3:
        head, tail = 1, 1
    else:
        return "*" * n
    return value[:head] + "*" * (n - head - tail) + value[n - tail :]
