"""Fan an alert out to the configured channels; one failing channel never stops the others."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from etl.notify.config import ChannelConfig, ChannelType, NotifyConfigError
from etl.notify.email import EmailError, send_email
from etl.notify.message import Alert, redact
from etl.notify.webhooks import (
    DingTalkRobot,
    FeishuBot,
    RetryPolicy,
    Sleep,
    WebhookError,
    WebhookRobot,
    WeComRobot,
)

logger = logging.getLogger(__name__)

_OWN_ERRORS = (WebhookError, EmailError, NotifyConfigError)


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome for one channel; ``error`` is redacted and safe to log or display."""

    channel: str
    type: ChannelType
    ok: bool
    error: str | None = None


def select_channels(alert: Alert, channels: Iterable[ChannelConfig]) -> list[ChannelConfig]:
    """Channels whose ``on`` list includes the alert kind (and, for differences, whose threshold is met)."""
    return [channel for channel in channels if channel.wants(alert)]


def notify(
    alert: Alert,
    channels: list[ChannelConfig],
    *,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    timeout: float = 10.0,
    retry: RetryPolicy | None = None,
    sleep: Sleep = time.sleep,
) -> list[DeliveryResult]:
    """Send ``alert`` to every selected channel; return one :class:`DeliveryResult` per such channel.

    Channel secrets are read from ``env`` (default ``os.environ``) at send time and, with the extra
    ``secrets`` (e.g. database passwords from the project config), redacted from every message and
    error. Channels not selected by :func:`select_channels` are skipped and produce no result.
    """
    source: Mapping[str, str] = os.environ if env is None else env
    known = {value for channel in channels for value in channel.secret_values(source)}
    all_secrets = sorted(known | {value for value in secrets if value})
    results: list[DeliveryResult] = []
    for channel in select_channels(alert, channels):
        try:
            _send(channel, alert, env=source, secrets=all_secrets, timeout=timeout, retry=retry, sleep=sleep)
        except Exception as exc:
            error = redact(
                str(exc) if isinstance(exc, _OWN_ERRORS) else f"{type(exc).__name__}: {exc}", all_secrets
            )
            logger.warning("notify: %s alert to channel %s failed: %s", alert.kind, channel.label, error)
            results.append(DeliveryResult(channel.label, channel.type, ok=False, error=error))
        else:
            logger.info("notify: %s alert delivered to channel %s", alert.kind, channel.label)
            results.append(DeliveryResult(channel.label, channel.type, ok=True))
    return results


def _send(
    channel: ChannelConfig,
    alert: Alert,
    *,
    env: Mapping[str, str],
    secrets: list[str],
    timeout: float,
    retry: RetryPolicy | None,
    sleep: Sleep,
) -> None:
    policy = retry or RetryPolicy()
    if channel.type == "email":
        send_email(
            alert,
            channel.to,
            channel.smtp_settings(env),
            lang=channel.lang,
            secrets=secrets,
            retry=policy,
            sleep=sleep,
        )
        return
    url = channel.url(env).get_secret_value()
    signing = channel.secret(env)
    secret = signing.get_secret_value() if signing else None
    if channel.type == "wecom":
        robot: WebhookRobot = WeComRobot(url, timeout=timeout, retry=policy, sleep=sleep)
    elif channel.type == "dingtalk":
        robot = DingTalkRobot(url, timeout=timeout, retry=policy, sleep=sleep, secret=secret)
    else:
        robot = FeishuBot(
            url, timeout=timeout, retry=policy, sleep=sleep, secret=secret, msg_type=channel.msg_type
        )
    robot.send(alert, lang=channel.lang, secrets=secrets)
