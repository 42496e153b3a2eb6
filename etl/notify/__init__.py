"""Operator alerts for the nightly sync: WeCom, DingTalk and Feishu group robots, and email."""

from etl.notify.config import ChannelConfig, MissingSecretError, NotifyConfig, NotifyConfigError, SmtpConfig
from etl.notify.dispatch import DeliveryResult, notify, select_channels
from etl.notify.email import EmailError, SmtpSettings, build_email, send_email, smtp_settings_from_airflow
from etl.notify.message import Alert, AlertKind, Lang, Severity, redact
from etl.notify.webhooks import DingTalkRobot, FeishuBot, RetryPolicy, WebhookError, WebhookRobot, WeComRobot

__all__ = [
    "Alert",
    "AlertKind",
    "ChannelConfig",
    "DeliveryResult",
    "DingTalkRobot",
    "EmailError",
    "FeishuBot",
    "Lang",
    "MissingSecretError",
    "NotifyConfig",
    "NotifyConfigError",
    "RetryPolicy",
    "Severity",
    "SmtpConfig",
    "SmtpSettings",
    "WeComRobot",
    "WebhookError",
    "WebhookRobot",
    "build_email",
    "notify",
    "redact",
    "select_channels",
    "send_email",
    "smtp_settings_from_airflow",
]
