"""Logging: human or JSON lines on stderr, with every known secret redacted."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from typing import Any

# A masked value never runs past a double quote or a backslash: `redact` also cleans text that embeds
# serialised JSON, whose string delimiters and escapes must survive. A URL's password is masked up to the
# last '@' of the word, so that one holding a raw '@' is masked whole. A `${VAR}` reference is not a secret.
_URL_PASSWORD = re.compile(r"([a-z0-9+.-]+://[^:/@\s\"]*):([^\s\"]+)@", re.I)
# An ODBC `PWD=` masked already (`PWD=***` of a connection's display) keeps what follows it.
_ODBC_PASSWORD = re.compile(
    r"(?i)\b(PWD|PASSWORD)\s*=\s*(?!\{?\$\{[A-Za-z_]\w*\})"
    r"(\*\*\*(?=[;)\s\"',\]]|$)|\{(?:[^}\"]|\}\})*\}|[^;\s\"\\]*)"
)
# An ODBC string inside a URL (`?odbc_connect=...PWD%3D...%3B`) is URL-encoded: its password ends at an encoded ';'
# (or is an encoded `{...}`), the URL's next parameter, a ')' (of a message naming the connection) or a blank.
_ODBC_PASSWORD_IN_URL = re.compile(r"(?i)((?:PWD|PASSWORD)%3D)(?!\*\*\*)(%7B(?:(?!%7D).)*%7D|(?:(?!%3B)[^&\s\"'#)])*)")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NUMBER_LIKE = re.compile(r"[\d\s.,:;/+\-]*")
#: What names a password-like key (`password`, `passwd`, `pwd`, `sslpassword`, `access_token` ...).
SECRET_KEY_WORDS = "passw|pwd|secret|token"
_PASSWORD_KEY = rf"(?i:[\w-]*(?:{SECRET_KEY_WORDS})[\w-]*)[\"']?\s*[:=]\s*[\"']?"
MASK = "***"
#: secrets at least this long (and not made of digits) are masked wherever they appear
PLAIN_MIN = 8
#: shorter secrets at least this long are masked as whole words only
WORD_MIN = 4


def _matcher(secret: str) -> re.Pattern[str] | None:
    """How `secret` is found in text; None: anywhere, as a plain substring (see `RedactingFilter.redact`)."""
    number_like = bool(_NUMBER_LIKE.fullmatch(secret))
    if len(secret) >= PLAIN_MIN and not number_like:
        return None
    if len(secret) >= (PLAIN_MIN if number_like else WORD_MIN):
        return re.compile(rf"()(?<![\w\\]){re.escape(secret)}(?!\w)")
    return re.compile(rf"({_PASSWORD_KEY}){re.escape(secret)}(?!\w)")



def mask_url_passwords(text: str) -> str:
    """Every URL's password in `text` (`scheme://user:password@`) as `***`, up to the last '@' of the word, and the
    password of an ODBC string inside a URL (`odbc_connect=...PWD%3D***`)."""
    return _ODBC_PASSWORD_IN_URL.sub(rf"\1{MASK}", _URL_PASSWORD.sub(rf"\1:{MASK}@", text))

class RedactingFilter(logging.Filter):
    """Replace secrets (and any password in a URL or ODBC string) in log records."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._matchers: list[tuple[str, re.Pattern[str] | None]] = []
        self.secrets = list(secrets)

    @property
    def secrets(self) -> list[str]:
        """The known secrets, longest first."""
        return [secret for secret, _ in self._matchers]

    @secrets.setter
    def secrets(self, values: Iterable[str]) -> None:
        ordered = sorted({s for s in values if s}, key=len, reverse=True)
        self._matchers = [(secret, _matcher(secret)) for secret in ordered]

    def redact(self, text: str) -> str:
        """`text` with every known secret, URL password and ODBC `PWD=` value replaced by `***`.

        How much of the text a known secret can touch depends on how distinctive it is:

        - at least 8 characters, not only digits and number punctuation: everywhere, as a substring
          (so also inside a longer word, a URL-encoded form or a fragment of a message);
        - 4 to 7 characters, or a number-like one of 8 or more: only as a whole word, not next to a letter,
          digit or `_` (nor just after a backslash, which would split an escape);
        - shorter, or number-like and shorter than 8: only where it stands as a password, after a
          password-, pwd-, secret- or token-like key and `=` or `:` (`password=1`, `"pwd": "1"`).

        A short secret such as `1` or `abc` also appears in counts, timestamps, run ids and words, where
        masking it would corrupt unrelated text while protecting nothing. Wherever a password really
        appears in a connection string it is masked whatever its length: a URL's `user:password@` and
        an ODBC `PWD=` / `PASSWORD=` value are masked even when the secret is not known.

        When the whole text is a JSON document (`--json` output), only its string values are redacted,
        each decoded and encoded again: numbers, keys' quotes and escapes are never touched, so the
        output stays valid JSON.
        """
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                json.loads(text)
            except ValueError:
                pass
            else:
                return _JSON_STRING.sub(self._redact_json_string, text)
        return self._redact_text(text)

    def _redact_json_string(self, match: re.Match[str]) -> str:
        literal = match.group(0)
        value = json.loads(literal)
        redacted = self._redact_text(value)
        return literal if redacted == value else json.dumps(redacted, ensure_ascii=False)

    def _redact_text(self, text: str) -> str:
        for secret, matcher in self._matchers:
            # Between a URL's ':' and '@' a known secret is a password whatever it holds (blanks, quotes).
            text = text.replace(f":{secret}@", f":{MASK}@")
            if matcher is None:
                text = text.replace(secret, MASK)
            elif secret in text:
                text = matcher.sub(lambda m: m.group(1) + MASK, text)
        text = mask_url_passwords(text)
        return _ODBC_PASSWORD.sub(lambda m: f"{m.group(1)}={MASK}", text)

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
        # Fields a caller adds (`extra={"erpoa_fields": {...}}`), e.g. the CLI's error and exit code.
        payload.update({k: v for k, v in getattr(record, "erpoa_fields", {}).items() if k not in payload})
        return json.dumps(payload, ensure_ascii=False, default=str)


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


def json_lines() -> bool:
    """True when the `erpoa` logs are JSON lines (`--log-format json`)."""
    handlers = logging.getLogger("erpoa").handlers
    return any(getattr(h, "_erpoa", False) and isinstance(h.formatter, JsonFormatter) for h in handlers)


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more secrets to redact."""
    _FILTER.secrets = sorted({*_FILTER.secrets, *(s for s in secrets if s)}, key=len, reverse=True)


def redact(text: str) -> str:
    """Redact known secrets from any text (reports, messages, JSON output); see `RedactingFilter.redact`."""
    return _FILTER.redact(text)


def redact_with(text: str, secrets: Iterable[str]) -> str:
    """Redact `secrets` (not the registered ones) from `text`, by the rules of `RedactingFilter.redact`."""
    return RedactingFilter(secrets).redact(text)


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
