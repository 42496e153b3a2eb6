"""YAML loading that remembers where every key and value came from.

Validation errors from pydantic carry a location tuple such as
``("fields", "department", "transforms", 2)``; `SourceMap.locate` turns it into
the file, line and column a steward needs to fix it.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterable, Sequence
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
    blocks: set[Loc] = field(default_factory=set)
    misread: dict[Loc, tuple[str, bool]] = field(default_factory=dict)  # loc -> (text, is a key)
    # Unquoted scalars YAML resolved to a boolean or a number: (loc, is a key) -> text as written (see `misread_text`).
    resolved: dict[tuple[Loc, bool], str] = field(default_factory=dict)
    # A key written twice: the last value wins in the data; `validate_model` reports it with the file's other issues.
    duplicates: list[ConfigIssue] = field(default_factory=list)

    def locate(self, loc: Sequence[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of `loc`, or of its deepest ancestor that exists.

        A block mapping or list is located at its key (``erp:``), not at its first
        child line, where a reader would look for a problem with the child.
        """
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            table = self.keys if (key and end == len(loc)) or prefix in self.blocks else self.values
            if prefix in table:
                return table[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None, None

    def misread_numbers(self) -> list[ConfigIssue]:
        """Issues for unquoted scalars that YAML 1.1 turned into numbers nobody meant (see `_misread_number`)."""
        issues = []
        for loc, (text, is_key) in self.misread.items():
            value = yaml.safe_load(f"x: {text}")["x"]
            message = f"YAML reads {text} as the number {value}; quote it (\"{text}\") to keep it as written"
            issues.append(self.issue(loc, message, key=is_key))
        return issues

    def misread_text(
        self, loc: Loc, *, key: bool = False, convert: Callable[[Any], Any] = str, numbers: bool = True
    ) -> ConfigIssue | None:
        """An issue when the unquoted scalar at `loc`, in a place that wants text, is not read as written.

        YAML 1.1 reads ``OFF``, ``no`` or ``y`` as booleans and ``1.10`` or ``1_000`` as numbers; the place
        then gets the text `convert` makes of that value ('False', '1.1'), not what the steward wrote.
        ``true``/``false`` themselves are taken as meant. `numbers=False` leaves numbers alone (a place that
        takes numbers too). Octal and base-60 numbers are left to `misread_numbers`, which reports them anywhere.
        """
        text = self.resolved.get((loc, key))
        if text is None or (loc in self.misread and self.misread[loc][1] == key):
            return None
        value = yaml.safe_load(text)
        if isinstance(value, bool):
            if text.lower() in ("true", "false"):
                return None
            message = f"YAML reads {text} as the boolean {str(value).lower()}; quote it (\"{text}\")"
        elif not numbers or convert(value) == text:
            return None
        else:
            message = f"YAML reads {text} as the number {value}; quote it (\"{text}\") to keep it as written"
        return self.issue(loc, message, key=key)

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


def _misread_number(node: yaml.Node) -> bool:
    """A plain scalar that YAML 1.1 reads as a number its writer did not mean: a code with a leading zero
    (``0101`` is octal 65, ``000123`` is 83) or a time (``12:30`` is 750, base 60)."""
    return (
        isinstance(node, yaml.ScalarNode)
        and not node.style
        and node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
        and ((node.value.lstrip("+-")[:1] == "0" and node.value.lstrip("+-")[1:2].isdigit()) or ":" in node.value)
    )


_RESOLVED_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _resolved(node: yaml.Node) -> bool:
    """A plain scalar that YAML reads as a boolean or a number, not as text."""
    return isinstance(node, yaml.ScalarNode) and not node.style and node.tag in _RESOLVED_TAGS


def _walk(node: yaml.Node, loc: Loc, smap: SourceMap, issues: list[ConfigIssue]) -> None:
    smap.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if _misread_number(node):
        smap.misread[loc] = (node.value, False)
    if _resolved(node):
        smap.resolved[(loc, False)] = node.value
    if isinstance(node, yaml.CollectionNode) and node.flow_style is not True:
        smap.blocks.add(loc)
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
            if _misread_number(key_node):
                smap.misread[child] = (key_node.value, True)
            if _resolved(key_node):
                smap.resolved[(child, True)] = key_node.value
            _walk(value_node, child, smap, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), smap, issues)


def load_yaml(path: Path, *, display: str | None = None) -> tuple[Any, SourceMap]:
    """Parse one YAML file into plain data and its SourceMap; syntax errors become ConfigError.

    A duplicate key is not raised here, so that it does not hide the file's other issues: it is kept in
    `SourceMap.duplicates`, and `validate_model` reports it together with them.
    """
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


def _construct_timestamp(loader: Any, node: yaml.ScalarNode) -> Any:
    """A YAML date, or a located error for an impossible one (``2026-13-01``) instead of a ValueError."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"'{node.value}' looks like a date but is not one ({exc}); fix it, or quote it to keep it as text",
            node.start_mark,
        ) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader whose impossible dates (``2026-13-01``) are located errors, not ValueErrors."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


class _FastLoader(getattr(yaml, "CSafeLoader", _Loader)):  # type: ignore[misc]
    """`_Loader` on libyaml's parser, when PyYAML has it: a code table of 50,000 entries loads in half the time.
    The nodes, their tags and marks are the same; a file it refuses is parsed again by `_Loader`, whose
    messages the error catalogue quotes."""


_FastLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


MAX_EXPANDED_VALUES = 100_000
"""How many values anchors and aliases may add to what a file writes out (a plain file of any size is fine)."""


def _expanded_size(node: yaml.Node, name: str, memo: dict[int, int], active: set[int], added: list[int]) -> int:
    """How many values `node` stands for once aliases are expanded; ConfigError if recursive or a bomb.

    Anchors and aliases are allowed, but a recursive alias or an "alias bomb" (a few lines that expand to
    millions of values) would hang or crash every later step. Only what aliases add counts (`added[0]`, the
    size of every repeated use of a node), so that a long code table written out is not taken for a bomb.
    """
    key = id(node)
    if key in memo:
        added[0] += memo[key]
        if added[0] > MAX_EXPANDED_VALUES:
            where = (node.start_mark.line + 1, node.start_mark.column + 1)
            raise ConfigError([ConfigIssue(name, *where, "", f"aliases of this anchor make the file expand by more "
                                           f"than {MAX_EXPANDED_VALUES} values; write the values out")])
        return memo[key]
    if key in active:
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
        raise ConfigError([ConfigIssue(name, *where, "", "an alias refers to a collection that contains it; "
                                       "a configuration cannot be recursive")])
    active.add(key)
    if isinstance(node, yaml.MappingNode):
        children: list[yaml.Node] = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    size = 1 + sum(_expanded_size(child, name, memo, active, added) for child in children)
    active.discard(key)
    memo[key] = size
    return size


def parse_yaml(text: str, name: str) -> tuple[Any, SourceMap]:
    """Parse YAML text (see `load_yaml`)."""
    if _FastLoader is not _Loader:
        try:
            return _parse_yaml(text, name, _FastLoader)
        except (ConfigError, yaml.YAMLError, RecursionError):
            pass  # parsed again below, for the messages (and marks) of the pure-Python parser
    return _parse_yaml(text, name, _Loader)


def _parse_yaml(text: str, name: str, loader_class: type[yaml.SafeLoader]) -> tuple[Any, SourceMap]:
    smap = SourceMap(name)
    try:
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _expanded_size(node, name, {}, set(), [0])
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except RecursionError:
        raise ConfigError([ConfigIssue(name, None, None, "", "nested too deeply to be a configuration")]) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError([ConfigIssue(name, line, column, "", f"invalid value: {exc.problem}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        start = exc.context_mark if exc.problem and exc.context else None
        if start is not None and mark is not None and start.line != mark.line:
            # The parser notices a missing `}` or `]` only on a later line: say where the construct began.
            problem += f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        if "'\\t'" in problem:
            problem += " (a tab; YAML is indented with spaces only)"
        raise ConfigError(
            [ConfigIssue(name, line, column, "", f"YAML syntax error: {problem}; check indentation and quoting")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, None, None, "", f"YAML error: {exc}")]) from None
    if node is not None:
        _walk(node, (), smap, smap.duplicates)
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
    """The model class that validates the mapping at `loc` (None when it is not a model)."""
    current: Any = model
    key_of_dict = False
    for part in loc:
        if key_of_dict:  # a free key such as a field or source name, not a model field
            key_of_dict = False
            continue
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        fld = current.model_fields.get(str(part))
        if fld is None:
            fld = next((f for f in current.model_fields.values() if f.alias == part), None)
        if fld is None:
            return None
        key_of_dict = _is_dict(fld.annotation)
        candidates = [c for c in _unwrap(fld.annotation) if isinstance(c, type) and issubclass(c, BaseModel)]
        current = candidates[0] if candidates else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _is_dict(annotation: Any) -> bool:
    """True for ``dict[...]``, also inside ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    return origin is not None and origin is not list and any(_is_dict(a) for a in typing.get_args(annotation))


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The YAML keys a model accepts (aliases where set)."""
    return [f.alias or name for name, f in model.model_fields.items()]


_TYPE_HINTS = {
    "string_type": "expected text; quote the value",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "date_type": "expected a date written YYYY-MM-DD",
    "date_parsing": "expected a date written YYYY-MM-DD",
    "date_from_datetime_parsing": "expected a date written YYYY-MM-DD",
    "dict_type": "expected a mapping of `key: value` lines",
    "model_type": "expected a mapping of `key: value` lines",
    "list_type": "expected a list (`- item` lines or `[a, b]`)",
    "tuple_type": "expected a list (`- item` lines or `[a, b]`)",
    "missing": "required key is missing; add it",
}

# What each alternative of a union accepts, for "got X; expected A or B" messages.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "date_type": "a date",
    "datetime_type": "a date and time",
    "dict_type": "a mapping of `key: value` lines",
    "model_type": "a mapping of `key: value` lines",
    "list_type": "a list (`- item` lines or `[a, b]`)",
    "none_required": "nothing (null)",
}

# pydantic names each alternative of a union in the error location: `str`, `list[str]`,
# `literal['a','b']`, `function-before[...]`, or a model's class name.
_SIMPLE_TAGS = frozenset(
    {"str", "int", "float", "bool", "bytes", "date", "datetime", "time", "timedelta", "decimal", "none", "list", "dict"}
)


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        "[" in part
        or part.startswith(("function-", "union", "tagged-union"))
        or part in _SIMPLE_TAGS
        or (part[:1].isupper() and part.isidentifier())
    )


def _split_loc(loc: Iterable[Any], smap: SourceMap, base: Loc) -> tuple[Loc, int | None]:
    """The location without union tags, and where (cleaned length) the first tag was.

    A part that looks like a tag but is a key of the YAML document (a field named
    `date`) is kept.
    """
    out: list[str | int] = []
    union_at: int | None = None
    for part in loc:
        if _is_tag(part) and (*base, *out, part) not in smap.values:
            if union_at is None:
                union_at = len(out)
            continue
        out.append(part)
    return tuple(out), union_at


def _alternatives(errors: list[Any]) -> str:
    wanted: list[str] = []
    for err in errors:
        kind = err["type"]
        text = _EXPECTED.get(kind) or str(err["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
        if text not in wanted:
            wanted.append(text)
    if len(wanted) <= 2:
        return " or ".join(wanted)
    return "one of: " + "; ".join(wanted)


def issues_from_validation(
    exc: ValidationError, smap: SourceMap, model: type[BaseModel], base: Loc = ()
) -> list[ConfigIssue]:
    """Turn a pydantic ValidationError into located, actionable ConfigIssues.

    The alternatives of a union (``list[str] | Literal['most_recent']``) fail
    together: when the value got into one alternative (a mapping that matched a
    model) only that alternative's errors are reported, else one issue says what
    the value could have been. A range or length error says what the field
    allows, every bound of it ("expected a whole number from 1 to 4000, got 0").
    """
    errors = [(err, *_split_loc(err["loc"], smap, base)) for err in exc.errors(include_url=False)]
    unions: dict[Loc, list[tuple[Any, Loc]]] = {}
    for err, loc, union_at in errors:
        if union_at is not None:
            unions.setdefault(loc[:union_at], []).append((err, loc))
    issues: list[ConfigIssue] = []
    merged: set[Loc] = set()
    for err, loc, union_at in errors:
        if union_at is None:
            issues.append(_issue(err, loc, smap, model, base))
            continue
        point = loc[:union_at]
        group = unions[point]
        deep = [e for e, other in group if len(other) > len(point)]
        if (deep and len(loc) > len(point)) or (not deep and len(group) == 1):
            issues.append(_issue(err, loc, smap, model, base))
        elif not deep and point not in merged:
            merged.add(point)
            message = f"got {err.get('input')!r}; expected {_alternatives([e for e, _ in group])}"
            issues.append(smap.issue((*base, *point), message))
    return issues


def _issue(err: Any, clean: Loc, smap: SourceMap, model: type[BaseModel], base: Loc) -> ConfigIssue:
    """One pydantic error as a located issue with an actionable message."""
    loc = (*base, *clean)
    kind = err["type"]
    if tuple(err["loc"][-1:]) == ("[key]",):  # a mapping key itself is invalid (a field name): point at the key
        message = str(err["msg"]).removeprefix("Value error, ")
        return smap.issue(loc, message, key=True)
    if kind == "extra_forbidden":
        parent = _model_at(model, clean[:-1])
        allowed = allowed_keys(parent) if parent else []
        bad = str(loc[-1])
        close = difflib.get_close_matches(bad, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"unknown key '{bad}'"
        if allowed:
            message += f"; {hint}allowed keys: {', '.join(allowed)}"
        return smap.issue(loc, message, key=True)
    if kind == "missing" and isinstance(loc[-1], int):
        size = _tuple_size(model, clean[:-1])
        wanted = f"expected a list of {size} items" if size else "add it"
        return smap.issue(loc, f"item [{loc[-1]}] is missing; {wanted}")
    if kind == "missing":
        return smap.issue(loc, f"required key '{loc[-1]}' is missing; add it")
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _LIMITS:
        message = _limit_message(err, model, clean)
    elif kind in _TYPE_HINTS:
        message = f"{_TYPE_HINTS[kind]}, got {err.get('input')!r}"
    elif kind.startswith("literal_error"):
        if err.get("input") is None and "'null'" in message:  # `on_mismatch: null` written plainly
            message = f'YAML reads null as no value; quote it ("null") for the policy null. {message}'
        else:
            message = f"got {err.get('input')!r}; {message}"
    return smap.issue(loc, message)


_BOUNDS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
_LIMITS = frozenset({*_BOUNDS, "too_short", "too_long", "string_too_short", "string_too_long"})


def _field_at(model: type[BaseModel], clean: Loc) -> Any:
    """The pydantic FieldInfo of the key at `clean` (None when unknown, e.g. an item of a list)."""
    if not clean or isinstance(clean[-1], int):
        return None
    parent = _model_at(model, clean[:-1])
    if parent is None:
        return None
    name = str(clean[-1])
    return parent.model_fields.get(name) or next((f for f in parent.model_fields.values() if f.alias == name), None)


def _tuple_size(model: type[BaseModel], clean: Loc) -> int | None:
    """How many items the fixed-length list (a tuple) at `clean` has, or None."""
    fld = _field_at(model, clean)
    sizes = _unwrap_tuple(fld.annotation if fld else None)
    return sizes[0] if sizes else None


def _unwrap_tuple(annotation: Any) -> list[int]:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        return [] if Ellipsis in args else [len(args)]
    return [n for arg in typing.get_args(annotation) for n in _unwrap_tuple(arg)] if origin is not None else []


def _limit_message(err: Any, model: type[BaseModel], clean: Loc) -> str:
    """"expected a whole number from 1 to 4000, got 0": every bound of the field, not only the one broken."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in ("too_short", "too_long"):
        actual = ctx.get("actual_length")
        size = _tuple_size(model, clean)
        if size is not None:
            return f"expected a list of {size} items, got {actual}"
        if kind == "too_short":
            return f"expected at least {ctx.get('min_length')} item(s), got {actual}"
        return f"expected at most {ctx.get('max_length')} item(s), got {actual}"
    if kind in ("string_too_short", "string_too_long"):
        fld = _field_at(model, clean)
        lows = [m.min_length for m in (fld.metadata if fld else []) if getattr(m, "min_length", None) is not None]
        highs = [m.max_length for m in (fld.metadata if fld else []) if getattr(m, "max_length", None) is not None]
        low, high = (lows or [ctx.get("min_length")])[0], (highs or [ctx.get("max_length")])[0]
        if low is not None and low == high:
            wanted = f"exactly {_characters(low)}"
        elif low is not None and high is not None:
            wanted = f"{low} to {high} characters"
        else:
            wanted = f"at least {_characters(low)}" if low is not None else f"at most {_characters(high)}"
        return f"expected text of {wanted}, got {got!r}"
    fld = _field_at(model, clean)
    bounds = {key: getattr(m, key) for m in (fld.metadata if fld else []) for key in _BOUNDS.values()
              if getattr(m, key, None) is not None}
    bounds = bounds or {key: value for key, value in ctx.items() if key in _BOUNDS.values()}
    whole = fld is not None and int in _unwrap(fld.annotation) and float not in _unwrap(fld.annotation)
    number = "a whole number" if whole else "a number"
    low = ("ge", bounds["ge"]) if "ge" in bounds else ("gt", bounds["gt"]) if "gt" in bounds else None
    high = ("le", bounds["le"]) if "le" in bounds else ("lt", bounds["lt"]) if "lt" in bounds else None
    if low and high and low[0] == "ge" and high[0] == "le":
        wanted = f"{number} from {_num(low[1])} to {_num(high[1])}"
    else:
        words = {"ge": "of at least", "gt": "greater than", "le": "of at most", "lt": "less than"}
        wanted = f"{number} " + " and ".join(f"{words[b[0]]} {_num(b[1])}" for b in (low, high) if b)
    return f"expected {wanted}, got {got!r}"


def _characters(count: Any) -> str:
    return "1 character" if count == 1 else f"{count} characters"


def _num(value: Any) -> str:
    """100.0 -> "100": a bound as a steward would write it."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def validate_model(model: type[BaseModel], data: Any, smap: SourceMap, *, context: dict[str, Any] | None = None) -> Any:
    """Validate `data` into `model`, raising ConfigError with every issue located (duplicate keys included)."""
    try:
        result = model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(sort_issues([*smap.duplicates, *issues_from_validation(exc, smap, model)])) from None
    if smap.duplicates:
        raise ConfigError(sort_issues(smap.duplicates))
    return result
