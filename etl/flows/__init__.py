"""Approval-driven flows: approved OA requests become ERP documents, exactly once.

`load_flows` reads `mappings/flows/*.yaml` (the entity loader only reads
`mappings/*.yaml`), checks each file with the project's connections and code
tables, and reports every problem as `file:line:col key.path: message`: the
schema's issues and the checks across the parts that are valid, in one run. A
broken file disables only its own flow when the caller asks to keep going
(`erpoa sync`). `etl.flows.run.run_flows` runs them; docs/approvals.md describes
the language.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from etl.config.project import ProjectConfig
from etl.errors import ConfigError, ConfigIssue
from etl.flows.model import (
    Approval,
    AuditSpec,
    ChangesSpec,
    DocNoRule,
    FieldSpec,
    FieldsSpec,
    FlowSpec,
    HeaderSource,
    LinesSource,
    LinkSpec,
    SourceSpec,
    TargetHeader,
    TargetLines,
    TargetSpec,
    WritebackSpec,
)
from etl.mapping import registry
from etl.mapping.codes import CodeTable
from etl.mapping.loader import (
    check_transforms,
    load_code_tables,
    read_only_connections,
    read_only_write,
    unknown_message,
)
from etl.yamlio import Loc, SourceMap, load_yaml, sort_issues, validate_model

__all__ = ["FLOW_POINTS", "FlowSet", "connection_name", "load_flows"]

#: SIGKILL points (see etl.faults) between reading the approvals and the write-back.
FLOW_POINTS = (
    "flow.approvals_read",
    "flow.doc_mapped",
    "flow.doc_locked",
    "flow.doc_header_inserted",
    "flow.doc_lines_inserted",
    "flow.doc_link_inserted",
    "flow.doc_committed",
    "flow.writeback_begin",
    "flow.writeback_row",
    "flow.writeback_done",
    "flow.xref_chunk",
    "flow.changes_flagged",
    "flow.differences_recorded",
    "flow.finished",
)


@dataclass
class FlowSet:
    """The project's flows, checked, with the code tables their lookups use.

    `issues` are the problems of every file (empty unless loaded with `keep_going`), `broken` the flows
    (named by their `flow:` or file name) whose file has problems, with its path; `maps` locate each valid flow's keys.
    """

    flows: dict[str, FlowSpec]
    code_tables: dict[str, CodeTable]
    version: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    broken: dict[str, Path] = field(default_factory=dict)
    maps: dict[str, SourceMap] = field(default_factory=dict)

    def select(self, names: Iterable[str] | None) -> list[FlowSpec]:
        """The named flows (all enabled ones by default); ConfigError for unknown names."""
        if names is None:
            return [f for f in self.flows.values() if f.enabled]
        wanted = [n for n in names if n not in self.broken]
        unknown = [n for n in wanted if n not in self.flows]
        if unknown:
            raise ConfigError(f"unknown flow(s) {', '.join(unknown)}; known: {', '.join(self.flows) or '(none)'}")
        return [self.flows[n] for n in wanted]

    def broken_selected(self, names: Iterable[str] | None) -> list[str]:
        """The broken flows among `names` (all broken ones by default)."""
        return list(self.broken) if names is None else [n for n in names if n in self.broken]


def flows_folder(config: ProjectConfig) -> Path:
    """`<mappings>/flows` of the project."""
    return config.resolve(config.mappings) / "flows"


def connection_name(config: ProjectConfig, name: str, fallback: str | None) -> str:
    """`name` when the project defines it, else the explicitly allowed `fallback`; ConfigError otherwise."""
    if name in config.connections:
        return name
    if fallback is not None and fallback in config.connections:
        return fallback
    known = ", ".join(sorted(config.connections))
    raise ConfigError(f"connection '{name}' is not defined (known: {known}); define it in erpoa.yaml")


def load_flows(config: ProjectConfig, *, keep_going: bool = False) -> FlowSet:
    """Load and check every flow file of the project, each on its own; an absent folder means no flows.

    Every problem of every file is found in one call. Without `keep_going` any problem raises ConfigError
    (`erpoa flows check|run|audit`); with it the valid flows are returned and the problems listed in
    `FlowSet.issues`, each broken file's flow in `FlowSet.broken`.
    """
    mappings = config.resolve(config.mappings)
    folder = mappings / "flows"
    tables, issues, _ = load_code_tables(mappings / "codes", mappings)
    flowset = FlowSet(flows={}, code_tables=tables)
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
        found = _load_one(path, _display(path, mappings), flowset, tables, config)
        issues.extend(found)
    flowset.version = digest.hexdigest()[:12]
    flowset.issues = sort_issues(issues)
    if flowset.issues and not keep_going:
        raise ConfigError(flowset.issues)
    return flowset


def _load_one(path: Path, display: str, flowset: FlowSet, tables: dict[str, CodeTable],
              config: ProjectConfig) -> list[ConfigIssue]:
    """Load and check one flow file into `flowset`; returns its issues (the flow goes to `broken` if any)."""
    try:
        data, smap = load_yaml(path, display=display)
    except ConfigError as exc:
        flowset.broken[path.stem] = path
        return list(exc.issues)
    if isinstance(data, dict):
        data.setdefault("flow", path.stem)
    try:
        spec: FlowSpec = validate_model(FlowSpec, data, smap)
    except ConfigError as exc:
        issues = list(exc.issues)
        if isinstance(data, dict):
            # Check what is valid now, rather than in a next round once the schema's issues are fixed.
            partial, invalid = _salvage(data, path.stem)
            issues.extend(check_flow(partial, smap, tables, config, invalid=invalid))
            flowset.broken.setdefault(partial.flow, path)
        else:
            flowset.broken.setdefault(path.stem, path)
        return issues
    if spec.flow in flowset.flows:
        return [smap.issue(("flow",), f"flow '{spec.flow}' is also defined in {flowset.files[spec.flow]}")]
    issues = check_flow(spec, smap, tables, config)
    if issues:
        flowset.broken.setdefault(spec.flow, path)
        return issues
    flowset.flows[spec.flow] = spec
    flowset.files[spec.flow] = path
    flowset.maps[spec.flow] = smap
    return []


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    return unknown_message(what, value, known)


# --------------------------------------------------------------------------- salvaging an invalid file


class _Salvage:
    """Validates the parts of an invalid flow file one by one, remembering where those that fail are."""

    def __init__(self) -> None:
        self.invalid: set[Loc] = set()

    def part(self, kind: Any, raw: Any, loc: Loc, placeholder: Any) -> Any:
        """`raw` validated as `kind`, else `placeholder` (and `loc` is invalid)."""
        try:
            return TypeAdapter(kind).validate_python(raw)
        except ValidationError:
            self.invalid.add(loc)
            return placeholder

    def section(self, data: Any, loc: Loc) -> dict[Any, Any]:
        """The mapping under `loc` (an empty one, marked invalid, when it is something else)."""
        if isinstance(data, dict):
            return data
        self.invalid.add(loc)
        return {}

    def text(self, raw: dict[Any, Any], key: str, loc: Loc, default: str | None) -> str | None:
        value = raw.get(key, default)
        if value is None or isinstance(value, str):
            return value
        self.invalid.add((*loc, key))
        return default

    def fields(self, raw: Any, loc: Loc) -> dict[str, FieldSpec]:
        """Each field alone; an invalid one keeps its name (so it still counts as mapped) with no columns."""
        mapped = self.section(raw if raw is not None else {}, loc)
        return {str(name): self.part(FieldSpec, {"from": value} if isinstance(value, str) else value,
                                     (*loc, str(name)), FieldSpec.model_construct(from_=None, transforms=[]))
                for name, value in mapped.items()}


def _salvage(data: dict[Any, Any], stem: str) -> tuple[FlowSpec, frozenset[Loc]]:
    """The parts of an invalid flow file that are valid on their own, and the locations of those that are not.

    As `etl.mapping.loader._salvage` does for entity mappings: `check_flow` skips the checks that read an
    invalid part (its own issues are already reported) and runs the others.
    """
    s = _Salvage()
    src = s.section(data.get("source"), ("source",))
    tgt = s.section(data.get("target"), ("target",))
    fields = s.section(data.get("fields"), ("fields",))
    name = data.get("flow")
    source = SourceSpec.model_construct(
        connection=s.text(src, "connection", ("source",), "oa"),
        header=s.part(HeaderSource, src.get("header"), ("source", "header"), None),
        lines=s.part(LinesSource | None, src.get("lines"), ("source", "lines"), None))
    target = TargetSpec.model_construct(
        connection=s.text(tgt, "connection", ("target",), "erp_write"),
        fallback_connection=s.text(tgt, "fallback_connection", ("target",), None),
        header=s.part(TargetHeader, tgt.get("header"), ("target", "header"), None),
        lines=s.part(TargetLines | None, tgt.get("lines"), ("target", "lines"), None),
        link=s.part(LinkSpec, tgt.get("link"), ("target", "link"), None))
    spec = FlowSpec.model_construct(
        flow=name if isinstance(name, str) else stem,
        kind=data.get("kind"),
        source=source,
        approval=s.part(Approval, data.get("approval"), ("approval",), None),
        target=target,
        docno=s.part(DocNoRule | None, data.get("docno"), ("docno",), None),
        fields=FieldsSpec.model_construct(header=s.fields(fields.get("header"), ("fields", "header")),
                                          lines=s.fields(fields.get("lines"), ("fields", "lines"))),
        writeback=s.part(WritebackSpec | None, data.get("writeback"), ("writeback",), None),
        changes=s.part(ChangesSpec, data.get("changes", {}), ("changes",), ChangesSpec()),
        audit=s.part(AuditSpec, data.get("audit", {}), ("audit",), AuditSpec()),
        period=s.part(list[str] | None, data.get("period"), ("period",), None),
    )
    return spec, frozenset(s.invalid)


# --------------------------------------------------------------------------- checks across the file

def check_flow(
    spec: FlowSpec, smap: SourceMap, tables: dict[str, CodeTable], config: ProjectConfig, *,
    invalid: frozenset[Loc] = frozenset(),
) -> list[ConfigIssue]:
    """Checks across the flow, the project's connections and the code tables.

    `invalid` are the locations of parts that failed validation (see `_salvage`): checks that read them are skipped.
    """

    def ok(*loc: str | int) -> bool:
        return not any(loc[:n] in invalid for n in range(1, len(loc) + 1))

    issues: list[ConfigIssue] = []
    names = config.connections
    if ok("source", "connection") and spec.source.connection not in names:
        issues.append(smap.issue(("source", "connection"), _unknown("connection", spec.source.connection, names)))
    issues.extend(_check_writes(spec, smap, names, ok))
    issues.extend(_check_fields(spec, smap, tables, names, ok))
    users = getattr(spec.approval, "users", None)
    if ok("approval") and users is not None:
        issues.extend(_check_transforms(users.code_transforms, smap, ("approval", "users", "code_transforms"), tables))
    if ok("writeback") and ok("changes"):
        issues.extend(_check_writeback_hashed(spec, smap))
    issues.extend(_check_compared(spec, smap, ok))
    if ok("source", "header") and spec.source.header is not None:
        issues.extend(_check_query_columns(spec, smap, ok))
    return issues


def _check_writes(spec: FlowSpec, smap: SourceMap, names: Iterable[str], ok: Any) -> list[ConfigIssue]:
    """The write connections (target, write-back) are defined, or an explicit fallback is."""
    issues: list[ConfigIssue] = []
    writes: list[tuple[str, str, str | None]] = []
    if ok("target", "connection") and ok("target", "fallback_connection"):
        writes.append(("target", spec.target.connection, spec.target.fallback_connection))
    if ok("writeback") and spec.writeback and spec.writeback.enabled:
        writes.append(("writeback", spec.writeback.connection, spec.writeback.fallback_connection))
    for part, conn, fallback in writes:
        if conn not in names and (fallback is None or fallback not in names):
            source = "oa" if part == "writeback" else "erp"
            message = (
                f"connection '{conn}' is not defined in erpoa.yaml; define it (a read-write login), or allow "
                f"writing through another connection with `fallback_connection: {source}`"
            )
            if fallback is not None:
                message = f"neither '{conn}' nor the fallback '{fallback}' is a defined connection"
            issues.append(smap.issue((part, "connection"), message))
            continue
        used, key = (conn, "connection") if conn in names else (fallback, "fallback_connection")
        if used in read_only_connections(names):
            what = "this flow writes its ERP documents" if part == "target" else "this flow writes back to OA"
            issues.append(smap.issue((part, key), read_only_write(str(used), what)))
    return issues


def _system_columns(spec: FlowSpec, part: str, ok: Any) -> list[str]:
    """The columns of `part` (header or lines) the flow fills itself, as far as the valid parts tell."""
    if part == "header":
        header = spec.target.header if ok("target", "header") else None
        system = header.system_columns if header is not None else []
        if header is not None and ok("docno") and spec.docno is not None:
            system = [*system, header.number]
        return system
    lines = spec.target.lines if ok("target", "lines") else None
    return lines.system_columns if lines is not None else []


def _check_fields(spec: FlowSpec, smap: SourceMap, tables: dict[str, CodeTable], names: Iterable[str],
                  ok: Any) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for part, mapped in (("header", spec.fields.header), ("lines", spec.fields.lines)):
        if not ok("fields", part):
            continue
        system = _system_columns(spec, part, ok)
        for column, fspec in mapped.items():
            loc = ("fields", part, column)
            if column in system:
                issues.append(smap.issue(loc, f"'{column}' is filled by the flow itself; remove it", key=True))
            if ok(*loc):
                issues.extend(_check_field(fspec, smap, loc, tables, names))
    return issues


def _check_writeback_hashed(spec: FlowSpec, smap: SourceMap) -> list[ConfigIssue]:
    wb = spec.writeback
    if wb is None:
        return []
    issues: list[ConfigIssue] = []
    read = {c for f in [*spec.fields.header.values(), *spec.fields.lines.values()] for c in f.columns}
    read |= {c for part in spec.hash_columns for c in part}
    for key, written in (("field", wb.field), ("status_field", wb.status_field)):
        if written is not None and written in read:
            issues.append(smap.issue(("writeback", key), f"'{written}' is mapped or hashed; the write-back must "
                                     "not feed the content hash (every write-back would look like an amendment)"))
    return issues


def _check_compared(spec: FlowSpec, smap: SourceMap, ok: Any) -> list[ConfigIssue]:
    """`period` and `audit.compare_*` name mapped columns."""
    compared: list[tuple[tuple[str, ...], list[str], dict[str, FieldSpec]]] = []
    if ok("period") and ok("fields", "header"):
        compared.append((("period",), spec.period or [], spec.fields.header))
    if ok("audit"):
        if ok("fields", "header"):
            compared.append((("audit", "compare_header"), spec.audit.compare_header, spec.fields.header))
        if ok("fields", "lines"):
            compared.append((("audit", "compare_lines"), spec.audit.compare_lines, spec.fields.lines))
    issues: list[ConfigIssue] = []
    for where, columns, known in compared:
        for i, name in enumerate(columns):
            if name not in known:
                issues.append(smap.issue((*where, i), _unknown("mapped column", name, known)))
    return issues


def _check_field(fspec: FieldSpec, smap: SourceMap, loc: tuple[Any, ...], tables: dict[str, CodeTable],
                 connections: Iterable[str]) -> list[ConfigIssue]:
    issues = _check_transforms(fspec.transforms, smap, (*loc, "transforms"), tables)
    names = [registry.split_spec(t)[0] for t in fspec.transforms if isinstance(t, str | dict) and len(t) >= 1]
    if not fspec.columns and "constant" not in names:
        issues.append(smap.issue(loc, "no `from:` column; give one, or use the `constant` transform"))
    if len(fspec.columns) > 1 and not (names and names[0] in registry.known_transforms()
                                       and registry.get(names[0]).multi_column):
        issues.append(smap.issue((*loc, "from"), "several columns need a first transform that combines them"))
    exists = fspec.exists
    if exists is not None and exists.connection is not None and exists.connection not in connections:
        issues.append(smap.issue((*loc, "exists", "connection"), _unknown("connection", exists.connection,
                                                                         connections)))
    return issues


def _check_transforms(specs: list[Any], smap: SourceMap, loc: tuple[Any, ...],
                      tables: dict[str, CodeTable]) -> list[ConfigIssue]:
    return check_transforms(specs, smap, loc, tables)


# --------------------------------------------------------------------------- the header query's columns

_QUOTED = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[^\W\d]\w*)'
_COLUMN = re.compile(rf"^(?:{_QUOTED}\.){{0,2}}({_QUOTED})$")
_ALIASED = re.compile(rf"^(.*\S)\s+(as\s+)?({_QUOTED})$", re.IGNORECASE | re.DOTALL)
_NOT_ALIASES = {"end", "and", "or", "not", "null", "else", "then", "is", "in", "like", "between", "distinct"}


def _top_level(query: str) -> str:
    """`query` with everything inside parentheses and quotes masked as `#` (same length, same positions)."""
    out, depth, quote = [], 0, ""
    for ch in query:
        if quote:
            out.append("#")
            quote = "" if ch == quote else quote
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
            out.append("#")
        elif ch == "(":
            depth += 1
            out.append("#")
        elif ch == ")":
            depth = max(0, depth - 1)
            out.append("#")
        else:
            out.append("#" if depth else ch)
    return "".join(out)


def _unquote(name: str) -> str:
    return name[1:-1] if name[:1] in "\"`[" else name


def query_columns(query: str) -> list[str] | None:
    """The column names a plain `SELECT a, t.b, expr AS c FROM ...` returns; None when that cannot be known
    without the database (`*`, an unnamed expression, WITH, UNION ...)."""
    masked = _top_level(query)
    head = re.match(r"\s*select\s+(?:distinct\s+|all\s+)?", masked, re.IGNORECASE)
    end = re.search(r"\bfrom\b", masked, re.IGNORECASE)
    if head is None or end is None or re.search(r"\b(?:union|intersect|except|top)\b", masked, re.IGNORECASE):
        return None
    names, start = [], head.end()
    for comma in [m.start() for m in re.finditer(",", masked[:end.start()])] + [end.start()]:
        names.append(_output_name(query[start:comma].strip(), masked[start:comma]))
        start = comma + 1
    return None if None in names else [n for n in names if n is not None]


def _output_name(item: str, masked: str) -> str | None:
    """The name of one select-list item: its alias, or the column's own name; None when unknown."""
    column = _COLUMN.match(item)
    if column is not None:
        return _unquote(column.group(1))
    aliased = _ALIASED.match(item)
    if aliased is None or "*" in masked:
        return None
    expr, explicit, alias = aliased.groups()
    if not explicit and (alias.lower() in _NOT_ALIASES or not re.search(r"[\w)\"`\]]$", expr)):
        return None
    return _unquote(alias)


def _check_query_columns(spec: FlowSpec, smap: SourceMap, ok: Any) -> list[ConfigIssue]:
    """Form columns the flow reads that the header `query:` does not select (statically known only for a query).

    A missing hashed column would hash as empty and hide every amendment of it; a missing key or mapped column
    fails the run.
    """
    header = spec.source.header
    selected = query_columns(header.query) if header.query else None
    if selected is None:
        return []
    known = {c.lower() for c in selected}
    wanted: list[tuple[Loc, str]] = [(("source", "header", key), str(getattr(header, key)))
                                     for key in ("id", "request_id", "number") if getattr(header, key)]
    if ok("fields", "header"):
        wanted += [(("fields", "header", name, "from", *((i,) if isinstance(f.from_, list) else ())), col)
                   for name, f in spec.fields.header.items() if ok("fields", "header", name)
                   for i, col in enumerate(f.columns)]
    if ok("changes") and spec.changes.hash_header is not None:
        wanted += [(("changes", "hash_header", i), col) for i, col in enumerate(spec.changes.hash_header)]
    return [smap.issue(loc, _unknown("column", col, selected) + " (the columns source.header.query selects)")
            for loc, col in wanted if col.lower() not in known]
