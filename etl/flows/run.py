"""`run_flows`: every enabled flow, one after another, each under its store lock.

Per flow: read approvals and forms (read-only) -> create or adopt one ERP
document per approved request (one ERP transaction each, see
`purchase_order.publish_document`) -> write the numbers back to the OA -> link
into the store's xref -> report changes after creation and the compliance views
as differences. Every step after the ERP commit is derived from the link table,
so a run killed anywhere is completed by the next one.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from etl import faults
from etl.config.project import ProjectConfig
from etl.db.connect import engine_for
from etl.engine.lock import entity_lock
from etl.engine.pipeline import open_store, redact
from etl.engine.retry import with_retries
from etl.errors import ErpOaError, classify_db_error, is_transient_db_error
from etl.flows import FlowSet, connection_name, load_flows
from etl.flows.audit import FlowState, changes, differences, erp_documents, flow_views, gather, views
from etl.flows.contract_archive import checks_for
from etl.flows.model import FlowSpec
from etl.flows.purchase_order import ensure_erp_tables, flag_document, publish_document, read_links
from etl.flows.writeback import pending_writebacks, sync_xref, write_back
from etl.reconcile.store import DifferenceStore
from etl.store import schema as store_schema
from etl.store.repo import Store, new_run_id

log = logging.getLogger("erpoa.flows")


@dataclass
class FlowResult:
    """What one flow did (the `--json` summary per flow)."""

    flow: str
    kind: str
    status: str = "running"
    approved: int = 0
    held: int = 0
    created: int = 0
    adopted: int = 0
    unmapped: int = 0
    conflicts: int = 0
    written_back: int = 0
    writeback_pending: int = 0
    amended: int = 0
    cancelled: int = 0
    differences: int = 0
    audit: dict[str, int] = field(default_factory=dict)
    created_numbers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    message: str | None = None
    error: str | None = None  # class of the error that failed the flow (e.g. LockedError)
    retryable: bool = False


@dataclass
class FlowSummary:
    """The outcome of `run_flows`: `success`, `partial` (a flow failed or left write-backs pending),
    `failed`, or `planned` (dry run)."""

    run_id: str
    status: str
    dry_run: bool
    flows: list[FlowResult]
    seconds: float
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_flows(config: ProjectConfig, *, flows: list[str] | None = None, run_id: str | None = None,
              dry_run: bool = False) -> FlowSummary:
    """Run the named flows (all enabled ones by default).

    With `run_id` of an existing run (e.g. the sync that just finished) the flows
    are recorded as entities of that run; otherwise a run with trigger `flows` is
    recorded. `dry_run` reads everything and writes nothing.
    """
    started = time.monotonic()
    flowset = load_flows(config)
    specs = flowset.select(flows)
    run_id = run_id or new_run_id()
    if not specs:
        return FlowSummary(run_id=run_id, status="planned" if dry_run else "success", dry_run=dry_run, flows=[],
                           seconds=0.0, message="no flows configured (mappings/flows/*.yaml)")
    store = None if dry_run else open_store(config)
    own_run = store is not None and not _run_exists(store, run_id)
    if store is not None and own_run:
        store.start_run(run_id, trigger="flows", mode="flows", mapping_version=flowset.version,
                        entities=[s.flow for s in specs])
    results = []
    for spec in specs:
        t0 = time.monotonic()
        try:
            result = _plan(config, flowset, spec) if store is None else _locked(config, flowset, spec, store, run_id)
        except (ErpOaError, sa.exc.SQLAlchemyError) as exc:
            error = classify_db_error(exc, what=f"flow {spec.flow}")
            result = FlowResult(flow=spec.flow, kind=spec.kind, status="failed", message=redact(str(error), config),
                                error=type(error).__name__, retryable=error.retryable)
            log.error("%s", result.message)
        result.seconds = round(time.monotonic() - t0, 3)
        if store is not None:
            store.record_entity(run_id, spec.flow, status=result.status, inserted=result.created,
                                updated=result.adopted, quarantined=result.unmapped + result.conflicts,
                                differences=result.differences, seconds_total=result.seconds, message=result.message)
        results.append(result)
    statuses = {r.status for r in results}
    status = ("planned" if dry_run else "success") if statuses <= {"success", "planned"} else (
        "failed" if statuses == {"failed"} else "partial")
    message = "; ".join(f"{r.flow}: {r.message}" for r in results if r.message) or None
    if store is not None and own_run:
        store.finish_run(run_id, status, message)
    faults.point("flow.finished")
    return FlowSummary(run_id=run_id, status=status, dry_run=dry_run, flows=results,
                       seconds=round(time.monotonic() - started, 3), message=message)


def _run_exists(store: Store, run_id: str) -> bool:
    with store.engine.connect() as conn:
        runs = store_schema.runs
        return conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None


def _today(config: ProjectConfig) -> date:
    return datetime.now(ZoneInfo(config.run.timezone)).date()


def _erp(config: ProjectConfig, spec: FlowSpec) -> tuple[sa.Engine, str | None]:
    conf = config.connection(connection_name(config, spec.target.connection, spec.target.fallback_connection))
    return engine_for(conf), conf.schema_


def _locked(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec, store: Store, run_id: str) -> FlowResult:
    target = f"{spec.target.connection}:{spec.target.header.table}"
    with entity_lock(store.engine, f"flow:{spec.flow}", target, run_id, wait_seconds=config.run.lock_wait_seconds):
        return run_flow(config, flowset, spec, store, run_id)


def run_flow(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec, store: Store, run_id: str) -> FlowResult:
    """One flow end to end (the caller holds its lock)."""
    result = FlowResult(flow=spec.flow, kind=spec.kind)
    erp, schema = _erp(config, spec)
    ensure_erp_tables(erp, spec, schema)
    today = _today(config)
    state = gather(config, spec, flowset.code_tables, as_of=today, checks=checks_for(spec))
    result.approved, result.held = (int((state.approvals["state"] == s).sum()) for s in ("approved", "held"))
    _publish_all(config, spec, state, result, erp, schema, run_id, today)
    with engine_for(config.connection(connection_name(config, spec.target.connection,
                                                      spec.target.fallback_connection)), read_only=True).connect() as c:
        state.links = read_links(c, spec, schema)
    result.unmapped = _quarantine(store, spec, state, run_id)
    _write_back(config, spec, state, result)
    sync_xref(store, spec, state.links, run_id)
    changed = changes(state)
    _flag(config, spec, changed, result, erp, schema)
    result.amended = int((changed["class"] == "approval_amended").sum())
    result.cancelled = int((changed["class"] == "approval_cancelled").sum())
    _, found = flow_views(config, spec, flowset.code_tables, as_of=today, state=state)
    result.audit = {name: len(frame) for name, frame in found.items()}
    diffs = differences(spec, changed, found)
    DifferenceStore(store.engine).record(spec.flow, run_id, diffs)
    faults.point("flow.differences_recorded")
    result.differences = len(diffs)
    result.status = "partial" if result.writeback_pending or result.message else "success"
    log.info("%s: %d created, %d adopted, %d written back, %d difference(s)", spec.flow, result.created,
             result.adopted, result.written_back, result.differences)
    return result


def _publish_all(config: ProjectConfig, spec: FlowSpec, state: FlowState, result: FlowResult, erp: sa.Engine,
                 schema: str | None, run_id: str, today: date) -> None:
    """Create or adopt the document of every approved request without a link; problems join `state.problems`."""
    settings = config.run
    found: list[dict[str, Any]] = []
    for rid in [r for r in state.approved if r not in state.links.index and r in state.docs]:
        doc = state.docs[rid]
        faults.point("flow.doc_mapped")
        day = doc.approved_at.date() if spec.docno and spec.docno.date == "approved" and doc.approved_at else today
        try:
            outcome, number = with_retries(
                functools.partial(publish_document, erp, spec, doc, run_id=run_id, day=day, schema=schema),
                what=f"{spec.flow}: request {rid}", retries=settings.retries, backoff=settings.retry_backoff_seconds)
        except (ErpOaError, sa.exc.SQLAlchemyError) as exc:
            if (isinstance(exc, ErpOaError) and exc.retryable) or is_transient_db_error(exc):
                raise
            # this request's document is refused (a value the ERP column cannot hold...): hold it, go on
            reason = redact(str(getattr(exc, "orig", exc)).splitlines()[0], config)
            found.append({"request_id": rid, "field": spec.target.header.table, "rule": "erp_refused",
                          "value": None, "reason": f"the ERP refused the document: {reason}"})
            continue
        if outcome == "created":
            result.created += 1
            result.created_numbers.append(number)
        elif outcome == "adopted":
            result.adopted += 1
        elif outcome == "conflict":
            result.conflicts += 1
            found.append({"request_id": rid, "field": spec.target.header.number, "rule": "number_taken",
                          "value": number, "reason": f"number {number} is already used by another ERP document"})
    if found:
        state.problems = pd.concat([state.problems, pd.DataFrame(found)], ignore_index=True)


def _flag(config: ProjectConfig, spec: FlowSpec, changed: pd.DataFrame, result: FlowResult, erp: sa.Engine,
          schema: str | None) -> None:
    """Prefix the flag column of changed documents; a refusal (no UPDATE grant) is reported, not fatal."""
    try:
        for row in changed.itertuples(index=False):
            prefix = spec.changes.amended_prefix if row[2] == "approval_amended" else spec.changes.cancelled_prefix
            if prefix:
                flag_document(erp, spec, row.doc_no, prefix, schema)
    except sa.exc.SQLAlchemyError as exc:
        if is_transient_db_error(exc):
            raise
        _note(result, redact(f"flagging changed documents failed: {getattr(exc, 'orig', exc)!s}", config))
    faults.point("flow.changes_flagged")


def _write_back(config: ProjectConfig, spec: FlowSpec, state: FlowState, result: FlowResult) -> None:
    wb = spec.writeback
    if wb is None or not wb.enabled:
        return
    src = config.connection(spec.source.connection)
    with engine_for(src, read_only=True).connect() as conn:
        pending = pending_writebacks(conn, spec, state.links, src.schema_)
    try:
        target = config.connection(connection_name(config, wb.connection, wb.fallback_connection))
        done = write_back(engine_for(target), spec, pending, target.schema_)
    except ErpOaError as exc:  # e.g. the write connection's engine cannot be created
        result.writeback_pending = len(pending)
        _note(result, f"write-back failed: {exc}")
        return
    result.written_back, result.writeback_pending = done.written, done.pending
    if done.error:
        _note(result, redact(f"{done.error}; {done.pending} pending, retried on the next run", config))


def _note(result: FlowResult, text: str) -> None:
    result.message = f"{result.message}; {text}" if result.message else text


def _quarantine(store: Store, spec: FlowSpec, state: FlowState, run_id: str) -> int:
    """Approved requests that could not become documents, as open quarantine rows (one per problem)."""
    linked = set(state.links.index)
    waiting = [r for r in state.approved if r not in linked]
    problems = state.problems[state.problems["request_id"].isin(waiting)].copy()
    problems["src_id"] = problems["request_id"].astype(str)
    open_rows = store.quarantine(entity=spec.flow, status="open")
    seen = set(zip(open_rows["src_id"].astype(str), open_rows["field"], open_rows["rule"], strict=True))
    fresh = problems[[(s, f, r) not in seen for s, f, r in zip(problems["src_id"], problems["field"],
                                                              problems["rule"], strict=True)]]
    store.add_quarantine(run_id, spec.flow, fresh.assign(source="oa", raw=None), stage="flow")
    gone = set(open_rows["src_id"].astype(str)) - set(problems["src_id"])
    if gone:
        store.resolve_quarantine(spec.flow, "oa", sorted(gone), run_id)
    return int(problems["src_id"].nunique())


def _plan(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec) -> FlowResult:
    """Dry run of one flow: what a run would create, write back and report; nothing is written."""
    result = FlowResult(flow=spec.flow, kind=spec.kind, status="planned")
    state = gather(config, spec, flowset.code_tables, as_of=_today(config), checks=checks_for(spec))
    result.approved, result.held = (int((state.approvals["state"] == s).sum()) for s in ("approved", "held"))
    heads, lines = erp_documents(config, spec, state.links)
    waiting = [r for r in state.approved if r not in state.links.index and r in state.docs]
    existing = set(heads["request_ref"].dropna())
    result.adopted = sum(1 for r in waiting if r in existing)
    result.created = sum(1 for r in waiting if r not in existing and state.docs[r].ready)
    result.unmapped = len(waiting) - result.created - result.adopted
    if spec.writeback is not None and spec.writeback.enabled:
        src = config.connection(spec.source.connection)
        with engine_for(src, read_only=True).connect() as conn:
            result.writeback_pending = len(pending_writebacks(conn, spec, state.links, src.schema_))
    found = views(state, heads, lines)
    result.audit = {name: len(frame) for name, frame in found.items()}
    result.differences = len(differences(spec, changes(state), found))
    return result
