"""
### erpoa_approvals: approved OA requests -> ERP documents, every 15 minutes

One task per approval flow of `mappings/flows/` (`erpoa flows run --flow NAME`):

- `purchase_order`: approved e-cology purchase requisitions become U8 purchase
  orders; the PO number is written back to the OA form;
- `contract_archive`: approved contract requests are archived into CM_Contract;
  the contract number is written back.

A flow whose file says `enabled: false` is skipped (its task shows skipped and
names the file); nothing is read or written.

Each task is idempotent: the OA request id is the key of a link table written in
the same ERP transaction as the document, and the write-back and the
cross-reference are derived from that table on every run. A task that fails, or
a write-back that cannot be done, is completed by the next run; nothing is
created twice. Airflow runs at most one run of this DAG at a time: a run that
outlasts 15 minutes delays the next one. The flows also take a lock in the
reconciliation store: a CLI `erpoa flows run` (or another trigger) running at the
same time makes the task skip (lock held).

Transient errors (lost connection, deadlock) are retried with backoff; terminal
ones (configuration, data) fail the task. Connections come from the Airflow
Connections `erpoa_erp`, `erpoa_oa`, `erpoa_recon`, `erpoa_erp_write`,
`erpoa_oa_write`, or from `erpoa.yaml` when not defined. See docs/approvals.md
and docs/airflow.md.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

DAG_ID = "erpoa_approvals"
# `flow:` of mappings/flows/*.yaml (a test keeps the two in step).
FLOWS: tuple[str, ...] = ("purchase_order", "contract_archive")
CONNECTION_NAMES = ("erp", "oa", "recon", "erp_write", "oa_write")


def _env_int(name: str, default: int) -> int:
    """A whole-number setting from the environment; a ValueError naming the variable when it is not one."""
    value = os.environ.get(name, "").strip() or str(default)
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number; set it to e.g. {default} or unset it") from None
    if number < 0:
        raise ValueError(f"{name}={value!r} must be 0 or more")
    return number


def _env_seconds(name: str, default: float) -> float:
    """A number of seconds from the environment; a ValueError naming the variable when it is not one."""
    value = os.environ.get(name, "").strip() or str(default)
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds; set it to e.g. {default:g}") from None
    if not seconds >= 0:
        raise ValueError(f"{name}={value!r} must be 0 or more seconds")
    return seconds


def _env_timezone(name: str, default: str) -> str:
    """An IANA time zone name from the environment; a ValueError naming the variable when it is unknown."""
    value = os.environ.get(name, "").strip() or default
    try:
        pendulum.timezone(value)
    except Exception:  # pendulum's InvalidTimezone, or a value that is no name at all
        raise ValueError(f"{name}={value!r} is not a known time zone; use an IANA name such as {default}") from None
    return value


def _schedule(name: str, default: str, timezone: str) -> CronTriggerTimetable | None:
    """The cron schedule in `name` (none, manual or empty: triggered by hand only)."""
    cron = os.environ.get(name, default).strip()
    if cron.lower() in ("", "none", "manual"):
        return None
    try:
        timetable = CronTriggerTimetable(cron, timezone=timezone)
        timetable.validate()  # the constructor accepts any text; Airflow checks it only when it bags the DAG
        return timetable
    except Exception as exc:
        raise ValueError(f"{name}={cron!r} is not a cron expression ({exc}); use e.g. '{default}', or none") from None


TIMEZONE = _env_timezone("ERPOA_TIMEZONE", "Asia/Shanghai")
SCHEDULE = _schedule("ERPOA_APPROVALS_SCHEDULE", "*/15 * * * *", TIMEZONE)
RETRIES = _env_int("ERPOA_RETRIES", 3)
RETRY_DELAY = timedelta(seconds=_env_seconds("ERPOA_RETRY_DELAY_SECONDS", 60))


def _default_config_path() -> str:
    if os.environ.get("ERPOA_CONFIG"):
        return os.environ["ERPOA_CONFIG"]
    return os.path.join(os.environ.get("ERPOA_PROJECT_DIR") or ".", "erpoa.yaml")


def _alert_on_failure(context: Any) -> None:
    from etl.notify.alerts import airflow_failure_callback

    airflow_failure_callback(context)


@task(multiple_outputs=False, on_failure_callback=_alert_on_failure)
def run_flow(flow: str, params: Any = None, dag_run: Any = None) -> dict[str, Any]:
    """Run one flow; returns its counts (the XCom is counts, never data)."""
    from etl.orchestration import flows

    return flows.run_flow(
        flow,
        params or {},
        names=CONNECTION_NAMES,
        dag_id=DAG_ID,
        dag_run=getattr(dag_run, "run_id", None),
        started=getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None),
    )


@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["erpoa", "approvals", "erp", "oa"],
    default_args={
        "owner": "erpoa",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Read everything, write nothing."),
        "config_path": Param(_default_config_path(), type="string", description="Path of erpoa.yaml on the workers."),
        # Empty by default, so ERPOA_CONN_ID_<NAME> of the worker applies (a default would be frozen at parse time).
        "connections": Param(
            {},
            type="object",
            properties={name: {"type": "string"} for name in CONNECTION_NAMES},
            additionalProperties=False,
            description="Airflow connection id per connection name (" + ", ".join(CONNECTION_NAMES) + "); "
            "unset names use ERPOA_CONN_ID_<NAME> of the worker, else erpoa_<name>, which falls back to "
            "erpoa.yaml when Airflow does not define it. An id given here must exist.",
        ),
    },
)
def erpoa_approvals() -> None:
    for flow in FLOWS:
        run_flow.override(task_id=flow)(flow)


erpoa_approvals()
