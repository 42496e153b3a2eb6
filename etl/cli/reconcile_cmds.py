"""`erpoa reconcile [ENTITY] | list | accept | fix | reopen` and `erpoa report`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from etl.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    WaitOpt,
    emit_json,
    entity_or_flow,
    fail,
    flow_names,
    load_config,
    out,
)
from etl.errors import ConfigError, ErpOaError

LIST_COLUMNS = [
    "diff_id",
    "entity",
    "class",
    "golden_key",
    "field",
    "erp_value",
    "oa_value",
    "target_value",
    "status",
    "run_count",
    "signed_by",
    "first_seen_at",
    "last_seen_at",
]


class _DefaultToRun(TyperGroup):
    """`erpoa reconcile [ENTITY] [OPTIONS]` runs `reconcile run`; named subcommands work as usual."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToRun,
    help="Reconcile ERP, OA and the target; list and sign off differences. "
    "`erpoa reconcile [ENTITY]` runs a fresh reconciliation.",
)


def _mask(frame: Any, cfg: Any) -> Any:
    from etl.engine.pipeline import load_project_mappings
    from etl.report.build import mask_differences

    masked = mask_differences(frame, load_project_mappings(cfg)).astype(object)
    return masked.where(masked.notna(), None)


@app.command("run")
def run(
    entity: Annotated[str | None, typer.Argument(help="Entity to reconcile (default: all).")] = None,
    wait: WaitOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Extract ERP and OA afresh (read-only), compare with the target and store the differences under a new run."""
    from etl.reconcile.compare import CLASSES
    from etl.reconcile.run import reconcile_fresh

    try:
        cfg = load_config(config, wait=wait)
        if entity and entity_or_flow(cfg, entity) is None and entity in (flow_names(cfg) or []):
            raise ConfigError(
                f"'{entity}' is an approval flow: `erpoa flows run --flow {entity}` audits it and records its "
                "differences (see them with `erpoa reconcile list --entity " + entity + "`); `erpoa reconcile run` "
                "compares the entities of the mappings"
            )
        result = reconcile_fresh(cfg, entity)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json(result)
    else:
        table = Table(title=f"reconciliation · run {result['run_id']} · {result['status']}")
        for col in ("entity", "read erp", "read oa", "differences", "new", "open", "accepted", "fixed", "by class"):
            table.add_column(col, justify="left" if col in ("entity", "by class") else "right")
        for name, stats in result["entities"].items():
            if stats.get("status") == "failed":
                table.add_row(name, "", "", "", "", "", "", "", f"failed: {stats.get('message', '')}"[:120])
                continue
            by_class = ", ".join(f"{c} {stats['by_class'][c]}" for c in CLASSES if stats["by_class"].get(c))
            table.add_row(
                name,
                str(stats["read"].get("erp", 0)),
                str(stats["read"].get("oa", 0)),
                str(stats["total"]),
                str(stats["new"]),
                str(stats["open_total"]),
                str(stats["accepted"]),
                str(stats["fixed"]),
                by_class or "-",
            )
        out.print(table)
        out.print("See them: erpoa reconcile list · report: erpoa report")
    raise typer.Exit(0 if result["status"] == "success" else 1)


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    cls: Annotated[
        str | None, typer.Option("--class", help="Only this class, e.g. field_mismatch, only_in_erp, mapping_gap.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="Only this status: open, accepted or fixed.")] = None,
    include_gone: Annotated[
        bool, typer.Option("--all", help="Include differences no longer present in the latest run.")
    ] = False,
    limit: Annotated[int, typer.Option(min=0, help="Rows to show; 0 shows all.")] = 100,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """List differences (present ones by default) with their status and sign-off; personal data is masked."""
    from etl.engine.pipeline import open_store
    from etl.reconcile.store import STATUSES, DifferenceStore
    from etl.report.labels import class_keys

    try:
        if cls and cls not in class_keys():  # the reconciliation's classes and the approval flows'
            raise ConfigError(f"--class must be one of {', '.join(class_keys())}")
        if status and status not in STATUSES:
            raise ConfigError(f"--status must be one of {', '.join(STATUSES)}")
        cfg = load_config(config)
        frame = DifferenceStore(open_store(cfg, read_only=True).engine).frame(
            entity=entity, cls=cls, status=status, present=None if include_gone else True
        )
        if entity and frame.empty:  # a misspelt entity would read as "no differences"
            entity_or_flow(cfg, entity, origin="option --entity")
        total = len(frame)
        frame = _mask(frame.head(limit) if limit else frame, cfg)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        rows = frame.reindex(columns=[*LIST_COLUMNS, "present", "detail", "note"]).to_dict(orient="records")
        emit_json({"total": total, "rows": rows})
        return
    title = f"differences: {total}" + (f", showing {limit}" if limit and total > limit else "")
    table = Table(title=title)
    cols = [
        "diff_id",
        "entity",
        "class",
        "golden_key",
        "field",
        "erp_value",
        "oa_value",
        "target_value",
        "status",
        "run_count",
        "signed_by",
    ]
    for col in cols:
        table.add_column(col, overflow="fold", no_wrap=col == "diff_id")
    for row in frame.reindex(columns=cols).itertuples(index=False):
        table.add_row(*["" if v is None else str(v) for v in row])
    out.print(table)


def _sign(status: str, diff_ids: list[str], by: str, note: str | None, config: Path, as_json: bool) -> None:
    from etl.engine.pipeline import open_store
    from etl.reconcile.store import DifferenceStore

    try:
        cfg = load_config(config)
        frame = DifferenceStore(open_store(cfg).engine).sign_off(diff_ids, status, by=by, note=note)
        frame = _mask(frame, cfg)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    rows = frame.reindex(
        columns=["diff_id", "entity", "class", "golden_key", "field", "status", "signed_by", "signed_at", "note"]
    )
    if as_json:
        emit_json({"status": status, "updated": len(rows), "rows": rows.to_dict(orient="records")})
        return
    for r in rows.to_dict(orient="records"):
        what = " ".join(str(r[k]) for k in ("entity", "class", "golden_key", "field") if r.get(k) is not None)
        out.print(f"{r['diff_id']}  {what} -> {status} by {r['signed_by']}", markup=False)


DiffIds = Annotated[list[str], typer.Argument(help="Difference ids (or unique prefixes of 6+ characters).")]
By = Annotated[str, typer.Option("--by", help="Who signs off (name or staff id).")]
Note = Annotated[str | None, typer.Option("--note", help="Why: kept in the store and shown in the report.")]


@app.command()
def accept(
    diff_ids: DiffIds, by: By, note: Note = None, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False
) -> None:
    """Sign differences off as accepted (a known, tolerated difference); they stay accepted while present."""
    _sign("accepted", diff_ids, by, note, config, as_json)


@app.command()
def fix(
    diff_ids: DiffIds, by: By, note: Note = None, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False
) -> None:
    """Mark differences fixed at the source; the next run reopens any that are still there."""
    _sign("fixed", diff_ids, by, note, config, as_json)


@app.command()
def reopen(
    diff_ids: DiffIds, by: By, note: Note = None, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False
) -> None:
    """Set differences back to open."""
    _sign("open", diff_ids, by, note, config, as_json)


class Lang(StrEnum):
    zh = "zh-CN"
    en = "en"


def report(
    run_id: Annotated[str | None, typer.Option("--run", help="Run to report on (default: the latest).")] = None,
    lang: Annotated[Lang, typer.Option("--lang", help="Language of the report.")] = Lang.zh,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder to write to (default: <reports>/<run>/).")
    ] = None,
    last: Annotated[int, typer.Option("--last", help="Runs in the trend chart.", min=1)] = 10,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Write the reconciliation report of a run: one HTML page, an Excel workbook and CSV files."""
    from etl.report.build import write_reports

    try:
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out: {out_dir} is a file; give a folder (it is created if missing)")
        cfg = load_config(config)
        paths = write_reports(cfg, run_id, lang=lang.value, out_dir=out_dir, last_runs=last)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        import json

        summary = json.loads(paths["json"].read_text(encoding="utf-8"))
        emit_json(
            {
                "paths": {k: str(v) for k, v in paths.items()},
                "kpis": summary["kpis"],
                "run_id": summary["run"]["run_id"],
            }
        )
        return
    for label, path in paths.items():
        out.print(f"{label}: {path}", markup=False)


def register(root: typer.Typer) -> None:
    """Add `reconcile` and `report` to the `erpoa` app."""
    root.add_typer(app, name="reconcile")
    root.command(name="report")(report)
