"""Load and check all mapping files and code tables of a project, reporting every issue at once."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from etl.errors import ConfigError, ConfigIssue
from etl.mapping import registry
from etl.mapping.codes import CodeEntry, CodeTable, spelling_conflicts
from etl.mapping.model import (
    CanonicalField,
    DeletionSpec,
    EntityMapping,
    QualitySpec,
    SourceField,
    SourceSpec,
    Survivorship,
    TargetSpec,
)
from etl.yamlio import SourceMap, issues_from_validation, load_yaml, sort_issues, validate_model

ENTITY_ORDER = ("department", "employee", "contract", "purchase")
EMPTY_MAPPING = "the file is empty; an entity mapping needs key:, fields:, sources: and target:"
# Where an entity name was written, for `MappingSet.entity` and `MappingSet.order` messages.
COMMAND_LINE = "command-line argument ENTITY"
REQUESTED = "requested entity (command line or run.entities in erpoa.yaml)"

Loc = tuple[str | int, ...]


def run_entities_origin(config_path: Path | str | None) -> str:
    """The `origin` of names taken from `run.entities` of the project config at `config_path` (None: built in code)."""
    return f"{config_path or 'erpoa.yaml'} run.entities"


def unknown_run_entities(
    mappings: MappingSet, entities: list[str] | None, config_path: Path | None
) -> list[ConfigIssue]:
    """An issue per name of `run.entities` (`entities`, from the project config at `config_path`) that is not an
    entity of `mappings`, located at its line of the config file where that file can be read again."""
    issues = mappings.unknown_entities(entities or [], origin=run_entities_origin(config_path))
    if not issues or config_path is None:
        return issues
    try:
        _, smap = load_yaml(config_path)
    except ConfigError:
        return issues
    unknown = [i for i, name in enumerate(entities or []) if name not in mappings.entities]
    return [smap.issue(("run", "entities", i), issue.message) for i, issue in zip(unknown, issues, strict=True)]


def run_entities(mappings: MappingSet, entities: list[str] | None, config_path: Path | None) -> list[str]:
    """`run.entities` of the project config at `config_path` in dependency order (every entity when unset);
    ConfigError with each unknown name located at its line (`unknown_run_entities`)."""
    issues = unknown_run_entities(mappings, entities, config_path)
    if issues:
        raise ConfigError(issues)
    return mappings.order(entities)


def suite_file_issues(mappings: MappingSet, folder: Path) -> list[ConfigIssue]:
    """An issue per entity whose `quality.suite` names a file that is not in the suite folder `folder`, located at
    that key of its mapping file, with the closest file name there.

    A suite named explicitly is meant to exist: silently running the entity without one would switch its
    quality gate off. An entity without `quality.suite` has `<entity>.json`, or no suite: that is no issue.
    """
    issues = []
    for name, mapping in mappings.entities.items():
        if name in mappings.source_maps:
            issue = missing_suite(mappings.source_maps[name], name, mapping.quality.suite, folder)
            issues.extend([issue] if issue else [])
    return issues


def missing_suite(smap: SourceMap, entity: str, suite: str | None, folder: Path) -> ConfigIssue | None:
    """The issue of an entity's `quality.suite` naming a file that is not in `folder` (None: no issue)."""
    if suite is None or (folder / suite).is_file():
        return None
    present = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    close = difflib.get_close_matches(suite, present, n=1)
    init = f"fix the name, or write it with `erpoa expectations init {entity}`"
    fix = f"did you mean '{close[0]}'?" if close else init
    return smap.issue(("quality", "suite"), f"suite file '{suite}' not found in {folder.name}/; {fix}")


class CodeTables(dict[str, CodeTable]):
    """Code tables by name, plus the names of those whose file failed to load (`failed`).

    A lookup of a failed table is not reported as "not found": that would send the steward looking for a
    missing file while the table's own issues, reported with it, say what to fix.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failed: set[str] = set()


@dataclass
class MappingSet:
    """Every entity mapping and code table of a project, checked together."""

    entities: dict[str, EntityMapping]
    code_tables: dict[str, CodeTable]
    version: str
    files: dict[str, Path] = field(default_factory=dict)
    source_maps: dict[str, SourceMap] = field(default_factory=dict)

    def entity(self, name: str, *, origin: str | None = None) -> EntityMapping:
        """The mapping of `name`; ConfigError with a did-you-mean and the known entities when absent.

        `origin` says where the name was written (`COMMAND_LINE`, `run_entities_origin(path)`); it starts the
        message in place of a file name.
        """
        if name not in self.entities:
            raise ConfigError(self.unknown_entities([name], origin=origin))
        return self.entities[name]

    def unknown_entities(self, names: Iterable[str], *, origin: str | None = None) -> list[ConfigIssue]:
        """One issue per name in `names` that is not an entity of the mappings (see `entity` for `origin`)."""
        known = list(self.entities)
        issues = []
        for name in names:
            if name not in self.entities:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                message = f"unknown entity '{name}'; {hint}known entities: {', '.join(known) or '(none)'}"
                issues.append(ConfigIssue(origin or REQUESTED, None, None, "", message))
        return issues

    def order(self, names: Iterable[str] | None = None, *, origin: str | None = None) -> list[str]:
        """Entity names in dependency order (dependencies first), limited to `names` when given.

        Every unknown name is reported at once (see `entity` for `origin`).
        """
        if names is None:
            return list(self.entities)
        wanted = list(names)
        issues = self.unknown_entities(wanted, origin=origin)
        if issues:
            raise ConfigError(issues)
        return [n for n in self.entities if n in wanted]


def display_path(path: Path, root: Path) -> str:
    """How a file of the mapping folder `root` is named in issues: `mappings/employee.yaml`."""
    try:
        return str(path.relative_to(root.parent)) if root.parent != Path() else str(path)
    except ValueError:
        return str(path)


def load_code_tables(folder: Path, root: Path) -> tuple[CodeTables, list[ConfigIssue], list[Path]]:
    """Load `folder/*.yaml` code tables; the names of those that fail are kept in `CodeTables.failed`."""
    tables = CodeTables()
    issues: list[ConfigIssue] = []
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
    for path in files:
        name = display_path(path, root)
        try:
            data, smap = load_yaml(path, display=name)
        except ConfigError as exc:
            issues.extend(exc.issues)
            tables.failed.add(path.stem)
            continue
        misread = [*smap.misread_numbers(), *_misread_codes(smap)]
        issues.extend(misread)
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
        misread_at = {(i.line, i.column) for i in misread}
        try:
            table = validate_model(CodeTable, data, smap)
        except ConfigError as exc:
            # The model stops at the first spelling conflict, unlocated, and finds none while an entry is invalid.
            # A conflict at a misread scalar is about a spelling nobody wrote ('True' for `yes`): its own issue says it.
            conflicts = _spelling_conflicts(data, smap)
            located = {c.message for c in conflicts}
            issues.extend(i for i in exc.issues if i.path or i.message not in located)
            issues.extend(c for c in conflicts if (c.line, c.column) not in misread_at)
            declared = data.get("name") if isinstance(data, dict) else None
            tables.failed.update([path.stem, *([declared] if isinstance(declared, str) else [])])
            continue
        if table.name != path.stem:
            issues.append(
                smap.issue(("name",), f"code table name '{table.name}' must match its file name '{path.stem}'")
            )
        tables[table.name] = table
    return tables, issues, files


def _spelling_conflicts(data: object, smap: SourceMap) -> list[ConfigIssue]:
    """Every spelling that maps to two codes, among the entries that are valid, located at its second use."""
    entries = data.get("entries") if isinstance(data, dict) else None
    valid: list[tuple[int, CodeEntry]] = []
    for i, raw in enumerate(entries if isinstance(entries, list) else []):
        try:
            valid.append((i, CodeEntry.model_validate(raw)))
        except ValidationError:
            continue
    return [smap.issue(("entries", i, *where), message) for i, where, message in spelling_conflicts(valid)]


def load_mappings(folder: Path | str, *, connections: Iterable[str] | None = None) -> MappingSet:
    """Load `folder/*.yaml` (entities) and `folder/codes/*.yaml` (code tables) and check them together.

    `connections`, when given, are the connection names of the project config, so
    that sources naming an unknown connection are reported too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            [ConfigIssue(str(folder), None, None, "", "mapping folder not found; check `mappings:` in erpoa.yaml")]
        )
    tables, issues, code_files = load_code_tables(folder / "codes", folder)
    entities: dict[str, EntityMapping] = {}
    files: dict[str, Path] = {}
    maps: dict[str, SourceMap] = {}
    failed: set[str] = set()  # entities whose file did not load: references to them are not "not found"
    partials: list[tuple[EntityMapping, SourceMap, frozenset[Loc]]] = []
    entity_files = sorted(p for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")] if p.is_file())
    for path in entity_files:
        name = display_path(path, folder)
        try:
            data, smap = load_yaml(path, display=name)
        except ConfigError as exc:
            issues.extend(exc.issues)
            failed.add(path.stem)
            continue
        if data is None:
            issues.append(ConfigIssue(name, None, None, "", EMPTY_MAPPING))
            failed.add(path.stem)
            continue
        issues.extend(smap.misread_numbers())
        misnamed = _misread_names(smap)
        issues.extend(issue for issue, _, _, _ in misnamed)
        for _, loc, key, text in misnamed:  # checked further as written: not reported again as "not a valid string"
            _as_written(data, loc, text, key=key)
        if isinstance(data, dict):
            data.setdefault("entity", path.stem)
        try:
            mapping = validate_model(EntityMapping, data, smap)
        except ConfigError as exc:
            issues.extend(exc.issues)
            failed.add(path.stem)
            if isinstance(data, dict):
                # Check what is valid now, rather than in a next round once pydantic's issues are fixed.
                partial, invalid = _salvage(data, path.stem)
                failed.add(partial.entity)
                partials.append((partial, smap, invalid))
                issues.extend(check_entity(partial, smap, tables, connections, invalid=invalid))
            continue
        if mapping.entity in entities:
            issues.append(
                smap.issue(("entity",), f"entity '{mapping.entity}' is also defined in {files[mapping.entity]}")
            )
            continue
        entities[mapping.entity] = mapping
        files[mapping.entity] = path
        maps[mapping.entity] = smap
        issues.extend(check_entity(mapping, smap, tables, connections))
    issues.extend(_check_across(entities, maps, failed))
    for partial, smap, invalid in partials:
        issues.extend(_check_references(partial, smap, entities, failed, invalid))
    if not entities and not issues:
        issues.append(ConfigIssue(str(folder), None, None, "", "no mapping files (*.yaml) found"))
    if issues:
        raise ConfigError(sort_issues(issues))
    ordered = _topological(entities)
    digest = hashlib.sha256()
    for path in [*entity_files, *code_files]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return MappingSet(
        entities={n: entities[n] for n in ordered},
        code_tables=tables,
        version=digest.hexdigest()[:12],
        files=files,
        source_maps=maps,
    )


def _salvage(data: dict[Any, Any], stem: str) -> tuple[EntityMapping, frozenset[Loc]]:
    """The parts of an invalid entity mapping that are valid on their own, and the locations of those that are not.

    pydantic validates the mapping as a whole: one bad field would hide an unknown survivorship source until
    it is fixed. Here each section, and each field and source of the free-named ones, is validated alone; a
    part that fails becomes a placeholder whose location is returned, so that `check_entity` skips the checks
    that read it (its own issues are already reported) while its name still counts as declared.
    """
    invalid: set[Loc] = set()

    def part(model: type[BaseModel], raw: Any, loc: Loc, placeholder: Any) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError:
            invalid.add(loc)
            return placeholder

    def named(key: str, model: type[BaseModel], placeholder: Any) -> dict[str, Any]:
        raw = data.get(key)
        if not isinstance(raw, dict):
            invalid.add((key,))
            return {}
        return {str(name): part(model, value, (key, str(name)), placeholder) for name, value in raw.items()}

    entity = data.get("entity")
    key = data.get("key")
    key = [key] if isinstance(key, str) else key
    if not (isinstance(key, list) and all(isinstance(k, str) for k in key)):
        invalid.add(("key",))
        key = []
    depends_on = data.get("depends_on", [])
    if not (isinstance(depends_on, list) and all(isinstance(d, str) for d in depends_on)):
        invalid.add(("depends_on",))
        depends_on = []
    mapping = EntityMapping.model_construct(
        entity=entity if isinstance(entity, str) else stem,
        key=key,
        fields=named("fields", CanonicalField, CanonicalField.model_construct()),
        sources=named("sources", SourceSpec, SourceSpec.model_construct(id=[], fields={})),
        survivorship=part(Survivorship, data.get("survivorship", {}), ("survivorship",), Survivorship()),
        target=part(TargetSpec, data.get("target"), ("target",), TargetSpec.model_construct(table="")),
        depends_on=depends_on,
        deletion=part(DeletionSpec, data.get("deletion", {}), ("deletion",), DeletionSpec()),
        quality=QualitySpec(),
    )
    return mapping, frozenset(invalid)


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{what} '{value}' not found; {hint}known: {', '.join(known) or '(none)'}"


def check_transforms(
    specs: list[Any], smap: SourceMap, loc: tuple[Any, ...], tables: dict[str, CodeTable], *, columns: int | None = None
) -> list[ConfigIssue]:
    """Issues in a chain of transforms: unknown names, bad arguments, unknown code tables, misplaced combiners.

    `columns` is how many source columns feed the chain (None where the caller checks that itself).
    """
    issues: list[ConfigIssue] = []
    known = registry.known_transforms()
    for index, raw in enumerate(specs):
        tloc = (*loc, index)
        try:
            name, args = registry.split_spec(raw)
        except ValueError as exc:
            issues.append(smap.issue(tloc, str(exc)))
            continue
        if name not in known:
            issues.append(smap.issue(tloc, _unknown("transform", name, known)))
            continue
        tdef = registry.get(name)
        try:
            parsed = registry.parse_args(tdef, args)
        except ValidationError as exc:
            arg_loc = (*tloc, name) if isinstance(raw, dict) else tloc
            issues.extend(issues_from_validation(exc, smap, tdef.args, base=arg_loc))
            continue
        except ValueError as exc:
            issues.append(smap.issue(tloc, str(exc)))
            continue
        issues.extend(_misread_arguments(tdef, args, smap, (*tloc, name) if isinstance(raw, dict) else tloc))
        table = getattr(parsed, "table", None)
        failed = tables.failed if isinstance(tables, CodeTables) else set()
        if name == "lookup" and table not in tables and table not in failed:
            issues.append(smap.issue((*tloc, name), _unknown("code table", str(table), {*tables, *failed})))
        if tdef.multi_column and columns is None and index != 0:
            issues.append(smap.issue(tloc, f"'{name}' combines several columns: put it first"))
        elif tdef.multi_column and columns is not None and (index != 0 or columns < 2):
            issues.append(
                smap.issue(tloc, f"'{name}' combines several columns: give `from: [col1, col2]` and put it first")
            )
    return issues


def _misread_arguments(tdef: registry.TransformDef, raw: Any, smap: SourceMap, loc: Loc) -> list[ConfigIssue]:
    """Unquoted booleans and numbers in the arguments at `loc` that the transform reads as other text than written
    (``null_if: [N/A, no]`` compares with 'false'); see `registry.scalar_place`."""
    issues = []
    for (where, key), _ in smap.resolved.items():
        if where[: len(loc)] != loc:
            continue
        place = registry.scalar_place(tdef, raw, where[len(loc) :], key=key)
        if place is not None:
            issue = smap.misread_text(where, key=key, convert=place[0], numbers=place[1])
            issues.extend([issue] if issue else [])
    return issues


def _as_written(data: Any, loc: Loc, text: str, *, key: bool) -> None:
    """Put back `text`, the unquoted scalar at `loc` (a key when `key`) that YAML read as a boolean or number."""
    parent: Any = data
    for part in loc[:-1]:
        parent = _child(parent, part)
    last = loc[-1]
    if isinstance(parent, dict) and key:
        found = next((k for k in parent if not isinstance(k, str) and _spelled(k, text)), None)
        if found is not None:
            parent[text] = parent.pop(found)
    elif _child(parent, last) is not None:
        parent[last] = text


def _child(container: Any, part: str | int) -> Any:
    """`container[part]`, where `part` is a key as written (a key YAML read as False is found by `no`)."""
    if isinstance(container, dict):
        if part in container:
            return container[part]
        return next((v for k, v in container.items() if not isinstance(k, str) and _spelled(k, part)), None)
    if isinstance(container, list) and isinstance(part, int) and part < len(container):
        return container[part]
    return None


def _spelled(value: Any, text: str | int) -> bool:
    """Whether YAML reads `text` as `value` (a key written `no` is False)."""
    read = yaml.safe_load(text) if isinstance(text, str) else None
    return type(read) is type(value) and read == value


def _misread_names(smap: SourceMap) -> list[tuple[ConfigIssue, Loc, bool, str]]:
    """Unquoted booleans and numbers an entity file means as names: field and source names, the key's fields, a
    source's table, id, cursor and columns (``key: no`` is the boolean false, ``fields: {on: ...}`` the key True).
    Each as (issue, location, is a key, text as written)."""
    issues = []
    for (loc, key), text in smap.resolved.items():
        named = (
            (key and len(loc) == 2 and loc[0] in ("fields", "sources"))
            or (key and len(loc) == 4 and loc[0] == "sources" and loc[2] == "fields")
            or (key and len(loc) == 3 and loc[:2] == ("survivorship", "fields"))
            or (not key and loc[:1] == ("key",) and len(loc) <= 2)
            or (not key and loc[:2] == ("target", "key"))
            or (not key and len(loc) >= 3 and loc[0] == "sources" and loc[2] in ("table", "id", "cursor"))
            or (not key and len(loc) in (4, 5, 6) and loc[0] == "sources" and loc[2] == "fields" and loc[4:5] in
                ((), ("from",)))
        )
        if named and (issue := smap.misread_text(loc, key=key, numbers=False)) is not None:
            issues.append((issue, loc, key, text))
    return issues


def _misread_codes(smap: SourceMap) -> list[ConfigIssue]:
    """Unquoted booleans and numbers among the codes, names and synonyms of a code table (``OFF`` is 'False')."""
    issues = []
    for (loc, key), _ in smap.resolved.items():
        text_place = (
            len(loc) in (3, 4)
            and loc[0] == "entries"
            and (loc[2:] in (("code",), ("name",)) or (loc[2] == "synonyms" and len(loc) == 4))
        )
        if text_place and not key and (issue := smap.misread_text(loc)) is not None:
            issues.append(issue)
    return issues


def unknown_message(what: str, value: str, known: Iterable[str]) -> str:
    """`what 'value' not found; did you mean ...? known: ...`."""
    return _unknown(what, value, known)


def check_entity(
    mapping: EntityMapping,
    smap: SourceMap,
    tables: dict[str, CodeTable],
    connections: Iterable[str] | None,
    *,
    invalid: frozenset[Loc] = frozenset(),
) -> list[ConfigIssue]:
    """Semantic checks of one entity that pydantic models cannot express.

    `invalid` are the locations of parts that failed validation (see `_salvage`): checks that read them are skipped.
    """

    def ok(*loc: str | int) -> bool:
        return not any(loc[:n] in invalid for n in range(1, len(loc) + 1))

    issues: list[ConfigIssue] = []
    fields = mapping.fields
    if ok("fields"):
        for i, key in enumerate(mapping.key):
            if key not in fields:
                issues.append(smap.issue(("key", i), _unknown("key field", key, fields) + "; declare it under fields:"))
        for i, key in enumerate(mapping.target.key or []):
            if key not in fields:
                issues.append(smap.issue(("target", "key", i), _unknown("target key field", key, fields)))
    if ok("key"):
        issues.extend(_listed_twice(mapping.key, smap, ("key",), "key field"))
    if ok("target"):
        issues.extend(_listed_twice(mapping.target.key or [], smap, ("target", "key"), "key field"))
        left_out = [k for k in mapping.key if k not in (mapping.target.key or mapping.key)]
        if ok("key") and left_out:
            issues.append(smap.issue(("target", "key"), (
                f"the target key leaves out the business key field(s) {', '.join(left_out)}: golden records that "
                "differ only there would overwrite each other in the target; list every field of `key:` in "
                "`target.key:` (more may follow), or remove `target.key:`"
            )))
    if not mapping.sources and ok("sources"):
        issues.append(smap.issue(("sources",), "no sources; add at least one (erp and/or oa)"))
    for source_name, source in mapping.sources.items():
        if ok("sources", source_name):
            issues.extend(
                _check_source(mapping, source_name, source, smap, tables, connections, fields_ok=ok("fields"))
            )
    if ok("fields") and ok("sources") and mapping.sources:
        mapped = {name for source in mapping.sources.values() for name in source.fields}
        for name, canonical in fields.items():
            if not canonical.nullable and name not in mapping.key and name not in mapped:
                issues.append(
                    smap.issue(
                        ("fields", name),
                        f"field '{name}' is `nullable: false` but no source maps it: every record would be published "
                        f"without it; map it under sources.<{'|'.join(mapping.sources)}>.fields, or drop "
                        "`nullable: false`",
                        key=True,
                    )
                )
    surv = mapping.survivorship  # when invalid, a default that sets nothing: no rule is checked
    # The implicit default [erp, oa] must not be held against an entity with one source.
    written_default = "default" in surv.model_fields_set
    for loc, rule in [
        *([(("survivorship", "default"), surv.default)] if written_default else []),
        *((("survivorship", "fields", f), r) for f, r in surv.fields.items()),
    ]:
        if loc[1] == "fields" and loc[2] not in fields and ok("fields"):
            issues.append(smap.issue(loc, _unknown("field", str(loc[2]), fields), key=True))
        if isinstance(rule, list):
            for j, name in enumerate(rule):
                if name not in mapping.sources and ok("sources"):
                    issues.append(smap.issue((*loc, j), _unknown("source", name, mapping.sources)))
            issues.extend(_listed_twice(rule, smap, loc, "source"))
        elif surv.recency_field is None:
            issues.append(smap.issue(loc, "`most_recent` needs `survivorship.recency_field:` naming a datetime field"))
    if surv.recency_field is not None and ok("fields"):
        spec = fields.get(surv.recency_field)
        if spec is None:
            issues.append(smap.issue(("survivorship", "recency_field"), _unknown("field", surv.recency_field, fields)))
        elif spec.type not in ("datetime", "date") and ok("fields", surv.recency_field):
            issues.append(
                smap.issue(
                    ("survivorship", "recency_field"), f"recency field must be a date or datetime, not {spec.type}"
                )
            )
    if mapping.deletion.status_field and mapping.deletion.status_field not in fields and ok("fields"):
        issues.append(
            smap.issue(("deletion", "status_field"), _unknown("field", mapping.deletion.status_field, fields))
        )
    issues.extend(_check_status_values(mapping, smap, tables, ok))
    for name, spec in fields.items():
        if spec.references:
            entity, _ = spec.references.split(".")
            if entity == mapping.entity:
                issues.append(smap.issue(("fields", name, "references"), "a field cannot reference its own entity"))
    if connections is not None and ok("target") and mapping.target.connection not in set(connections):
        issues.append(
            smap.issue(("target", "connection"), _unknown("connection", mapping.target.connection, connections))
        )
    elif ok("target") and mapping.target.connection in read_only_connections(connections):
        message = read_only_write(mapping.target.connection, "the entity's target is written")
        issues.append(smap.issue(("target", "connection"), message))
    return issues


def _status_codes(mapping: EntityMapping, tables: Mapping[str, CodeTable]) -> tuple[set[str], list[str]] | None:
    """The values the deletion status field can hold and the code tables they come from, when every source that
    maps it ends with a `lookup` giving codes; None when they cannot be known (another last transform,
    `unmapped: pass`, a table that did not load)."""
    status = mapping.deletion.status_field
    feeding = [source.fields[status] for source in mapping.sources.values() if status in source.fields]
    if not feeding:
        return None
    codes: set[str] = set()
    names: list[str] = []
    for spec in feeding:
        try:
            name, raw = registry.split_spec(spec.transforms[-1]) if spec.transforms else ("", None)
            args = registry.parse_args(registry.get(name), raw) if name == "lookup" else None
        except (ValueError, ValidationError):
            return None
        table = tables.get(getattr(args, "table", ""))
        if args is None or table is None or getattr(args, "output", None) != "code":
            return None
        unmapped = getattr(args, "unmapped", None)
        if unmapped == "pass":
            return None
        codes |= table.codes
        default = getattr(unmapped, "default", None)
        codes |= {default} if isinstance(default, str) else set()
        names += [table.name] if table.name not in names else []
    return codes, names


def _check_status_values(
    mapping: EntityMapping, smap: SourceMap, tables: Mapping[str, CodeTable], ok: Callable[..., bool]
) -> list[ConfigIssue]:
    """`deletion.inactive_values` and `set_status` that the status field can never hold (not a code of its lookup)."""
    status = mapping.deletion.status_field
    if not status or not ok("deletion") or not ok("sources") or not all(ok("sources", s) for s in mapping.sources):
        return []
    known = _status_codes(mapping, tables)
    if known is None:
        return []
    codes, names = known
    places: list[tuple[Loc, str]] = [
        *((("deletion", "inactive_values", i), v) for i, v in enumerate(mapping.deletion.inactive_values)),
        *([(("deletion", "set_status"), mapping.deletion.set_status)] if mapping.deletion.set_status else []),
    ]
    issues = []
    for loc, value in places:
        if value in codes:
            continue
        close = difflib.get_close_matches(value, sorted(codes), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listed = sorted(codes)
        shown = ", ".join(listed[:12]) + (f", ... ({len(listed)} codes)" if len(listed) > 12 else "")
        message = (
            f"'{value}' is not a code of {' or '.join(names)} (the lookup of {status}), so the status field never "
            f"holds it; {hint}codes: {shown}"
        )
        issues.append(smap.issue(loc, message))
    return issues


def _listed_twice(names: list[str], smap: SourceMap, loc: Loc, what: str) -> list[ConfigIssue]:
    """An issue at each repetition of a name in the list at `loc` (a key, a priority list)."""
    seen: set[str] = set()
    issues = []
    for i, name in enumerate(names):
        if name in seen:
            issues.append(smap.issue((*loc, i), f"{what} '{name}' is listed twice; list each {what} once"))
        seen.add(name)
    return issues


def read_only_connections(connections: Iterable[str] | Mapping[str, Any] | None) -> set[str]:
    """The names of the connections marked `read_only: true` (only when given as name -> ConnectionConfig)."""
    if not isinstance(connections, Mapping):
        return set()
    return {name for name, conn in connections.items() if getattr(conn, "read_only", None)}


def read_only_write(name: str, what: str) -> str:
    """The message for a connection marked `read_only: true` through which `what` (a clause) happens."""
    return (
        f"connection '{name}' is marked `read_only: true` in erpoa.yaml, but {what} through it; "
        f"point this at a read-write connection, or remove `read_only` from '{name}'"
    )


def _check_source(
    mapping: EntityMapping,
    source_name: str,
    source: SourceSpec,
    smap: SourceMap,
    tables: dict[str, CodeTable],
    connections: Iterable[str] | None,
    *,
    fields_ok: bool = True,
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    base = ("sources", source_name)
    conn = source.connection or source_name
    if connections is not None and conn not in set(connections):
        issues.append(smap.issue((*base, "connection"), _unknown("connection", conn, connections)))
    for key in mapping.key:
        if key in mapping.fields and key not in source.fields:
            issues.append(
                smap.issue(
                    (*base, "fields"),
                    f"key field '{key}' is not mapped from {source_name}; every source must map every key field",
                )
            )
    if source.approval and source.approval.field not in mapping.fields and fields_ok:
        issues.append(
            smap.issue((*base, "approval", "field"), _unknown("field", source.approval.field, mapping.fields))
        )
    known = registry.known_transforms()
    for field_name, spec in source.fields.items():
        floc = (*base, "fields", field_name)
        if field_name not in mapping.fields and fields_ok:
            issues.append(
                smap.issue(
                    floc,
                    _unknown("canonical field", field_name, mapping.fields) + "; declare it under fields:",
                    key=True,
                )
            )
        issues.extend(check_transforms(spec.transforms, smap, (*floc, "transforms"), tables, columns=len(spec.columns)))
        if fields_ok and field_name in mapping.fields:
            issues.extend(_padded_too_long(spec, mapping.fields[field_name], smap, (*floc, "transforms")))
        if len(spec.columns) > 1 and not (
            spec.transforms and registry.get(registry.split_spec(spec.transforms[0])[0]).multi_column
            if spec.transforms and registry.split_spec(spec.transforms[0])[0] in known
            else False
        ):
            issues.append(
                smap.issue(
                    (*floc, "from"), "several columns need a first transform that combines them: concat or coalesce"
                )
            )
        if not spec.columns and not any(
            registry.split_spec(t)[0] == "constant" for t in spec.transforms if isinstance(t, str | dict) and t
        ):
            issues.append(smap.issue(floc, "no `from:` column; give one, or use the `constant` transform"))
    return issues


def _padded_too_long(spec: SourceField, field: CanonicalField, smap: SourceMap, loc: Loc) -> list[ConfigIssue]:
    """A chain ending in `pad_zeros` wider than the field's `length:` makes every value too long: each row would be
    quarantined (type:string) at the first sync."""
    if field.type != "string" or field.length is None or not spec.transforms:
        return []
    try:
        name, args = registry.split_spec(spec.transforms[-1])
        if name != "pad_zeros":
            return []
        parsed = registry.parse_args(registry.get(name), args)
    except (ValueError, ValidationError, KeyError):
        return []  # reported by check_transforms
    from etl.mapping.transforms import PadArgs

    if not isinstance(parsed, PadArgs) or parsed.width <= field.length:
        return []
    width, index = parsed.width, len(spec.transforms) - 1
    where = (*loc, index, name) if isinstance(spec.transforms[-1], dict) else (*loc, index)
    return [
        smap.issue(
            where,
            f"pads to {width} characters but the field's length is {field.length}: every value would be too long and "
            f"quarantined; pad to at most {field.length}, or raise the field's `length:`",
        )
    ]


def _check_across(
    entities: dict[str, EntityMapping], maps: dict[str, SourceMap], failed: set[str] | None = None
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    targets: dict[tuple[str, str], str] = {}
    for name, mapping in entities.items():
        smap = maps[name]
        key = (mapping.target.connection, mapping.target.table.lower())
        if key in targets:
            # Reported in both files: the steward may be editing either of them.
            for here, there in ((name, targets[key]), (targets[key], name)):
                line, _ = maps[there].locate(("target", "table"))
                issues.append(
                    maps[here].issue(
                        ("target", "table"),
                        f"target table '{entities[here].target.table}' is also used by entity '{there}' "
                        f"({maps[there].file}:{line}); give each entity its own target table",
                    )
                )
        targets.setdefault(key, name)
        issues.extend(_check_references(mapping, smap, entities, failed or set()))
    cycle = _find_cycle(entities)
    if cycle:
        first, second = cycle[0], cycle[1]
        issues.append(
            maps[first].issue(
                _dependency_loc(entities[first], second),
                f"entities depend on each other in a cycle: {' -> '.join(cycle)}; remove one dependency",
            )
        )
    return issues


def _check_references(
    mapping: EntityMapping,
    smap: SourceMap,
    entities: dict[str, EntityMapping],
    failed: set[str],
    invalid: frozenset[Loc] = frozenset(),
) -> list[ConfigIssue]:
    """References and `depends_on` naming entities or fields that do not exist.

    An entity in `failed` (its file did not load) exists but cannot be looked into: naming it is not an issue.
    """
    issues: list[ConfigIssue] = []
    known = {*entities, *failed}
    for fname, (entity, other) in mapping.references.items():
        if entity in failed and entity not in entities:
            continue
        if entity not in entities:
            issues.append(smap.issue(("fields", fname, "references"), _unknown("entity", entity, known)))
        elif other not in entities[entity].fields:
            issues.append(
                smap.issue(("fields", fname, "references"), _unknown(f"{entity} field", other, entities[entity].fields))
            )
        elif (here := mapping.fields[fname].type) != (there := entities[entity].fields[other].type):
            # Every value would fail the reference check at run time (an integer never equals a string).
            message = f"{entity}.{other} is {there}, this field is {here}; give this field `type: {there}`"
            issues.append(smap.issue(("fields", fname, "references"), message))
    if ("depends_on",) not in invalid:
        for i, dep in enumerate(mapping.depends_on):
            if dep == mapping.entity:
                message = f"entity '{dep}' cannot depend on itself; remove it from depends_on"
                issues.append(smap.issue(("depends_on", i), message))
            elif dep not in known:
                issues.append(smap.issue(("depends_on", i), _unknown("entity", dep, known)))
    return issues


def _dependency_loc(mapping: EntityMapping, other: str) -> tuple[str | int, ...]:
    """Where `mapping` says it depends on `other`: a `depends_on` entry or a field's `references`."""
    if other in mapping.depends_on:
        return ("depends_on", mapping.depends_on.index(other))
    for fname, (entity, _) in mapping.references.items():
        if entity == other:
            return ("fields", fname, "references")
    return ("depends_on",)


def _find_cycle(entities: dict[str, EntityMapping]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in entities[node].dependencies:
            if dep not in entities:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in entities:
        if name not in state and (found := visit(name)):
            return found
    return None


def _topological(entities: dict[str, EntityMapping]) -> list[str]:
    preferred = {name: i for i, name in enumerate(ENTITY_ORDER)}
    names = sorted(entities, key=lambda n: (preferred.get(n, len(preferred)), n))
    done: list[str] = []

    def place(name: str) -> None:
        if name in done:
            return
        for dep in entities[name].dependencies:
            if dep in entities:
                place(dep)
        done.append(name)

    for name in names:
        place(name)
    return done
