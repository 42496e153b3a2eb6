"""`erpoa mappings check|suggest`: validate mapping files; find unmapped source values."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from etl.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, emit_json, fail, load_config, out
from etl.config.project import ProjectConfig
from etl.errors import ConfigError, ConfigIssue, ErpOaError
from etl.yamlio import sort_issues

app = typer.Typer(help="Check mapping files and suggest code table entries.", no_args_is_help=True)


@app.command()
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Mapping folders (default: `mappings:` of the config).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    against_db: Annotated[
        bool, typer.Option("--against-db", help="Also check source tables and columns exist.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate mapping files, code tables and approval flows; exit 0 when clean, 2 with every problem listed.

    Without `--against-db` nothing is connected to, and `${VAR}`s of erpoa.yaml that are not set are
    not needed: the check runs where the production secrets are not.
    """
    from etl.engine.preflight import declared_suite_files, layout
    from etl.mapping.loader import load_mappings, suite_file_issues, unknown_run_entities

    try:
        cfg, issues = None, []
        if config.exists():
            try:
                cfg = load_config(config, unset_ok=not against_db)
            except ConfigError as exc:  # listed with the mappings' problems, not instead of them
                if against_db:
                    raise
                issues.extend(exc.issues)
        if against_db and cfg is None:
            raise ConfigError(f"--against-db needs the project config ({config}) for the connections")
        suites = None
        if cfg is not None or config.is_file():  # read from its YAML where it does not load, as `sync` does
            default, suites, names = layout(cfg, config)
        else:  # no config: the folder alone; a folder given as the config: its issue says so
            default, names = None if issues else Path("mappings"), None
        folders = [_mapping_folder(p) for p in paths] if paths else [default] if default else []
        checked = []
        for folder in dict.fromkeys(folders):
            flows = _flow_issues(cfg, folder) if cfg is not None else []
            try:
                mappings = load_mappings(folder, connections=names)
            except ConfigError as exc:
                issues.extend([*exc.issues, *flows])
                if suites is not None and default is not None and folder.resolve() == default.resolve():
                    issues.extend(declared_suite_files(folder, suites))  # a broken file must not hide them
                continue
            issues.extend(flows)
            if cfg is not None and cfg.run.entities and folder == cfg.resolve(cfg.mappings):
                issues.extend(unknown_run_entities(mappings, cfg.run.entities, cfg.config_path))
            if suites is not None and default is not None and folder.resolve() == default.resolve():
                issues.extend(suite_file_issues(mappings, suites))  # the suites of the config's own mappings
            if against_db and cfg is not None:
                from etl.mapping.dbcheck import check_against_db

                issues.extend(check_against_db(cfg, mappings))
            checked.append(
                {
                    "folder": str(folder),
                    "entities": list(mappings.entities),
                    "code_tables": sorted(mappings.code_tables),
                    "version": mappings.version,
                }
            )
        if issues:
            raise ConfigError(sort_issues(issues))
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"status": "ok", "checked": checked})
        return
    for c in checked:
        tables = f"code tables {', '.join(c['code_tables'])}" if c["code_tables"] else "no code tables"
        said = f"{c['folder']}: entities {', '.join(c['entities'])}; {tables}; mapping version {c['version']}"
        out.print(f"[green]ok[/] {escape(said)}")


def _mapping_folder(path: Path) -> Path:
    """The mapping folder a path given to `check` belongs to: a file's folder, and for `codes/` or `flows/`
    (a code table or flow file, or the folder itself) the folder above it."""
    folder = path.parent if path.is_file() else path
    return folder.parent if folder.name in ("codes", "flows") else folder


def _flow_issues(cfg: ProjectConfig, folder: Path) -> list[ConfigIssue]:
    """The problems of the approval flow files of `folder` (they share its code tables and transforms)."""
    from etl.flows import load_flows

    if not (folder / "flows").is_dir():
        return []
    config = cfg.model_copy(update={"mappings": folder.resolve()})
    config.__dict__["config_path"] = cfg.config_path
    # The code tables' own problems are the mapping folder's, reported once by its check.
    return [i for i in load_flows(config, keep_going=True).issues if "flows/" in i.file.replace("\\", "/")]


@app.command()
def suggest(
    entity: Annotated[str, typer.Argument(help="Entity whose lookups to examine.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option(min=1, help="Candidates per value.")] = 3,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print code table snippets to paste.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List source values no code table maps, with counts and the closest existing entries. Writes nothing."""
    import pandas as pd

    from etl.db.extract import ExtractRequest, check_columns, iter_chunks
    from etl.engine.pipeline import load_project_mappings
    from etl.mapping.loader import COMMAND_LINE
    from etl.mapping.suggest import suggest as find
    from etl.mapping.suggest import unmapped_values, yaml_snippet

    try:
        cfg = load_config(config)
        mappings = load_project_mappings(cfg)
        mapping = mappings.entity(entity, origin=COMMAND_LINE)
        parts = []
        for source, spec in mapping.sources.items():
            conn = cfg.connection(spec.connection or source)
            resolved = check_columns(conn, spec, source, entity, smap=mappings.source_maps.get(entity))
            request = ExtractRequest(source, spec, [resolved[c] for c in spec.columns], chunk_size=cfg.run.chunk_size)
            for chunk in iter_chunks(conn, request):
                chunk.columns = list(spec.columns)
                parts.append(
                    unmapped_values(chunk, mapping, source, mappings.code_tables, date.today(), cfg.run.timezone)
                )
        frame = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=["source", "field", "table", "value", "count"])
        )
        frame = frame.groupby(["source", "field", "table", "value"], as_index=False)["count"].sum()
        frame = frame.sort_values("count", ascending=False)
        suggestions = find(frame, mappings.code_tables, limit)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json([s.__dict__ for s in suggestions])
        return
    if not suggestions:
        out.print(f"{entity}: every source value is mapped by the code tables.", markup=False)
        return
    table = Table(title=f"{entity}: unmapped source values")
    for col in ("source", "field", "code table", "value", "rows", "closest entries (spelling → code, score)"):
        table.add_column(col)
    for s in suggestions:
        close = "; ".join(f"{sp} → {code} ({score:.0f})" for sp, code, score in s.candidates)
        table.add_row(s.source, s.field, s.table, s.value, str(s.count), close)
    out.print(table)
    if as_yaml:
        out.print(yaml_snippet(suggestions), markup=False)
