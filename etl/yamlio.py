"""YAML loading that remembers where every key and value came from.

Validation errors from pydantic carry a location tuple such as
``("fields", "department", "transforms", 2)``; `SourceMap.locate` turns it into
the file, line and column a steward needs to fix it.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from etl.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Positions (1-based line, column) of every value and key in one YAML document."""

    file: str
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def locate(self, loc: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of `loc`, or of its deepest ancestor that exists."""
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            table = self.keys if key and end == len(loc) else self.values
            if prefix in table:
                return table[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None, None

    def issue(self, loc: Sequence[str | int], message: str, *, key: bool = False) -> ConfigIssue:
        """A ConfigIssue located at `loc`."""
        line, column = self.locate(loc, key=key)
        return ConfigIssue(self.file, line, column, dotted(loc), message)


def dotted(loc: Iterable[str | int]) -> str:
    """``("fields", "dept", "transforms", 2)`` -> ``fields.dept.transforms[2]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _walk(node: yaml.Node, loc: Loc, smap: SourceMap, issues: list[ConfigIssue]) -> None:
    smap.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*loc, key)
            if key in seen:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                issues.append(ConfigIssue(smap.file, line, col, dotted(child), "duplicate key; keep only one of them"))
            seen.add(key)
            smap.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, smap, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), smap, issues)


def load_yaml(path: Path, *, display: str | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML file into plain data and its SourceMap; syntax errors become ConfigError."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(name, None, None, "", "file not found; check the path")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [ConfigIssue(name, None, None, "", f"not UTF-8 text ({exc.reason}); save it as UTF-8")]
        ) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> tuple[Any, SourceMap]:
    """Parse YAML text (see `load_yaml`)."""
    smap = SourceMap(name)
    issues: list[ConfigIssue] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            [ConfigIssue(name, line, column, "", f"YAML syntax error: {problem}; check indentation and quoting")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, None, None, "", f"YAML error: {exc}")]) from None
    if node is not None:
        _walk(node, (), smap, issues)
    if issues:
        raise ConfigError(issues)
    return data, smap


def sort_issues(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    """Issues in file and line order, duplicates removed."""
    unique = {(i.file, i.line, i.column, i.path, i.message): i for i in issues}
    return sorted(unique.values(), key=lambda i: (i.file, i.line or 0, i.column or 0, i.path))


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes reachable through Optional/Union/list/dict annotations."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    out: list[Any] = []
    args = typing.get_args(annotation)
    if origin is dict:
        args = args[1:]
    for arg in args:
        out.extend(_unwrap(arg))
    return out


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        fld = current.model_fields.get(str(part))
        if fld is None:
            fld = next((f for f in current.model_fields.values() if f.alias == part), None)
        if fld is None:
            if any(_is_dict(f.annotation) for f in current.model_fields.values()):
                continue
            return None
        candidates = [c for c in _unwrap(fld.annotation) if isinstance(c, type) and issubclass(c, BaseModel)]
        current = candidates[0] if candidates else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _is_dict(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys a model accepts (aliases where set)."""
    return [f.alias or name for name, f in model.model_fields.items()]


_TYPE_HINTS = {
    "string_type": "expected text; quote the value",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping of `key: value` lines",
    "list_type": "expected a list (`- item` lines or `[a, b]`)",
    "missing": "required key is missing; add it",
}


def issues_from_validation(
    exc: ValidationError, smap: SourceMap, model: type[BaseModel], base: Loc = ()
) -> list[ConfigIssue]:
    """Turn a pydantic ValidationError into located, actionable ConfigIssues."""
    issues: list[ConfigIssue] = []
    for err in exc.errors(include_url=False):
        loc = (*base, *_clean_loc(err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, tuple(_clean_loc(err["loc"]))[:-1])
            allowed = allowed_keys(parent) if parent else []
            bad = str(loc[-1])
            close = difflib.get_close_matches(bad, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            message = (
                f"unknown key '{bad}'; {hint}allowed keys: {', '.join(allowed)}" if allowed else f"unknown key '{bad}'"
            )
            issues.append(smap.issue(loc, message, key=True))
            continue
        if kind == "missing":
            issues.append(smap.issue(loc, f"required key '{loc[-1]}' is missing; add it"))
            continue
        message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind in _TYPE_HINTS and kind != "missing":
            message = f"{_TYPE_HINTS[kind]}, got {err.get('input')!r}"
        elif kind.startswith("literal_error"):
            message = f"got {err.get('input')!r}; {message}"
        issues.append(smap.issue(loc, message))
    return issues


def _clean_loc(loc: Iterable[Any]) -> list[str | int]:
    """Drop pydantic's union/function tags from a location tuple."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith(("function-", "union", "tagged-union"))):
            continue
        out.append(part)
    return out


def validate_model(model: type[BaseModel], data: Any, smap: SourceMap, *, context: dict[str, Any] | None = None) -> Any:
    """Validate `data` into `model`, raising ConfigError with every issue located."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(sort_issues(issues_from_validation(exc, smap, model))) from None
