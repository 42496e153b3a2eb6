"""`erpoa`: synchronize master data between an ERP and an OA system."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from etl import logs
from etl.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    WaitOpt,
    emit_json,
    entity_or_flow,
    err,
    fail,
    flow_names,
    load_checked,
    load_config,
    out,
)
from etl.config.project import ProjectConfig
from etl.errors import ErpOaError

if TYPE_CHECKING:
    from etl.engine.pipeline import SyncSummary
    from etl.flows.run import FlowSummary

app = typer.Typer(
    name="erpoa",
    help="erp-oa-sync: map, unify, validate and publish master data between an ERP and an OA system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

EntitiesArg = Annotated[list[str] | None, typer.Argument(help="Entities to sync (default: all, in dependency order).")]


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@app.callback()
def _root(
    log_level: Annotated[LogLevel, typer.Option(help="Log level.", case_sensitive=False)] = LogLevel.WARNING,
    log_format: Annotated[LogFormat, typer.Option(help="Log format on stderr.", case_sensitive=False)] = LogFormat.text,
) -> None:
    logs.setup(log_level.value, log_format.value)


@app.command()
def sync(
    entities: EntitiesArg = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Ignore watermarks and read everything.")
    ] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep/--no-sweep",
            help="Sweep source keys to find deleted records (incremental runs). --no-sweep for frequent runs; "
            "deletions are then found by the next run that sweeps.",
        ),
    ] = True,
    wait: WaitOpt = None,
    notify: Annotated[bool, typer.Option("--notify", help="Send alerts to the channels under `notify:`.")] = False,
    flows: Annotated[
        bool | None,
        typer.Option(
            "--flows/--no-flows",
            help="Also run the approval flows (OA approvals -> ERP documents). Default: when no entities are named.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the sync: extract, map, merge, validate, publish and reconcile every entity, then the approval flows."""
    from etl.cli.render import StageProgress, summary_table
    from etl.engine.hooks import default_hooks
    from etl.engine.pipeline import run_sync

    try:
        # every config, mapping and suite problem
        cfg, mappings, _ = load_checked(config, entities=entities, wait=wait)
        with StageProgress(enabled=not as_json and sys.stderr.isatty()) as progress:
            summary, _ = run_sync(
                cfg,
                entities=entities,
                full_refresh=full_refresh,
                sweep=sweep,
                progress=progress,
                hooks=default_hooks(cfg),
                mappings=mappings,
            )
        with_flows = not entities if flows is None else flows
        flow_summary = run_approval_flows(cfg, summary.run_id) if with_flows else None
        if notify:
            from etl.engine.hooks import notify_run

            notify_run(cfg, summary)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    code = sync_exit_code(summary, flow_summary)
    if as_json:
        emit_json({**summary.to_dict(), "status": sync_status(summary, flow_summary), "exit_code": code,
                   "flows": flow_summary.to_dict() if flow_summary else None})
    else:
        summary_table(summary)
        if flow_summary is not None:
            from etl.cli.flow_cmds import print_summary

            print_summary(flow_summary)
    raise typer.Exit(code)


def sync_exit_code(summary: SyncSummary, flows: FlowSummary | None) -> int:
    """The entity sync's code when it failed; else the flows' (2 for an invalid flow file, else the first
    failed flow's code, or 1); 0 when both succeeded."""
    return summary.exit_code or (flows.exit_code if flows is not None else 0)


def sync_status(summary: SyncSummary, flows: FlowSummary | None) -> str:
    """The sync's status, `partial` when the entities succeeded but the flows did not."""
    if summary.status == "success" and flows is not None and flows.exit_code:
        return "partial"
    return summary.status


def run_approval_flows(cfg: ProjectConfig, run_id: str) -> FlowSummary | None:
    """Run the approval flows after the entity sync (None when the project has none).

    An invalid flow file disables only its own flow (its issues go to stderr and into the summary); an error
    that stops every flow (e.g. the store) gives a failed summary carrying the error's exit code. Either way
    the sync's result stays visible and its exit code tells that the flows did not succeed.
    """
    from etl.flows.run import FlowSummary, run_flows

    if not (cfg.resolve(cfg.mappings) / "flows").is_dir():
        return None
    try:
        flow_summary = run_flows(cfg, run_id=run_id, keep_going=True)
    except ErpOaError as exc:
        message = logs.redact(str(exc))
        err.print("flows: ", end="")
        err.print(message, markup=False)
        return FlowSummary(run_id=run_id, status="failed", dry_run=False, flows=[], seconds=0.0, message=message,
                           error_code=exc.exit_code)
    for issue in flow_summary.issues:
        err.print(f"flows: {issue}", markup=False)
    return flow_summary


@app.command()
def plan(
    entities: EntitiesArg = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Plan as if watermarks were reset.")] = False,
    samples: Annotated[int, typer.Option(min=0, help="Sample rows to show per action.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: show what a sync would insert, update, inactivate and quarantine. Writes nothing."""
    from etl.cli.render import summary_table
    from etl.engine.pipeline import run_sync
    from etl.engine.plan import plan_details

    try:
        cfg, mappings, _ = load_checked(config, entities=entities)  # every config, mapping and suite problem
        summary, ctx = run_sync(cfg, entities=entities, full_refresh=full_refresh, dry_run=True, mappings=mappings)
        details = {  # an entity the gate would refuse was planned in full: its samples say why
            e.entity: plan_details(ctx, e.entity, samples)
            for e in summary.entities
            if e.status == "planned" or e.error == "QualityGateError"
        }
        ctx.close()
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({**summary.to_dict(), "details": details})
        raise typer.Exit(summary.exit_code)
    summary_table(summary, title=f"plan (nothing written) · mapping {summary.mapping_version}")
    for entity, d in details.items():
        for kind in ("inserts", "updates", "inactivations", "quarantined"):
            if d[kind]:
                out.print(f"[bold]{escape(entity)}[/] {kind} (sample):")
                for item in d[kind]:
                    out.print(f"  {logs.redact(str(item))}", markup=False)
    raise typer.Exit(summary.exit_code)


@app.command()
def status(
    config: ConfigOpt = DEFAULT_CONFIG,
    runs: Annotated[int, typer.Option(min=1, help="Runs to list (at least 1).")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Show recent runs, per-entity figures of the last run, and watermarks.

    Also names the entities whose store state no mapping or flow names any more (a renamed entity's old rows).
    """
    from rich.table import Table

    from etl.engine.pipeline import named_once, open_store
    from etl.reconcile.store import with_difference_counts

    try:
        cfg = load_config(config)
        store = open_store(cfg, read_only=True)
        recent = store.runs(runs)
        last = store.entity_runs(recent[0]["run_id"]) if recent else []
        last = with_difference_counts(store.engine, recent[0]["run_id"], last) if recent else []
        marks = store.watermarks()
        unnamed = _entities_no_mapping_names(cfg, store.engine)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"runs": recent, "last_run_entities": last, "watermarks": marks, "unnamed_entities": unnamed})
        return
    if not recent:
        out.print("No runs yet. Run `erpoa sync` (or `erpoa demo`).")
        return
    table = Table(title="recent runs")
    for col in ("run_id", "mode", "trigger", "status", "started_at", "finished_at", "mapping_version"):
        table.add_column(col)
    for r in recent:
        table.add_row(
            *[
                str(r.get(c) or "")
                for c in ("run_id", "mode", "trigger", "status", "started_at", "finished_at", "mapping_version")
            ]
        )
    out.print(table)
    ent = Table(title=f"entities of run {recent[0]['run_id']}")
    cols = (
        "entity",
        "status",
        "read_erp",
        "read_oa",
        "inserted",
        "updated",
        "unchanged",
        "inactivated",
        "quarantined",
        "differences",
        "new",
        "seconds_total",
    )
    for col in cols:
        ent.add_column(col, justify="left" if col in ("entity", "status") else "right")
    for r in last:
        ent.add_row(*[str(r.get(c) if r.get(c) is not None else "") for c in cols])
    out.print(ent)
    for r in last:  # why an entity failed or was skipped (its notes too), below the figures as `erpoa sync` prints it
        message, name = str(r.get("message") or ""), str(r["entity"])
        if r.get("status") in ("failed", "skipped") and message:
            out.print(named_once(name, message), markup=False)
    wm = Table(title="watermarks")
    for col in ("entity", "source", "value", "run_id"):
        wm.add_column(col)
    for r in marks:
        wm.add_row(*[str(r.get(c) or "") for c in ("entity", "source", "value", "run_id")])
    out.print(wm)
    for u in unnamed:
        out.print(
            f"{u['entity']}: no mapping names this entity ({u['open_quarantine']} open quarantine row(s), "
            f"{u['watermarks']} watermark(s) in the store). If it was renamed, its state did not follow: the new "
            "name started afresh (its first run read everything), and these rows can only be replayed under the "
            f"old name; name it {u['entity']} again to replay them, or leave them as a record.",
            markup=False,
        )


def _entities_no_mapping_names(cfg: ProjectConfig, engine: Any) -> list[dict[str, Any]]:
    """Entities with open quarantine rows or watermarks in the store that neither a mapping nor an approval flow
    names (renamed or removed): their state stays under the old name. Empty when the mappings do not load."""
    from sqlalchemy import func, select

    from etl.engine.pipeline import load_project_mappings
    from etl.store import schema as s

    try:
        flows = flow_names(cfg)
        if flows is None:
            return []
        known = {*load_project_mappings(cfg).entities, *flows}
    except ErpOaError:
        return []
    q = s.quarantine
    with engine.connect() as conn:
        open_rows = dict(
            conn.execute(select(q.c.entity, func.count()).where(q.c.status == "open").group_by(q.c.entity)).all()
        )
        marks = dict(
            conn.execute(select(s.watermarks.c.entity, func.count()).group_by(s.watermarks.c.entity)).all()
        )
    return [
        {"entity": name, "open_quarantine": int(open_rows.get(name, 0)), "watermarks": int(marks.get(name, 0))}
        for name in sorted({*open_rows, *marks} - known)
    ]


@app.command()
def xref(
    entity: Annotated[str, typer.Argument(help="Entity or approval flow, e.g. employee or purchase_order.")],
    key: Annotated[
        str,
        typer.Argument(
            help="Golden key, a source id (ERP or OA id), or a key as a source spells it (1 or １ for 000001, a "
            "department's name). A composite key is written with '|' between its parts, e.g. \"QG2026000002|1\"."
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Show which ERP and OA records a golden record came from (or the other way round).

    A composite golden key is written with '|' between its parts: erpoa xref purchase "QG2026000002|1".

    A key as a source spells it is read through the entity's key mapping: erpoa xref employee 1 finds 000001.

    An approval flow's links (OA request <-> ERP document) are under the flow's name (purchase: also purchase_order).

    Exit 1 when nothing matches (with --json too, after the empty links); exit 2 for an unknown ENTITY.
    """
    from datetime import date

    from rich.table import Table

    from etl.engine.pipeline import open_store
    from etl.mapping.apply import key_spellings

    try:
        cfg = load_config(config)
        mapping = entity_or_flow(cfg, entity)
        store = open_store(cfg, read_only=True)
        rows = store.xref(entity, key)
        if not rows and entity == "purchase":
            # Purchase orders created from OA approvals are linked under their flow's name.
            rows = store.xref("purchase_order", key)
        read_as = None
        if mapping is not None and not any(r["golden_key"] == key for r in rows):
            # What a person types is a source's spelling (1 for 000001, a full-width code, a department's name);
            # a source id that matched too keeps its links beside those of the key so read.
            found = {r["golden_key"] for r in rows}
            for golden, source in key_spellings(key, *mapping, as_of=date.today(), timezone=cfg.run.timezone).items():
                spelled = store.xref(entity, golden) if golden not in found else []
                if spelled and all(r["golden_key"] == golden for r in spelled):
                    rows, read_as = [*rows, *spelled], (golden, source)
                    break
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        matched = {"matched_key": read_as[0], "read_by": read_as[1]} if read_as else {}
        emit_json({"entity": entity, "query": key, **matched, "links": rows})
        raise typer.Exit(0 if rows else 1)
    if not rows:
        out.print(f"No cross-reference for {entity} '{key}'.", markup=False)
        raise typer.Exit(1)
    shown = key
    if read_as:
        alone = rows[0]["golden_key"] == read_as[0]  # else a source id matched first
        shown = read_as[0] if alone else key
        out.print(
            f"'{key}' is{'' if alone else ' also'} read as {entity} '{read_as[0]}' (as the {read_as[1]} mapping "
            "reads its key).",
            markup=False,
        )
    linked = str(rows[0].get("entity") or entity)
    title = f"{entity} {shown}" + (f" · links of approval flow {linked}" if linked != entity else "")
    table = Table(title=title)
    for col in ("golden_key", "source", "src_id", "active", "first_run_id", "last_run_id", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *[
                str(r.get(c) if r.get(c) is not None else "")
                for c in ("golden_key", "source", "src_id", "active", "first_run_id", "last_run_id", "detail")
            ]
        )
    out.print(table)


def _register_subcommands() -> None:
    from etl.cli import demo_cmd, mapping_cmds, quarantine_cmds

    app.command(name="demo")(demo_cmd.demo)
    app.add_typer(mapping_cmds.app, name="mappings")
    app.add_typer(quarantine_cmds.app, name="quarantine")
    for module in ("etl.cli.reconcile_cmds", "etl.cli.expectations_cmds", "etl.cli.flow_cmds"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError:
            continue
        mod.register(app)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no traceback reaches the user
        if os.environ.get("ERPOA_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off"):
            raise
        try:
            fail(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
