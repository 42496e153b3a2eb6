"""Shared CLI plumbing: options, config loading, error handling and output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from etl import logs
from etl.config.project import ProjectConfig, load_project
from etl.errors import ConfigError, ConfigIssue, ErpOaError
from etl.yamlio import load_yaml, sort_issues

if TYPE_CHECKING:
    from etl.mapping.loader import MappingSet

#: What a mapping file declares, as far as its suite is concerned: entity -> (field names, `quality.suite`).
Declared = dict[str, tuple[list[str], str | None]]


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, `| less`) gets room for the summary table instead of rich's 80 columns.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


out = _console(False)
err = _console(True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Project config file.", envvar="ERPOA_CONFIG", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON summary on stdout.")]
DEFAULT_CONFIG = Path("erpoa.yaml")

F = TypeVar("F", bound=Callable[..., Any])


def load_config(path: Path, *, unset_ok: bool = False) -> ProjectConfig:
    """The project config; `unset_ok` for checks that connect to nothing (see `load_project`)."""
    config = load_project(path, unset_ok=unset_ok)
    logs.add_secrets(config.secrets())
    return config


def load_checked(
    path: Path, *, entities: list[str] | None = None, every_suite: bool = False, unset_ok: bool = False
) -> tuple[ProjectConfig, MappingSet, list[str]]:
    """The project config, its mappings and the entities to sync, with every problem of erpoa.yaml, the mapping
    files and the Great Expectations suites in one ConfigError (exit 2). Nothing is connected to.

    The entities are `entities` (the command line's), else `run.entities`, else all; their suites are checked,
    or with `every_suite` (`erpoa expectations check`) every suite of the folder. A config that does not load
    still names the folders to check (else `mappings/` and `expectations/` beside it), and mapping files that do
    not load still declare the fields their suites are checked against, so no layer hides the next one's errors.
    """
    from etl.engine.pipeline import suite_issues
    from etl.mapping.loader import load_mappings

    issues: list[ConfigIssue] = []
    try:
        config: ProjectConfig | None = load_config(path, unset_ok=unset_ok)
    except ConfigError as exc:
        if not path.is_file():  # not found, or a folder: there is no project beside it to check
            raise
        issues.extend(exc.issues)
        config = None
    mapping_folder, suite_folder, connections = _layout(config, path)
    try:
        mappings = load_mappings(mapping_folder, connections=connections) if mapping_folder else None
    except ConfigError as exc:
        issues.extend(exc.issues)
        mappings = None
    wanted = entities or (config.run.entities if config and not every_suite else None)
    names: list[str] = []
    if mappings is None:
        declared = {n: d for n, d in _declared(mapping_folder).items() if not wanted or n in wanted}
        issues.extend(suite_issues(suite_folder, declared, None) if suite_folder else [])
    else:
        names, found = _names(config, mappings, entities, every_suite)
        issues.extend(found)
        issues.extend(_suite_issues(mappings, names, suite_folder, every_suite) if suite_folder else [])
    if issues:
        raise ConfigError(sort_issues(issues))
    assert config is not None and mappings is not None  # either would have left an issue
    return config, mappings, names


def _layout(config: ProjectConfig | None, path: Path) -> tuple[Path | None, Path | None, Iterable[str] | None]:
    """The project's mapping and suite folders (None: unknown) and connection names (None: not checked).

    Of a config that did not load, they are read from its YAML where it can be read, with the defaults of
    `ProjectConfig`; a value that needs `${VAR}`s, is not a path or is not a folder is unknown.
    """
    if config is not None:
        return config.resolve(config.mappings), config.resolve(config.expectations), config.connections
    try:
        data, _ = load_yaml(path)
    except ConfigError:
        data = None
    raw = data if isinstance(data, dict) else {}

    def folder(key: str) -> Path | None:
        value = raw.get(key, ProjectConfig.model_fields[key].default)
        if not isinstance(value, str | Path) or not str(value).strip() or "${" in str(value) or "\x00" in str(value):
            return None
        resolved = path.resolve().parent / Path(value)
        return resolved if resolved.is_dir() else None  # maybe not the folder the config means: not reported

    names = raw.get("connections")
    return folder("mappings"), folder("expectations"), [str(n) for n in names] if isinstance(names, dict) else None


def _declared(folder: Path | None) -> Declared:
    """What the entity files of a mapping folder that did not load declare (see `Declared`), file by file; a file
    that cannot be read, or has no `fields:` mapping, declares nothing (its own issues say why)."""
    declared: Declared = {}
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder and folder.is_dir() else []
    for file in files:
        try:
            data, _ = load_yaml(file)
        except ConfigError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            continue
        entity, quality = data.get("entity"), data.get("quality")
        entity = entity if isinstance(entity, str) else file.stem
        suite = quality.get("suite") if isinstance(quality, dict) else None
        suite = suite if isinstance(suite, str) else None
        declared.setdefault(str(entity), ([str(f) for f in data["fields"]], suite))
    return declared


def _names(
    config: ProjectConfig | None, mappings: MappingSet, entities: list[str] | None, every_suite: bool
) -> tuple[list[str], list[ConfigIssue]]:
    """The entities to sync (see `load_checked`) and the issues of unknown ones; those known on an issue."""
    from etl.engine.pipeline import run_names
    from etl.mapping.loader import COMMAND_LINE

    try:
        if every_suite and not entities:
            return mappings.order(), []
        if config is None:
            return mappings.order(entities, origin=COMMAND_LINE), []
        return run_names(config, mappings, entities), []
    except ConfigError as exc:
        wanted = set(entities or (config.run.entities if config else None) or mappings.entities)
        return [n for n in mappings.order() if n in wanted], exc.issues


def _suite_issues(mappings: MappingSet, names: list[str], folder: Path, every_suite: bool) -> list[ConfigIssue]:
    """The problems of the suites of `names`, or of every suite in `folder`."""
    from etl.engine.pipeline import suite_issues

    if every_suite:
        from etl.validate import check_suites

        known = {name: list(m.fields) for name, m in mappings.entities.items()}
        named = {m.quality.suite: name for name, m in mappings.entities.items() if m.quality.suite}
        return check_suites(folder, known, sorted(mappings.code_tables), named)
    declared = {n: (list(mappings.entity(n).fields), mappings.entity(n).quality.suite) for n in names}
    return suite_issues(folder, declared, mappings.code_tables)


def json_safe(value: Any) -> Any:
    """`value` with every missing or non-finite number (NaN, NaT, pd.NA, inf) as None and NumPy scalars as
    Python ones: strict JSON has no NaN, and `json.dumps` would write the bare word."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    import pandas as pd

    if value is pd.NaT or value is pd.NA:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar (np.float64('nan') too)
        return json_safe(value.item())
    return value


def emit_json(payload: Any) -> None:
    """Write the JSON summary (secrets redacted) to stdout; always valid JSON (NaN and NaT become null)."""
    text = json.dumps(json_safe(payload), ensure_ascii=False, default=str, indent=2, allow_nan=False)
    sys.stdout.write(logs.redact(text) + "\n")
    sys.stdout.flush()


def fail(exc: BaseException, as_json: bool | None = None) -> None:
    """Report an error without a traceback and exit with its code.

    `as_json` None (the console script's last line of defence, `etl.cli.app.main`, for an internal error)
    means: as JSON when `--json` is on the command line, so that `--json` callers always get JSON.
    """
    if as_json is None:
        as_json = "--json" in sys.argv[1:]
    code = exc.exit_code if isinstance(exc, ErpOaError) else 1
    kind = type(exc).__name__
    message = logs.redact(str(exc))
    if as_json:
        issues = [str(i) for i in exc.issues] if isinstance(exc, ConfigError) else []
        emit_json({"status": "error", "error": kind, "message": message, "issues": issues, "exit_code": code})
    elif isinstance(exc, ConfigError):
        err.print(f"[bold red]error:[/] {len(exc.issues)} problem(s) in the configuration:", highlight=False)
        for issue in exc.issues:
            err.print(f"  {logs.redact(str(issue))}", markup=False)
    else:
        prefix = "error" if isinstance(exc, ErpOaError) else "internal error"
        err.print(f"[bold red]{prefix}:[/] ", end="")
        err.print(message, markup=False)
        if not isinstance(exc, ErpOaError):
            err.print("Run with ERPOA_DEBUG=1 for the traceback and report it as a bug.", style="dim")
    raise typer.Exit(code)
