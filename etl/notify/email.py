"""Email alerts over SMTP (``smtplib``): plain text with an HTML alternative and a UTF-8 subject."""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from etl.errors import ErpOaError
from etl.notify.message import Alert, Lang, redact
from etl.notify.webhooks import RetryPolicy, Sleep

logger = logging.getLogger(__name__)

AIRFLOW_SMTP_PREFIX = "AIRFLOW__SMTP__"
_TRUE = {"t", "true", "1", "yes", "on"}
_FALSE = {"f", "false", "0", "no", "off", ""}


class SmtpSettings(BaseModel):
    """Where and how to submit mail. ``ssl`` is implicit TLS (465), ``starttls`` upgrades (587)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    user: str | None = None
    password: SecretStr | None = None
    mail_from: str = Field(min_length=3)
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpSettings:
        if self.ssl and self.starttls:
            raise ValueError("smtp: choose either ssl (implicit TLS, usually port 465) or starttls, not both")
        check_address(self.mail_from, "mail_from")
        return self


class EmailError(ErpOaError):
    """Sending the alert email failed; the message never contains the SMTP password."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = self.retryable = transient


def build_email(
    alert: Alert,
    to: Sequence[str],
    *,
    mail_from: str,
    lang: Lang = "zh-CN",
    secrets: Iterable[str | None] = (),
) -> EmailMessage:
    """Build a ``multipart/alternative`` message (text/plain + text/html) for ``alert``."""
    if not to:
        raise ValueError("at least one recipient is required")
    for address in to:
        check_address(address, "recipient")
    secret_list = list(secrets)
    text = alert.render_text(lang, secret_list)
    html = alert.render_html(lang, secret_list)
    msg = EmailMessage()
    msg["Subject"] = alert.subject(lang, secret_list)
    msg["From"] = mail_from
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=parseaddr(mail_from)[1].rpartition("@")[2] or None)
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html))
    return msg


def send_email(
    alert: Alert,
    to: Sequence[str],
    settings: SmtpSettings,
    *,
    lang: Lang = "zh-CN",
    secrets: Iterable[str | None] = (),
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
) -> None:
    """Send ``alert`` to ``to``; transient SMTP failures (4xx, disconnects, timeouts) are retried."""
    password = settings.password.get_secret_value() if settings.password else None
    secret_list = [*secrets, password]
    msg = build_email(alert, to, mail_from=settings.mail_from, lang=lang, secrets=secret_list)
    policy = retry or RetryPolicy()
    where = f"SMTP {settings.host}:{settings.port}"
    for attempt in range(1, policy.attempts + 1):
        try:
            _submit(settings, password, msg, list(to))
        except (smtplib.SMTPException, OSError) as exc:
            error = EmailError(
                f"{where}: {redact(_describe(exc), secret_list)}", transient=_is_transient(exc)
            )
            if not error.transient or attempt == policy.attempts:
                raise error from None
            delay = policy.delay(attempt)
            logger.warning(
                "email alert: %s; retrying in %.1fs (attempt %d/%d)", error, delay, attempt, policy.attempts
            )
            sleep(delay)
        else:
            logger.info("email alert: sent via %s to %d recipient(s)", where, len(to))
            return


def smtp_settings_from_airflow(env: Mapping[str, str] | None = None) -> SmtpSettings:
    """Read Airflow's ``[smtp]`` settings from its ``AIRFLOW__SMTP__*`` environment variables.

    Uses ``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_STARTTLS``, ``SMTP_SSL``, ``SMTP_USER``, ``SMTP_PASSWORD``,
    ``SMTP_MAIL_FROM`` and ``SMTP_TIMEOUT`` with Airflow's defaults. Airflow 3 keeps credentials in the
    ``smtp_default`` connection, so when user/password are unset they are taken from
    ``AIRFLOW_CONN_SMTP_DEFAULT`` (URI or JSON form). Airflow itself is not imported.
    """
    source: Mapping[str, str] = os.environ if env is None else env

    def get(name: str, default: str | None = None) -> str | None:
        value = source.get(AIRFLOW_SMTP_PREFIX + name)
        return default if value is None else value

    user, password = get("SMTP_USER"), get("SMTP_PASSWORD")
    if not (user and password):
        conn_user, conn_password = _airflow_connection_login(source.get("AIRFLOW_CONN_SMTP_DEFAULT"))
        user, password = user or conn_user, password or conn_password
    try:
        port = int(get("SMTP_PORT", "25") or "25")
        timeout = float(get("SMTP_TIMEOUT", "30") or "30")
    except ValueError:
        raise ValueError(
            f"{AIRFLOW_SMTP_PREFIX}SMTP_PORT and {AIRFLOW_SMTP_PREFIX}SMTP_TIMEOUT must be numbers"
        ) from None
    return SmtpSettings(
        host=get("SMTP_HOST", "localhost") or "localhost",
        port=port,
        starttls=_airflow_bool("SMTP_STARTTLS", get("SMTP_STARTTLS", "True")),
        ssl=_airflow_bool("SMTP_SSL", get("SMTP_SSL", "False")),
        user=user or None,
        password=SecretStr(password) if password else None,
        mail_from=get("SMTP_MAIL_FROM", "airflow@example.com") or "airflow@example.com",
        timeout=timeout,
    )


def _submit(settings: SmtpSettings, password: str | None, msg: EmailMessage, to: list[str]) -> None:
    context = ssl.create_default_context()
    conn: smtplib.SMTP
    if settings.ssl:
        conn = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
    else:
        conn = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with conn:
        conn.ehlo()
        if settings.starttls:
            conn.starttls(context=context)
            conn.ehlo()
        if settings.user and password:
            conn.login(settings.user, password)
        elif settings.user or password:
            logger.warning(
                "email alert: SMTP user and password must both be set to log in; sending without AUTH"
            )
        # Bare addresses: a non-ASCII display name would otherwise switch smtplib to SMTPUTF8.
        refused = conn.send_message(
            msg, from_addr=parseaddr(settings.mail_from)[1], to_addrs=[parseaddr(a)[1] for a in to]
        )
    if refused:
        logger.warning("email alert: %d recipient(s) refused by the server", len(refused))


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException | ssl.SSLError):
        return False
    return isinstance(exc, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        message = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        )
        return f"{type(exc).__name__}: {exc.smtp_code} {message}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"all recipients refused (codes {', '.join(map(str, codes))})"
    return f"{type(exc).__name__}: {exc}"


def _cte(text: str) -> str | None:
    return None if text.isascii() else "base64"


def check_address(address: str, what: str = "address") -> str:
    """Return ``address`` if it is a usable mailbox (``a@b`` or ``Name <a@b>``), else raise ValueError."""
    mailbox = parseaddr(address)[1]
    if "\r" in address or "\n" in address or "@" not in mailbox or any(ch.isspace() for ch in mailbox):
        raise ValueError(f"{what} {address!r} is not a valid email address")
    return address


def _airflow_bool(name: str, value: str | None) -> bool:
    lowered = (value or "").strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{AIRFLOW_SMTP_PREFIX}{name} must be true or false, got {value!r}")


def _airflow_connection_login(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("AIRFLOW_CONN_SMTP_DEFAULT is not valid JSON") from None
        return data.get("login") or None, data.get("password") or None
    parts = urlsplit(value)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return user, password
