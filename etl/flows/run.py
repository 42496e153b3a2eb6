"""`run_flows`: every enabled flow, one after another, each under its store lock.

Per flow: read approvals and forms (read-only) -> create or adopt one ERP
document per approved request (one ERP transaction each, see
`purchase_order.publish_document`) -> write the numbers back to the OA -> link
into the store's xref -> report changes after creation and the compliance views
as differences. Every step after the ERP commit is derived from the link table,
so a run killed anywhere is completed by the next one.
"""

from __future__ import annotations

import difflib
import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

from etl import faults
from etl.config.project import ProjectConfig
from etl.db.connect import describe, engine_for
from etl.engine.lock import entity_lock
from etl.engine.pipeline import open_store, redact
from etl.engine.retry import with_retries
from etl.errors import (
    ConfigError,
    ConfigIssue,
    ErpOaError,
    LockedError,
    classify_db_error,
    connection_fix,
    is_transient_db_error,
)
from etl.flows import FlowSet, connection_name, load_flows
from etl.flows.audit import (
    FlowState,
    changes,
    differences,
    erp_documents,
    flow_views,
    gather,
    views,
)
from etl.flows.contract_archive import checks_for
from etl.flows.model import ExistsSpec, FlowSpec
from etl.flows.purchase_order import ensure_erp_tables, flag_document, local_now, publish_document, read_links
from etl.flows.writeback import pending_writebacks, sync_xref, write_back
from etl.mapping.loader import unknown_message
from etl.mapping.types import as_text
from etl.reconcile.store import DifferenceStore
from etl.store import schema as store_schema
from etl.store.repo import Store, new_run_id, now

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
    duplicates: int = 0  # held: their request number already has a document (of another request)
    refused: int = 0  # held: the ERP refused the document; the flow is partial and the next run retries
    read_oa: int = 0  # approvals read
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
    exit_code: int = 0  # of a failed flow: the CLI's code for its error (2 configuration, 5 locked, 6 unavailable...)


@dataclass
class FlowSummary:
    """The outcome of `run_flows`: `success`, `partial` (a flow failed or left write-backs pending, or a flow
    file is invalid), `failed`, or `planned` (dry run).

    `issues` are the problems of invalid flow files (`run_flows(keep_going=True)`; each disabled its own flow);
    `error_code` the exit code of an error that stopped the flows before they ran (set by the caller).
    """

    run_id: str
    status: str
    dry_run: bool
    flows: list[FlowResult]
    seconds: float
    message: str | None = None
    issues: list[str] = field(default_factory=list)
    error_code: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every flow succeeded (or was planned); 2 when a flow file is invalid; else the code of the
        error that stopped the flows, or of the first failed flow's error (5 locked, 6 unavailable ...), else 1."""
        if self.issues:
            return 2
        if self.error_code:
            return self.error_code
        if self.status in ("success", "planned"):
            return 0
        codes = [r.exit_code for r in self.flows if r.status == "failed" and r.exit_code > 1]
        return codes[0] if codes else 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def run_flows(config: ProjectConfig, *, flows: list[str] | None = None, run_id: str | None = None,
              dry_run: bool = False, keep_going: bool = False) -> FlowSummary:
    """Run the named flows (all enabled ones by default).

    With `run_id` of an existing run (e.g. the sync that just finished) the flows
    are recorded as entities of that run; otherwise a run with trigger `flows` is
    recorded, and always finished (failed or partial when a flow failed), even when
    a flow raised something unexpected. `dry_run` reads everything and writes
    nothing. An invalid flow file raises ConfigError, unless `keep_going`: then
    its flow is reported failed (exit code 2) and the other flows run.
    """
    started = time.monotonic()
    flowset = load_flows(config, keep_going=keep_going)
    specs = flowset.select(flows)
    broken = flowset.broken_selected(flows)
    issues = [redact(str(i), config) for i in flowset.issues]
    run_id = run_id or new_run_id()
    if not specs and not broken and not issues:
        return FlowSummary(run_id=run_id, status="planned" if dry_run else "success", dry_run=dry_run, flows=[],
                           seconds=0.0, message="no flows configured (mappings/flows/*.yaml)")
    store = None if dry_run else open_store(config)
    own_run = store is not None and not _run_exists(store, run_id)
    if store is not None and own_run:
        store.start_run(run_id, trigger="flows", mode="flows", mapping_version=flowset.version,
                        entities=[*broken, *(s.flow for s in specs)])
    results = [_invalid(name, flowset, len(issues)) for name in broken]
    try:
        for result in results:
            _record(store, run_id, result)
        for spec in specs:
            results.append(_run_one(config, flowset, spec, store, run_id))
            _record(store, run_id, results[-1])
    except BaseException as exc:  # an interrupt, or the store failing: the run is finished as failed all the same
        if store is not None and own_run:
            _finish_crashed(config, store, run_id, exc)
        raise
    status = _status(results, dry_run, bool(issues))
    message = "; ".join(f"{r.flow}: {without_flow_name(r.flow, r.message)}" for r in results if r.message) or None
    if store is not None and own_run:
        store.finish_run(run_id, status, message)
    elif store is not None:
        _join_run(store, run_id, status, message)
    faults.point("flow.finished")
    return FlowSummary(run_id=run_id, status=status, dry_run=dry_run, flows=results,
                       seconds=round(time.monotonic() - started, 3), message=message, issues=issues)


def _run_one(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec, store: Store | None, run_id: str) -> FlowResult:
    """One flow, whatever it raises: an error fails this flow only (classified, secrets redacted)."""
    t0 = time.monotonic()
    try:
        result = _plan(config, flowset, spec) if store is None else _locked(config, flowset, spec, store, run_id)
    except (ErpOaError, sa.exc.SQLAlchemyError) as exc:
        error = classify_db_error(exc, what=f"flow {spec.flow}")
        result = FlowResult(flow=spec.flow, kind=spec.kind, status="failed", message=redact(str(error), config),
                            error=type(error).__name__, retryable=error.retryable, exit_code=error.exit_code)
        # another run holding the flow's lock is no error of this flow (the next run does its work)
        log.log(logging.WARNING if isinstance(error, LockedError) else logging.ERROR, "%s", result.message)
    except Exception as exc:  # a bug: this flow fails, the others still run
        text = redact(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0], config)
        result = FlowResult(flow=spec.flow, kind=spec.kind, status="failed", message=text,
                            error=type(exc).__name__, exit_code=1)
        log.error("flow %s: %s", spec.flow, text, exc_info=log.isEnabledFor(logging.DEBUG))
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def without_flow_name(flow: str, message: str | None) -> str:
    """The flow's message without the `flow <name>:` (`flow:<name>:`, `<name>:`) its error may start with, for a
    caller that names the flow itself (the run's message, the Airflow task's)."""
    text = (message or "").strip()
    for prefix in (f"flow {flow}:", f"flow:{flow}:", f"{flow}:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    return text


def _invalid(name: str, flowset: FlowSet, issues: int) -> FlowResult:
    """The result of a flow whose file is invalid (`run_flows(keep_going=True)`): failed, not run."""
    message = (f"not run: {flowset.broken[name]} is invalid ({issues} problem(s) in the flow files; "
               "see `erpoa flows check`)")
    return FlowResult(flow=name, kind="invalid", status="failed", message=message, error="ConfigError", exit_code=2)


def _record(store: Store | None, run_id: str, result: FlowResult) -> None:
    if store is not None:
        held = result.unmapped + result.conflicts + result.duplicates + result.refused
        store.record_entity(run_id, result.flow, status=result.status, read_oa=result.read_oa,
                            read_total=result.read_oa, inserted=result.created, updated=result.adopted,
                            quarantined=held, differences=result.differences, seconds_total=result.seconds,
                            message=result.message)


def _status(results: list[FlowResult], dry_run: bool, invalid_files: bool) -> str:
    statuses = {r.status for r in results}
    if statuses <= {"success", "planned"} and not invalid_files:
        return "planned" if dry_run else "success"
    return "failed" if statuses <= {"failed"} else "partial"


def _finish_crashed(config: ProjectConfig, store: Store, run_id: str, exc: BaseException) -> None:
    """Best effort: finish the run as failed; the store may be what failed, and the original error is raised."""
    kind = "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "internal error"
    try:
        store.finish_run(run_id, "failed", redact(f"{kind}: {type(exc).__name__}: {exc}".splitlines()[0], config))
    except Exception as store_exc:  # never hide the original error behind the store's
        log.error("could not record run %s as failed: %s", run_id, store_exc)


def _join_run(store: Store, run_id: str, status: str, message: str | None) -> None:
    """The run the flows joined (the sync's): it ends when they do, and a sync that succeeded is `partial` when
    they did not, as `erpoa sync` reports it (`etl.cli.app.sync_status`)."""
    runs = store_schema.runs
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(runs.c.status, runs.c.message).where(runs.c.run_id == run_id)).first()
        if row is None or row.status == "running":  # a run whose owner finishes it (the Airflow approvals task)
            return
        values: dict[str, Any] = {"finished_at": now()}
        if status in ("partial", "failed") and row.status == "success":
            values["status"] = "partial"
            values["message"] = "; ".join(p for p in (row.message, f"flows: {message}" if message else None) if p)
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(**values))


def _run_exists(store: Store, run_id: str) -> bool:
    with store.engine.connect() as conn:
        runs = store_schema.runs
        return conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is not None


def _today(config: ProjectConfig) -> date:
    return local_now(config.run.timezone).date()


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
    state = gather(config, spec, with_known_values(config, flowset, spec), as_of=today, checks=checks_for(spec))
    result.approved, result.held = (int((state.approvals["state"] == s).sum()) for s in ("approved", "held"))
    result.read_oa = len(state.approvals)
    _publish_all(config, spec, state, result, erp, schema, run_id, today)
    with engine_for(config.connection(connection_name(config, spec.target.connection,
                                                      spec.target.fallback_connection)), read_only=True).connect() as c:
        state.links = read_links(c, spec, schema)
    # requests held by the ERP's answer have their own counts: `unmapped` are the forms that do not map
    result.unmapped = _quarantine(store, spec, state, run_id) - result.conflicts - result.duplicates - result.refused
    _write_back(config, spec, state, result)
    sync_xref(store, spec, state.links, run_id)
    changed = changes(state)
    _flag(config, spec, changed, result, erp, schema)
    result.amended = int((changed["class"] == "approval_amended").sum())
    result.cancelled = int((changed["class"] == "approval_cancelled").sum())
    _, found = flow_views(config, spec, flowset.code_tables, as_of=today, state=state)
    if found.missing:
        # a document the ERP no longer has: its links stay (the request keeps it; no second one is made) but
        # are not active, so `erpoa xref` says so; the next run that finds it again activates them
        store.deactivate_xref(spec.flow, run_id, found.missing)
    result.audit = {name: len(frame) for name, frame in found.items()}
    diffs = differences(spec, changed, found)
    DifferenceStore(store.engine).record(spec.flow, run_id, diffs)
    faults.point("flow.differences_recorded")
    result.differences = len(diffs)
    result.status = "partial" if result.writeback_pending or result.refused or result.message else "success"
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
            done = with_retries(
                functools.partial(publish_document, erp, spec, doc, run_id=run_id, day=day, schema=schema,
                                  timezone=settings.timezone),
                what=f"{spec.flow}: request {rid}", retries=settings.retries, backoff=settings.retry_backoff_seconds)
        except (ErpOaError, sa.exc.SQLAlchemyError) as exc:
            if (isinstance(exc, ErpOaError) and exc.retryable) or is_transient_db_error(exc):
                raise
            if isinstance(exc, sa.exc.SQLAlchemyError) and connection_fix(exc) is not None:
                # a missing grant (e.g. on erpoa_flow_lock) or a wrong login is the connection's, not this document's
                name = connection_name(config, spec.target.connection, spec.target.fallback_connection)
                raise classify_db_error(exc, what=f"flow {spec.flow}: writing the document of request {rid}",
                                        connection=describe(config.connection(name))) from None
            # this request's document is refused (a value the ERP column cannot hold...): hold it, go on
            reason = redact(str(getattr(exc, "orig", exc)).splitlines()[0], config)
            found.append({"request_id": rid, "field": spec.target.header.table, "rule": "erp_refused",
                          "value": None, "reason": f"the ERP refused the document: {reason}"})
            result.refused += 1
            continue
        outcome, number = done.outcome, done.number
        if outcome == "created":
            result.created += 1
            result.created_numbers.append(number)
        elif outcome == "adopted":
            result.adopted += 1
        elif outcome == "conflict":
            result.conflicts += 1
            found.append({"request_id": rid, "field": spec.target.header.number, "rule": "number_taken",
                          "value": number, "reason": f"number {number} is already used by another ERP document"})
        elif outcome == "duplicate":
            result.duplicates += 1
            found.append(_duplicate_problem(spec, rid, doc.request_no, number, done.other_request))
    if result.refused:
        _note(result, f"{result.refused} document(s) refused by the ERP, held and retried on the next run "
                      f"(see `erpoa flows audit`)")
    if found:
        state.problems = pd.concat([state.problems, pd.DataFrame(found)], ignore_index=True)


def _duplicate_problem(spec: FlowSpec, rid: str, request_no: str | None, doc_no: str,
                       other: str | None) -> dict[str, Any]:
    """The quarantine row of request `rid`, held because its request number already has a document."""
    what = {"purchase_order": "PO", "contract_archive": "contract"}.get(spec.kind, "document")
    return {"request_id": rid, "field": spec.source.header.number or "request_no", "rule": "duplicate_request_no",
            "value": request_no,
            "reason": f"request number {request_no} already has {what} {doc_no} (OA request {other})"}


def _flag(config: ProjectConfig, spec: FlowSpec, changed: pd.DataFrame, result: FlowResult, erp: sa.Engine,
          schema: str | None) -> None:
    """Prefix the flag column of changed documents; a refusal (no UPDATE grant) is reported, not fatal."""
    prefixes = {"approval_amended": spec.changes.amended_prefix, "approval_cancelled": spec.changes.cancelled_prefix}
    try:
        for row in changed.itertuples(index=False):
            prefix = prefixes.get(row[2])
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
    problems["value"] = problems["value"].astype(object).where(problems["value"].notna(), None)  # NULL, not "nan"
    open_rows = store.quarantine(entity=spec.flow, status="open")
    seen = set(zip(open_rows["src_id"].astype(str), open_rows["field"], open_rows["rule"], strict=True))
    fresh = problems[[(s, f, r) not in seen for s, f, r in zip(problems["src_id"], problems["field"],
                                                              problems["rule"], strict=True)]]
    store.add_quarantine(run_id, spec.flow, fresh.assign(source="oa", raw=None), stage="flow")
    gone = set(open_rows["src_id"].astype(str)) - set(problems["src_id"])
    if gone:
        store.resolve_quarantine(spec.flow, "oa", sorted(gone), run_id)
    return int(problems["src_id"].nunique())


def with_known_values(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec) -> dict[str, Any]:
    """The flow's code tables plus, under `ExistsSpec.key`, the values of every `exists:` column (see apply_fields).

    One `SELECT DISTINCT` per column, read once per run through a read-only engine; a table or column the
    database does not have is a ConfigError located in the flow file.
    """
    tables: dict[str, Any] = dict(flowset.code_tables)
    issues: list[ConfigIssue] = []
    for part, fields in (("header", spec.fields.header), ("lines", spec.fields.lines)):
        for name, fspec in fields.items():
            check = fspec.exists
            if check is None or check.key in tables:
                continue
            found = _read_known(config, flowset, spec, check, ("fields", part, name, "exists"))
            if isinstance(found, ConfigIssue):
                issues.append(found)
            else:
                tables[check.key] = found
    if issues:
        raise ConfigError(issues)
    return tables


def _read_known(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec, check: ExistsSpec,
                loc: tuple[str, ...]) -> set[str] | ConfigIssue:
    """The distinct values of the `exists:` column as stripped text, or the issue that the column is not there."""
    name = check.connection or connection_name(config, spec.target.connection, spec.target.fallback_connection)
    conf = config.connection(name)
    schema, table = check.table.split(".", 1) if "." in check.table else (conf.schema_, check.table)
    smap = flowset.maps.get(spec.flow)

    def issue(key: str, message: str) -> ConfigIssue:
        return smap.issue((*loc, key), message) if smap else ConfigIssue("", None, None, ".".join((*loc, key)),
                                                                         message)

    with engine_for(conf, read_only=True).connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(table, schema=schema):
            return issue("table", _unknown_table(check.table, inspector.get_table_names(schema=schema), name))
        source = sa.table(table, schema=schema)
        # the names a query returns: reflection misreads MariaDB's table definitions under the read-only sql_mode
        columns = list(conn.execute(sa.select(sa.literal_column("*")).select_from(source).where(sa.false())).keys())
        column = next((c for c in columns if c == check.column), None) or next(
            (c for c in columns if c.lower() == check.column.lower()), None)
        if column is None:
            return issue("column", unknown_message(f"column of {check.table}", check.column, columns))
        stmt: sa.Select[Any] = sa.select(sa.column(column)).select_from(source).distinct()
        values = pd.Series(list(conn.execute(stmt).scalars()), dtype=object)
    text = as_text(values).str.strip()
    return set(text[text.notna()])


def _unknown_table(table: str, known: list[str], connection: str) -> str:
    """`table 'X' not found ...`: every known table of a small database, only the closest ones of an ERP's."""
    if len(known) <= 30:
        return unknown_message("table", table, known) + f" (connection '{connection}')"
    close = difflib.get_close_matches(table, known, n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"table '{table}' not found in connection '{connection}'{hint}"


def _plan(config: ProjectConfig, flowset: FlowSet, spec: FlowSpec) -> FlowResult:
    """Dry run of one flow: what a run would create, write back and report; nothing is written.

    `created`, `adopted`, `unmapped` and `duplicates` are what the run would do (no number is allocated, so
    `created_numbers` stays empty); the audit and differences are those the run would leave, so a request it
    would create or adopt a document for is not also counted as waiting (`req_without_po`).
    """
    result = FlowResult(flow=spec.flow, kind=spec.kind, status="planned")
    state = gather(config, spec, with_known_values(config, flowset, spec), as_of=_today(config),
                   checks=checks_for(spec))
    result.approved, result.held = (int((state.approvals["state"] == s).sum()) for s in ("approved", "held"))
    result.read_oa = len(state.approvals)
    heads, lines = erp_documents(config, spec, state.links)
    waiting = [r for r in state.approved if r not in state.links.index and r in state.docs]
    existing = set(heads["request_ref"].dropna())
    numbers = _linked_numbers(state.links)
    would: set[str] = set()
    for rid in waiting:
        doc = state.docs[rid]
        if rid in existing:
            result.adopted += 1
            would.add(rid)
            continue
        number = (doc.request_no or "").strip()
        if number and number in numbers:
            result.duplicates += 1
        elif doc.ready:
            result.created += 1
            would.add(rid)
            if number:
                numbers[number] = rid  # a second request with this number later in the same run is held
        else:
            result.unmapped += 1
    if spec.writeback is not None and spec.writeback.enabled:
        src = config.connection(spec.source.connection)
        with engine_for(src, read_only=True).connect() as conn:
            result.writeback_pending = len(pending_writebacks(conn, spec, state.links, src.schema_))
    found = views(state, heads, lines, now=local_now(config.run.timezone))
    no_doc = found.get("req_without_po")
    if no_doc is not None and not no_doc.empty:
        found["req_without_po"] = no_doc[~no_doc["request_id"].astype(str).isin(would)].reset_index(drop=True)
    result.audit = {name: len(frame) for name, frame in found.items()}
    result.differences = len(differences(spec, changes(state), found))
    result.message = (f"dry run: would create {result.created} and adopt {result.adopted} document(s)"
                      f"{f', hold {result.duplicates} duplicate request number(s)' if result.duplicates else ''}"
                      "; numbers are allocated by the real run; audit and differences as the run would leave them")
    return result


def _linked_numbers(links: pd.DataFrame) -> dict[str, str]:
    """Request number (without blanks) -> request id, of the linked requests."""
    if links.empty or "request_no" not in links:
        return {}
    return {str(n).strip(): str(r) for r, n in zip(links.index, links["request_no"], strict=True)
            if n is not None and not pd.isna(n) and str(n).strip()}
