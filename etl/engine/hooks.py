"""Stages that run after an entity's publish (reconciliation) and after a run (alerts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from etl.config.project import ProjectConfig
from etl.engine.context import SyncContext
from etl.engine.pipeline import EntityResult, SyncSummary

log = logging.getLogger("erpoa.hooks")
Hook = Callable[[SyncContext, str, EntityResult], None]


def reconcile_hook(ctx: SyncContext, entity: str, result: EntityResult) -> None:
    """Compare ERP, OA and target for the entity just published and store the differences."""
    from etl.reconcile.run import reconcile_entity

    started = time.monotonic()
    stats = reconcile_entity(ctx, entity)
    result.differences = int(stats.get("open", 0))
    result.stage_seconds["reconcile"] = time.monotonic() - started


def default_hooks(config: ProjectConfig) -> list[Hook]:
    """The hooks every sync runs: reconciliation, when the reconcile package is present."""
    try:
        import etl.reconcile.run  # noqa: F401
    except ModuleNotFoundError:
        return []
    return [reconcile_hook]


def notify_run(config: ProjectConfig, summary: SyncSummary) -> None:
    """Send alerts for failed entities, failed quality gates and new differences."""
    from etl.notify.alerts import alerts_for_summary, send_alerts

    send_alerts(config, alerts_for_summary(config, summary))
