"""Logging: human or JSON lines on stderr, with every known secret redacted."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(r"([a-z0-9+]+://[^:/@\s]*):([^@\s]+)@", re.I)
_ODBC_PASSWORD = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(\{[^}]*\}|[^;\s]*)")


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
        handler = logging.StreamHandler()
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
