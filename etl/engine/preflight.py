"""Every problem of a project's configuration at once, before anything is connected to.

`check_project` reads erpoa.yaml, the mapping files and the expectation suites of the entities to sync and lists
the problems of all three together: no layer hides the next one's. `erpoa sync`, `plan` and `expectations check`
call it through `etl.cli.common.load_checked`, the Airflow DAG's `start_run` through `etl.orchestration.tasks`;
each passes its own way of loading the config (the CLI's, or with Airflow's connections).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from etl.config.project import ProjectConfig
from etl.engine.pipeline import run_names, suite_issues
from etl.errors import ConfigError, ConfigIssue
from etl.mapping.loader import (
    COMMAND_LINE,
    MappingSet,
    display_path,
    load_mappings,
    missing_suite,
    suite_file_issues,
)
from etl.yamlio import load_yaml, sort_issues

#: What a mapping file declares, as far as its suite is concerned: entity -> (field names, `quality.suite`).
Declared = dict[str, tuple[list[str], str | None]]


@dataclass
class CheckedProject:
    """What `check_project` found: the config and mappings where they loaded, the entities to sync, and every
    problem (a caller may add its own before `result`)."""

    config: ProjectConfig | None
    mappings: MappingSet | None
    names: list[str]
    issues: list[ConfigIssue] = field(default_factory=list)

    def result(self) -> tuple[ProjectConfig, MappingSet, list[str]]:
        """The config, the mappings and the entities to sync; ConfigError with every issue, sorted, if any."""
        if self.issues:
            raise ConfigError(sort_issues(self.issues))
        assert self.config is not None and self.mappings is not None  # either would have left an issue
        return self.config, self.mappings, self.names


def check_project(
    path: Path,
    load: Callable[[Path], ProjectConfig],
    *,
    entities: Sequence[str] | None = None,
    every_suite: bool = False,
    origin: str = COMMAND_LINE,
    among: Collection[str] | None = None,
    connections: Iterable[str] = (),
) -> CheckedProject:
    """The project config at `path` (loaded by `load`), its mappings and the entities to sync, with every problem
    of erpoa.yaml, the mapping files and the Great Expectations suites. Nothing is connected to.

    The entities are `entities` (given where `origin` says: the command line by default), else `run.entities`,
    else every mapped one (with `among`, the entities the caller can sync: the mapped ones among them); their
    suites are checked, or with `every_suite` (`erpoa expectations check`) every suite of the folder. A config
    that does not load still names the folders to check (see `layout`; `connections` are connection names
    defined outside the file, e.g. by Airflow), and mapping files that do not load still declare the fields
    their suites are checked against. A config file that does not exist (or is a folder) raises its ConfigError
    at once: there is no project beside it to check.
    """
    issues: list[ConfigIssue] = []
    try:
        config: ProjectConfig | None = load(path)
    except ConfigError as exc:
        if not path.is_file():
            raise
        issues.extend(exc.issues)
        config = None
    mapping_folder, suite_folder, in_file = layout(config, path)
    # a loaded config's own: with each connection's settings (`read_only: true` is checked against the mappings)
    known_connections = in_file if config is not None or in_file is None else [*in_file, *connections]
    try:
        mappings = load_mappings(mapping_folder, connections=known_connections) if mapping_folder else None
    except ConfigError as exc:
        issues.extend(exc.issues)
        mappings = None
    names: list[str] = []
    if mappings is None:
        wanted: Collection[str] | None = entities or (config.run.entities if config and not every_suite else None)
        wanted = wanted or (None if every_suite else among)
        declared = {n: d for n, d in _declared(mapping_folder).items() if not wanted or n in wanted}
        issues.extend(suite_issues(suite_folder, declared, None) if suite_folder else [])
        issues.extend(declared_suite_files(mapping_folder, suite_folder) if suite_folder else [])
    else:
        names, found = _names(config, mappings, entities, every_suite, among, origin)
        issues.extend(found)
        issues.extend(_suite_issues(mappings, names, suite_folder, every_suite) if suite_folder else [])
        if suite_folder:  # a `quality.suite` naming no file would switch its entity's gate off: a mapping error
            issues.extend(suite_file_issues(mappings, suite_folder))
    return CheckedProject(config, mappings, names, issues)


def layout(config: ProjectConfig | None, path: Path) -> tuple[Path | None, Path | None, Iterable[str] | None]:
    """The mapping and suite folders of the project config at `path` (None: unknown) and its connections (None: not
    checked): of a loaded config, name -> ConnectionConfig, so that mappings writing through a `read_only: true`
    connection are reported; else their names.

    Of a config that did not load (`config` None), they are read from its YAML where it can be read, with the
    defaults of `ProjectConfig`; a value that needs `${VAR}`s, is not a path or is not a folder is unknown.
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


def declared_suite_files(folder: Path | None, suite_folder: Path) -> list[ConfigIssue]:
    """`suite_file_issues` of a mapping folder that did not load: each readable file's `quality.suite` that names
    no file (a broken file beside it must not hide that)."""
    issues: list[ConfigIssue] = []
    if folder is None or not folder.is_dir():
        return issues
    for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            data, smap = load_yaml(file, display=display_path(file, folder))
        except ConfigError:
            continue
        quality = data.get("quality") if isinstance(data, dict) else None
        suite = quality.get("suite") if isinstance(quality, dict) else None
        if isinstance(suite, str) and isinstance(data, dict) and isinstance(data.get("fields"), dict):
            entity = data.get("entity") if isinstance(data.get("entity"), str) else file.stem
            issues.extend([i] if (i := missing_suite(smap, str(entity), suite, suite_folder)) else [])
    return issues


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
    config: ProjectConfig | None,
    mappings: MappingSet,
    entities: Sequence[str] | None,
    every_suite: bool,
    among: Collection[str] | None,
    origin: str,
) -> tuple[list[str], list[ConfigIssue]]:
    """The entities to sync (see `check_project`) and the issues of unknown ones; those known on an issue."""
    try:
        if every_suite and not entities:
            return mappings.order(), []
        if entities:
            return mappings.order(entities, origin=origin), []
        if config is None or (among is not None and not config.run.entities):
            return [n for n in mappings.order() if among is None or n in among], []
        return run_names(config, mappings), []
    except ConfigError as exc:
        wanted = set(entities or (config.run.entities if config else None) or mappings.entities)
        return [n for n in mappings.order() if n in wanted], exc.issues


def _suite_issues(mappings: MappingSet, names: list[str], folder: Path, every_suite: bool) -> list[ConfigIssue]:
    """The problems of the suites of `names`, or of every suite in `folder`."""
    if every_suite:
        from etl.validate import check_suites

        known = {name: list(m.fields) for name, m in mappings.entities.items()}
        named = {m.quality.suite: name for name, m in mappings.entities.items() if m.quality.suite}
        return check_suites(folder, known, sorted(mappings.code_tables), named)
    declared = {n: (list(mappings.entity(n).fields), mappings.entity(n).quality.suite) for n in names}
    return suite_issues(folder, declared, mappings.code_tables)
