"""`erpoa demo`: build demo ERP and OA databases, write a ready project, run a full sync."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from etl.cli.common import emit_json, fail, load_config, out
from etl.errors import ConfigError, ErpOaError

if TYPE_CHECKING:
    from etl.config.project import ProjectConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG_TEMPLATE = """\
# erp-oa-sync demo project, written by `erpoa demo`. Edit freely; rerun `erpoa sync`.
project: demo
connections:
  erp:    {{url: "{erp}"}}       # Yonyou-U8-style ERP
  oa:     {{url: "{oa}"}}        # Weaver-e-cology-style OA
  target: {{url: "{target}"}}    # where golden records are published
  recon:  {{url: "{recon}"}}     # reconciliation store
mappings: mappings
expectations: expectations
reports: reports
run:
  chunk_size: {chunk_size}
  timezone: Asia/Shanghai
"""


def sqlite_urls(folder: Path) -> dict[str, str]:
    """The demo's four SQLite databases in `folder`."""
    d = folder.resolve().as_posix()
    return {name: f"sqlite:///{d}/{name}.db" for name in ("erp", "oa", "target", "recon")}


def project_files_root() -> Path:
    """Where the shipped mappings and expectations live (the source checkout)."""
    if (REPO_ROOT / "mappings").is_dir():
        return REPO_ROOT
    raise ConfigError("the demo mappings were not found next to the package; run `erpoa demo` from a source checkout")


def write_project(folder: Path, urls: dict[str, str] | None = None, *, chunk_size: int = 20_000) -> Path:
    """Write erpoa.yaml (SQLite URLs in `folder` unless `urls` given) and copy the demo mappings and suites."""
    folder.mkdir(parents=True, exist_ok=True)
    root = project_files_root()
    for name in ("mappings", "expectations"):
        dest = folder / name
        if dest.exists():
            shutil.rmtree(dest)
        if (root / name).is_dir():
            shutil.copytree(root / name, dest)
    config = folder / "erpoa.yaml"
    urls = {**sqlite_urls(folder), **(urls or {})}
    config.write_text(CONFIG_TEMPLATE.format(chunk_size=chunk_size, **urls), encoding="utf-8")
    return config


def demo(
    rows: Annotated[
        int | None, typer.Option(min=1, help="Scale the purchase entity: N / 3 requisitions, about 0.8 N lines.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same data.")] = 42,
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo lives.")] = Path("var/demo"),
    sync: Annotated[bool, typer.Option("--sync/--no-sync", help="Run the full sync after building.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")] = False,
) -> None:
    """Create demo ERP and OA databases (SQLite), a ready erpoa.yaml, and run one full sync."""
    from etl.demo.generate import DemoSize, build_demo, size_for_rows

    try:
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("erp.db", "oa.db", "target.db", "recon.db"):
            for suffix in ("", "-wal", "-shm", "-journal"):
                (folder / f"{name}{suffix}").unlink(missing_ok=True)
        size = size_for_rows(rows) if rows else DemoSize()
        if not as_json:
            out.print(f"Building demo ERP and OA databases in {folder} ...", markup=False)
        manifest = build_demo(f"sqlite:///{folder / 'erp.db'}", f"sqlite:///{folder / 'oa.db'}", size, seed)
        (folder / "manifest.json").write_text(
            manifest.to_json()
            if hasattr(manifest, "to_json")
            else __import__("json").dumps(manifest.to_dict(), ensure_ascii=False, indent=2, default=str),
            encoding="utf-8",
        )
        config_path = write_project(folder)
        if rows:
            _write_department_codes(folder / "mappings" / "codes" / "department.yaml", manifest.to_dict())
        if not as_json:
            out.print(f"Wrote {config_path}", markup=False)
        if not sync:
            if as_json:
                emit_json({"config": str(config_path)})
            return
        cfg = load_config(config_path)
        from etl.cli.render import StageProgress, summary_table
        from etl.engine.hooks import default_hooks
        from etl.engine.pipeline import run_sync

        with StageProgress(enabled=not as_json and sys.stderr.isatty()) as progress:
            summary, _ = run_sync(cfg, full_refresh=True, trigger="demo", progress=progress, hooks=default_hooks(cfg))
        from etl.cli.app import run_approval_flows

        flow_summary = run_approval_flows(cfg, summary.run_id)
        reports = _reports(cfg, summary.run_id)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({**summary.to_dict(), "flows": flow_summary.to_dict() if flow_summary else None,
                   "config": str(config_path), "reports": reports})
    else:
        summary_table(summary)
        if flow_summary is not None:
            from etl.cli.flow_cmds import print_summary

            print_summary(flow_summary)
        out.print(f"\nConfig: {config_path}\nTry: erpoa status --config {config_path}", markup=False)
        for label, path in reports.items():
            out.print(f"{label}: {path}", markup=False)
    raise typer.Exit(0 if summary.status in ("success", "partial") else 1)


def _write_department_codes(path: Path, manifest: dict[str, Any]) -> None:
    """A scaled demo has more departments than the shipped code table: list them all, as a steward would."""
    import yaml

    entries = []
    for unit in manifest.get("department_mapping", []):
        synonyms = [str(unit["erp_code"]), str(unit["oa_code"]), str(unit["oa_name"])]
        entries.append({"code": f"D{unit['erp_code']}", "name": str(unit["erp_name"]), "synonyms": synonyms})
    table = {"name": "department", "description": "统一部门编码 (generated for the scaled demo)", "entries": entries}
    path.write_text(yaml.safe_dump(table, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _reports(cfg: ProjectConfig, run_id: str) -> dict[str, str]:
    """The run's report files, and its Great Expectations Data Docs (written by the sync) when there are any."""
    try:
        from etl.report.build import write_reports
    except ModuleNotFoundError:
        return {}
    paths = {k: str(v) for k, v in write_reports(cfg, run_id).items()}
    docs = cfg.resolve(cfg.reports) / run_id / "datadocs" / "index.html"
    if docs.exists():
        paths["datadocs"] = str(docs)
    return paths
