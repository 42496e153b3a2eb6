"""Email alerts against a local SMTP sink, Airflow SMTP settings and email channels in dispatch."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from etl.notify import (
    Alert,
    ChannelConfig,
    EmailError,
    RetryPolicy,
    SmtpSettings,
    build_email,
    notify,
    send_email,
    smtp_settings_from_airflow,
)
from tests.notify.recorders import HttpRecorder, SmtpSink

pytestmark = pytest.mark.unit

PASSWORD = "Sm7p-Pa55w0rd!known"
DB_PASSWORD = "Pa55w0rd!db"
REPO_ROOT = Path(__file__).resolve().parents[2]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def make_alert(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "quality_gate",
        "title": "客户主数据",
        "run_id": "r-7",
        "dag_run": "manual__2024-05-02",
        "entity": "customer",
        "what": f"2 条期望未通过 <b>&</b>; dsn=postgresql://etl:{DB_PASSWORD}@db/erp",
        "counts": {"failed_expectations": 2},
        "report_path": "https://reports.example.com/r-7.html",
    }
    fields.update(changes)
    return Alert(**fields)


def settings_for(sink: SmtpSink, **changes: Any) -> SmtpSettings:
    fields: dict[str, Any] = {
        "host": sink.host,
        "port": sink.port,
        "user": "erpoa",
        "password": SecretStr(PASSWORD),
        "mail_from": "ERP-OA Sync <erpoa@example.com>",
        "timeout": 5,
    }
    fields.update(changes)
    return SmtpSettings(**fields)


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


def test_email_is_delivered_with_utf8_subject_and_both_parts(sink: SmtpSink, sleeps: Sleeps) -> None:
    alert = make_alert()
    send_email(alert, ["ops@example.com", "数据组 <data@example.com>"], settings_for(sink), sleep=sleeps)

    [mail] = sink.messages
    assert mail.mail_from == "erpoa@example.com"
    assert mail.rcpt_to == ("ops@example.com", "data@example.com")
    assert mail.auth == ("erpoa", PASSWORD)
    mail.data.decode("ascii")  # 7-bit clean on the wire: no SMTPUTF8 needed
    assert b"Subject: [erp-oa-sync] =?utf-8?b?" in mail.data  # RFC 2047 encoded words
    assert "SMTPUTF8" not in " ".join(sink.transcript).upper()
    message = mail.message()
    assert message["Subject"] == "[erp-oa-sync] 【错误】质量门禁未通过：客户主数据" == alert.subject()
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert list(body) == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in message.iter_parts())
    assert body["text/plain"] == alert.render_text()
    assert "未通过的校验 2" in body["text/plain"]
    assert "<h3>【错误】质量门禁未通过：客户主数据</h3>" in body["text/html"]
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in body["text/html"]
    assert "<a href='https://reports.example.com/r-7.html'>" in body["text/html"]
    assert message["Message-ID"].endswith("@example.com>")
    assert sleeps == []


def test_email_in_english(sink: SmtpSink) -> None:
    send_email(make_alert(), ["ops@example.com"], settings_for(sink), lang="en")
    message = sink.messages[0].message()
    assert message["Subject"] == "[erp-oa-sync] [ERROR] Quality gate failed: 客户主数据"
    assert "Failed expectations 2".lower() in parts(message)["text/plain"].lower()


def test_password_never_in_message_or_logs(sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    alert = make_alert(what=f"login failed for erpoa/{PASSWORD}; dsn=postgresql://etl:{DB_PASSWORD}@db/erp")
    with caplog.at_level(logging.DEBUG):
        send_email(alert, ["ops@example.com"], settings_for(sink))
    data = sink.messages[0].data.decode("ascii")
    body = parts(sink.messages[0].message())
    for secret in (PASSWORD, DB_PASSWORD):
        assert secret not in caplog.text
        assert secret not in data
        assert all(secret not in text for text in body.values())
    assert "SMTP 127.0.0.1" in caplog.text
    assert "AUTH ***" in sink.transcript
    assert repr(settings_for(sink)).count(PASSWORD) == 0


def test_transient_smtp_reply_is_retried(sleeps: Sleeps) -> None:
    with SmtpSink(data_replies=["451 4.3.0 try again later"]) as sink:
        send_email(make_alert(), ["ops@example.com"], settings_for(sink), sleep=sleeps)
        assert len(sink.messages) == 1
        assert [command.upper() for command in sink.transcript].count("DATA") == 2
    assert sleeps == [1.0]


def test_permanent_smtp_reply_is_not_retried(sleeps: Sleeps) -> None:
    with SmtpSink(data_replies=["554 5.7.1 rejected by policy"]) as sink:
        with pytest.raises(EmailError, match=r"554 5\.7\.1 rejected by policy") as info:
            send_email(make_alert(), ["ops@example.com"], settings_for(sink), sleep=sleeps)
        assert sink.messages == []
    assert not info.value.transient
    assert sleeps == []


def test_authentication_failure_is_clear_and_redacted(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        SmtpSink(auth_reply=f"535 5.7.8 bad credentials for {PASSWORD}") as sink,
        caplog.at_level(logging.DEBUG),
        pytest.raises(EmailError) as info,
    ):
        send_email(make_alert(), ["ops@example.com"], settings_for(sink), sleep=sleeps)
    message = str(info.value)
    assert message.startswith(
        f"SMTP 127.0.0.1:{sink.port}: SMTPAuthenticationError: 535 5.7.8 bad credentials"
    )
    assert PASSWORD not in message
    assert PASSWORD not in caplog.text
    assert sleeps == []


def test_starttls_not_offered_is_a_permanent_error(sink: SmtpSink, sleeps: Sleeps) -> None:
    with pytest.raises(EmailError, match="STARTTLS") as info:
        send_email(make_alert(), ["ops@example.com"], settings_for(sink, starttls=True), sleep=sleeps)
    assert not info.value.transient
    assert sink.messages == []


def test_connection_refused_is_retried_then_reported(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = SmtpSettings(host="127.0.0.1", port=port, mail_from="erpoa@example.com", timeout=2)
    with pytest.raises(EmailError, match="ConnectionRefusedError") as info:
        send_email(make_alert(), ["ops@example.com"], settings, retry=RetryPolicy(attempts=3), sleep=sleeps)
    assert info.value.transient
    assert sleeps == [1.0, 2.0]


def test_build_email_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        build_email(make_alert(), [], mail_from="a@example.com")
    with pytest.raises(ValueError, match="not a valid email address"):
        build_email(make_alert(), ["ops@example.com\r\nBcc: evil@example.com"], mail_from="a@example.com")


def test_smtp_settings_validation() -> None:
    with pytest.raises(ValidationError, match="either ssl"):
        SmtpSettings(host="h", ssl=True, starttls=True, mail_from="a@example.com")
    with pytest.raises(ValidationError) as info:
        SmtpSettings(host="h", password=PASSWORD, mail_from="a@example.com", colour="red")  # type: ignore[call-arg, arg-type]
    assert PASSWORD not in str(info.value)


# --- Airflow settings -----------------------------------------------------------------------------


def test_smtp_settings_from_airflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AIRFLOW__SMTP__", "AIRFLOW_CONN_")):
            monkeypatch.delenv(name)
    values = {
        "SMTP_HOST": "smtp.example.com",
        "SMTP_PORT": "465",
        "SMTP_STARTTLS": "False",
        "SMTP_SSL": "True",
        "SMTP_USER": "airflow",
        "SMTP_PASSWORD": PASSWORD,
        "SMTP_MAIL_FROM": "airflow@example.com",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"AIRFLOW__SMTP__{name}", value)
    settings = smtp_settings_from_airflow()
    assert settings.model_dump(exclude={"password"}) == {
        "host": "smtp.example.com",
        "port": 465,
        "starttls": False,
        "ssl": True,
        "user": "airflow",
        "mail_from": "airflow@example.com",
        "timeout": 30.0,
    }
    assert settings.password is not None
    assert settings.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings)


def test_smtp_settings_from_airflow_defaults_and_connection() -> None:
    defaults = smtp_settings_from_airflow({})
    assert (defaults.host, defaults.port, defaults.starttls, defaults.ssl) == ("localhost", 25, True, False)
    assert (defaults.user, defaults.password, defaults.mail_from) == (None, None, "airflow@example.com")

    uri = smtp_settings_from_airflow({"AIRFLOW_CONN_SMTP_DEFAULT": "smtp://mailer:p%40ss%2Fword@smtp.x:587"})
    assert uri.user == "mailer"
    assert uri.password is not None
    assert uri.password.get_secret_value() == "p@ss/word"
    as_json = smtp_settings_from_airflow({"AIRFLOW_CONN_SMTP_DEFAULT": '{"login": "j", "password": "pw"}'})
    assert as_json.user == "j"

    with pytest.raises(ValueError, match="AIRFLOW__SMTP__SMTP_STARTTLS must be true or false"):
        smtp_settings_from_airflow({"AIRFLOW__SMTP__SMTP_STARTTLS": "maybe"})
    with pytest.raises(ValueError, match="must be numbers"):
        smtp_settings_from_airflow({"AIRFLOW__SMTP__SMTP_PORT": "smtp"})


def test_importing_notify_does_not_import_airflow() -> None:
    code = (
        "import sys, etl.notify; "
        "etl.notify.smtp_settings_from_airflow({}); "
        "assert not any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules), 'airflow imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# --- email channels in dispatch -------------------------------------------------------------------


def test_email_channel_uses_airflow_smtp_settings(sink: SmtpSink, sleeps: Sleeps) -> None:
    channel = ChannelConfig.model_validate(
        {"type": "email", "to": ["ops@example.com"], "on": ["quality_gate"]}
    )
    env = {
        "AIRFLOW__SMTP__SMTP_HOST": sink.host,
        "AIRFLOW__SMTP__SMTP_PORT": str(sink.port),
        "AIRFLOW__SMTP__SMTP_STARTTLS": "false",
        "AIRFLOW__SMTP__SMTP_USER": "airflow",
        "AIRFLOW__SMTP__SMTP_PASSWORD": PASSWORD,
        "AIRFLOW__SMTP__SMTP_MAIL_FROM": "airflow@example.com",
    }
    [result] = notify(make_alert(what=f"oops {PASSWORD}"), [channel], env=env, sleep=sleeps)
    assert result.ok, result.error
    [mail] = sink.messages
    assert (mail.mail_from, mail.rcpt_to, mail.auth) == (
        "airflow@example.com",
        ("ops@example.com",),
        ("airflow", PASSWORD),
    )
    assert PASSWORD not in mail.data.decode("ascii")
    assert PASSWORD not in str(parts(mail.message()))


def test_email_channel_with_smtp_block_and_env_credentials(sink: SmtpSink, sleeps: Sleeps) -> None:
    channel = ChannelConfig.model_validate(
        {
            "type": "email",
            "name": "ops-mail",
            "to": ["ops@example.com"],
            "lang": "en",
            "smtp": {
                "host": sink.host,
                "port": sink.port,
                "starttls": False,
                "mail_from": "erpoa@example.com",
                "user_env": "ERPOA_SMTP_USER",
                "password_env": "ERPOA_SMTP_PASSWORD",
            },
        }
    )
    env = {"ERPOA_SMTP_USER": "erpoa", "ERPOA_SMTP_PASSWORD": PASSWORD}
    [result] = notify(make_alert(kind="failure"), [channel], env=env, sleep=sleeps)
    assert (result.channel, result.type, result.ok) == ("ops-mail", "email", True)
    assert sink.messages[0].auth == ("erpoa", PASSWORD)
    assert sink.messages[0].message()["Subject"] == "[erp-oa-sync] [ERROR] Sync failed: 客户主数据"

    [missing] = notify(make_alert(kind="failure"), [channel], env={"ERPOA_SMTP_USER": "erpoa"}, sleep=sleeps)
    assert not missing.ok
    assert missing.error is not None
    assert "environment variable ERPOA_SMTP_PASSWORD (SMTP password) is not set" in missing.error
    assert len(sink.messages) == 1


def test_failing_email_channel_does_not_stop_webhook_channel(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    channels = [
        ChannelConfig.model_validate({"type": "email", "to": ["ops@example.com"]}),
        ChannelConfig.model_validate({"type": "wecom", "url_env": "WECOM_URL"}),
    ]
    with HttpRecorder() as http:
        env = {
            "AIRFLOW__SMTP__SMTP_HOST": "127.0.0.1",
            "AIRFLOW__SMTP__SMTP_PORT": str(closed_port),
            "AIRFLOW__SMTP__SMTP_PASSWORD": PASSWORD,
            "WECOM_URL": http.url("/cgi-bin/webhook/send?key=k-123456789"),
        }
        results = notify(make_alert(), channels, env=env, retry=RetryPolicy(attempts=2), sleep=sleeps)
        assert len(http.requests) == 1
    assert [(r.channel, r.ok) for r in results] == [("email", False), ("wecom(WECOM_URL)", True)]
    assert results[0].error == (
        f"SMTP 127.0.0.1:{closed_port}: ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert sleeps == [1.0]
