"""Shared CLI plumbing: options, config loading, error handling and output."""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from etl import logs
from etl.config.project import ProjectConfig, load_project
from etl.errors import ConfigError, ConfigIssue, ErpOaError

if TYPE_CHECKING:
    from etl.mapping.codes import CodeTable
    from etl.mapping.loader import MappingSet
    from etl.mapping.model import EntityMapping


class DataConsole(Console):
    """A console that prints data as it is: never an emoji for `:date:`-like text, and tables (any renderable
    but a string) with their cells, headers, titles and captions literal, so that a value such as `[/bold]` or
    `[b]x[/b]` neither breaks the output nor loses its brackets.

    A string given to `print` is still markup unless `markup=False`: the CLI's own labels (`[bold]error:[/]`)
    are written that way, and data printed as a string needs `markup=False` (or `rich.markup.escape`). Styled
    table cells are `rich.text.Text` objects (`Text(status, style="green")`).
    """

    def print(self, *objects: Any, markup: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """`Console.print`, with markup off for anything but strings (see the class)."""
        if markup is None and any(not isinstance(o, str) for o in objects):
            objects = tuple(_literal_annotations(o) for o in objects)
            markup = False
        super().print(*objects, markup=markup, **kwargs)


def _literal_annotations(renderable: Any) -> Any:
    """A table whose string title and caption are `Text` (rich renders those as markup whatever `print` says)."""
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    if not isinstance(renderable, Table) or not any(isinstance(a, str) for a in (renderable.title, renderable.caption)):
        return renderable
    table = copy.copy(renderable)
    if isinstance(table.title, str):
        table.title = Text(table.title, style=Style.pick_first(table.title_style, "table.title"))
    if isinstance(table.caption, str):
        table.caption = Text(table.caption, style=Style.pick_first(table.caption_style, "table.caption"))
    return table


def _console(stderr: bool) -> DataConsole:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, `| less`) gets room for the summary table instead of rich's 80 columns.
    width = None if stream.isatty() else 160
    return DataConsole(stderr=stderr, highlight=False, soft_wrap=True, width=width, emoji=False)


out = _console(False)
err = _console(True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Project config file.", envvar="ERPOA_CONFIG", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON summary on stdout.")]
DEFAULT_CONFIG = Path("erpoa.yaml")
WaitOpt = Annotated[
    float | None, typer.Option("--wait", min=0, help="Seconds to wait for another run's lock (run.lock_wait_seconds).")
]

F = TypeVar("F", bound=Callable[..., Any])


def load_config(path: Path, *, unset_ok: bool = False, wait: float | None = None) -> ProjectConfig:
    """The project config; `unset_ok` for checks that connect to nothing (see `load_project`); `wait` (`--wait`)
    overrides `run.lock_wait_seconds`."""
    config = load_project(path, unset_ok=unset_ok)
    if wait is not None:
        config = config.model_copy(update={"run": config.run.model_copy(update={"lock_wait_seconds": wait})})
    logs.add_secrets(config.secrets())
    return config


def load_checked(
    path: Path,
    *,
    entities: list[str] | None = None,
    every_suite: bool = False,
    unset_ok: bool = False,
    wait: float | None = None,
) -> tuple[ProjectConfig, MappingSet, list[str]]:
    """The project config, its mappings and the entities to sync, with every problem of erpoa.yaml, the mapping
    files and the Great Expectations suites in one ConfigError (exit 2). Nothing is connected to.

    The entities are `entities` (the command line's), else `run.entities`, else all; their suites are checked,
    or with `every_suite` (`erpoa expectations check`) every suite of the folder. A config that does not load
    still names the folders to check (else `mappings/` and `expectations/` beside it), and mapping files that do
    not load still declare the fields their suites are checked against, so no layer hides the next one's errors
    (`etl.engine.preflight.check_project`, which the Airflow DAG's `start_run` uses too). `wait` as for
    `load_config`.
    """
    from etl.engine.preflight import check_project

    def load(config: Path) -> ProjectConfig:
        return load_config(config, unset_ok=unset_ok, wait=wait)

    return check_project(path, load, entities=entities, every_suite=every_suite).result()


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


#: Where a ConfigIssue of the command line says it was written (`etl.mapping.loader.COMMAND_LINE`, options).
COMMAND_LINE_ORIGINS = ("command-line", "option ")


def _in_a_file(issue: ConfigIssue) -> bool:
    """An issue of the configuration: located in a file, or about a connection (one its server refused)."""
    if issue.path.startswith("connections.") and not issue.file:
        return True
    return bool(issue.file) and not issue.file.startswith(COMMAND_LINE_ORIGINS)


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
    if logs.json_lines():  # `--log-format json`: stderr stays JSON lines, the error one more record (also with --json)
        fields: dict[str, Any] = {"error": kind, "exit_code": code}
        if isinstance(exc, ConfigError):
            fields["issues"] = [logs.redact(str(i)) for i in exc.issues]
        if not isinstance(exc, ErpOaError):
            fields["hint"] = "Run with ERPOA_DEBUG=1 for the traceback and report it as a bug."
        logging.getLogger("erpoa.cli").error(message, extra={"erpoa_fields": fields})
    elif as_json:
        pass
    elif isinstance(exc, ConfigError) and not any(_in_a_file(i) for i in exc.issues) and len(exc.issues) == 1:
        err.print("[bold red]error:[/] ", end="")  # a mistake on the command line, not in a file
        err.print(logs.redact(str(exc.issues[0])), markup=False)
    elif isinstance(exc, ConfigError):
        where = "configuration" if any(_in_a_file(i) for i in exc.issues) else "command line"
        err.print(f"[bold red]error:[/] {len(exc.issues)} problem(s) in the {where}:", highlight=False)
        for issue in exc.issues:
            err.print(f"  {logs.redact(str(issue))}", markup=False)
    else:
        prefix = "error" if isinstance(exc, ErpOaError) else "internal error"
        err.print(f"[bold red]{prefix}:[/] ", end="")
        err.print(message, markup=False)
        if not isinstance(exc, ErpOaError):
            err.print("Run with ERPOA_DEBUG=1 for the traceback and report it as a bug.", style="dim")
    raise typer.Exit(code)


def entity_or_flow(
    cfg: ProjectConfig, entity: str, *, origin: str | None = None
) -> tuple[EntityMapping, dict[str, CodeTable]] | None:
    """ConfigError (exit 2, with the known entities and approval flows, as `erpoa sync` gives) unless `entity` is
    an entity of the mappings or an approval flow; the did-you-mean looks among both. Mappings that do not load
    are no reason to refuse: the store still answers.

    Returns the entity's mapping and the code tables (to read a key as the sources spell it), None for a flow
    or when the mappings do not load. `origin` names where the name was written (default: the argument ENTITY).
    """
    import difflib

    from etl.engine.pipeline import load_project_mappings
    from etl.errors import ConfigIssue
    from etl.mapping.loader import COMMAND_LINE

    try:
        mappings = load_project_mappings(cfg)
    except ErpOaError:
        return None
    if entity in mappings.entities:
        return mappings.entities[entity], mappings.code_tables
    flows = flow_names(cfg) or []
    if entity in flows:
        return None
    close = difflib.get_close_matches(entity, [*mappings.entities, *flows], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    message = f"unknown entity '{entity}'; {hint}known entities: {', '.join(mappings.entities) or '(none)'}"
    if flows:
        message += f"; approval flows: {', '.join(flows)}"
    raise ConfigError([ConfigIssue(origin or COMMAND_LINE, None, None, "", message)])


def flow_names(cfg: ProjectConfig) -> list[str] | None:
    """The names of the project's approval flows, those of invalid flow files too; None when they do not load."""
    from etl.flows import load_flows

    try:
        flowset = load_flows(cfg, keep_going=True)
    except ErpOaError:
        return None
    return [*flowset.flows, *flowset.broken]
