"""`erpoa expectations check|init`: the stewards' commands for Great Expectations suites."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from etl.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, emit_json, fail, load_checked, load_config, out
from etl.errors import ConfigError, ErpOaError

app = typer.Typer(help="Check and create Great Expectations suites (expectations/<entity>.json).",
                  no_args_is_help=True)


@app.command()
def check(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Every suite loads and names only fields, entities and code tables the mappings declare, and every suite a
    mapping names with `quality.suite` exists; exit 2 with every problem of the suites, the mappings and
    erpoa.yaml at once."""
    try:
        cfg, mappings, _ = load_checked(config, every_suite=True, unset_ok=True)  # connects to nothing
        folder = cfg.resolve(cfg.expectations)
        known = list(mappings.entities)
        missing = [name for name, m in mappings.entities.items()
                   if not (folder / (m.quality.suite or f"{name}.json")).exists()]
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"status": "ok", "folder": str(folder), "entities_without_suite": missing})
        return
    names = escape(", ".join(n for n in known if n not in missing))
    out.print(f"[green]ok[/] {escape(str(folder))}: suites of {names} load and reference declared fields and "
              "code tables")
    for name in missing:
        out.print(f"[yellow]note[/] {escape(name)} has no suite; create one with `erpoa expectations init "
                  f"{escape(name)}`")


@app.command()
def init(
    entity: Annotated[str, typer.Argument(help="Entity to write a starter suite for.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing suite.")] = False,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the suite instead of writing it.")] = False,
) -> None:
    """Write a starter suite from the mapping's declared types, keys and code-table lookups."""
    from etl.engine.pipeline import load_project_mappings
    from etl.mapping import registry
    from etl.mapping.loader import COMMAND_LINE
    from etl.validate import init_suite

    try:
        cfg = load_config(config, unset_ok=True)  # connects to nothing
        mapping = load_project_mappings(cfg).entity(entity, origin=COMMAND_LINE)
        lookups: dict[str, str] = {}
        for source in mapping.sources.values():
            for name, spec in source.fields.items():
                for raw in spec.transforms:
                    tname, args = registry.split_spec(raw)
                    if tname == "lookup":
                        parsed = registry.parse_args(registry.get(tname), args)
                        if getattr(parsed, "unmapped", None) in ("quarantine", "fail") and \
                                getattr(parsed, "output", "code") == "code":
                            lookups[name] = str(getattr(parsed, "table"))  # noqa: B009 (TransformArgs subclass)
        suite = init_suite(entity, dict(mapping.fields), mapping.key, lookups)  # type: ignore[arg-type]
        text = json.dumps(suite, ensure_ascii=False, indent=2) + "\n"
        path = cfg.resolve(cfg.expectations) / (mapping.quality.suite or f"{entity}.json")  # the file the sync reads
        if stdout:
            out.print(text, markup=False)
            return
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to overwrite it or --stdout to compare")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except ErpOaError as exc:
        fail(exc)
        return
    out.print(f"Wrote {path} ({len(suite['expectations'])} expectations). Refine it, then run "
              "`erpoa expectations check`.", markup=False)


def register(root: typer.Typer) -> None:
    """Add `erpoa expectations` to the CLI."""
    root.add_typer(app, name="expectations")


__all__ = ["register"]
