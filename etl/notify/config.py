"""The ``notify:`` section of the project config. Secrets live in environment variables, named here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from etl.errors import TerminalError
from etl.notify.email import SmtpSettings, check_address, smtp_settings_from_airflow
from etl.notify.message import Alert, AlertKind, Lang, url_secrets

ChannelType = Literal["wecom", "dingtalk", "feishu", "email"]
WEBHOOK_TYPES: frozenset[str] = frozenset({"wecom", "dingtalk", "feishu"})
NEW_DIFFERENCES = "new_open_differences"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _all_kinds() -> list[AlertKind]:
    return ["failure", "quality_gate", "differences"]


class NotifyConfigError(TerminalError):
    """The notify configuration cannot be used as it is (e.g. a named environment variable is unset)."""

    exit_code = 2


class MissingSecretError(NotifyConfigError):
    """An environment variable named in the notify configuration is unset or empty."""


def _env_name(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if "://" in value or "/" in value:
        raise ValueError(
            f"{field} must be the NAME of an environment variable (e.g. ERPOA_WECOM_URL), not its value; "
            "keep URLs, keys and secrets out of the YAML"
        )
    if not _ENV_NAME.match(value):
        raise ValueError(f"{field} must be an environment variable name: letters, digits and underscores")
    return value


def _lookup(env: Mapping[str, str], name: str, channel: str, purpose: str) -> SecretStr:
    value = env.get(name)
    if not value:
        raise MissingSecretError(
            f"notify channel {channel!r}: environment variable {name} ({purpose}) is not set or empty; "
            f"set it in the environment of the sync process, e.g. `export {name}='...'`, "
            "or in the Airflow worker environment"
        )
    return SecretStr(value)


class SmtpConfig(BaseModel):
    """SMTP server for an email channel; the credentials are read from the named environment variables."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    mail_from: str
    user_env: str | None = None
    password_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("user_env", "password_env")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _env_name(value, info.field_name or "env")

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        return check_address(value, "mail_from")

    def settings(self, env: Mapping[str, str], channel: str = "email") -> SmtpSettings:
        """Resolve to :class:`SmtpSettings`, reading user and password from ``env``."""
        user = _lookup(env, self.user_env, channel, "SMTP user").get_secret_value() if self.user_env else None
        password = _lookup(env, self.password_env, channel, "SMTP password") if self.password_env else None
        return SmtpSettings(
            host=self.host,
            port=self.port,
            starttls=self.starttls,
            ssl=self.ssl,
            user=user,
            password=password,
            mail_from=self.mail_from,
            timeout=self.timeout,
        )


class ChannelConfig(BaseModel):
    """One alert destination: a WeCom/DingTalk/Feishu group robot or an email distribution list."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: ChannelType
    name: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    to: list[str] = Field(default_factory=list)
    smtp: SmtpConfig | None = None
    on: list[AlertKind] = Field(default_factory=_all_kinds)
    min_new_differences: int = Field(default=1, ge=0)
    lang: Lang = "zh-CN"
    msg_type: Literal["post", "text"] = "post"

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean True.
        if isinstance(data, Mapping) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("url_env", "secret_env")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _env_name(value, info.field_name or "env")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [check_address(address, "recipient") for address in value]

    @model_validator(mode="after")
    def _fields_for_type(self) -> ChannelConfig:
        kind = self.type
        if kind in WEBHOOK_TYPES:
            if not self.url_env:
                raise ValueError(
                    f"{kind} channel needs url_env: the environment variable holding the webhook URL"
                )
            if self.to or self.smtp:
                raise ValueError(f"{kind} channel does not take `to` or `smtp` (email only)")
        else:
            if not self.to:
                raise ValueError("email channel needs `to`: a list of recipient addresses")
            if self.url_env or self.secret_env:
                raise ValueError(
                    "email channel does not take url_env/secret_env; use smtp.user_env/password_env"
                )
        if kind == "wecom" and self.secret_env:
            raise ValueError(
                "wecom robots are not signed: drop secret_env (the key in the URL is the secret)"
            )
        if kind != "feishu" and "msg_type" in self.model_fields_set:
            raise ValueError("msg_type applies to feishu channels only")
        return self

    @property
    def label(self) -> str:
        """Name used in logs and results: ``name`` or ``type(url_env)``."""
        if self.name:
            return self.name
        return f"{self.type}({self.url_env})" if self.url_env else self.type

    def wants(self, alert: Alert) -> bool:
        """Whether this channel should receive ``alert`` (its ``on`` list and difference threshold)."""
        if alert.kind not in self.on:
            return False
        return alert.kind != "differences" or alert.counts.get(NEW_DIFFERENCES, 0) >= self.min_new_differences

    def url(self, env: Mapping[str, str]) -> SecretStr:
        """The webhook URL from ``env[url_env]``; raises :class:`MissingSecretError` if unset."""
        if not self.url_env:
            raise NotifyConfigError(f"notify channel {self.label!r} ({self.type}) has no url_env")
        return _lookup(env, self.url_env, self.label, f"{self.type} webhook URL")

    def secret(self, env: Mapping[str, str]) -> SecretStr | None:
        """The signing secret from ``env[secret_env]``, or None when the channel is not signed."""
        if not self.secret_env:
            return None
        return _lookup(env, self.secret_env, self.label, f"{self.type} signing secret")

    def smtp_settings(self, env: Mapping[str, str]) -> SmtpSettings:
        """SMTP settings: the channel's ``smtp`` block, else Airflow's ``AIRFLOW__SMTP__*`` settings."""
        if self.smtp is not None:
            return self.smtp.settings(env, self.label)
        return smtp_settings_from_airflow(env)

    def secret_values(self, env: Mapping[str, str]) -> list[str]:
        """Every secret this channel could use that is present in ``env`` (for redaction)."""
        names = [self.url_env, self.secret_env, self.smtp.password_env if self.smtp else None]
        values: list[str] = []
        for name in names:
            value = env.get(name) if name else None
            if value:
                values += url_secrets(value) if name == self.url_env else [value]
        if self.type == "email" and self.smtp is None:
            try:
                password = smtp_settings_from_airflow(env).password
            except ValueError:
                password = None
            if password:
                values.append(password.get_secret_value())
        return values


class NotifyConfig(BaseModel):
    """``notify:`` section: ``{channels: [...]}`` (a bare list of channels is accepted too)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    channels: list[ChannelConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"channels": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _unique_labels(self) -> NotifyConfig:
        labels = [channel.label for channel in self.channels]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"notify channels must have distinct names; add `name:` to: {', '.join(duplicates)}"
            )
        return self
