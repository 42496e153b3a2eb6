"""Run alerts: what `alerts_for_summary` builds, what `send_alerts` delivers, `erpoa sync --notify`,
and the Airflow failure callback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import write_project
from etl.config.project import ProjectConfig
from etl.demo.generate import DemoSize, build_demo
from etl.engine.hooks import notify_run
from etl.engine.pipeline import EntityResult, SyncSummary
from etl.errors import QualityGateError
from etl.notify import NotifyConfigError
from etl.notify.alerts import (
    airflow_failure_callback,
    alerts_for_summary,
    exception_alert,
    notify_config,
    send_alerts,
)
from etl.store import schema as s
from etl.store.repo import Store, now
from tests.notify.recorders import HttpRecorder, Reply

WECOM_KEY = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa"
DB_PASSWORD = "Pa55w0rd!known"
GATE_MESSAGE = "employee: quality gate refused to publish: expect_column_values_to_match_regex on mobile: 3 rows."


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def wecom(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpRecorder]:
    with HttpRecorder() as recorder:
        monkeypatch.setenv("ERPOA_TEST_WECOM_URL", recorder.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"))
        yield recorder


def make_config(tmp_path: Path, notify: Any = None) -> ProjectConfig:
    urls = {name: {"url": f"sqlite:///{tmp_path / name}.db"} for name in ("erp", "oa", "target", "recon")}
    urls["hr"] = {"url": f"postgresql+psycopg://etl:{DB_PASSWORD}@hr.example/hr"}
    config = ProjectConfig.model_validate(
        {"project": "demo", "connections": urls, "reports": str(tmp_path / "reports")}
    )
    return config.model_copy(update={"notify": notify or []})


def wecom_channel(**extra: Any) -> dict[str, Any]:
    return {"type": "wecom", "name": "ops", "url_env": "ERPOA_TEST_WECOM_URL", **extra}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = create_engine(f"sqlite:///{tmp_path / 'recon.db'}")
    store = Store(engine)
    store.migrate()
    yield store
    engine.dispose()


def summary(*entities: EntityResult, status: str = "partial", message: str | None = None) -> SyncSummary:
    return SyncSummary(
        run_id="20261124T020000-3f9a1c",
        mode="incremental",
        mapping_version="v1",
        status=status,
        entities=list(entities),
        seconds=12.5,
        message=message,
    )


def ok(entity: str, differences: int = 0) -> EntityResult:
    return EntityResult(
        entity=entity, status="success", read={"erp": 10, "oa": 12}, inserted=3, differences=differences
    )


# What alerts a run gives ---------------------------------------------------------------------------------


@pytest.mark.sqlite
def test_failed_entity_gives_a_failure_alert_naming_what_was_skipped(tmp_path: Path, store: Store) -> None:
    config = make_config(tmp_path)
    result = summary(
        ok("department"),
        EntityResult(
            entity="employee",
            status="failed",
            read={"erp": 197, "oa": 200},
            quarantined=7,
            message=f"employee: extracting from erp: connection to postgresql://etl:{DB_PASSWORD}@hr.example failed",
        ),
        EntityResult(entity="purchase", status="skipped", message="skipped: employee failed"),
    )
    alerts = alerts_for_summary(config, result, dag_run="scheduled__2026-11-23T18:00:00+00:00", store=store)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.kind, alert.entity, alert.severity) == ("failure", "employee", "error")
    assert alert.run_id == "20261124T020000-3f9a1c"
    assert alert.dag_run == "scheduled__2026-11-23T18:00:00+00:00"
    assert alert.counts == {"rows_read": 397, "rows_rejected": 7}
    assert "purchase" in alert.what
    assert DB_PASSWORD not in alert.what


@pytest.mark.sqlite
def test_refused_quality_gate_is_its_own_kind_with_the_failed_expectations(tmp_path: Path, store: Store) -> None:
    run_id = "20261124T020000-3f9a1c"
    store.add_gate(
        run_id,
        "employee",
        0,
        [
            {"level": "batch", "expectation": "expect_table_row_count_to_be_between", "failed": 1},
            {"level": "batch", "expectation": "expect_column_values_to_be_unique", "failed": 2},
            {"level": "row", "expectation": "expect_column_values_to_match_regex", "failed": 3},
        ],
    )
    (tmp_path / "reports").mkdir()
    alerts = alerts_for_summary(
        make_config(tmp_path),
        summary(EntityResult(entity="employee", status="failed", message=GATE_MESSAGE), status="failed"),
        store=store,
    )
    assert [(a.kind, a.entity) for a in alerts] == [("quality_gate", "employee")]
    assert alerts[0].counts["failed_expectations"] == 2
    assert alerts[0].report_path == str(tmp_path / "reports")


@pytest.mark.unit
def test_a_failed_run_without_a_failed_entity_still_alerts(tmp_path: Path) -> None:
    alerts = alerts_for_summary(make_config(tmp_path), summary(status="failed", message="recon store unreachable"))
    assert [(a.kind, a.severity, a.what) for a in alerts] == [("failure", "critical", "recon store unreachable")]


@pytest.mark.unit
def test_success_and_dry_runs_alert_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert alerts_for_summary(config, summary(ok("department"), status="success")) == []
    assert (
        alerts_for_summary(config, summary(EntityResult(entity="employee", status="planned"), status="planned")) == []
    )


def add_differences(store: Store, rows: list[tuple[str, str, str]]) -> None:
    """rows: (entity, first_run_id, status)."""
    with store.engine.begin() as conn:
        for i, (entity, first_run, status) in enumerate(rows):
            conn.execute(
                s.differences.insert().values(
                    diff_id=f"d{i}",
                    entity=entity,
                    **{"class": "value_mismatch"},
                    golden_key=f"k{i}",
                    first_run_id=first_run,
                    last_run_id=first_run,
                    first_seen_at=now(),
                    last_seen_at=now(),
                    status=status,
                )
            )


@pytest.mark.sqlite
def test_new_open_differences_alert_and_each_channel_applies_its_threshold(
    tmp_path: Path, store: Store, wecom: HttpRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "20261124T020000-3f9a1c"
    add_differences(
        store,
        [("employee", run, "open")] * 3
        + [("employee", "20261123T020000-aaaaaa", "open")] * 2
        + [("employee", run, "signed")]
        + [("contract", "20261123T020000-aaaaaa", "open")],
    )
    with HttpRecorder() as quiet:
        monkeypatch.setenv("ERPOA_TEST_QUIET_URL", quiet.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}x"))
        config = make_config(
            tmp_path,
            [
                wecom_channel(),
                {"type": "wecom", "name": "managers", "url_env": "ERPOA_TEST_QUIET_URL", "min_new_differences": 5},
            ],
        )
        alerts = alerts_for_summary(config, summary(ok("employee"), ok("contract"), status="success"), store=store)
        assert [(a.kind, a.entity, a.severity, a.counts) for a in alerts] == [
            ("differences", "employee", "warning", {"new_open_differences": 3, "open_differences": 5})
        ]
        results = send_alerts(config, alerts)
        assert [(r.channel, r.ok) for r in results] == [("ops", True)]
        assert quiet.requests == []
    assert "新增未关闭差异 3" in wecom.requests[0].json["markdown"]["content"]


# Delivery ---------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_send_alerts_delivers_and_redacts_connection_secrets(tmp_path: Path, wecom: HttpRecorder) -> None:
    config = make_config(tmp_path, [wecom_channel()])
    alert = exception_alert(
        config,
        RuntimeError(f"login failed for etl with {DB_PASSWORD}"),
        run_id="r1",
        task="erpoa_master_data.start_run",
    )
    results = send_alerts(config, [alert])
    assert [(r.channel, r.type, r.ok) for r in results] == [("ops", "wecom", True)]
    body = wecom.requests[0].body.decode("utf-8")
    assert DB_PASSWORD not in body
    assert WECOM_KEY not in body
    assert "erpoa_master_data.start_run" in body


@pytest.mark.unit
def test_notify_section_may_be_a_mapping_with_channels(tmp_path: Path, wecom: HttpRecorder) -> None:
    config = make_config(tmp_path, {"channels": [wecom_channel()]})
    assert [c.label for c in notify_config(config).channels] == ["ops"]
    results = send_alerts(config, alerts_for_summary(config, summary(status="failed", message="boom")))
    assert [r.ok for r in results] == [True]


@pytest.mark.unit
def test_a_failing_channel_is_reported_not_raised(tmp_path: Path) -> None:
    with HttpRecorder(default=Reply(status=400, body={"errcode": 40008, "errmsg": "invalid message type"})) as bad:
        config = make_config(tmp_path, [wecom_channel()])
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ERPOA_TEST_WECOM_URL", bad.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}"))
            results = send_alerts(config, alerts_for_summary(config, summary(status="failed", message="boom")))
    assert len(results) == 1
    assert not results[0].ok
    assert results[0].error and WECOM_KEY not in results[0].error


@pytest.mark.unit
def test_no_channels_or_no_alerts_send_nothing(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert send_alerts(config, alerts_for_summary(config, summary(status="failed", message="boom"))) == []
    assert send_alerts(make_config(tmp_path, [wecom_channel()]), []) == []


@pytest.mark.unit
def test_an_invalid_notify_section_is_a_configuration_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"type": "wecom", "url_env": "https://qyapi.weixin.qq.com/x"}])
    with pytest.raises(NotifyConfigError, match="url_env"):
        send_alerts(config, alerts_for_summary(config, summary(status="failed", message="boom")))


@pytest.mark.unit
def test_notify_run_is_what_the_cli_calls(tmp_path: Path, wecom: HttpRecorder) -> None:
    notify_run(make_config(tmp_path, [wecom_channel()]), summary(status="failed", message="recon store unreachable"))
    assert len(wecom.requests) == 1
    assert "recon store unreachable" in wecom.requests[0].json["markdown"]["content"]


@pytest.mark.sqlite
def test_erpoa_sync_notify_alerts_on_a_refused_gate(
    tmp_path: Path, wecom: HttpRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.engine import publish

    build_demo(
        f"sqlite:///{tmp_path / 'erp.db'}",
        f"sqlite:///{tmp_path / 'oa.db'}",
        DemoSize(departments=12, employees=60, requisitions=30, contracts=20),
        seed=9,
    )
    path = write_project(tmp_path)
    with path.open("a", encoding="utf-8") as f:
        f.write('notify:\n  - {type: wecom, name: ops, url_env: ERPOA_TEST_WECOM_URL, "on": [failure, quality_gate]}\n')
    original = publish.gate_decision

    def gate(ctx: Any, entity: str, read_total: int) -> None:
        if entity == "employee":
            raise QualityGateError(GATE_MESSAGE)
        original(ctx, entity, read_total)

    monkeypatch.setattr(publish, "gate_decision", gate)
    done = CliRunner().invoke(app, ["sync", "--notify", "--config", str(path), "--json"])
    assert done.exit_code == 4, done.output  # the gate's own code, though other entities failed after it
    assert len(wecom.requests) == 1
    content = wecom.requests[0].json["markdown"]["content"]
    assert "质量门禁未通过" in content
    assert "employee" in content
    assert "purchase" in content  # skipped: it depends on employee


# The Airflow failure callback -----------------------------------------------------------------------------


@pytest.fixture
def no_airflow_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.orchestration import connections

    monkeypatch.setattr(connections, "airflow_connections", lambda ids, **_: {})


def callback_context(config_path: Path, exception: BaseException | None, task_id: str = "employee.publish") -> dict:
    run = {"run_id": "20261124T020000-3f9a1c", "config_path": str(config_path), "connections": {}}
    ti = SimpleNamespace(task_id=task_id, dag_id="erpoa_master_data", xcom_pull=lambda task_ids: run)
    return {
        "ti": ti,
        "dag_run": SimpleNamespace(run_id="scheduled__2026-11-23T18:00:00+00:00", dag_id="erpoa_master_data"),
        "params": {},
        "exception": exception,
    }


def failure(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError(f"employee: publish: {type(cause).__name__}: {cause}") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.unit
@pytest.mark.usefixtures("no_airflow_connections")
def test_failure_callback_alerts_with_dag_run_task_and_entity(tmp_path: Path, wecom: HttpRecorder) -> None:
    path = write_project(tmp_path)
    with path.open("a", encoding="utf-8") as f:
        f.write("notify:\n  - {type: wecom, name: ops, url_env: ERPOA_TEST_WECOM_URL}\n")
    results = airflow_failure_callback(callback_context(path, failure(QualityGateError(GATE_MESSAGE))))
    assert [r.ok for r in results] == [True]
    content = wecom.requests[0].json["markdown"]["content"]
    for text in ("质量门禁未通过", "erpoa_master_data.employee.publish", "scheduled__2026-11-23T18:00:00", "employee"):
        assert text in content


@pytest.mark.unit
@pytest.mark.usefixtures("no_airflow_connections")
def test_failure_callback_never_raises_and_skips_failures_already_alerted(tmp_path: Path, wecom: HttpRecorder) -> None:
    from etl.orchestration.errors import ALERTED

    assert airflow_failure_callback(callback_context(tmp_path / "missing.yaml", RuntimeError("x"))) == []
    assert airflow_failure_callback({}) == []
    path = write_project(tmp_path)
    with path.open("a", encoding="utf-8") as f:
        f.write("notify:\n  - {type: wecom, name: ops, url_env: ERPOA_TEST_WECOM_URL}\n")
    done = RuntimeError("run finished failed")
    setattr(done, ALERTED, True)
    assert airflow_failure_callback(callback_context(path, done, task_id="finish_run")) == []
    assert wecom.requests == []


@pytest.mark.unit
def test_exception_alert_kind_follows_the_cause(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert exception_alert(config, failure(QualityGateError("no")), run_id="r").kind == "quality_gate"
    assert exception_alert(config, failure(ValueError("no")), run_id="r").kind == "failure"
    assert exception_alert(config, None, run_id="r").what.startswith("no exception")
