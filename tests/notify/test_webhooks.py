"""Alert rendering, webhook senders (WeCom, DingTalk, Feishu), notify config and dispatch."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from etl.errors import ErpOaError
from etl.notify import (
    Alert,
    ChannelConfig,
    DingTalkRobot,
    FeishuBot,
    NotifyConfig,
    RetryPolicy,
    WebhookError,
    WeComRobot,
    notify,
    redact,
)
from etl.notify.webhooks import WECOM_MAX_BYTES, dingtalk_sign, feishu_sign
from tests.notify.recorders import HttpRecorder, Reply

pytestmark = pytest.mark.unit

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "f1d2e3c4b5a69788f1d2e3c4b5a69788f1d2e3c4b5a69788f1d2e3c4b5a69788"
DING_SECRET = "SEC0b0ab1e5ecre7+/=k3y4d1ngtalk8c2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6"
FEISHU_TOKEN = "2f1c8a3e-5b7d-4e9f-8a6c-1d2e3f4a5b6c"
FEISHU_SECRET = "fs3cr3t+Feishu/SigningKey=="
DB_PASSWORD = "Pa55w0rd!known"
ALL_SECRETS = (WECOM_KEY, DING_TOKEN, DING_SECRET, FEISHU_TOKEN, FEISHU_SECRET, DB_PASSWORD)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def http() -> Iterator[HttpRecorder]:
    with HttpRecorder(
        default=Reply(body={"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})
    ) as recorder:
        yield recorder


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_alert(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "failure",
        "title": "nightly sync",
        "run_id": "r-42",
        "dag_run": "scheduled__2024-05-01T00:00:00+00:00",
        "entity": "customer",
        "what": "publish step failed",
        "counts": {"rows_read": 120, "rows_rejected": 3},
        "report_path": "var/reports/r-42.html",
    }
    fields.update(changes)
    return Alert(**fields)


def leaky_alert() -> Alert:
    """An alert whose free text carries secrets, as an exception message might."""
    return make_alert(
        what=(
            f"connect failed: postgresql://etl:{DB_PASSWORD}@db.internal:5432/erp\n"
            f"retrying https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"
        )
    )


def wecom(http: HttpRecorder, sleeps: Sleeps, **kw: Any) -> WeComRobot:
    return WeComRobot(http.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"), sleep=sleeps, **kw)


def dingtalk(http: HttpRecorder, sleeps: Sleeps, **kw: Any) -> DingTalkRobot:
    kw.setdefault("secret", DING_SECRET)
    return DingTalkRobot(http.url(f"/robot/send?access_token={DING_TOKEN}"), sleep=sleeps, **kw)


def feishu(http: HttpRecorder, sleeps: Sleeps, **kw: Any) -> FeishuBot:
    kw.setdefault("secret", FEISHU_SECRET)
    return FeishuBot(http.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"), sleep=sleeps, **kw)


ROBOTS = {"wecom": wecom, "dingtalk": dingtalk, "feishu": feishu}
PLATFORM_SECRETS = {
    "wecom": (WECOM_KEY,),
    "dingtalk": (DING_TOKEN, DING_SECRET),
    "feishu": (FEISHU_TOKEN, FEISHU_SECRET),
}
OK_BODIES = {
    "wecom": {"errcode": 0, "errmsg": "ok"},
    "dingtalk": {"errcode": 0, "errmsg": "ok"},
    "feishu": {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"},
}


# --- rendering ----------------------------------------------------------------------------------


def test_render_text_zh_cn() -> None:
    assert make_alert().render_text() == (
        "【错误】同步失败：nightly sync\n\n"
        "运行 ID：r-42\n"
        "DAG 运行：scheduled__2024-05-01T00:00:00+00:00\n"
        "实体：customer\n"
        "统计：读取行数 120，拒绝行数 3\n"
        "报告：var/reports/r-42.html\n\n"
        "问题：\n"
        "publish step failed\n"
    )


def test_render_text_en() -> None:
    assert make_alert().render_text("en") == (
        "[ERROR] Sync failed: nightly sync\n\n"
        "Run ID: r-42\n"
        "DAG run: scheduled__2024-05-01T00:00:00+00:00\n"
        "Entity: customer\n"
        "Counts: rows read 120, rows rejected 3\n"
        "Report: var/reports/r-42.html\n\n"
        "What:\n"
        "publish step failed\n"
    )


def test_render_markdown_zh_cn() -> None:
    assert make_alert().render_markdown() == (
        "### 【错误】同步失败：nightly sync\n\n"
        "- **运行 ID**：`r-42`\n"
        "- **DAG 运行**：`scheduled__2024-05-01T00:00:00+00:00`\n"
        "- **实体**：`customer`\n"
        "- **统计**：读取行数 120，拒绝行数 3\n"
        "- **报告**：`var/reports/r-42.html`\n\n"
        "**问题**：\n"
        "> publish step failed\n"
    )


@pytest.mark.parametrize(
    ("kind", "severity", "zh", "en"),
    [
        ("failure", "error", "【错误】同步失败", "[ERROR] Sync failed"),
        ("quality_gate", "error", "【错误】质量门禁未通过", "[ERROR] Quality gate failed"),
        (
            "differences",
            "warning",
            "【警告】发现新的未关闭对账差异",
            "[WARNING] New open reconciliation differences",
        ),
    ],
)
def test_headings_per_kind(kind: str, severity: str, zh: str, en: str) -> None:
    alert = make_alert(kind=kind, severity=severity, counts={"new_open_differences": 7})
    assert alert.subject() == f"[erp-oa-sync] {zh}：nightly sync"
    assert alert.subject("en") == f"[erp-oa-sync] {en}: nightly sync"
    assert "新增未关闭差异 7" in alert.render_markdown()
    assert "new open differences 7" in alert.render_markdown("en")


def test_optional_fields_are_omitted_and_links_rendered() -> None:
    alert = Alert(
        kind="quality_gate",
        title="gate",
        run_id="r-1",
        what="3 expectations failed",
        report_path="https://reports.example.com/r-1.html",
    )
    markdown = alert.render_markdown("en")
    assert "DAG run" not in markdown
    assert "Entity" not in markdown
    assert "Counts" not in markdown
    assert "[https://reports.example.com/r-1.html](https://reports.example.com/r-1.html)" in markdown
    assert "<a href='https://reports.example.com/r-1.html'>" in alert.render_html("en")


def test_alert_validates_and_is_frozen() -> None:
    with pytest.raises(ValueError, match="alert kind"):
        make_alert(kind="oops")
    with pytest.raises(ValueError, match="severity"):
        make_alert(severity="fatal")
    with pytest.raises(TypeError, match="must be an int"):
        make_alert(counts={"rows_read": "12"})
    with pytest.raises(ValueError, match="lang"):
        make_alert().render_text("fr")  # type: ignore[arg-type]
    alert = make_alert()
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.title = "changed"  # type: ignore[misc]
    assert hash(alert) == hash(make_alert())


def test_redact() -> None:
    text = (
        f"key={WECOM_KEY} enc=SEC0b0ab1e5ecre7%2B%2F%3Dk3y, url=mysql+pymysql://etl:{DB_PASSWORD}@h/db "
        "odbc=DRIVER={x};UID=sa;PWD=odbc-pass;SERVER=h redis://:r3d1s@cache:6379/0 http://127.0.0.1:8080/x"
    )
    out = redact(text, [WECOM_KEY, "SEC0b0ab1e5ecre7+/=k3y", "", None])
    assert WECOM_KEY not in out
    assert DB_PASSWORD not in out
    assert "odbc-pass" not in out
    assert "r3d1s" not in out
    assert "SEC0b0ab1e5ecre7" not in out
    assert "mysql+pymysql://etl:***@h/db" in out
    assert "redis://:***@cache:6379/0" in out
    assert "PWD=***;" in out
    assert "http://127.0.0.1:8080/x" in out


def test_redacting_a_short_secret_leaves_the_rest_of_the_message_alone() -> None:
    text = "run 20261206T031501-ab12 read 1,000 rows; url=mysql://etl:1@h/db password=1"
    assert redact(text, ["1"]) == "run 20261206T031501-ab12 read 1,000 rows; url=mysql://etl:***@h/db password=***"
    assert redact("mysql://etl:ab/cd@efgh@h/db", []) == "mysql://etl:***@h/db"


def test_rendered_messages_never_contain_secrets() -> None:
    alert = leaky_alert()
    secrets = [WECOM_KEY]
    for lang in ("zh-CN", "en"):
        for rendered in (
            alert.render_text(lang, secrets),
            alert.render_markdown(lang, secrets),
            alert.render_html(lang, secrets),
            alert.subject(lang, secrets),
        ):
            assert WECOM_KEY not in rendered
            assert DB_PASSWORD not in rendered
    assert "postgresql://etl:***@db.internal:5432/erp" in alert.render_text()


# --- payloads and signing -----------------------------------------------------------------------


def test_wecom_payload(http: HttpRecorder, sleeps: Sleeps) -> None:
    alert = make_alert()
    wecom(http, sleeps).send(alert)

    [request] = http.requests
    assert request.method == "POST"
    assert request.path == "/cgi-bin/webhook/send"
    assert request.query == {"key": [WECOM_KEY]}
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.json == {"msgtype": "markdown", "markdown": {"content": alert.render_markdown("zh-CN")}}
    assert "同步失败" in request.json["markdown"]["content"]
    assert sleeps == []


def test_wecom_content_fits_4096_bytes(http: HttpRecorder, sleeps: Sleeps) -> None:
    wecom(http, sleeps).send(make_alert(what="差异" * 3000))
    content = http.requests[0].json["markdown"]["content"]
    assert len(content.encode("utf-8")) <= WECOM_MAX_BYTES
    assert content.startswith("### 【错误】同步失败：nightly sync")
    assert content.rstrip().endswith("…")


def test_dingtalk_payload_and_signature(http: HttpRecorder, sleeps: Sleeps) -> None:
    alert = make_alert(kind="differences", severity="warning", counts={"new_open_differences": 12})
    before = int(time.time() * 1000)
    dingtalk(http, sleeps).send(alert, lang="en")
    after = int(time.time() * 1000)

    [request] = http.requests
    assert request.path == "/robot/send"
    assert set(request.query) == {"access_token", "timestamp", "sign"}
    assert request.query["access_token"] == [DING_TOKEN]
    timestamp = int(request.query["timestamp"][0])
    assert before <= timestamp <= after
    expected = base64.b64encode(
        hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    ).decode()
    assert request.query["sign"] == [expected]
    assert "+" not in request.raw_query.split("sign=", 1)[1]  # the base64 sign travels URL-encoded
    assert request.json == {
        "msgtype": "markdown",
        "markdown": {"title": alert.subject("en"), "text": alert.render_markdown("en")},
    }
    assert "New open reconciliation differences" in request.json["markdown"]["text"]


def test_dingtalk_without_secret_is_not_signed(http: HttpRecorder, sleeps: Sleeps) -> None:
    dingtalk(http, sleeps, secret=None).send(make_alert())
    assert http.requests[0].query == {"access_token": [DING_TOKEN]}


def test_dingtalk_sign_function() -> None:
    digest = hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest()
    assert dingtalk_sign("SECabc", 1_700_000_000_000) == base64.b64encode(digest).decode()


def test_feishu_post_payload_and_signature(http: HttpRecorder, sleeps: Sleeps) -> None:
    alert = make_alert(report_path="https://reports.example.com/r-42.html")
    before = int(time.time())
    feishu(http, sleeps).send(alert)
    after = int(time.time())

    [request] = http.requests
    assert request.path == f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"
    body = request.json
    assert set(body) == {"timestamp", "sign", "msg_type", "content"}
    assert isinstance(body["timestamp"], str)
    assert before <= int(body["timestamp"]) <= after
    expected = base64.b64encode(
        hmac.new(f"{body['timestamp']}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()
    ).decode()
    assert body["sign"] == expected == feishu_sign(FEISHU_SECRET, int(body["timestamp"]))
    assert body["msg_type"] == "post"
    post = body["content"]["post"]
    assert list(post) == ["zh_cn"]
    assert post["zh_cn"]["title"] == "【错误】同步失败：nightly sync"
    assert post["zh_cn"]["content"] == [
        [{"tag": "text", "text": "运行 ID：r-42"}],
        [{"tag": "text", "text": "DAG 运行：scheduled__2024-05-01T00:00:00+00:00"}],
        [{"tag": "text", "text": "实体：customer"}],
        [{"tag": "text", "text": "统计：读取行数 120，拒绝行数 3"}],
        [
            {"tag": "text", "text": "报告："},
            {
                "tag": "a",
                "text": "https://reports.example.com/r-42.html",
                "href": "https://reports.example.com/r-42.html",
            },
        ],
        [{"tag": "text", "text": "问题："}],
        [{"tag": "text", "text": "publish step failed"}],
    ]


def test_feishu_text_message_in_english(http: HttpRecorder, sleeps: Sleeps) -> None:
    http.default = Reply(body=OK_BODIES["feishu"])
    alert = make_alert()
    feishu(http, sleeps, msg_type="text", secret=None).send(alert, lang="en")
    assert http.requests[0].json == {"msg_type": "text", "content": {"text": alert.render_text("en")}}


# --- retries and failures -----------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(ROBOTS))
def test_retries_5xx_then_succeeds(platform: str, http: HttpRecorder, sleeps: Sleeps) -> None:
    http.script(Reply(503, "upstream busy"), Reply(body=OK_BODIES[platform]))
    ROBOTS[platform](http, sleeps, retry=RetryPolicy(attempts=3, backoff=0.5)).send(make_alert())
    assert len(http.requests) == 2
    assert http.requests[0].json == http.requests[1].json
    assert sleeps == [0.5]


def test_dingtalk_signs_every_attempt(http: HttpRecorder, sleeps: Sleeps) -> None:
    clock = iter([1_700_000_000.0, 1_700_000_005.0])
    http.script(Reply(502, "bad gateway"))
    dingtalk(http, sleeps, clock=lambda: next(clock)).send(make_alert())
    stamps = [int(r.query["timestamp"][0]) for r in http.requests]
    assert stamps == [1_700_000_000_000, 1_700_000_005_000]
    for request, stamp in zip(http.requests, stamps, strict=True):
        assert request.query["sign"] == [dingtalk_sign(DING_SECRET, stamp)]


def test_gives_up_after_bounded_attempts(
    http: HttpRecorder, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    http.default = Reply(503, "down")
    with pytest.raises(WebhookError) as info, caplog.at_level(logging.WARNING):
        wecom(http, sleeps).send(make_alert())
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried[0] == "wecom webhook at 127.0.0.1: HTTP 503 down; retrying in 1.0s (attempt 1/3)"  # named once
    assert len(http.requests) == 3
    assert sleeps == [1.0, 2.0]
    assert info.value.transient
    assert info.value.retryable  # project-wide ErpOaError flag
    assert isinstance(info.value, ErpOaError)
    assert info.value.status == 503
    assert str(info.value) == "wecom webhook at 127.0.0.1: HTTP 503 down"


def test_timeout_is_retried(http: HttpRecorder, sleeps: Sleeps) -> None:
    http.script(Reply(delay=1.0))
    wecom(http, sleeps, timeout=0.2).send(make_alert())
    assert len(http.requests) == 2
    assert len(sleeps) == 1


def test_connection_refused_is_transient(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    robot = WeComRobot(f"http://127.0.0.1:{port}/send?key={WECOM_KEY}", sleep=sleeps, retry=RetryPolicy(2))
    with pytest.raises(WebhookError, match="network error") as info:
        robot.send(make_alert())
    assert info.value.transient
    assert sleeps == [1.0]
    assert WECOM_KEY not in str(info.value)


@pytest.mark.parametrize("status", [400, 403, 404, 429])
def test_4xx_is_not_retried(status: int, http: HttpRecorder, sleeps: Sleeps) -> None:
    http.default = Reply(status, {"error": "nope"})
    with pytest.raises(WebhookError) as info:
        wecom(http, sleeps).send(make_alert())
    assert len(http.requests) == 1
    assert sleeps == []
    assert not info.value.transient
    assert info.value.status == status
    assert f"HTTP {status} (not retried)" in str(info.value)


@pytest.mark.parametrize(
    ("platform", "body", "code"),
    [
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, 93000),
        ("dingtalk", {"errcode": 310000, "errmsg": "sign not match"}, 310000),
        ("feishu", {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}, 19021),
    ],
)
def test_platform_error_body_is_not_retried(
    platform: str, body: dict[str, Any], code: int, http: HttpRecorder, sleeps: Sleeps
) -> None:
    http.default = Reply(200, body)
    with pytest.raises(WebhookError) as info:
        ROBOTS[platform](http, sleeps).send(make_alert())
    assert len(http.requests) == 1
    assert sleeps == []
    assert info.value.code == code
    assert f"{platform} webhook at 127.0.0.1: rejected the message (code {code}:" in str(info.value)


def test_non_json_success_body_is_an_error(http: HttpRecorder, sleeps: Sleeps) -> None:
    http.default = Reply(200, "<html>proxy login</html>")
    with pytest.raises(WebhookError, match="non-JSON body"):
        wecom(http, sleeps).send(make_alert())


@pytest.mark.parametrize(
    "url",
    [
        f"http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}",
        f"file:///etc/passwd?key={WECOM_KEY}",
        f"ftp://example.com/{WECOM_KEY}",
    ],
)
def test_rejects_unsafe_urls_without_echoing_them(url: str, sleeps: Sleeps) -> None:
    with pytest.raises(WebhookError) as info:
        WeComRobot(url, sleep=sleeps).send(make_alert())
    assert WECOM_KEY not in str(info.value)


@pytest.mark.parametrize("platform", sorted(ROBOTS))
def test_secrets_never_logged(
    platform: str, http: HttpRecorder, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    echo = "bad token " + " ".join(PLATFORM_SECRETS[platform])
    error_body = {"errcode": 40001, "errmsg": echo, "code": 40001, "msg": echo}
    http.script(Reply(503, echo), Reply(body=OK_BODIES[platform]), Reply(500, echo), Reply(503, echo))
    http.script(Reply(500, echo), Reply(400, echo), Reply(200, error_body))
    robot = ROBOTS[platform](http, sleeps)
    alert = leaky_alert()
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        robot.send(alert)
        for _ in range(3):
            with pytest.raises(WebhookError) as info:
                robot.send(alert)
            errors.append(str(info.value))
    assert "127.0.0.1" in caplog.text
    for secret in ALL_SECRETS:
        assert secret not in caplog.text
        assert all(secret not in error for error in errors)
        assert all(secret not in r.body.decode("utf-8") for r in http.requests)
    assert "/hook/" not in caplog.text
    assert "access_token" not in caplog.text


# --- config --------------------------------------------------------------------------------------

CONFIG_YAML = """
notify:
  channels:
    - type: wecom
      name: ops-wecom
      url_env: ERPOA_WECOM_URL
      on: [failure, quality_gate]
    - type: dingtalk
      url_env: ERPOA_DINGTALK_URL
      secret_env: ERPOA_DINGTALK_SECRET
      on: [differences]
      min_new_differences: 5
      lang: en
    - type: feishu
      url_env: ERPOA_FEISHU_URL
      secret_env: ERPOA_FEISHU_SECRET
      msg_type: text
    - type: email
      to: [ops@example.com, "数据组 <data@example.com>"]
      on: [failure]
"""


def test_config_from_yaml() -> None:
    config = NotifyConfig.model_validate(yaml.safe_load(CONFIG_YAML)["notify"])
    wecom_ch, ding_ch, feishu_ch, email_ch = config.channels
    assert wecom_ch.on == ["failure", "quality_gate"]  # YAML 1.1 reads `on:` as True; handled
    assert ding_ch.label == "dingtalk(ERPOA_DINGTALK_URL)"
    assert (ding_ch.min_new_differences, ding_ch.lang) == (5, "en")
    assert feishu_ch.on == ["failure", "quality_gate", "differences"]
    assert feishu_ch.msg_type == "text"
    assert email_ch.to == ["ops@example.com", "数据组 <data@example.com>"]
    assert email_ch.smtp is None
    bare = NotifyConfig.model_validate(yaml.safe_load(CONFIG_YAML)["notify"]["channels"])
    assert bare == config


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"type": "wecom", "url_env": "X", "colour": "red"}, "Extra inputs are not permitted"),
        ({"type": "wecom"}, "needs url_env"),
        ({"type": "wecom", "url_env": "X", "secret_env": "Y"}, "not signed"),
        ({"type": "dingtalk", "url_env": "X", "to": ["a@b.c"]}, "does not take `to`"),
        ({"type": "email"}, "needs `to`"),
        ({"type": "email", "to": ["a@b.c"], "url_env": "X"}, "does not take url_env"),
        ({"type": "email", "to": ["not-an-address"]}, "not a valid email address"),
        ({"type": "wecom", "url_env": "X", "msg_type": "text"}, "feishu channels only"),
        (
            {"type": "wecom", "url_env": "X", "on": ["sometimes"]},
            "'failure', 'quality_gate' or 'differences'",
        ),
        ({"type": "wecom", "url_env": "X", "lang": "fr"}, "'zh-CN' or 'en'"),
        ({"type": "slack", "url_env": "X"}, "'wecom', 'dingtalk', 'feishu' or 'email'"),
        ({"type": "wecom", "url_env": "X", "min_new_differences": -1}, "greater than or equal to 0"),
    ],
)
def test_config_rejects(channel: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ChannelConfig.model_validate(channel)


def test_config_refuses_a_secret_pasted_as_env_name_without_echoing_it() -> None:
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"
    with pytest.raises(ValidationError) as info:
        ChannelConfig.model_validate({"type": "wecom", "url_env": url})
    assert "NAME of an environment variable" in str(info.value)
    assert WECOM_KEY not in str(info.value)


def test_config_requires_distinct_names() -> None:
    channel = {"type": "wecom", "url_env": "X"}
    with pytest.raises(ValidationError, match="distinct names"):
        NotifyConfig.model_validate({"channels": [channel, channel]})


# --- dispatch ------------------------------------------------------------------------------------


def channels_for(http: HttpRecorder) -> tuple[list[ChannelConfig], dict[str, str]]:
    config = NotifyConfig.model_validate(
        {
            "channels": [
                {"type": "wecom", "url_env": "WECOM_URL", "on": ["failure"]},
                {
                    "type": "dingtalk",
                    "url_env": "DING_URL",
                    "secret_env": "DING_SECRET",
                    "on": ["differences", "quality_gate"],
                    "min_new_differences": 5,
                },
                {
                    "type": "feishu",
                    "url_env": "FEISHU_URL",
                    "secret_env": "FEISHU_SECRET",
                    "on": ["differences"],
                    "min_new_differences": 20,
                    "lang": "en",
                },
            ]
        }
    )
    env = {
        "WECOM_URL": http.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"),
        "DING_URL": http.url(f"/robot/send?access_token={DING_TOKEN}"),
        "DING_SECRET": DING_SECRET,
        "FEISHU_URL": http.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"),
        "FEISHU_SECRET": FEISHU_SECRET,
    }
    return config.channels, env


@pytest.mark.parametrize(
    ("kind", "new_open", "expected_paths"),
    [
        ("failure", 0, ["/cgi-bin/webhook/send"]),
        ("quality_gate", 0, ["/robot/send"]),
        ("differences", 4, []),
        ("differences", 5, ["/robot/send"]),
        ("differences", 25, ["/robot/send", f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"]),
    ],
)
def test_notify_filters_by_on_and_threshold(
    kind: str, new_open: int, expected_paths: list[str], http: HttpRecorder, sleeps: Sleeps
) -> None:
    channels, env = channels_for(http)
    alert = make_alert(kind=kind, counts={"new_open_differences": new_open})
    results = notify(alert, channels, env=env, sleep=sleeps)
    assert [r.path for r in http.requests] == expected_paths
    assert all(r.ok for r in results)
    assert len(results) == len(expected_paths)


def test_notify_languages_per_channel(http: HttpRecorder, sleeps: Sleeps) -> None:
    channels, env = channels_for(http)
    notify(
        make_alert(kind="differences", counts={"new_open_differences": 30}), channels, env=env, sleep=sleeps
    )
    ding, fei = (r.json for r in http.requests)
    assert "发现新的未关闭对账差异" in ding["markdown"]["text"]
    assert fei["content"]["post"]["en_us"]["title"].startswith("[ERROR] New open reconciliation differences")


def test_one_failing_channel_does_not_stop_the_others(
    http: HttpRecorder, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    channels, env = channels_for(http)
    for channel in channels:
        channel.on.append("failure")
    http.script(
        Reply(200, {"errcode": 93000, "errmsg": f"invalid webhook url, key={WECOM_KEY} {WECOM_KEY}"}),
        Reply(body=OK_BODIES["dingtalk"]),
        Reply(body=OK_BODIES["feishu"]),
    )
    with caplog.at_level(logging.DEBUG):
        results = notify(leaky_alert(), channels, env=env, sleep=sleeps)
    assert [(r.channel, r.type, r.ok) for r in results] == [
        ("wecom(WECOM_URL)", "wecom", False),
        ("dingtalk(DING_URL)", "dingtalk", True),
        ("feishu(FEISHU_URL)", "feishu", True),
    ]
    assert results[0].error is not None
    assert results[0].error.startswith("wecom webhook at 127.0.0.1: rejected the message (code 93000:")
    assert len(http.requests) == 3
    for secret in ALL_SECRETS:
        assert secret not in results[0].error
        assert secret not in caplog.text
        assert all(secret not in r.body.decode("utf-8") for r in http.requests)


def test_missing_env_var_is_a_clear_per_channel_error(http: HttpRecorder, sleeps: Sleeps) -> None:
    channels, env = channels_for(http)
    del env["DING_SECRET"]
    results = notify(make_alert(kind="quality_gate"), channels, env=env, sleep=sleeps)
    [result] = results
    assert not result.ok
    assert result.error is not None
    assert "environment variable DING_SECRET (dingtalk signing secret) is not set" in result.error
    assert "export DING_SECRET=" in result.error
    assert http.requests == []


def test_notify_reads_os_environ_by_default(
    http: HttpRecorder, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels, env = channels_for(http)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    [result] = notify(make_alert(), channels, sleep=sleeps)
    assert result.ok
    assert http.requests[0].query == {"key": [WECOM_KEY]}


def test_notify_redacts_extra_project_secrets(http: HttpRecorder, sleeps: Sleeps) -> None:
    channels, env = channels_for(http)
    alert = make_alert(what=f"login failed for user sa with password {DB_PASSWORD} on erp-db")
    [result] = notify(alert, channels, env=env, secrets=[DB_PASSWORD], sleep=sleeps)
    assert result.ok
    content = http.requests[0].json["markdown"]["content"]
    assert DB_PASSWORD not in content
    assert "login failed for user sa with password *** on erp-db" in content
