"""
### erpoa_master_data: nightly ERP <-> OA master-data sync

The `erpoa sync` pipeline, one stage per task, so the stages of one entity can run
on several workers:

1. `start_run` checks the project config and mappings and records the run in the
   reconciliation store (its XCom is the run id and settings, nothing else);
2. one task group per entity, in dependency order department -> employee ->
   (contract, purchase): `prepare` (takes the entity lock, creates tables) ->
   `extract` (one mapped task per source) -> `plan_partitions` -> `merge_validate`
   (one mapped task per partition: merge, compare, quality gate; beside them,
   `prebuild` builds a first load's new mirror and cross-reference partition) -> `publish`
   (gate decision, one target transaction, emits the entity's Asset) ->
   `reconcile` (reconciliation, cleanup, releases the lock);
3. `report` writes the run's reports; `finish_run` (runs whatever happened)
   releases leftover locks, records the final status, sends alerts, and fails
   when any entity failed.

An entity whose dependency failed is skipped, as in `erpoa sync`. With
`dry_run` only the `plan` task runs: it previews every entity and writes nothing.

Transient errors (lost connection, deadlock, lock timeout) are retried with
exponential backoff; terminal ones (configuration, data, quality gate) fail
without retry. Connections come from the Airflow Connections `erpoa_erp`,
`erpoa_oa`, `erpoa_target`, `erpoa_recon`, or from `erpoa.yaml` when not defined.

To run a failed entity again, clear its `prepare` task with downstream tasks: the
later stages refuse to run without the entity lock, which `finish_run` released.
See docs/airflow.md.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, TriggerRule, dag, task, task_group

DAG_ID = "erpoa_master_data"
# Dependency order; the entities of a layer run in parallel.
LAYERS: tuple[tuple[str, ...], ...] = (("department",), ("employee",), ("contract", "purchase"))
ENTITIES: tuple[str, ...] = tuple(e for layer in LAYERS for e in layer)
# target.table of mappings/<entity>.yaml (a test keeps the two in step).
TARGET_TABLES = {
    "department": "md_department",
    "employee": "md_employee",
    "contract": "md_contract",
    "purchase": "md_purchase_line",
}
ASSETS = {e: Asset(name=f"erpoa_{table}", uri=f"erpoa://target/{table}") for e, table in TARGET_TABLES.items()}
CONNECTION_NAMES = ("erp", "oa", "target", "recon")


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
SCHEDULE = _schedule("ERPOA_SCHEDULE", "0 2 * * *", TIMEZONE)
RETRIES = _env_int("ERPOA_RETRIES", 3)
RETRY_DELAY = timedelta(seconds=_env_seconds("ERPOA_RETRY_DELAY_SECONDS", 60))
# Optional routing of the heavy mapped tasks (extract, merge_validate) on Celery/Kubernetes.
WORK_ROUTING: dict[str, Any] = {
    k: v for k, v in (("queue", os.environ.get("ERPOA_QUEUE")), ("pool", os.environ.get("ERPOA_POOL"))) if v
}


def _default_config_path() -> str:
    if os.environ.get("ERPOA_CONFIG"):
        return os.environ["ERPOA_CONFIG"]
    return os.path.join(os.environ.get("ERPOA_PROJECT_DIR") or ".", "erpoa.yaml")


def _alert_on_failure(context: Any) -> None:
    from etl.notify.alerts import airflow_failure_callback

    airflow_failure_callback(context)


# Task bodies are one call each into etl.orchestration.tasks, imported inside the task so
# parsing this file imports nothing of the engine. `run` is start_run's XCom (a RunInfo dict).
# Tasks return one small dict or list; multiple_outputs=False keeps it one XCom per task.


@task(multiple_outputs=False, on_failure_callback=_alert_on_failure)
def start_run(params: Any = None, dag_run: Any = None) -> dict[str, Any]:
    from etl.orchestration import tasks

    return dict(
        tasks.start_run(
            params or {},
            dag_id=DAG_ID,
            dag_run=dag_run.run_id,
            started=dag_run.start_date or dag_run.run_after,
            known_entities=ENTITIES,
        )
    )


@task(multiple_outputs=False)
def plan(run: Any) -> dict[str, Any]:
    from etl.orchestration import tasks

    return tasks.plan(run)


# all_done: an entity decides itself (from the store) whether a dependency failed.
@task(trigger_rule=TriggerRule.ALL_DONE)
def prepare(run: Any, entity: str) -> list[str]:
    from etl.orchestration import tasks

    return tasks.prepare(run, entity)


@task(multiple_outputs=False, map_index_template="{{ task.op_kwargs['source'] }}", **WORK_ROUTING)
def extract(run: Any, entity: str, source: str) -> dict[str, Any]:
    from etl.orchestration import tasks

    return tasks.extract(run, entity, source)


@task
def plan_partitions(run: Any, entity: str) -> list[dict[str, int]]:
    from etl.orchestration import tasks

    return tasks.plan_partitions(run, entity)


@task(multiple_outputs=False)
def prebuild(run: Any, entity: str) -> dict[str, Any]:
    from etl.orchestration import tasks

    return tasks.prebuild(run, entity)


@task(multiple_outputs=False, map_index_template="{{ task.op_kwargs['partition']['index'] }}", **WORK_ROUTING)
def merge_validate(run: Any, entity: str, partition: dict[str, int]) -> dict[str, Any]:
    from etl.orchestration import tasks

    return tasks.merge_validate(run, entity, partition)


@task(multiple_outputs=False)
def publish(run: Any, entity: str, extracted: Any, merged: Any, outlet_events: Any = None) -> dict[str, Any]:
    from etl.orchestration import tasks

    published = tasks.publish(run, entity, extracted, merged)
    if outlet_events is not None:  # the counts go with the entity's asset event, for downstream DAGs
        outlet_events[ASSETS[entity]].extra = tasks.asset_extra(published)
    return published


@task(multiple_outputs=False)
def reconcile(run: Any, entity: str, published: dict[str, Any]) -> dict[str, Any]:
    from etl.orchestration import tasks

    return tasks.reconcile(run, entity, published)


@task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE, on_failure_callback=_alert_on_failure)
def report(run: Any) -> dict[str, str]:
    from etl.orchestration import tasks

    return tasks.report(run)


@task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE, on_failure_callback=_alert_on_failure)
def finish_run(run: Any, reports: dict[str, str] | None, ti: Any = None) -> dict[str, Any]:
    from etl.orchestration import tasks

    # The plan is pulled only in a dry run: otherwise `plan` is skipped and has no XCom.
    return tasks.finish_run(run, plan=lambda: ti.xcom_pull(task_ids="plan"), reports=reports)


@task_group
def entity_sync(run: Any, entity: str) -> None:
    """One entity: prepare -> extract per source -> merge_validate per partition -> publish -> reconcile."""
    sources = prepare(run, entity)
    extracted = extract.partial(run=run, entity=entity).expand(source=sources)
    partitions = plan_partitions(run, entity)
    extracted >> partitions
    merged = merge_validate.partial(run=run, entity=entity).expand(partition=partitions)
    prebuilt = prebuild(run, entity)  # a first load's mirror and links, beside the merge tasks
    partitions >> prebuilt
    published = publish.override(outlets=[ASSETS[entity]])(run, entity, extracted, merged)
    prebuilt >> published
    reconcile(run, entity, published)


@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["erpoa", "master-data", "erp", "oa"],
    default_args={
        "owner": "erpoa",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=4),
    },
    params={
        "entities": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(ENTITIES)},
            description="Entities to sync; empty means run.entities of erpoa.yaml, else every mapped entity.",
        ),
        "full_refresh": Param(False, type="boolean", description="Ignore watermarks and read everything."),
        "sweep": Param(
            True,
            type="boolean",
            description="Sweep source keys to find deleted records; off for frequent runs (a sweeping run finds them).",
        ),
        "dry_run": Param(False, type="boolean", description="Plan only: show what would change, publish nothing."),
        "config_path": Param(_default_config_path(), type="string", description="Path of erpoa.yaml on the workers."),
        # Empty by default, so ERPOA_CONN_ID_<NAME> of the worker applies (a default would be frozen at parse time).
        "connections": Param(
            {},
            type="object",
            properties={name: {"type": "string"} for name in CONNECTION_NAMES},
            additionalProperties=False,
            description="Airflow connection id per erpoa.yaml connection (erp, oa, target, recon); unset names use "
            "ERPOA_CONN_ID_<NAME> of the worker, else erpoa_<name>, which falls back to erpoa.yaml when Airflow "
            "does not define it. An id given here must exist.",
        ),
    },
)
def erpoa_master_data() -> None:
    run = start_run()
    planned = plan(run)
    previous: list[Any] = []
    for layer in LAYERS:
        groups = [entity_sync.override(group_id=entity)(run, entity) for entity in layer]
        for upstream in previous:
            upstream >> groups
        previous = groups
    reports = report(run)
    previous >> reports
    planned >> reports
    planned >> finish_run(run, reports)


erpoa_master_data()
