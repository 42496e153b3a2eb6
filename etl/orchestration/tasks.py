"""The body of every task of the `erpoa_master_data` DAG, one function per task.

Each function rebuilds the run's `SyncContext` from the project config (with
Airflow's connections) and the `RunInfo` that `start_run` returned, runs one
stage of `etl.engine`, and returns a small dict of counts: XCom carries run ids
and counts, never data. Data stays in the staging and gold tables of the target
database, keyed by run id, which is what makes every stage idempotent per
(run, entity, stage) and lets mapped tasks run on different workers.

The order is the one of `etl.engine.pipeline.sync_entity`: prepare (lock, create
tables, drop old staging) -> extract per source -> partitions -> merge and
validate per partition -> gate, publish, finalize -> reconcile, cleanup, unlock.

Every stage after `prepare` runs only while the run holds the entity lock. Tasks
cleared after `finish_run` therefore restart the entity from `prepare`, which sets
the run back to `running` in the store before it takes the lock again.

The notes of `prepare` (changes made to the entity's tables, changed mappings) are the
entity's message in the store, as in `erpoa sync`. The later tasks keep them there:
their own figures, errors and transient failures are recorded together with them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypedDict

from etl import logs
from etl.config.project import REQUIRED_CONNECTIONS, ProjectConfig
from etl.db.connect import engine_for
from etl.engine import build as build_stage
from etl.engine import extract as extract_stage
from etl.engine import prebuild as prebuild_stage
from etl.engine import publish as publish_stage
from etl.engine.context import SyncContext
from etl.engine.hooks import default_hooks
from etl.engine.lock import AIRFLOW_TRIGGER
from etl.engine.pipeline import (
    EntityResult,
    SyncSummary,
    after_publish,
    entity_message,
    load_project_mappings,
    named_once,
    open_store,
    prepare_entity,
    record,
    run_mode,
    run_sync,
    store_connection,
)
from etl.engine.preflight import check_project
from etl.errors import ConfigError, ConfigIssue
from etl.orchestration import connections, locking
from etl.orchestration.errors import airflow_errors, fail_task, is_transient, skip_task
from etl.store.repo import Store, run_id_for

log = logging.getLogger("erpoa.airflow")

TRIGGER = AIRFLOW_TRIGGER
ACTIONS = ("insert", "update", "unchanged", "inactivate", "deactivated", "rejected", "duplicates")
_FIGURES = ("inserted", "updated", "unchanged", "inactivated", "quarantined", "differences")
# How `_stage` marks a transient failure in the entity's message, after the notes of `prepare`.
_RETRIED = " (transient, retried by Airflow): "
_READ_COLUMNS = ("read_erp", "read_oa")
# Where the entities of a DAG run were asked for (the `origin` of an unknown one's issue).
ENTITIES_PARAM = "entities param of the DAG run"


class RunInfo(TypedDict):
    """What every task needs to rebuild the run (the XCom of `start_run`)."""

    run_id: str
    dag_id: str
    dag_run: str
    config_path: str
    connections: dict[str, str]
    entities: list[str]
    full_refresh: bool
    sweep: bool
    dry_run: bool
    mode: str
    mapping_version: str
    as_of: str
    started_at: str


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def make_run_id(dag_id: str, dag_run: str, started: datetime) -> str:
    """The erp-oa-sync run id of a DAG run, the same on every retry of `start_run`.

    Local time like `new_run_id`, because the store orders runs by id.
    """
    digest = hashlib.sha1(f"{dag_id}\x1f{dag_run}".encode(), usedforsecurity=False).hexdigest()[:6]
    return run_id_for(started.astimezone(), digest)


def start_run(
    params: Mapping[str, Any],
    *,
    dag_id: str,
    dag_run: str,
    started: datetime | None,
    known_entities: Sequence[str],
) -> RunInfo:
    """Check config, mappings and the entities' suites (every problem in one ConfigError), fix the run id and record
    the run in the store.

    `started` is when the DAG run started; `as_of` is the local date now, as `erpoa sync` uses.
    """
    with airflow_errors("start_run", redact=logs.redact):
        config_path = str(params.get("config_path") or connections.default_config_path())
        connections.check_names(params.get("connections"), REQUIRED_CONNECTIONS)
        ids = connections.conn_ids(params.get("connections") or None)

        def load(path: Path) -> ProjectConfig:
            return connections.load_config(path, ids, strict=True, verbose=True)

        # As `erpoa sync` does: every problem of erpoa.yaml, the mappings and the suites at once, before reading data
        requested = [str(e) for e in params.get("entities") or []]
        checked = check_project(
            Path(config_path), load, entities=requested, origin=ENTITIES_PARAM, among=known_entities, connections=ids
        )
        wanted = requested or (checked.config.run.entities if checked.config else None) or []
        unknown = set() if checked.mappings is None else set(wanted) - set(checked.mappings.entities)  # reported
        outside = [e for e in wanted if e not in known_entities and e not in unknown]
        if outside:
            synced = ", ".join(known_entities)
            message = f"entities {', '.join(outside)} have no task group in this DAG; it syncs {synced}"
            checked.issues.append(ConfigIssue("", None, None, "", message))
        config, mappings, names = checked.result()
        ignored = [e for e in mappings.entities if e not in known_entities]
        if ignored:
            log.warning("mappings define %s, which this DAG does not sync", ", ".join(ignored))
        dry_run = bool(params.get("dry_run"))
        full_refresh = bool(params.get("full_refresh"))
        store = None if dry_run else open_store(config)
        mode = "plan" if store is None else run_mode(store, mappings, names, full_refresh=full_refresh, dry_run=False)
        info = RunInfo(
            run_id=make_run_id(dag_id, dag_run, started or datetime.now().astimezone()),
            dag_id=dag_id,
            dag_run=dag_run,
            config_path=config_path,
            connections=ids,
            entities=names,
            full_refresh=full_refresh,
            sweep=bool(params.get("sweep", True)),
            dry_run=dry_run,
            mode=mode,
            mapping_version=mappings.version,
            as_of=date.today().isoformat(),
            started_at=datetime.now().astimezone().isoformat(),
        )
        if store is not None:
            store.start_run(
                info["run_id"], trigger=TRIGGER, mode=info["mode"], mapping_version=mappings.version, entities=names
            )
        log.info("run %s (%s) of %s: %s", info["run_id"], info["mode"], dag_run, ", ".join(names))
        return info


def context_for(run: RunInfo) -> SyncContext:
    """The run's SyncContext, rebuilt in this task's process."""
    config = connections.load_config(run["config_path"], run["connections"], strict=True)
    mappings = load_project_mappings(config)
    if mappings.version != run["mapping_version"]:
        raise ConfigError(
            f"the mappings changed while run {run['run_id']} was running (version {run['mapping_version']} -> "
            f"{mappings.version}); let this run fail and trigger a new one"
        )
    return SyncContext(
        config=config,
        mappings=mappings,
        store=Store(engine_for(store_connection(config))),
        run_id=run["run_id"],
        full_refresh=run["full_refresh"],
        sweep=run.get("sweep", True),
        trigger=TRIGGER,
        as_of=date.fromisoformat(run["as_of"]),
    )


@contextmanager
def _stage(
    run: RunInfo, entity: str, stage: str, *, locked: bool = True, figures: dict[str, int] | None = None
) -> Iterator[SyncContext]:
    """The context of one entity stage; a failure is recorded on the entity row, then mapped for Airflow.

    `locked`: the stage writes, so the run must hold the entity lock (every stage but `prepare`, which takes it).
    `figures`: read counts the stage knows (filled by it), recorded with a failure; else those the `extract`
    tasks recorded. A failed entity keeps what it read and set aside, as in `erpoa sync`.
    """
    built: list[SyncContext] = []

    def record_failure(exc: BaseException, message: str, transient: bool) -> None:
        if built:
            store = built[0].store
            notes = prepared_notes(store, run["run_id"], entity)
            if transient:  # after the notes, so that the next task finds them (`prepared_notes`)
                note = entity_message([*notes, f"{stage}{_RETRIED}{message}"])
                store.record_entity(run["run_id"], entity, status="running", message=note)
                return
            if is_transient(exc):  # Airflow gave up retrying it: the stage is not in the message yet
                message = f"{stage} {message}"
            counts = _failure_figures(store, run["run_id"], entity, figures) if locked else {}
            note = entity_message(notes, message)
            store.record_entity(run["run_id"], entity, status="failed", message=note, **counts)

    hint = f"Nothing retries it now: clear {entity}.prepare with its downstream tasks to run the entity again."
    with airflow_errors(f"{entity}: {stage}", redact=logs.redact, on_error=record_failure, retry_hint=hint):
        ctx = context_for(run)
        if locked:
            target = locking.target_of(ctx.mapping(entity))
            locking.require(ctx.store.engine, entity, target, ctx.run_id, stage=stage)
        built.append(ctx)
        yield ctx


def _failure_figures(store: Store, run_id: str, entity: str, known: Mapping[str, int] | None) -> dict[str, int]:
    """The read and quarantined figures of an entity that failed after its sources were extracted."""
    row = store.entity_run(run_id, entity) or {}
    read = {k: int(row.get(k) or 0) for k in ("read_erp", "read_oa")}
    figures: dict[str, int] = {**read, "read_total": sum(read.values())}
    figures.update(known or {})
    if figures["read_total"]:
        figures["quarantined"] = store.count_quarantine(run_id, entity)
    return figures


def plan(run: RunInfo) -> dict[str, Any]:
    """Dry run (`dry_run` param): plan every entity, write nothing; skipped otherwise."""
    if not run["dry_run"]:
        raise skip_task("not a dry run")
    with airflow_errors("plan", redact=logs.redact):
        config = connections.load_config(run["config_path"], run["connections"], strict=True)
        summary, ctx = run_sync(
            config,
            entities=run["entities"],
            full_refresh=run["full_refresh"],
            sweep=run.get("sweep", True),
            dry_run=True,
            trigger=TRIGGER,
            run_id=run["run_id"],
        )
        ctx.close()
        return summary.to_dict()


def prepare(run: RunInfo | None, entity: str) -> list[str]:
    """Take the entity's lock, create its tables, drop old staging; returns the sources to extract."""
    if run is None:
        raise skip_task("the run did not start")
    if run["dry_run"]:
        raise skip_task("dry run: the plan task previews every entity")
    if entity not in run["entities"]:
        raise skip_task(f"{entity} is not among this run's entities")
    with _stage(run, entity, "prepare", locked=False) as ctx:
        mapping = ctx.mapping(entity)
        blocked = _blocked(ctx, run, mapping.dependencies)
        if blocked:
            message = f"skipped: {blocked}"
            record(ctx, EntityResult(entity=entity, status="skipped", message=message))
            raise skip_task(message)
        # Cleared after finish_run: running again first, or another sync would take the lock as stale.
        reopen(ctx.store, run)
        locking.acquire(
            ctx.store.engine,
            entity,
            locking.target_of(mapping),
            ctx.run_id,
            wait_seconds=ctx.config.run.lock_wait_seconds,
        )
        ctx.store.record_entity(ctx.run_id, entity, status="running", message=None)
        notes = prepare_entity(ctx, entity)
        if notes:
            ctx.store.record_entity(ctx.run_id, entity, status="running", message=entity_message(notes))
        return list(mapping.sources)


def prepared_notes(store: Store, run_id: str, entity: str) -> list[str]:
    """The notes `prepare` left in the entity's message while it runs, without a transient failure's note.

    Nothing once the entity failed or ended: a later write of its record is then not one of this run's stages.
    """
    row = store.entity_run(run_id, entity)
    if not row or row["status"] != "running" or not row["message"]:
        return []
    message = str(row["message"])
    retried = message.find(_RETRIED)
    if retried >= 0:  # `_stage` appends "; <stage> (transient, ...)"; a stage name has no "; "
        cut = message.rfind("; ", 0, retried)
        message = message[:cut] if cut >= 0 else ""
    return [message] if message else []


def reopen(store: Store, run: RunInfo) -> None:
    """Set the run back to `running` in the store (its tasks run again); nothing changes while it runs."""
    store.start_run(
        run["run_id"],
        trigger=TRIGGER,
        mode=run["mode"],
        mapping_version=run["mapping_version"],
        entities=run["entities"],
    )


def _blocked(ctx: SyncContext, run: RunInfo, dependencies: Iterable[str]) -> str:
    """Why the entity is skipped: its dependencies synced in this run that failed or were skipped themselves
    (as `run_sync` words it); empty when they all succeeded."""
    statuses = {r["entity"]: r["status"] for r in ctx.store.entity_runs(run["run_id"])}
    blocked = [d for d in dependencies if d in run["entities"] and statuses.get(d) != "success"]
    return not_done({d: statuses.get(d) for d in blocked})


def not_done(statuses: Mapping[str, str | None]) -> str:
    """"a, b failed and c skipped" for dependencies (name -> status) that did not succeed; empty for none."""
    failed = [d for d, status in statuses.items() if status != "skipped"]
    skipped = [d for d, status in statuses.items() if status == "skipped"]
    parts = [f"{', '.join(failed)} failed"] if failed else []
    parts += [f"{', '.join(skipped)} skipped"] if skipped else []
    return " and ".join(parts)


def extract(run: RunInfo, entity: str, source: str) -> dict[str, Any]:
    """Extract one source of the entity into staging; returns read/staged/rejected/deleted counts."""
    with _stage(run, entity, f"extract {source}") as ctx:
        t0 = time.monotonic()
        counts = extract_stage.extract_source(ctx, entity, source)
        if f"read_{source}" in _READ_COLUMNS:  # kept by a failure of a later stage (`_failure_figures`)
            ctx.store.record_entity(ctx.run_id, entity, **{f"read_{source}": int(counts.get("read", 0))})
        if ctx.extract_notes.get(entity):  # e.g. cursor values in the future: kept by the later tasks with prepare's
            notes = [*prepared_notes(ctx.store, ctx.run_id, entity), *ctx.extract_notes[entity]]
            ctx.store.record_entity(ctx.run_id, entity, status="running", message=entity_message(notes))
        return {"source": source, **{k: int(v) for k, v in counts.items()}, "seconds": _since(t0)}


def plan_partitions(run: RunInfo, entity: str) -> list[dict[str, int]]:
    """The merge partitions of the staged rows, one mapped `merge_validate` task each."""
    with _stage(run, entity, "plan partitions") as ctx:
        count = extract_stage.partitions(ctx, entity)
        return [{"index": i, "of": count} for i in range(count)]


def prebuild(run: RunInfo, entity: str) -> dict[str, Any]:
    """A first load's new mirror and cross-reference partition, built while the partitions are merged
    (`etl.engine.prebuild`); nothing on later loads. A build that fails is logged: the publish copies instead."""
    with _stage(run, entity, "prebuild") as ctx:
        t0 = time.monotonic()
        built = prebuild_stage.build_now(ctx, entity)
        return {"built": built, "seconds": _since(t0)}


def merge_validate(run: RunInfo, entity: str, partition: Mapping[str, int]) -> dict[str, Any]:
    """Merge, compare, check references and run the quality gate on one partition."""
    index, count = int(partition["index"]), int(partition["of"])
    with _stage(run, entity, f"merge partition {index + 1}/{count}") as ctx:
        t0 = time.monotonic()
        counts = build_stage.build_partition(ctx, entity, index, count)
        return {"partition": index, **{k: int(v) for k, v in counts.items()}, "seconds": _since(t0)}


def publish(
    run: RunInfo, entity: str, extracted: Iterable[Mapping[str, Any]], merged: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """Gate decision, then publish in one target transaction, then finalize; records the entity's figures."""
    extracted, merged = _materialize(extracted), _materialize(merged)
    read = {str(e["source"]): int(e["read"]) for e in extracted}
    figures = {c: read[c[5:]] for c in _READ_COLUMNS if c[5:] in read} | {"read_total": sum(read.values())}
    with _stage(run, entity, "publish", figures=figures) as ctx:
        totals: Counter[str] = Counter()
        for part in merged:
            totals.update({k: int(part.get(k, 0)) for k in ACTIONS})
        result = EntityResult(
            entity=entity,
            message=entity_message(prepared_notes(ctx.store, ctx.run_id, entity)),
            read=read,
            inserted=totals["insert"],
            updated=totals["update"],
            unchanged=totals["unchanged"],
            inactivated=totals["inactivate"] + totals["deactivated"],
            stage_seconds={
                "extract": round(sum(float(e.get("seconds", 0)) for e in extracted), 3),
                "merge": round(sum(float(m.get("seconds", 0)) for m in merged), 3),
            },
        )
        t0 = time.monotonic()
        publish_stage.gate_decision(ctx, entity, result.read_total)
        result.stage_seconds["validate"] = _since(t0)
        t0 = time.monotonic()
        publish_stage.publish_and_finalize(ctx, entity)
        result.stage_seconds["publish"] = _since(t0)
        result.quarantined = ctx.store.count_quarantine(ctx.run_id, entity)
        result.seconds = round(sum(result.stage_seconds.values()), 3)
        record(ctx, result)
        return {**_figures(result), "status": "published"}


def asset_extra(published: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of the asset event of a publish: what it wrote, and `changed` (False when it wrote nothing)."""
    counts = {k: int(published.get(k, 0)) for k in ("inserted", "updated", "inactivated", "unchanged", "quarantined")}
    changed = any(counts[k] for k in ("inserted", "updated", "inactivated"))
    return {"entity": str(published.get("entity")), **counts, "changed": changed}


def reconcile(run: RunInfo, entity: str, published: Mapping[str, Any]) -> dict[str, Any]:
    """Reconcile the published entity (when `etl.reconcile` is installed), drop its staging, release its lock."""
    with _stage(run, entity, "reconcile") as ctx:
        result = _result(published)
        result.status = "success"
        result.message = entity_message(prepared_notes(ctx.store, ctx.run_id, entity))
        t0 = time.monotonic()
        # retried like the other stages; a reconciliation that still fails leaves the published entity a success
        after_publish(ctx, entity, result, default_hooks(ctx.config))
        result.stage_seconds.setdefault("reconcile", _since(t0))
        t0 = time.monotonic()
        publish_stage.cleanup(ctx, entity)
        result.stage_seconds["publish"] = result.stage_seconds.get("publish", 0.0) + _since(t0)
        result.seconds = round(sum(result.stage_seconds.values()), 3)
        record(ctx, result)
        mapping = ctx.mapping(entity)
        locking.release(ctx.store.engine, ctx.run_id, [locking.lock_name(entity, locking.target_of(mapping))])
        return {"entity": entity, "status": result.status, "differences": result.differences}


def report(run: RunInfo | None) -> dict[str, str]:
    """Write the run's reports with `etl.report.build.write_reports` when that package is installed."""
    if run is None:
        raise skip_task("the run did not start")
    if run["dry_run"]:
        raise skip_task("dry run: nothing was published")
    try:
        from etl.report.build import write_reports
    except ModuleNotFoundError:
        log.info("etl.report is not installed; no report written")
        return {}
    with airflow_errors("report", redact=logs.redact):
        config = connections.load_config(run["config_path"], run["connections"], strict=True)
        return {str(k): str(v) for k, v in write_reports(config, run["run_id"]).items()}


def finish_run(
    run: RunInfo | None,
    *,
    plan: Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None = None,
    reports: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Release the run's locks, record its final status, send alerts; fail the task unless all succeeded.

    Runs whatever happened upstream (trigger rule all_done). `plan` is the plan
    task's result, or a function fetching it (only called in a dry run).
    """
    if run is None:
        raise fail_task(
            "the run did not start (start_run failed); see the log of start_run",
            alerted="start_run failed and its own failure callback alerts that (its log says whether it could)",
        )
    if run["dry_run"]:
        return _finish_dry_run(run, plan() if callable(plan) else plan)
    with airflow_errors("finish_run", redact=logs.redact):
        config = connections.load_config(run["config_path"], run["connections"], strict=True)
        store = Store(engine_for(store_connection(config)))
        released = locking.release(store.engine, run["run_id"])
        summary = final_summary(config, store, run)
        store.finish_run(run["run_id"], summary.status, summary.message)
        from etl.notify.alerts import alerts_for_summary, send_alerts

        alerts = alerts_for_summary(
            config, summary, dag_run=run["dag_run"], report_path=_report_path(reports), store=store
        )
        deliveries = send_alerts(config, alerts)
    outcome = {
        "run_id": run["run_id"],
        "status": summary.status,
        "locks_released": released,
        "alerts": len(alerts),
        "delivered": sum(1 for d in deliveries if d.ok),
        "undelivered": sum(1 for d in deliveries if not d.ok),
    }
    log.info("run %s finished %s: %s", run["run_id"], summary.status, outcome)
    if summary.status != "success":
        raise fail_task(
            f"run {run['run_id']} finished {summary.status}: {summary.message}",
            alerted=f"finish_run sent the run's {len(alerts)} alert(s) itself ({outcome['delivered']} delivered)",
        )
    return outcome


def _finish_dry_run(run: RunInfo, plan: Mapping[str, Any] | None) -> dict[str, Any]:
    """Log the plan; fail unless it is `planned`, as `erpoa plan` exits non-zero."""
    if plan is None:
        raise fail_task(f"dry run {run['run_id']}: the plan task failed")
    for e in plan.get("entities", []):
        log.info("plan %s: %s", e.get("entity"), {k: e.get(k) for k in ("status", *_FIGURES)})
    status = plan.get("status")
    if status != "planned":
        raise fail_task(f"dry run {run['run_id']}: plan {status}: {plan.get('message') or 'see the plan task'}")
    return {"run_id": run["run_id"], "status": status, "alerts": 0}


def final_summary(config: ProjectConfig, store: Store, run: RunInfo) -> SyncSummary:
    """The run's summary from the store, settling entities whose tasks never recorded an end."""
    rows = {r["entity"]: r for r in store.entity_runs(run["run_id"])}
    try:
        mappings = load_project_mappings(config)
        deps = {e: mappings.entity(e).dependencies for e in run["entities"]}
    except Exception as exc:  # the summary must be written even when mappings no longer load
        log.warning("mappings did not load (%s); dependants of failures are reported as failed", exc)
        deps = {}
    results: list[EntityResult] = []
    failed: set[str] = set()
    settled: dict[str, str] = {}
    for entity in run["entities"]:
        row = rows.get(entity)
        status = row["status"] if row else None
        result = _result_from_row(entity, row)
        if status not in ("success", "failed", "skipped"):
            blocked = [d for d in deps.get(entity, []) if d in failed]
            if row is None and blocked:
                result.status = "skipped"
                result.message = f"skipped: {not_done({d: settled.get(d) for d in blocked})}"
            else:
                result.status = "failed"
                detail = row["message"] if row and row["message"] else "one of its tasks failed or was stopped"
                result.message = f"did not finish: {detail}"
            store.record_entity(run["run_id"], entity, status=result.status, message=result.message)
        if result.status != "success":
            failed.add(entity)
        settled[entity] = result.status
        results.append(result)
    names = run["entities"]
    status = "success" if not failed else ("failed" if len(failed) == len(names) else "partial")
    started = datetime.fromisoformat(run["started_at"])
    return SyncSummary(
        run_id=run["run_id"],
        mode=run["mode"],
        mapping_version=run["mapping_version"],
        status=status,
        entities=results,
        seconds=round((datetime.now(started.tzinfo) - started).total_seconds(), 3),
        message="; ".join(named_once(r.entity, str(r.message)) for r in results if r.message) or None,
    )


def _figures(result: EntityResult) -> dict[str, Any]:
    return {
        "entity": result.entity,
        "status": result.status,
        "read": dict(result.read),
        **{k: int(getattr(result, k)) for k in _FIGURES},
        "stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
    }


def _result(figures: Mapping[str, Any]) -> EntityResult:
    result = EntityResult(
        entity=str(figures["entity"]),
        status=str(figures.get("status", "running")),
        read={str(k): int(v) for k, v in dict(figures.get("read", {})).items()},
        stage_seconds={str(k): float(v) for k, v in dict(figures.get("stage_seconds", {})).items()},
    )
    for name in _FIGURES:
        setattr(result, name, int(figures.get(name, 0)))
    return result


def _result_from_row(entity: str, row: Mapping[str, Any] | None) -> EntityResult:
    if row is None:
        return EntityResult(entity=entity, status="failed")
    read = {"erp": int(row["read_erp"] or 0), "oa": int(row["read_oa"] or 0)}
    other = int(row["read_total"] or 0) - sum(read.values())
    if other > 0:
        read["other"] = other
    result = EntityResult(entity=entity, status=str(row["status"]), read=read, seconds=float(row["seconds_total"] or 0))
    result.message = row["message"]
    for name in _FIGURES:
        setattr(result, name, int(row[name] or 0))
    return result


def _materialize(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # A slice of Airflow's lazy XCom sequence is one request; iterating probes one past the end.
    return list(items[:]) if isinstance(items, Sequence) else list(items)


def _report_path(reports: Mapping[str, str] | None) -> str | None:
    if not reports:
        return None
    return reports.get("html") or reports.get("index") or next(iter(reports.values()))
