"""Approval-driven flows: approved OA requests become ERP documents, exactly once.

`load_flows` reads `mappings/flows/*.yaml` (the entity loader only reads
`mappings/*.yaml`), checks them together with the project's connections and code
tables, and reports every problem as `file:line:col key.path: message`.
`etl.flows.run.run_flows` runs them; docs/approvals.md describes the language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.config.project import ProjectConfig
from etl.errors import ConfigError, ConfigIssue
from etl.flows.model import FieldSpec, FlowSpec
from etl.mapping import registry
from etl.mapping.codes import CodeTable
from etl.mapping.loader import check_transforms, load_code_tables, unknown_message
from etl.yamlio import SourceMap, load_yaml, sort_issues, validate_model

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
    """The project's flows, checked, with the code tables their lookups use."""

    flows: dict[str, FlowSpec]
    code_tables: dict[str, CodeTable]
    version: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    def select(self, names: Iterable[str] | None) -> list[FlowSpec]:
        """The named flows (all enabled ones by default); ConfigError for unknown names."""
        if names is None:
            return [f for f in self.flows.values() if f.enabled]
        wanted = list(names)
        unknown = [n for n in wanted if n not in self.flows]
        if unknown:
            raise ConfigError(f"unknown flow(s) {', '.join(unknown)}; known: {', '.join(self.flows) or '(none)'}")
        return [self.flows[n] for n in wanted]


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


def load_flows(config: ProjectConfig) -> FlowSet:
    """Load and check every flow file of the project; an absent folder means no flows."""
    mappings = config.resolve(config.mappings)
    folder = mappings / "flows"
    tables, issues, _ = load_code_tables(mappings / "codes", mappings)
    flows: dict[str, FlowSpec] = {}
    files: dict[str, Path] = {}
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    digest = hashlib.sha256()
    for path in paths:
        display = _display(path, mappings)
        digest.update(path.read_bytes())
        try:
            data, smap = load_yaml(path, display=display)
            if isinstance(data, dict):
                data.setdefault("flow", path.stem)
            spec: FlowSpec = validate_model(FlowSpec, data, smap)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if spec.flow in flows:
            issues.append(smap.issue(("flow",), f"flow '{spec.flow}' is also defined in {files[spec.flow]}"))
            continue
        flows[spec.flow] = spec
        files[spec.flow] = path
        issues.extend(check_flow(spec, smap, tables, config))
    if issues:
        raise ConfigError(sort_issues(issues))
    return FlowSet(flows=flows, code_tables=tables, version=digest.hexdigest()[:12], files=files)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    return unknown_message(what, value, known)


def check_flow(
    spec: FlowSpec, smap: SourceMap, tables: dict[str, CodeTable], config: ProjectConfig
) -> list[ConfigIssue]:
    """Checks across the flow, the project's connections and the code tables."""
    issues: list[ConfigIssue] = []
    names = config.connections
    if spec.source.connection not in names:
        issues.append(smap.issue(("source", "connection"), _unknown("connection", spec.source.connection, names)))
    writes: list[tuple[str, str, str | None]] = [("target", spec.target.connection, spec.target.fallback_connection)]
    if spec.writeback and spec.writeback.enabled:
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
    for part, mapped in (("header", spec.fields.header), ("lines", spec.fields.lines)):
        system = (spec.target.header.system_columns if part == "header"
                  else spec.target.lines.system_columns if spec.target.lines else [])
        if part == "header" and spec.docno is not None:
            system = [*system, spec.target.header.number]
        for column, fspec in mapped.items():
            loc = ("fields", part, column)
            if column in system:
                issues.append(smap.issue(loc, f"'{column}' is filled by the flow itself; remove it", key=True))
            issues.extend(_check_field(fspec, smap, loc, tables))
    users = getattr(spec.approval, "users", None)
    if users is not None:
        issues.extend(_check_transforms(users.code_transforms, smap, ("approval", "users", "code_transforms"), tables))
    wb = spec.writeback
    if wb is not None:
        read = {c for f in [*spec.fields.header.values(), *spec.fields.lines.values()] for c in f.columns}
        read |= {c for part in spec.hash_columns for c in part}
        for key, written in (("field", wb.field), ("status_field", wb.status_field)):
            if written is not None and written in read:
                issues.append(smap.issue(("writeback", key), f"'{written}' is mapped or hashed; the write-back must "
                                         "not feed the content hash (every write-back would look like an amendment)"))
    compared: list[tuple[tuple[str, ...], list[str], dict[str, FieldSpec]]] = [
        (("period",), spec.period or [], spec.fields.header),
        (("audit", "compare_header"), spec.audit.compare_header, spec.fields.header),
        (("audit", "compare_lines"), spec.audit.compare_lines, spec.fields.lines),
    ]
    for where, columns, known in compared:
        for i, name in enumerate(columns):
            if name not in known:
                issues.append(smap.issue((*where, i), _unknown("mapped column", name, known)))
    return issues


def _check_field(
    fspec: FieldSpec, smap: SourceMap, loc: tuple[Any, ...], tables: dict[str, CodeTable]
) -> list[ConfigIssue]:
    issues = _check_transforms(fspec.transforms, smap, (*loc, "transforms"), tables)
    names = [registry.split_spec(t)[0] for t in fspec.transforms if isinstance(t, str | dict) and len(t) >= 1]
    if not fspec.columns and "constant" not in names:
        issues.append(smap.issue(loc, "no `from:` column; give one, or use the `constant` transform"))
    if len(fspec.columns) > 1 and not (names and names[0] in registry.known_transforms()
                                       and registry.get(names[0]).multi_column):
        issues.append(smap.issue((*loc, "from"), "several columns need a first transform that combines them"))
    return issues


def _check_transforms(specs: list[Any], smap: SourceMap, loc: tuple[Any, ...],
                      tables: dict[str, CodeTable]) -> list[ConfigIssue]:
    return check_transforms(specs, smap, loc, tables)
