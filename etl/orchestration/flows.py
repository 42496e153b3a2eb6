"""The body of the `erpoa_approvals` DAG's tasks: one approval flow per task (`erpoa flows run --flow NAME`).

A flow switched off with `enabled: false` in its file is skipped, as `erpoa flows run`
skips it, before anything is written. The XCom is the flow's counts, never data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etl import logs
from etl.config.project import ProjectConfig
from etl.errors import SourceUnavailableError
from etl.orchestration import connections
from etl.orchestration.errors import airflow_errors, fail_task, skip_task

log = logging.getLogger("erpoa.airflow")

#: Connections a flow may use besides the four of `erpoa.yaml`.
FLOW_CONNECTIONS = ("erp_write", "oa_write")


def run_flow(flow: str, params: Mapping[str, Any], *, names: Sequence[str]) -> dict[str, Any]:
    """Run one flow with the DAG run's params; `names` are the connection names the `connections` param may set.

    Skips the task when the flow is disabled or another run holds its lock; a retryable failure is raised
    for Airflow to retry, any other failure fails the task.
    """
    from etl.flows.run import run_flows

    with airflow_errors(f"flow {flow}", redact=logs.redact):
        config_path = str(params.get("config_path") or connections.default_config_path())
        connections.check_names(params.get("connections"), names)
        ids = connections.conn_ids(params.get("connections") or None, names=names)
        config = connections.load_config(config_path, ids, strict=True)
        disabled = disabled_file(config, flow)
        if disabled is not None:
            raise skip_task(f"{flow}: disabled (enabled: false in {disabled}); nothing is read or written")
        # A broken file of another flow fails only that flow's task, as `erpoa sync` runs the others.
        summary = run_flows(config, flows=[flow], dry_run=bool(params.get("dry_run")), keep_going=True)
        result = summary.flows[0]
        if result.status == "failed":
            if result.error == "ConfigError" and summary.issues:
                raise fail_task("\n".join([f"flow {flow}: {result.message}", *summary.issues]))
            if result.error == "LockedError":
                raise skip_task(f"{flow}: another run (CLI `erpoa flows run` or a manual trigger) holds its lock")
            if result.retryable:
                raise SourceUnavailableError(result.message or f"{flow} failed")
            raise fail_task(f"flow {flow}: {result.message}")
    counts: dict[str, Any] = summary.to_dict()["flows"][0]
    counts.pop("created_numbers", None)
    return counts


def disabled_file(config: ProjectConfig, flow: str) -> str | None:
    """The file (relative to the project when inside it) of `flow` when it says `enabled: false`, else None.

    An unknown or broken flow is left to `run_flows`, which reports it.
    """
    from etl.flows import load_flows

    flowset = load_flows(config, keep_going=True)
    spec = flowset.flows.get(flow)
    if spec is None or spec.enabled:
        return None
    path = flowset.files.get(flow)
    if path is None:
        return f"the file of flow {flow}"
    path, root = Path(path).resolve(), config.resolve(Path(".")).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
