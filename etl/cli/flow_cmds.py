"""`erpoa flows run | check | audit`: approval-driven flows (OA approvals -> ERP documents, exactly once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from etl.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, WaitOpt, emit_json, fail, load_config, out
from etl.errors import ErpOaError

if TYPE_CHECKING:
    from etl.flows.run import FlowSummary

app = typer.Typer(help="Approval-driven flows: approved OA requests become ERP documents.", no_args_is_help=True)

FlowOpt = Annotated[list[str] | None, typer.Option("--flow", "-f", help="Only this flow (repeatable).")]
RUN_COLUMNS = ("flow", "status", "approved", "held", "created", "adopted", "unmapped", "conflicts", "refused",
               "duplicates", "written_back", "writeback_pending", "amended", "cancelled", "differences")


def _records(frame: Any) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict(orient="records")


@app.command("run")
def run(
    flow: FlowOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read everything, write nothing.")] = False,
    wait: WaitOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Create the ERP documents of newly approved requests, write the numbers back, report changes and audit."""
    from etl.flows.run import run_flows

    try:
        cfg = load_config(config, wait=wait)
        summary = run_flows(cfg, flows=flow, dry_run=dry_run)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json(summary.to_dict())
    else:
        print_summary(summary)
    raise typer.Exit(summary.exit_code)  # 2 invalid flow file, 5 locked, 6 unavailable, else 1


def print_summary(summary: FlowSummary) -> None:
    """The flows' summary as a table (also for `erpoa sync` and `erpoa demo`)."""
    planned = " (dry run, nothing written)" if summary.dry_run else ""
    table = Table(title=f"flows{planned} · run {summary.run_id} · {summary.status}")
    for col in RUN_COLUMNS:
        table.add_column(col, justify="left" if col in ("flow", "status") else "right")
    for r in summary.flows:
        table.add_row(*[str(getattr(r, c)) for c in RUN_COLUMNS])
    out.print(table)
    for r in summary.flows:
        if r.message:
            out.print(f"{r.flow}: {r.message}", markup=False)


@app.command("check")
def check(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Check the flow files against the project (connections, code tables, transforms); exit 2 on problems."""
    from etl.flows import connection_name, load_flows

    try:
        cfg = load_config(config)
        flowset = load_flows(cfg)
        rows = []
        for spec in flowset.flows.values():
            wb = spec.writeback
            rows.append({
                "flow": spec.flow,
                "kind": spec.kind,
                "enabled": spec.enabled,
                "approval": spec.approval.engine,
                "reads": spec.source.connection,
                "writes_erp": connection_name(cfg, spec.target.connection, spec.target.fallback_connection),
                "writes_oa": connection_name(cfg, wb.connection, wb.fallback_connection) if wb and wb.enabled else None,
                "file": str(flowset.files[spec.flow]),
            })
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"status": "ok", "version": flowset.version, "flows": rows})
        return
    if not rows:
        out.print("No flows (mappings/flows/*.yaml).")
        return
    table = Table(title=f"flows OK · version {flowset.version}")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*[str(v if v is not None else "") for v in r.values()])
    out.print(table)


@app.command("audit")
def audit(
    flow: FlowOpt = None,
    limit: Annotated[int, typer.Option(min=0, help="Rows to show per view; 0 shows all.")] = 20,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Compliance views: approved requests without a document, documents without approval, amount differences."""
    from etl.flows.audit import audit_views

    try:
        cfg = load_config(config)
        found = audit_views(cfg, flow)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({name: _records(frame) for name, frame in found.items()})
        return
    for name, frame in found.items():
        shown = limit and len(frame) > limit
        if frame.empty:  # a view of another kind of flow (or nothing found): no empty table of one column
            out.print(f"{name}: 0 rows", markup=False)
            continue
        table = Table(title=f"{name}: {len(frame)} row(s)" + (f", showing {limit}" if shown else ""))
        cols = list(frame.columns)
        for col in cols:
            table.add_column(col, overflow="fold")
        for record in _records(frame.head(limit) if shown else frame):
            table.add_row(*[str(record[c]) if record[c] is not None else "" for c in cols])
        out.print(table)


def register(root: typer.Typer) -> None:
    """Add `flows` to the `erpoa` app."""
    root.add_typer(app, name="flows")
