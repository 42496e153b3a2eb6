"""Group-robot senders for WeCom (企业微信), DingTalk (钉钉) and Feishu (飞书), standard library only.

Each sender builds the platform's documented payload, signs it where the platform requires, and POSTs
it with a timeout. HTTP 5xx, timeouts and connection errors are retried with exponential backoff;
HTTP 4xx and the platforms' error bodies fail at once. Logs name the host only, never the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from etl.errors import ErpOaError
from etl.notify.message import Alert, Lang, redact, truncate_utf8, url_secrets

logger = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Checker = Callable[[dict[str, Any]], tuple[int, str] | None]

USER_AGENT = "erp-oa-sync-notify/1"
MAX_RESPONSE_BYTES = 64 * 1024
WECOM_MAX_BYTES = 4096
DINGTALK_MAX_BYTES = 18_000
FEISHU_MAX_BYTES = 15_000


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries, sleeping ``backoff * factor**n`` in between."""

    attempts: int = 3
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 10:
            raise ValueError("attempts must be between 1 and 10")
        if self.backoff < 0 or self.factor < 1 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * self.factor ** (attempt - 1), self.max_backoff)


class WebhookError(ErpOaError):
    """A webhook delivery failed; the message names platform and host but never the URL or key.

    ``transient`` (also exposed as the project-wide ``retryable``) is true for 5xx, timeouts and
    connection errors that survived every attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        platform: str,
        host: str | None,
        status: int | None = None,
        code: int | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.platform = platform
        self.host = host
        self.status = status
        self.code = code
        self.transient = self.retryable = transient


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: ``base64(hmac_sha256(key=secret, msg=f"{timestamp}\\n{secret}"))`` (not URL-encoded)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """Return ``url`` with ``timestamp`` and URL-encoded ``sign`` query parameters appended."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in {"timestamp", "sign"}
    ]
    query += [("timestamp", str(timestamp_ms)), ("sign", dingtalk_sign(secret, timestamp_ms))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu signature: ``base64(hmac_sha256(key=f"{timestamp}\\n{secret}", msg=b""))``."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def wecom_payload(content: str) -> dict[str, Any]:
    """WeCom group-robot markdown message."""
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_payload(title: str, text: str) -> dict[str, Any]:
    """DingTalk custom-robot markdown message (``title`` shows in the notification preview)."""
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def feishu_payload(
    alert: Alert,
    *,
    msg_type: Literal["post", "text"] = "post",
    lang: Lang = "zh-CN",
    secrets: Iterable[str | None] = (),
    secret: str | None = None,
    timestamp_s: int | None = None,
) -> dict[str, Any]:
    """Feishu custom-bot message; ``timestamp``/``sign`` are included when a signing secret is given."""
    secret_list = [*secrets, secret]
    if msg_type == "text":
        body: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": alert.render_text(lang, secret_list, max_bytes=FEISHU_MAX_BYTES)},
        }
    else:
        body = {"msg_type": "post", "content": {"post": _feishu_post(alert, lang, secret_list)}}
    if secret:
        ts = int(time.time()) if timestamp_s is None else timestamp_s
        body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
    return body


def _feishu_post(alert: Alert, lang: Lang, secrets: list[str | None]) -> dict[str, Any]:
    p = alert.summary(lang, secrets)
    rows = [*p.rows, p.counts] if p.counts else list(p.rows)
    content: list[list[dict[str, str]]] = [
        [{"tag": "text", "text": f"{label}{p.sep}{value}"}] for label, value in rows
    ]
    if p.report_path:
        link = p.report_path.startswith(("http://", "https://"))
        content.append(
            [
                {"tag": "text", "text": f"{p.report_label}{p.sep}"},
                {"tag": "a", "text": p.report_path, "href": p.report_path}
                if link
                else {"tag": "text", "text": p.report_path},
            ]
        )
    content.append([{"tag": "text", "text": f"{p.what_label}{p.sep.rstrip()}"}])
    content.append([{"tag": "text", "text": truncate_utf8(p.what, FEISHU_MAX_BYTES // 2)}])
    locale = "zh_cn" if lang == "zh-CN" else "en_us"
    return {locale: {"title": p.heading, "content": content}}


@dataclass(frozen=True)
class WebhookRobot:
    """Common base of the robot senders: URL (secret, never logged), timeout and retry policy."""

    url: str = field(repr=False)
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Sleep = field(default=time.sleep, repr=False, compare=False)

    platform: ClassVar[str] = "webhook"

    @property
    def host(self) -> str | None:
        """Host of the webhook URL, the only part of it that may be logged."""
        return urlsplit(self.url).hostname

    def send(self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> None:
        """Deliver ``alert``; raises :class:`WebhookError` on failure."""
        raise NotImplementedError

    def _secrets(self, extra: Iterable[str | None]) -> list[str | None]:
        return [*url_secrets(self.url), *extra]

    def _check(self, body: dict[str, Any]) -> tuple[int, str] | None:
        code = body.get("errcode")
        if code is None:
            return (-1, "response has no errcode")
        return None if code == 0 else (int(code), str(body.get("errmsg", "")))

    def _post(self, url: str, payload: dict[str, Any], secrets: list[str | None]) -> dict[str, Any]:
        return post_json(
            self.platform,
            url,
            payload,
            check=self._check,
            secrets=secrets,
            timeout=self.timeout,
            retry=self.retry,
            sleep=self.sleep,
        )


@dataclass(frozen=True)
class WeComRobot(WebhookRobot):
    """WeCom (企业微信) group robot; the ``key`` in the URL is the secret, there is no signing."""

    platform: ClassVar[str] = "wecom"

    def build_payload(
        self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()
    ) -> dict[str, Any]:
        """Return the JSON body for ``alert`` (content capped at WeCom's 4096-byte limit)."""
        return wecom_payload(alert.render_markdown(lang, self._secrets(secrets), max_bytes=WECOM_MAX_BYTES))

    def send(self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> None:
        """Deliver ``alert``; raises :class:`WebhookError` on failure."""
        payload = self.build_payload(alert, lang=lang, secrets=secrets)
        self._post(self.url, payload, self._secrets(secrets))


@dataclass(frozen=True)
class DingTalkRobot(WebhookRobot):
    """DingTalk (钉钉) custom robot; with ``secret`` set, requests are signed (加签)."""

    secret: str | None = field(default=None, repr=False)
    clock: Clock = field(default=time.time, repr=False, compare=False)

    platform: ClassVar[str] = "dingtalk"

    def _secrets(self, extra: Iterable[str | None]) -> list[str | None]:
        return [*super()._secrets(extra), self.secret]

    def build_payload(
        self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()
    ) -> dict[str, Any]:
        """Return the JSON body for ``alert``."""
        all_secrets = self._secrets(secrets)
        return dingtalk_payload(
            alert.subject(lang, all_secrets),
            alert.render_markdown(lang, all_secrets, max_bytes=DINGTALK_MAX_BYTES),
        )

    def signed_url(self, timestamp_ms: int | None = None) -> str:
        """The URL to POST to: signed with the current time in ms when a secret is configured."""
        if not self.secret:
            return self.url
        ts = int(self.clock() * 1000) if timestamp_ms is None else timestamp_ms
        return dingtalk_signed_url(self.url, self.secret, ts)

    def send(self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> None:
        """Deliver ``alert``; raises :class:`WebhookError` on failure."""
        payload = self.build_payload(alert, lang=lang, secrets=secrets)
        # Signed each attempt: DingTalk rejects timestamps older than one hour.
        post_json(
            self.platform,
            self.signed_url,
            payload,
            check=self._check,
            secrets=self._secrets(secrets),
            timeout=self.timeout,
            retry=self.retry,
            sleep=self.sleep,
        )


@dataclass(frozen=True)
class FeishuBot(WebhookRobot):
    """Feishu (飞书) custom bot; with ``secret`` set, the body carries ``timestamp`` and ``sign``."""

    secret: str | None = field(default=None, repr=False)
    msg_type: Literal["post", "text"] = "post"
    clock: Clock = field(default=time.time, repr=False, compare=False)

    platform: ClassVar[str] = "feishu"

    def _secrets(self, extra: Iterable[str | None]) -> list[str | None]:
        return [*super()._secrets(extra), self.secret]

    def _check(self, body: dict[str, Any]) -> tuple[int, str] | None:
        code = body.get("code", body.get("StatusCode"))
        if code is None:
            return (-1, "response has no code")
        return None if code == 0 else (int(code), str(body.get("msg", body.get("StatusMessage", ""))))

    def build_payload(
        self,
        alert: Alert,
        *,
        lang: Lang = "zh-CN",
        secrets: Iterable[str | None] = (),
        timestamp_s: int | None = None,
    ) -> dict[str, Any]:
        """Return the JSON body for ``alert``, signed with ``timestamp_s`` (default: now)."""
        ts = int(self.clock()) if timestamp_s is None else timestamp_s
        return feishu_payload(
            alert,
            msg_type=self.msg_type,
            lang=lang,
            secrets=self._secrets(secrets),
            secret=self.secret,
            timestamp_s=ts,
        )

    def send(self, alert: Alert, *, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> None:
        """Deliver ``alert``; raises :class:`WebhookError` on failure."""
        payload = self.build_payload(alert, lang=lang, secrets=secrets)
        self._post(self.url, payload, self._secrets(secrets))


def post_json(
    platform: str,
    url: str | Callable[[], str],
    payload: dict[str, Any],
    *,
    check: Checker,
    secrets: Iterable[str | None] = (),
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
) -> dict[str, Any]:
    """POST ``payload`` as UTF-8 JSON and return the decoded response body.

    ``url`` may be a callable producing a fresh URL per attempt (DingTalk signs with a timestamp).
    ``check`` maps a decoded 2xx body to ``(code, message)`` when the platform reports an error.
    """
    policy = retry or RetryPolicy()
    secret_list = list(secrets)
    first_url = url() if callable(url) else url
    secret_list += url_secrets(first_url)
    host = _checked_host(platform, first_url)
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    for attempt in range(1, policy.attempts + 1):
        target = first_url if attempt == 1 or not callable(url) else url()
        try:
            return _attempt(
                platform=platform,
                host=host,
                url=target,
                data=data,
                timeout=timeout,
                check=check,
                secrets=secret_list,
            )
        except WebhookError as exc:
            if not exc.transient or attempt == policy.attempts:
                raise
            delay = policy.delay(attempt)
            logger.warning(  # the error names the platform and host already
                "%s; retrying in %.1fs (attempt %d/%d)", exc, delay, attempt, policy.attempts
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _attempt(
    *,
    platform: str,
    host: str,
    url: str,
    data: bytes,
    timeout: float,
    check: Checker,
    secrets: list[str | None],
) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
    )
    where = f"{platform} webhook at {host}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, _read_error_body(exc)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        detail = redact(f"{type(reason).__name__}: {reason}", secrets)
        raise WebhookError(
            f"{where}: network error ({detail})", platform=platform, host=host, transient=True
        ) from None

    text = redact(raw.decode("utf-8", errors="replace"), secrets)
    if status >= 500:
        raise WebhookError(
            f"{where}: HTTP {status} {_snippet(text)}".rstrip(),
            platform=platform,
            host=host,
            status=status,
            transient=True,
        )
    if not 200 <= status < 300:
        raise WebhookError(
            f"{where}: HTTP {status} (not retried) {_snippet(text)}".rstrip(),
            platform=platform,
            host=host,
            status=status,
        )
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise WebhookError(
            f"{where}: HTTP {status} with a non-JSON body {_snippet(text)}".rstrip(),
            platform=platform,
            host=host,
            status=status,
        )
    failure = check(body)
    if failure is not None:
        code, message = failure
        raise WebhookError(
            f"{where}: rejected the message (code {code}: {_snippet(redact(message, secrets))})",
            platform=platform,
            host=host,
            status=status,
            code=code,
        )
    logger.info("%s: delivered", where)
    return body


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        return b""
    finally:
        exc.close()


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _checked_host(platform: str, url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in {"http", "https"} or not host:
        raise WebhookError(f"{platform} webhook URL must be an https:// URL", platform=platform, host=host)
    if parts.scheme == "http" and not _is_loopback(host):
        raise WebhookError(
            f"{platform} webhook URL for {host} must use https:// (the key would travel in clear text)",
            platform=platform,
            host=host,
        )
    return host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
