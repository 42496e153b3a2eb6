"""What to tell operators after a sync, for `erpoa sync --notify` and the Airflow DAG alike.

`alerts_for_summary` turns a run's summary into alerts: one per failed entity
(kind `quality_gate` when the gate refused the batch, else `failure`), one for
the run when it failed without a failed entity to blame, and one per entity
with new open reconciliation differences (channels drop those below their
`min_new_differences`). `send_alerts` delivers them to the channels under
`notify:` in the project config. `airflow_failure_callback` is an Airflow
`on_failure_callback` that alerts on a task's final failure.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from etl import logs
from etl.errors import QualityGateError
from etl.notify.config import NEW_DIFFERENCES, NotifyConfig, NotifyConfigError
from etl.notify.dispatch import DeliveryResult, notify
from etl.notify.message import Alert, Severity, redact

if TYPE_CHECKING:
    from etl.config.project import ProjectConfig
    from etl.engine.pipeline import EntityResult, SyncSummary
    from etl.store.repo import Store

log = logging.getLogger("erpoa.notify")

# The start of every QualityGateError message (etl.engine.publish.gate_decision).
QUALITY_GATE_MARK = "quality gate refused to publish"
OPEN_DIFFERENCES = "open_differences"


def notify_config(config: ProjectConfig) -> NotifyConfig:
    """The `notify:` section of the project config (`{channels: [...]}` or a bare list of channels)."""
    raw: Any = getattr(config, "notify", None)
    if isinstance(raw, NotifyConfig):
        return raw
    if not raw:
        return NotifyConfig()
    try:
        return NotifyConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'notify'}: {error['msg']}" for error in exc.errors()
        )
        raise NotifyConfigError(f"the notify: section of the project config is invalid: {problems}") from None


def alerts_for_summary(
    config: ProjectConfig,
    summary: SyncSummary,
    *,
    dag_run: str | None = None,
    report_path: str | None = None,
    store: Store | None = None,
) -> list[Alert]:
    """Alerts for a finished run (none for a dry run); `store` defaults to the project's reconciliation store."""
    if summary.status == "planned":
        return []
    report = report_path or _default_report_path(config)
    common: dict[str, Any] = {"run_id": summary.run_id, "dag_run": dag_run, "report_path": report}
    skipped = [e.entity for e in summary.entities if e.status == "skipped"]
    alerts = [_entity_failure(config, e, skipped, store, common) for e in summary.entities if e.status == "failed"]
    if summary.status in ("failed", "partial") and not alerts:
        alerts.append(
            Alert(
                kind="failure",
                title=f"{config.project}: run {summary.status}",
                what=_clean(config, summary.message or f"the run finished {summary.status}"),
                severity="critical" if summary.status == "failed" else "error",
                **common,
            )
        )
    published = [e.entity for e in summary.entities if e.status == "success"]
    differences = _differences(config, store, summary.run_id, published)
    for entity, (new, total) in differences.items():
        if new > 0:
            alerts.append(
                Alert(
                    kind="differences",
                    title=f"{config.project}: {entity}",
                    entity=entity,
                    what=(
                        f"{new} new open difference(s) between ERP, OA and the target for {entity} "
                        f"({total} open in total); review and sign them off in the reconciliation report"
                    ),
                    counts={NEW_DIFFERENCES: new, OPEN_DIFFERENCES: total},
                    severity="warning",
                    **common,
                )
            )
    return alerts


def _entity_failure(
    config: ProjectConfig, result: EntityResult, skipped: list[str], store: Store | None, common: dict[str, Any]
) -> Alert:
    message = result.message or "the entity failed; see the log"
    gate = QUALITY_GATE_MARK in message
    counts = {"rows_read": result.read_total, "rows_rejected": result.quarantined}
    if gate and store is not None:
        try:
            failed = [r for r in store.gate(common["run_id"], result.entity) if r["level"] == "batch"]
            counts["failed_expectations"] = len(failed)
        except Exception as exc:  # a count is not worth losing the alert over
            log.warning("gate results not read: %s", logs.redact(str(exc)))
    if skipped:
        message += f"\nSkipped because an entity they depend on failed: {', '.join(skipped)}."
    return Alert(
        kind="quality_gate" if gate else "failure",
        title=f"{config.project}: {result.entity}",
        entity=result.entity,
        what=_clean(config, message),
        counts=counts,
        severity="error",
        **common,
    )


def _differences(
    config: ProjectConfig, store: Store | None, run_id: str, entities: list[str]
) -> dict[str, tuple[int, int]]:
    """entity -> (open differences first seen in this run, all open differences)."""
    if not entities:
        return {}
    from sqlalchemy import func, select

    from etl.store import schema as s

    try:
        if store is None:
            from etl.db.connect import engine_for
            from etl.engine.pipeline import store_connection
            from etl.store.repo import Store

            store = Store(engine_for(store_connection(config)))
        d = s.differences
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.entity, d.c.first_run_id == run_id, func.count())
                .where(d.c.entity.in_(entities), d.c.status == "open")
                .group_by(d.c.entity, d.c.first_run_id == run_id)
            ).all()
    except Exception as exc:  # the store may be what failed; alert on the rest
        log.warning("open differences not counted: %s", logs.redact(str(exc)))
        return {}
    out: dict[str, tuple[int, int]] = {}
    for entity, is_new, count in rows:
        new, total = out.get(entity, (0, 0))
        out[entity] = (new + (int(count) if is_new else 0), total + int(count))
    return out


def _default_report_path(config: ProjectConfig) -> str | None:
    folder = config.resolve(config.reports)
    return str(folder) if folder.exists() else None


def _clean(config: ProjectConfig, text: str) -> str:
    return redact(logs.redact(text), config.secrets())


def send_alerts(
    config: ProjectConfig, alerts: Iterable[Alert], *, env: Mapping[str, str] | None = None
) -> list[DeliveryResult]:
    """Deliver `alerts` to the configured channels; one result per (alert, channel that wanted it).

    A channel that fails is reported in its result and logged, never raised; an
    invalid `notify:` section raises NotifyConfigError.
    """
    alerts = list(alerts)
    if not alerts:
        return []
    channels = notify_config(config).channels
    if not channels:
        log.info("%d alert(s) not sent: no channel under notify: in the project config", len(alerts))
        return []
    results: list[DeliveryResult] = []
    for alert in alerts:
        results += notify(alert, channels, env=env, secrets=config.secrets())
    for result in results:
        if not result.ok:
            log.warning("alert not delivered to %s: %s", result.channel, result.error)
    return results


def exception_alert(
    config: ProjectConfig,
    exc: BaseException | None,
    *,
    run_id: str,
    dag_run: str | None = None,
    task: str | None = None,
    entity: str | None = None,
    severity: Severity = "error",
) -> Alert:
    """An alert for an exception that stopped a task (kind `quality_gate` for a refused gate)."""
    cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception was recorded; see the task log"
    return Alert(
        kind="quality_gate" if isinstance(cause, QualityGateError) else "failure",
        title=f"{config.project}: {task or 'sync'}",
        run_id=run_id,
        dag_run=dag_run,
        entity=entity,
        what=_clean(config, f"{task} failed: {detail}" if task else detail),
        severity=severity,
    )


def airflow_failure_callback(context: Mapping[str, Any]) -> list[DeliveryResult]:
    """Airflow `on_failure_callback`: alert on a task's final failure. Never raises (a callback must not)."""
    try:
        return _alert_from_context(context)
    except Exception as exc:
        log.warning("failure alert not sent: %s", logs.redact(str(exc)))
        return []


def _alert_from_context(context: Mapping[str, Any]) -> list[DeliveryResult]:
    from etl.orchestration import connections
    from etl.orchestration.errors import ALERTED, ALERTED_BY

    if getattr(context.get("exception"), ALERTED, False):
        by = getattr(context.get("exception"), ALERTED_BY, None)
        log.info("failure not alerted again: %s", by or "the task sent its alerts itself")
        return []
    ti = context.get("ti")
    dag_run = context.get("dag_run")
    params = dict(context.get("params") or {})
    task_id = str(getattr(ti, "task_id", None) or "task")
    dag_id = str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or "dag")
    dag_run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
    run: dict[str, Any] = {}
    try:
        pulled = ti.xcom_pull(task_ids="start_run") if ti is not None else None
        run = dict(pulled) if isinstance(pulled, Mapping) else {}
    except Exception:  # start_run may itself be the failed task
        run = {}
    path = run.get("config_path") or params.get("config_path") or connections.default_config_path()
    ids = run.get("connections") or connections.conn_ids(params.get("connections") or None)
    try:
        config = connections.load_config(Path(str(path)), ids)
    except Exception as exc:  # the failure may be the config itself: alert with its notify: section alone
        fallback = notify_only_config(Path(str(path)))
        if fallback is None:
            raise
        config = fallback
        log.warning("project config not loaded (%s); alerting with its notify: section only", logs.redact(str(exc)))
    alert = exception_alert(
        config,
        context.get("exception"),
        run_id=str(run.get("run_id") or dag_run_id or "-"),
        dag_run=str(dag_run_id) if dag_run_id else None,
        task=f"{dag_id}.{task_id}",
        entity=task_id.rsplit(".", 1)[0] if "." in task_id else None,
    )
    return send_alerts(config, [alert])


def notify_only_config(path: Path) -> ProjectConfig | None:
    """A config holding only `project` and `notify:` of the file at `path`, read without validating the rest; None
    when the file cannot be read or has no `notify:` section. For alerting on a config that does not load."""
    import yaml

    from etl.config.project import ProjectConfig

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not data.get("notify"):
        return None
    project = data.get("project")
    return ProjectConfig.model_construct(
        project=project if isinstance(project, str) and project else "erp-oa-sync",
        connections={},
        notify=_expand(data["notify"]),
    )


def _expand(value: Any) -> Any:
    """`${VAR}` replaced by the environment's value in every string of `value` (left as is when unset)."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value
