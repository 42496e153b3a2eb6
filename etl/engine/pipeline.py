"""A whole sync: every entity in dependency order, each through extract, merge+gate, publish, reconcile.

The CLI calls `run_sync`; the Airflow DAG calls the same stage functions one task
at a time (see `etl.orchestration.tasks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from etl import faults
from etl.config.project import ConnectionConfig, ProjectConfig
from etl.db.connect import check_engines, check_sources_exist, describe, engine_for, name_connections
from etl.engine import build, extract, prebuild, publish
from etl.engine.context import ProgressFn, SyncContext
from etl.engine.lock import entity_lock
from etl.engine.retry import with_retries
from etl.engine.sweep import Staged
from etl.errors import ConfigError, ConfigIssue, ErpOaError, QualityGateError, classify_db_error
from etl.mapping.loader import COMMAND_LINE, MappingSet, load_mappings, run_entities
from etl.store import schema as store_schema
from etl.store.repo import Store, new_run_id
from etl.yamlio import dotted, load_yaml

log = logging.getLogger("erpoa.sync")


@dataclass
class EntityResult:
    """What a sync did to one entity (the `--json` summary per entity)."""

    entity: str
    status: str = "running"
    read: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    inactivated: int = 0
    quarantined: int = 0
    differences: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    message: str | None = None
    #: What the run changed (or, in a plan, would change) in the entity's tables and how it reads it because of
    #: that; that the mappings changed since its last sync. Also at the end of `message`.
    notes: list[str] = field(default_factory=list)
    #: Of a failed entity: the error's class (e.g. `QualityGateError`) and the CLI's exit code for it.
    error: str | None = None
    exit_code: int = 0

    @property
    def read_total(self) -> int:
        return sum(self.read.values())


@dataclass
class SyncSummary:
    run_id: str
    mode: str
    mapping_version: str
    status: str
    entities: list[EntityResult]
    seconds: float
    message: str | None = None

    @property
    def exit_code(self) -> int:
        """What the CLI exits with: 0 when every entity succeeded (or was planned); otherwise the code of the
        first failed entity's error (2 configuration, 3 data, 4 quality gate, 6 database unavailable), else 1."""
        if self.status in ("success", "planned"):
            return 0
        codes = [e.exit_code for e in self.entities if e.status == "failed" and e.exit_code > 1]
        return codes[0] if codes else 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for entity in out["entities"]:
            entity["read_total"] = sum(entity["read"].values())
        return out


def open_store(
    config: ProjectConfig, *, dry_run: bool = False, retry: bool = False, read_only: bool = False
) -> Store:
    """The reconciliation store of the project, migrated to the current schema.

    A dry run writes nothing: when the store was never created, it reads an empty
    in-memory one instead of creating the tables. So do commands that only read
    (`read_only`: `status`, `xref`, the lists), which migrate a store that exists.
    With `retry` (a sync), an unavailable store is retried with the run's `retries`
    and backoff like any other database work; without it the first failure is reported.
    """
    conn = store_connection(config)
    name_connections(config.connections)
    store = Store(engine_for(conn))

    if read_only:  # a store the config names wrongly is an error, not an empty store (SQLite: its folder exists)
        check_engines({"recon": conn}, connect=True)

    def migrated() -> Store:
        if dry_run or read_only:
            # asked through a read-only engine: on SQLite the writable one would create the file
            if store_schema.is_initialised(engine_for(conn, read_only=True)):
                if read_only:
                    store.migrate()
                return store
            empty = Store(create_engine("sqlite://", poolclass=StaticPool))
            empty.migrate()
            return empty
        store.migrate()
        return store

    what = "opening the reconciliation store"
    try:
        if retry:
            settings = config.run
            return with_retries(migrated, what=what, retries=settings.retries, backoff=settings.retry_backoff_seconds)
        return migrated()
    except SQLAlchemyError as exc:  # unreachable or unwritable: a classified error, not a traceback
        raise classify_db_error(exc, what=what, connection=describe(conn)) from None


def store_connection(config: ProjectConfig) -> ConnectionConfig:
    """The `recon` connection the reconciliation store is opened with; every place that builds a `Store` asks this.

    ConfigError, located at the connection's `schema:`, when it names one: the store's statements (some of them raw
    SQL) go to the login's default schema, and the store may share its engine with the target (equal URLs), whose
    search_path must not change; so the schema is made the login's default instead, as the message says.
    """
    conn = config.connection("recon")
    if not conn.schema_:
        return conn
    schema = conn.schema_
    message = (
        f"the reconciliation store does not take `schema:` (an Airflow Connection's `db_schema`): its tables would "
        f"be created in the login's default schema, not in '{schema}'. Remove it and make '{schema}' the store "
        f"login's default: on PostgreSQL add `?options=-csearch_path%3D{schema}` to the URL (Airflow: extra "
        f"`{{\"options\": \"-csearch_path={schema}\"}}`) or run `ALTER ROLE <login> SET search_path = {schema}`; "
        f"on MariaDB/MySQL name the database `{schema}` in the URL"
    )
    loc = ("connections", "recon", "schema")
    path = config.config_path
    try:
        issue = load_yaml(path)[1].issue(loc, message) if path is not None else None
    except (OSError, ConfigError):
        issue = None
    raise ConfigError([issue or ConfigIssue(str(path or ""), None, None, dotted(loc), message)])


def load_project_mappings(config: ProjectConfig) -> MappingSet:
    return load_mappings(config.resolve(config.mappings), connections=config.connections)


def sync_entity(
    ctx: SyncContext, entity: str, hooks: Iterable[Callable[[SyncContext, str, EntityResult], None]] = ()
) -> EntityResult:
    """Run one entity end to end under its lock."""
    mapping = ctx.mapping(entity)
    result = EntityResult(entity=entity)
    settings = ctx.config.run
    started = time.monotonic()
    build.freeze_heap()

    def retry(fn: Callable[[], Any], what: str) -> Any:
        try:
            return with_retries(
                fn, what=f"{entity}: {what}", retries=settings.retries, backoff=settings.retry_backoff_seconds
            )
        except SQLAlchemyError as exc:  # a terminal database error fails this entity with a message, not the run
            raise classify_db_error(exc, what=f"{entity}: {what}") from None

    @contextmanager
    def clocked(stage: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            result.stage_seconds[stage] = result.stage_seconds.get(stage, 0.0) + time.monotonic() - t0

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        with clocked(stage):
            return retry(fn, stage)

    published = False
    lock_ctx = (
        entity_lock(
            ctx.store.engine,
            entity,
            mapping.target.connection + ":" + mapping.target.table,
            ctx.run_id,
            wait_seconds=settings.lock_wait_seconds,
        )
        if not ctx.dry_run
        else _nolock()
    )
    try:
        with lock_ctx:
            if not ctx.dry_run:
                ctx.store.record_entity(ctx.run_id, entity, status="running")
            notes = result.notes = timed("extract", lambda: prepare_entity(ctx, entity))
            result.message = entity_message(notes)
            with clocked("extract"):  # wall time (the sources may run at once); each source retries on its own
                extracted = _extract_sources(ctx, entity, partial(retry, what="extract"))
            result.read = {source: counts["read"] for source, counts in extracted.items()}
            if ctx.extract_notes.get(entity):  # e.g. cursor values in the future
                notes = result.notes = [*notes, *ctx.extract_notes[entity]]
                result.message = entity_message(notes)
            parts = timed("extract", lambda: extract.partitions(ctx, entity))  # builds the stage's indexes
            totals: dict[str, int] = {}
            build.expect_fresh_gold(ctx, entity, parts)
            with (
                prebuild.building(ctx, entity),  # a first load's mirror and links, beside the merge
                ctx.background_writes(mapping, f"erpoa-gold-{entity}") as writes,
            ):
                for part in range(parts):
                    counts = timed("merge", partial(build.build_partition, ctx, entity, part, parts, writes))
                    for k, v in counts.items():
                        totals[k] = totals.get(k, 0) + v
                timed("merge", writes.wait)
            result.inserted = totals.get("insert", 0)
            result.updated = totals.get("update", 0)
            result.unchanged = totals.get("unchanged", 0)
            result.inactivated = totals.get("inactivate", 0) + totals.get("deactivated", 0)
            if ctx.dry_run:
                result.quarantined = publish.records_count(publish.planned_findings(ctx, entity))
                result.status = "planned"
                try:
                    timed("validate", lambda: publish.gate_decision(ctx, entity, result.read_total,
                                                                    quarantined=result.quarantined))
                    ctx.__dict__.setdefault(build.PLANNED, set()).add(entity)  # what its dependants' plans see
                except QualityGateError as exc:  # the plan's figures stay, for the steward to see why
                    result.status = "failed"
                    result.message = entity_message([*notes, redact(str(exc), ctx.config)])
                    result.error, result.exit_code = type(exc).__name__, exc.exit_code
            else:
                timed("validate", lambda: publish.gate_decision(ctx, entity, result.read_total))
                timed("publish", lambda: publish.publish_and_finalize(ctx, entity))
                published = True
                result.quarantined = ctx.store.count_quarantine(ctx.run_id, entity)
                result.status = "success"
                after_publish(ctx, entity, result, hooks)
                faults.point("entity.reconciled")
                timed("publish", lambda: publish.cleanup(ctx, entity))
                faults.point("entity.cleaned")
    except ErpOaError as exc:  # what the entity read and set aside before it failed stays in its figures
        if not ctx.dry_run and not published:  # the merge's counts were never published (a gate refusal, ...)
            result.inserted = result.updated = result.unchanged = result.inactivated = 0
        result.seconds = round(time.monotonic() - started, 3)
        exc.__dict__["entity_result"] = result
        raise
    result.seconds = round(time.monotonic() - started, 3)
    return result


def after_publish(
    ctx: SyncContext,
    entity: str,
    result: EntityResult,
    hooks: Iterable[Callable[[SyncContext, str, EntityResult], None]],
) -> None:
    """Run the post-publish hooks (the reconciliation), each retried on a transient error like the other stages.

    The entity's publish has committed: a hook that still fails does not fail it (its dependants would be
    skipped although its data is in the target). It stays `success`, its message says what failed; the next
    run that publishes the entity runs the hook again. The Airflow DAG's `reconcile` task can call it too.
    """
    settings = ctx.config.run
    for hook in hooks:
        try:
            try:
                with_retries(partial(hook, ctx, entity, result), what=f"{entity}: reconciling",
                             retries=settings.retries, backoff=settings.retry_backoff_seconds)
            except SQLAlchemyError as exc:
                raise classify_db_error(exc, what=f"{entity}: reconciling") from None
        except ErpOaError as exc:
            error = redact(str(exc), ctx.config)
            warning = f"published, but the reconciliation failed: {error} (the next sync of {entity} reconciles it)"
            log.warning("%s", warning)
            result.notes = [*result.notes, warning]
            result.message = entity_message(result.notes)


def prepare_entity(ctx: SyncContext, entity: str) -> list[str]:
    """Create the entity's tables and drop old staging (`extract.prepare`); returns the notes of the entity's
    message: the changes made (or, in a plan, due) to its tables and, when it is read incrementally, that the
    mappings changed since it was last synced. The CLI's sync and the Airflow DAG's `prepare` task share it."""
    return [*extract.prepare(ctx, entity), *_mapping_note(ctx, entity)]


def named_once(entity: str, message: str) -> str:
    """`<entity>: <message>`, the entity named once when the message already starts with it (errors name theirs)."""
    return message if message.startswith(f"{entity}:") else f"{entity}: {message}"


def entity_message(notes: Iterable[str], error: str | None = None) -> str | None:
    """The message stored for an entity: its error first (when it failed), then the notes of `prepare_entity`,
    set apart from the error ("Also: ..."), which they did not cause.

    >>> entity_message(["added column md_department.leader"], "department: source 'erp' has no column X.")
    "department: source 'erp' has no column X. Also: added column md_department.leader"
    """
    said = "; ".join(notes)
    if not error:
        return said or None
    return f"{error.rstrip()}{'' if error.rstrip().endswith('.') else '.'} Also: {said}" if said else error


def _extract_sources(
    ctx: SyncContext, entity: str, retry: Callable[[Callable[[], Any]], Any]
) -> dict[str, dict[str, int]]:
    """Extract every source of `entity` into staging; with `run.parallel_sources`, at once, one thread each.

    Each source reads its own database and stages its own rows (as the Airflow DAG's
    per-source tasks do), so a second source overlaps the first one's database waits.
    Always sequential in a dry run and when the target or the store is SQLite (one writer
    at a time). Extracted one after the other, the deletion sweeps of an incremental run
    (keys only, little memory) run meanwhile, one thread each: each mostly waits on its
    source's database, reading the ids the source has, and takes the source's staged rows
    once its extraction has ended. A failing source fails the entity once the others have
    finished; the first failure in mapping order is raised.
    """
    mapping = ctx.mapping(entity)
    threads = len(mapping.sources) > 1 and not ctx.dry_run and "sqlite" not in {
        ctx.work_engine(mapping).dialect.name,
        ctx.store.engine.dialect.name,
    }
    if threads and ctx.config.run.parallel_sources:
        calls = {s: partial(retry, partial(extract.extract_source, ctx, entity, s)) for s in mapping.sources}
        return _at_once(calls, f"erpoa-extract-{entity}")
    staged = {s: Staged() for s in mapping.sources if threads and extract.sweep_due(ctx, entity, s)}
    sweeps = {s: partial(retry, partial(extract.sweep_source, ctx, entity, s, gate)) for s, gate in staged.items()}
    counts: dict[str, dict[str, int]] = {}
    with ThreadPoolExecutor(max_workers=max(len(sweeps), 1), thread_name_prefix=f"erpoa-sweep-{entity}") as pool:
        swept = {source: pool.submit(call) for source, call in sweeps.items()}
        try:
            for source in mapping.sources:
                counts[source] = retry(partial(extract.extract_source, ctx, entity, source, defer_sweep=threads))
                if source in staged:
                    staged[source].open()
        finally:
            for gate in staged.values():
                gate.cancel()  # a sweep still waiting: its source was not staged
    for source, future in swept.items():
        counts[source]["deleted"] = future.result()
    for source, c in counts.items():  # due after all, though `sweep_due` said otherwise before: sweep now
        if c.pop("sweep_due", 0) and source not in swept:
            counts[source]["deleted"] = retry(partial(extract.sweep_source, ctx, entity, source))
        c["read"] += ctx.read_again.pop((entity, source), 0)  # rows the sweep read again
    return counts


def _at_once(calls: Mapping[str, Callable[[], Any]], name: str) -> dict[str, Any]:
    """Run `calls` in one thread each; once all have ended, their results, or the first failure in order."""
    if not calls:
        return {}
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=name) as pool:
        futures = {key: pool.submit(call) for key, call in calls.items()}
    return {key: future.result() for key, future in futures.items()}


class _nolock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def record(ctx: SyncContext, result: EntityResult) -> None:
    """Write the entity-run figures to the store."""
    if ctx.dry_run:
        return
    st = result.stage_seconds
    ctx.store.record_entity(
        ctx.run_id,
        result.entity,
        status=result.status,
        read_erp=result.read.get("erp", 0),
        read_oa=result.read.get("oa", 0),
        read_total=result.read_total,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        inactivated=result.inactivated,
        quarantined=result.quarantined,
        differences=result.differences,
        seconds_extract=round(st.get("extract", 0), 3),
        seconds_merge=round(st.get("merge", 0), 3),
        seconds_validate=round(st.get("validate", 0), 3),
        seconds_publish=round(st.get("publish", 0), 3),
        seconds_reconcile=round(st.get("reconcile", 0), 3),
        seconds_total=result.seconds,
        message=result.message,
    )


def run_sync(
    config: ProjectConfig,
    *,
    entities: Iterable[str] | None = None,
    full_refresh: bool = False,
    sweep: bool = True,
    dry_run: bool = False,
    trigger: str = "cli",
    progress: ProgressFn | None = None,
    run_id: str | None = None,
    hooks: Iterable[Callable[[SyncContext, str, EntityResult], None]] = (),
    mappings: MappingSet | None = None,
) -> tuple[SyncSummary, SyncContext]:
    """Sync the given entities (all by default) in dependency order.

    An entity that fails does not stop the entities that do not depend on it;
    those that do are skipped. The summary's status is `success`, `partial`
    or `failed`. An entity whose lock another sync held is a failed entity like
    any other (its `error` LockedError, exit code 5), reported beside the others. `sweep=False`
    skips the keys-only deletion sweep of incremental reads for this run.
    """
    mappings = mappings or load_project_mappings(config)
    names = run_names(config, mappings, entities)
    check_suites(config, mappings, names)
    name_connections(config.connections)
    check_engines(used_connections(config, mappings, names), connect=True)
    check_sources_exist(used_connections(config, mappings, names, sources_only=True))
    store = open_store(config, dry_run=dry_run, retry=True)
    ctx = SyncContext(
        config=config,
        mappings=mappings,
        store=store,
        run_id=run_id or new_run_id(),
        full_refresh=full_refresh,
        sweep=sweep,
        dry_run=dry_run,
        trigger=trigger,
        progress=progress,
    )
    mode = run_mode(store, mappings, names, full_refresh=full_refresh, dry_run=dry_run)
    if not dry_run:
        store.start_run(ctx.run_id, trigger=trigger, mode=mode, mapping_version=mappings.version, entities=names)
    started = time.monotonic()
    faults.point("sync.start")
    results: list[EntityResult] = []
    failed: set[str] = set()
    try:
        _sync_all(ctx, names, hooks, results, failed)
    except BaseException as exc:  # a bug or an interrupt: the run is recorded as failed, never left `running`
        if not dry_run:
            record_crash(ctx, results, names, exc)
        raise
    status = "success" if not failed else ("failed" if len(failed) == len(names) else "partial")
    if dry_run:
        status = "planned" if not failed else status
    message = "; ".join(r.message.rstrip(".") for r in results if r.message) or None
    if not dry_run:
        build_data_docs(ctx)
        store.finish_run(ctx.run_id, status, message)
        faults.point("run.finished")
    summary = SyncSummary(
        run_id=ctx.run_id,
        mode=mode,
        mapping_version=mappings.version,
        status=status,
        entities=results,
        seconds=round(time.monotonic() - started, 3),
        message=message,
    )
    return summary, ctx


def run_mode(store: Store, mappings: MappingSet, names: list[str], *, full_refresh: bool, dry_run: bool) -> str:
    """The run's recorded mode: `plan`, `full` (a full refresh, or a run in which no source has a watermark to read
    from, as in a first sync) or `incremental`."""
    if dry_run:
        return "plan"
    if full_refresh:
        return "full"
    cursors = [(name, src) for name in names for src, spec in mappings.entity(name).sources.items() if spec.cursor]
    return "incremental" if any(store.watermark(name, src) is not None for name, src in cursors) else "full"


def _mapping_note(ctx: SyncContext, entity: str) -> list[str]:
    """A note when the mappings changed since the entity was last synced and this run reads it incrementally:
    the records it does not read keep the old mapping (a changed code table shows as `unchanged` in a plan).
    Not for a replay of quarantined records, which is about the records it reads."""
    if ctx.full_refresh or ctx.only_ids is not None or entity in extract.complete_reads(ctx):
        return []
    version = ctx.mappings.version
    versions = ctx.store.mapping_versions(entity, other_than=ctx.run_id)
    if not versions or version in versions:  # never synced, or synced with these mappings already
        return []
    previous = versions[0]
    note = (
        f"the mappings changed since {entity} was last synced ({previous} -> {version}): an incremental run maps "
        "only the rows it reads, so records that did not change at the source keep the old mapping; "
        f"`erpoa sync {entity} --full-refresh` re-maps them"
    )
    log.info("%s", note)
    return [note]


def _sync_all(
    ctx: SyncContext,
    names: list[str],
    hooks: Iterable[Callable[[SyncContext, str, EntityResult], None]],
    results: list[EntityResult],
    failed: set[str],
) -> None:
    """Sync each entity in order, into `results`; a failed one into `failed`, its dependants skipped."""
    for name in names:
        blocked = [d for d in ctx.mappings.entity(name).dependencies if d in failed]
        if blocked:
            res = EntityResult(entity=name, status="skipped", message=f"skipped: {_not_done(blocked, results)}")
            failed.add(name)
            results.append(res)
            record(ctx, res)
            continue
        try:
            res = sync_entity(ctx, name, hooks)
            if res.status == "failed":  # a plan the quality gate would refuse
                failed.add(name)
        except ErpOaError as exc:
            res = failed_result(ctx, name, exc)
            failed.add(name)
            log.error("%s", res.message)
        results.append(res)
        record(ctx, res)
        faults.point("entity.recorded")


def _not_done(blocked: list[str], results: list[EntityResult]) -> str:
    """Why an entity is skipped: the entities it depends on that failed or were skipped themselves."""
    status = {r.entity: r.status for r in results}
    failed = [name for name in blocked if status.get(name) != "skipped"]
    skipped = [name for name in blocked if status.get(name) == "skipped"]
    parts = [f"{', '.join(failed)} failed"] if failed else []
    parts += [f"{', '.join(skipped)} skipped"] if skipped else []
    return " and ".join(parts)


def failed_result(ctx: SyncContext, entity: str, exc: ErpOaError) -> EntityResult:
    """The figures of an entity `sync_entity` failed with `exc`: what it read and set aside before (a gate refusal's
    quarantined rows stay listed), the error's class, exit code and redacted message."""
    res: EntityResult = exc.__dict__.get("entity_result") or EntityResult(entity=entity)
    error = redact(str(exc), ctx.config)
    res.status, res.message = "failed", entity_message([res.message] if res.message else [], error)
    res.error, res.exit_code = type(exc).__name__, exc.exit_code
    if not ctx.dry_run and res.read_total:
        res.quarantined = _count_quarantine(ctx, entity)
    return res


def _count_quarantine(ctx: SyncContext, entity: str) -> int:
    try:
        return ctx.store.count_quarantine(ctx.run_id, entity)
    except SQLAlchemyError:  # the store may be what failed
        return 0


def record_crash(ctx: SyncContext, results: list[EntityResult], names: list[str], exc: BaseException) -> None:
    """Record the entity that raised `exc` (not an ErpOaError: a bug, or an interrupt) and the run as failed.

    Best effort: the store may be what failed; the original exception is what the caller raises.
    """
    kind = "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "internal error"
    message = redact(f"{kind}: {type(exc).__name__}: {exc}".splitlines()[0], ctx.config)
    done = {r.entity for r in results}
    current = next((n for n in names if n not in done), None)
    try:
        if current is not None:
            record(ctx, EntityResult(entity=current, status="failed", message=message, error=type(exc).__name__,
                                     exit_code=1))
        ctx.store.finish_run(ctx.run_id, "failed", message)
    except Exception as store_exc:  # never hide the original error behind the store's
        log.error("could not record run %s as failed: %s", ctx.run_id, store_exc)


def used_connections(
    config: ProjectConfig, mappings: MappingSet, names: Iterable[str], *, sources_only: bool = False
) -> dict[str, ConnectionConfig]:
    """The connections the sync of `names` reads and writes (each source's, the target, the store), by name; with
    `sources_only`, those it reads its sources from."""
    used = set() if sources_only else {"recon"}
    for name in names:
        mapping = mappings.entity(name)
        if not sources_only:
            used.add(mapping.target.connection)
        used.update(spec.connection or source for source, spec in mapping.sources.items())
    return {n: config.connections[n] for n in sorted(used) if n in config.connections}


def run_names(config: ProjectConfig, mappings: MappingSet, entities: Iterable[str] | None = None) -> list[str]:
    """The entities a sync runs, in dependency order: `entities` (the command line's), else `run.entities` of the
    config, else every mapped one; ConfigError naming every unknown one."""
    if entities:
        return mappings.order(entities, origin=COMMAND_LINE)
    return run_entities(mappings, config.run.entities, config.config_path)


def check_suites(config: ProjectConfig, mappings: MappingSet, names: Iterable[str]) -> None:
    """Validate the entities' expectation suites before any data is read (ConfigError with every issue)."""
    from etl.errors import ConfigError

    wanted = {n: mappings.entity(n) for n in names}
    declared = {n: (list(m.fields), m.quality.suite) for n, m in wanted.items()}
    issues = suite_issues(config.resolve(config.expectations), declared, mappings.code_tables)
    if issues:
        raise ConfigError(issues)


def suite_issues(
    folder: Path, declared: Mapping[str, tuple[list[str], str | None]], code_tables: Iterable[str] | None
) -> list[ConfigIssue]:
    """Every problem of the suites of the entities `declared` (name -> (fields, `quality.suite` file or None))
    that have one in `folder`; code tables are checked against `code_tables` unless it is None."""
    from etl.errors import ConfigError

    paths = {n: folder / (suite or f"{n}.json") for n, (_, suite) in declared.items()}
    present = {n: p for n, p in paths.items() if p.exists()}
    if not present:
        return []
    from etl.validate import load_suite

    tables = None if code_tables is None else list(code_tables)
    issues: list[ConfigIssue] = []
    for name, path in present.items():
        try:
            load_suite(path, declared[name][0], tables)
        except ConfigError as exc:
            issues.extend(exc.issues)
    return issues


def build_data_docs(ctx: SyncContext) -> None:
    """Great Expectations Data Docs of this run's validations, into `<reports>/<run id>/datadocs/`."""
    pages = ctx.__dict__.get("gate_docs", [])
    if not pages:
        return
    from etl.validate import build_data_docs as build

    out = ctx.config.resolve(ctx.config.reports) / ctx.run_id / "datadocs"
    try:
        build(pages, out)
    except Exception as exc:  # the docs are a convenience; never fail a published run over them
        log.warning("could not build Data Docs in %s: %s", out, exc)


def redact(text: str, config: ProjectConfig) -> str:
    """Remove every connection secret from `text` (by the rules of `etl.logs.RedactingFilter.redact`)."""
    from etl.config.project import mask_secrets
    from etl.logs import redact_with

    return mask_secrets(redact_with(text, config.secrets()))
