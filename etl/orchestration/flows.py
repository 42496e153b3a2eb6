"""The body of the `erpoa_approvals` DAG's tasks: one approval flow per task (`erpoa flows run --flow NAME`).

A flow switched off with `enabled: false` in its file is skipped, as `erpoa flows run`
skips it, before anything is written. The XCom is the flow's counts, never data.

Each task records its flow as a run of its own in the reconciliation store, with trigger
`airflow` (a CLI `erpoa flows run` records trigger `flows`) and a run id fixed per DAG run
and flow, so the retries of a task update one run instead of adding one each. A task
skipped because another run holds the flow's lock is recorded `skipped`, not failed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from etl import logs
from etl.config.project import ProjectConfig
from etl.engine.lock import AIRFLOW_TRIGGER
from etl.errors import SourceUnavailableError
from etl.orchestration import connections
from etl.orchestration.errors import airflow_errors, fail_task, gave_up, last_try, skip_task

log = logging.getLogger("erpoa.airflow")

#: Connections a flow may use besides the four of `erpoa.yaml`.
FLOW_CONNECTIONS = ("erp_write", "oa_write")
#: The store's trigger of the flow runs of the DAG (`erpoa flows run` records `flows`).
TRIGGER = AIRFLOW_TRIGGER


def flow_run_id(dag_id: str, dag_run: str, flow: str, started: datetime) -> str:
    """The store's run id of one flow task of a DAG run, the same on every retry of the task."""
    from etl.store.repo import run_id_for

    digest = hashlib.sha1(f"{dag_id}\x1f{dag_run}\x1f{flow}".encode(), usedforsecurity=False).hexdigest()[:6]
    return run_id_for(started.astimezone(), digest)


def run_flow(
    flow: str,
    params: Mapping[str, Any],
    *,
    names: Sequence[str],
    dag_id: str | None = None,
    dag_run: str | None = None,
    started: datetime | None = None,
) -> dict[str, Any]:
    """Run one flow with the DAG run's params; `names` are the connection names the `connections` param may set.

    Skips the task when the flow is disabled or another run holds its lock; a retryable failure is raised
    for Airflow to retry, any other failure fails the task. With `dag_run` (its id; `dag_id` and `started`,
    when the DAG run started, go with it) the flow is recorded as the run `flow_run_id` with trigger `airflow`.
    """
    from etl.flows.run import run_flows, without_flow_name

    with airflow_errors(f"flow {flow}", redact=logs.redact):
        config_path = str(params.get("config_path") or connections.default_config_path())
        connections.check_names(params.get("connections"), names)
        ids = connections.conn_ids(params.get("connections") or None, names=names)
        config = connections.load_config(config_path, ids, strict=True)
        disabled = disabled_file(config, flow)
        if disabled is not None:
            raise skip_task(f"{flow}: disabled (enabled: false in {disabled}); nothing is read or written")
        dry_run = bool(params.get("dry_run"))
        run_id = None
        if dag_run and not dry_run:
            run_id = flow_run_id(dag_id or "dag", dag_run, flow, started or datetime.now().astimezone())
            _start(config, run_id, flow)
        # A broken file of another flow fails only that flow's task, as `erpoa sync` runs the others.
        summary = run_flows(config, flows=[flow], run_id=run_id, dry_run=dry_run, keep_going=True)
        result = summary.flows[0]
        said = without_flow_name(flow, result.message)
        if result.status == "failed":
            final = last_try() if result.retryable else None
            if final is not None:
                said = f"{gave_up(final[1])}: {said}"
            if result.error == "LockedError":
                said = f"skipped: another run (CLI `erpoa flows run` or a manual trigger) holds its lock: {said}"
                _finish(config, run_id, flow, "skipped", said)
                raise skip_task(f"flow {flow}: {said}")
            retried = result.retryable and final is None
            _finish(config, run_id, flow, "failed", f"{said} (transient, retried by Airflow)" if retried else said)
            if result.error == "ConfigError" and summary.issues:
                raise fail_task("\n".join([f"flow {flow}: {said}", *summary.issues]))
            if retried:
                raise SourceUnavailableError(said or f"{flow} failed")
            raise fail_task(f"flow {flow}: {said}")
        _finish(config, run_id, flow, summary.status, said)
    counts: dict[str, Any] = summary.to_dict()["flows"][0]
    counts.pop("created_numbers", None)
    return counts


def _start(config: ProjectConfig, run_id: str, flow: str) -> None:
    """Record (or, on a retry, reopen) the task's run in the store."""
    from etl.engine.pipeline import open_store
    from etl.flows import load_flows

    version = load_flows(config, keep_going=True).version
    open_store(config).start_run(run_id, trigger=TRIGGER, mode="flows", mapping_version=version, entities=[flow])


def _finish(config: ProjectConfig, run_id: str | None, flow: str, status: str, said: str) -> None:
    """Finish the task's run (the flow's row too when skipped); nothing without a run (a dry run)."""
    if run_id is None:
        return
    from etl.engine.pipeline import open_store

    store = open_store(config)
    if status == "skipped":
        store.record_entity(run_id, flow, status="skipped", message=said)
    store.finish_run(run_id, status, f"{flow}: {said}" if said else None)


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
