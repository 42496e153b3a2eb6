"""Expectation suite files: load and check them, generate starters, inject run-time sets.

Suites live in ``expectations/<entity>.json`` as plain GX 1.x ExpectationSuite JSON
(what ``ExpectationSuite.to_json_dict()`` writes)::

    {"name": "employee",
     "expectations": [{"type": "expect_column_values_to_not_be_null",
                       "kwargs": {"column": "employee_code"}, "meta": {}}],
     "meta": {}}

:func:`load_suite` checks a file completely before any data is read and reports every
problem at once. It has to: ``ExpectationSuite(**json)`` only *logs* an invalid
expectation and silently drops it from the suite.

Project-specific ``meta`` keys on an expectation: ``"level": "batch"`` (a failure fails
the batch instead of quarantining rows) and, on ``expect_table_row_count_to_be_between``,
``"relative_to_previous": [low, high]`` (see :mod:`etl.validate.gate`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from great_expectations.core import ExpectationSuite
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.registry import (
    get_expectation_impl,
    list_registered_expectation_implementations,
)

from etl.errors import ConfigError, ConfigIssue
from etl.validate.custom import (
    EXIST_IN_ENTITY,
    HAVE_MAX_SCALE,
    IN_CODE_TABLE,
    RUNTIME_VALUE_SET,
    as_value_set,
)

FIELD_TYPES = ("string", "integer", "decimal", "date", "datetime", "boolean")
ROW_COUNT = "expect_table_row_count_to_be_between"
DEFAULT_ROW_COUNT_BAND = (0.5, 2.0)

_SUITE_KEYS = ("name", "expectations", "suite_parameters", "meta", "notes", "id")
_EXPECTATION_KEYS = ("type", "kwargs", "meta", "notes", "id", "description", "severity")
_SINGLE_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list", "column_set")
_OBJECT_FIELDS = ("meta", "notes", "id", "description", "severity")


class FieldSpecLike(Protocol):
    """What :func:`init_suite` reads from a canonical field declaration."""

    type: str
    scale: int | None
    nullable: bool


# --- loading and checking --------------------------------------------------------------


def load_suite(
    path: str | Path,
    known_columns: Collection[str],
    code_tables: Collection[str] | None = None,
    entities: Mapping[str, Collection[str]] | None = None,
) -> ExpectationSuite:
    """Read and fully check a suite file, then build the ExpectationSuite.

    Checked: JSON syntax (a UTF-8 BOM is accepted; a key written twice in an object is an issue), file
    structure, expectation types (with close matches), columns against `known_columns`, the ``code_table`` of
    code-table expectations against `code_tables` (the project's code-table names; not checked when None), the
    ``entity`` and ``entity_column`` of ``expect_column_values_to_exist_in_entity`` against `entities` (entity
    -> its fields; not checked when None), kwargs as GX validates them, regexes, bounds and the project's meta
    keys. Each issue carries the line of the key it is about (or of the nearest enclosing one).

    Raises:
        ConfigError: with every issue found.
    """
    path = Path(path)
    file = str(path)
    text = read_suite_text(path)
    data, duplicates = _parse_json(text, file)
    issues = check_suite_data(data, file, known_columns, code_tables, entities)
    if issues or duplicates:
        raise ConfigError(sorted([*duplicates, *with_lines(issues, text)], key=lambda i: i.line or 0))
    suite = ExpectationSuite(**data)
    if len(suite.expectations) != len(data.get("expectations", [])):
        raise ConfigError([ConfigIssue(file, None, None, "expectations", "GX rejected an expectation")])
    return suite


def read_suite_text(path: Path) -> str:
    """The text of a suite file, without the UTF-8 BOM Windows editors write (ConfigError when unreadable)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), None, None, "", f"cannot read suite file: {exc}")]) from exc


def _parse_json(text: str, file: str) -> tuple[Any, list[ConfigIssue]]:
    """The JSON document `text` and an issue per key written twice in one object, at its second line.

    ``json.loads`` keeps the last of two equal keys silently: a steward's second ``"column"`` would
    quietly replace the first, so it is reported as a duplicate YAML key of a mapping is.
    """
    duplicated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        duplicated = duplicated or len({key for key, _ in items}) != len(items)
        return dict(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigIssue(file, exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}")]) from exc
    return data, (_duplicate_keys(text, file) if duplicated else [])


def _duplicate_keys(text: str, file: str) -> list[ConfigIssue]:
    """The keys written twice in one object of the JSON document `text`, located at the second (no column)."""
    import dataclasses

    from etl.yamlio import parse_yaml

    message = "duplicate key; JSON keeps only the last one: keep only one of them"
    try:
        _, smap = parse_yaml(text.replace("\t", " "), file)  # JSON is YAML; see `with_lines` for the tabs
    except ConfigError:
        return [ConfigIssue(file, None, None, "", message)]
    return [dataclasses.replace(issue, column=None, message=message) for issue in smap.duplicates]


def check_suites(
    folder: str | Path,
    known_columns_by_entity: Mapping[str, Collection[str]],
    code_tables: Collection[str] | None = None,
    suite_files: Mapping[str, str] | None = None,
) -> list[ConfigIssue]:
    """Check every ``<entity>.json`` suite in `folder`; return all issues (empty when valid).

    A file must be named after a known entity, or be one that a mapping names with `quality.suite`
    (`suite_files`: file name -> entity), and its suite ``name`` must match the entity (or, for a
    file a mapping names, the file's own name); code-table expectations must name one of
    `code_tables` (not checked when None), see :func:`load_suite`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [ConfigIssue(str(folder), None, None, "", "suite folder does not exist")]
    issues: list[ConfigIssue] = []
    entities = sorted(known_columns_by_entity)
    named = dict(suite_files or {})
    for path in sorted(folder.glob("*.json")):
        entity = named.get(path.name, path.stem)
        known = known_columns_by_entity.get(entity)
        if known is None:
            issues.append(
                ConfigIssue(str(path), None, None, "", f"no entity named {entity!r} (entities: {', '.join(entities)})")
            )
            continue
        try:
            suite = load_suite(path, known, code_tables, known_columns_by_entity)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if suite.name != entity and not (path.name in named and suite.name == path.stem):
            mismatch = ConfigIssue(
                str(path), None, None, "name", f"suite name {suite.name!r} does not match the file name {entity!r}"
            )
            issues.extend(with_lines([mismatch], read_suite_text(path)))
    return issues


def check_suite_data(
    data: Any,
    file: str,
    known_columns: Collection[str],
    code_tables: Collection[str] | None = None,
    entities: Mapping[str, Collection[str]] | None = None,
) -> list[ConfigIssue]:
    """Every problem of an already parsed suite document (see :func:`load_suite`); no line numbers."""

    def issue(path: str, message: str) -> None:
        issues.append(ConfigIssue(file, None, None, path, message))

    issues: list[ConfigIssue] = []
    if not isinstance(data, dict):
        issue("", "a suite file must contain a JSON object")
        return issues
    for key in data:
        if key not in _SUITE_KEYS:
            issue(key, f"unknown key{_did_you_mean(key, _SUITE_KEYS)} (allowed: {', '.join(_SUITE_KEYS)})")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        issue("name", "the suite needs a non-empty string name")
    for key in ("meta", "suite_parameters"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            issue(key, "must be an object")
    expectations = data.get("expectations")
    if not isinstance(expectations, list):
        issue("expectations", "must be a list of expectations")
        return issues
    known = set(known_columns)
    tables = None if code_tables is None else set(code_tables)
    for i, entry in enumerate(expectations):
        issues.extend(_check_expectation(file, f"expectations[{i}]", entry, known, tables, entities))
    return issues


def _check_expectation(
    file: str,
    where: str,
    entry: Any,
    known: set[str],
    code_tables: set[str] | None,
    entities: Mapping[str, Collection[str]] | None = None,
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []

    def issue(path: str, message: str) -> None:
        issues.append(ConfigIssue(file, None, None, f"{where}{path}", message))

    if not isinstance(entry, dict):
        issue("", "an expectation must be an object with type, kwargs and meta")
        return issues
    if "expectation_type" in entry and "type" not in entry:
        issue(".expectation_type", "GX 1.x names the expectation in 'type' (this is the 0.x key)")
        return issues
    for key in entry:
        if key not in _EXPECTATION_KEYS:
            issue(f".{key}", f"unknown key{_did_you_mean(key, _EXPECTATION_KEYS)}")
    etype = entry.get("type")
    kwargs = entry.get("kwargs", {})
    meta = entry.get("meta") or {}
    if not isinstance(kwargs, dict):
        issue(".kwargs", "must be an object")
        kwargs = {}
    if not isinstance(meta, dict):
        issue(".meta", "must be an object")
        meta = {}

    registered = sorted(list_registered_expectation_implementations())
    impl: type[Expectation] | None = None
    if not isinstance(etype, str) or not etype:
        issue(".type", "missing expectation type")
    elif etype not in registered:
        issue(".type", f"unknown expectation type {etype!r}{_did_you_mean(etype, registered)}")
    else:
        impl = get_expectation_impl(etype)

    for key in _SINGLE_COLUMN_KWARGS:
        if isinstance(kwargs.get(key), str) and kwargs[key] not in known:
            issue(f".kwargs.{key}", _unknown_column(kwargs[key], known))
    for key in _COLUMN_LIST_KWARGS:
        if isinstance(kwargs.get(key), list):
            for j, name in enumerate(kwargs[key]):
                if isinstance(name, str) and name not in known:
                    issue(f".kwargs.{key}[{j}]", _unknown_column(name, known))

    if etype in RUNTIME_VALUE_SET and "value_set" in kwargs:
        issue(".kwargs.value_set", "is filled in at run time from the code table / entity keys; remove it")
    table = kwargs.get("code_table")
    if etype == IN_CODE_TABLE and code_tables is not None and isinstance(table, str) and table not in code_tables:
        issue(".kwargs.code_table", _unknown_code_table(table, code_tables))
    if etype == EXIST_IN_ENTITY and entities is not None:
        for path, message in _reference_issues(kwargs, entities):
            issue(path, message)
    issues.extend(_check_meta(file, where, etype, meta, impl))
    if impl is not None:
        issues.extend(_check_kwargs(file, where, entry, kwargs, impl))
    return issues


def _reference_issues(kwargs: dict, entities: Mapping[str, Collection[str]]) -> list[tuple[str, str]]:
    """(path, message) for an ``entity`` that is not an entity, or an ``entity_column`` that is not its field."""
    entity, column = kwargs.get("entity"), kwargs.get("entity_column")
    if not isinstance(entity, str):
        return []  # missing or not text: GX's own check of the kwargs says so
    if entity not in entities:
        known = ", ".join(sorted(entities)) or "none"
        return [(".kwargs.entity", f"unknown entity {entity!r}{_did_you_mean(entity, entities)} (entities: {known})")]
    fields = set(entities[entity])
    if isinstance(column, str) and column not in fields:
        hint = _did_you_mean(column, fields)
        message = f"unknown field {column!r} of entity {entity!r}{hint} (its fields: {', '.join(sorted(fields))})"
        return [(".kwargs.entity_column", message)]
    return []


def _check_meta(file: str, where: str, etype: Any, meta: dict, impl: type[Expectation] | None) -> list[ConfigIssue]:
    issues = []
    level = meta.get("level")
    if level is not None and level not in ("row", "batch"):
        issues.append(ConfigIssue(file, None, None, f"{where}.meta.level", "must be 'row' or 'batch'"))
    if level == "row" and impl is not None and not _is_row_level(impl):
        issues.append(
            ConfigIssue(file, None, None, f"{where}.meta.level", f"{etype} cannot fail single rows; use 'batch'")
        )
    if "relative_to_previous" in meta:
        band = meta["relative_to_previous"]
        path = f"{where}.meta.relative_to_previous"
        if etype != ROW_COUNT:
            issues.append(ConfigIssue(file, None, None, path, f"only allowed on {ROW_COUNT}"))
        elif not _valid_band(band):
            issues.append(ConfigIssue(file, None, None, path, "must be [low, high] with 0 <= low <= high"))
    return issues


def _check_kwargs(file: str, where: str, entry: dict, kwargs: dict, impl: type[Expectation]) -> list[ConfigIssue]:
    from great_expectations.compatibility.pydantic import ValidationError

    issues = []
    config = {k: v for k, v in entry.items() if k in _EXPECTATION_KEYS}
    config["kwargs"] = kwargs
    config.setdefault("meta", {})
    try:
        ExpectationConfiguration(**config).to_domain_obj()
    except ValidationError as exc:
        issues.extend(_pydantic_issues(file, where, exc, kwargs, impl))
    except Exception as exc:
        issues.append(ConfigIssue(file, None, None, f"{where}.kwargs", f"GX rejected the kwargs: {exc}"))
    for key in ("regex", "regex_list"):
        patterns = kwargs.get(key)
        for j, pattern in enumerate(patterns if isinstance(patterns, list) else [patterns]):
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    suffix = f"[{j}]" if isinstance(patterns, list) else ""
                    path = f"{where}.kwargs.{key}{suffix}"
                    issues.append(ConfigIssue(file, None, None, path, f"invalid regex: {exc}"))
    low: Any = kwargs.get("min_value")
    high: Any = kwargs.get("max_value")
    if _is_number(low) and _is_number(high) and low > high and not issues:
        issues.append(
            ConfigIssue(file, None, None, f"{where}.kwargs", f"min_value {low} is greater than max_value {high}")
        )
    return issues


def _pydantic_issues(file: str, where: str, exc: Exception, kwargs: dict, impl: type[Expectation]) -> list[ConfigIssue]:
    by_field: dict[str, list[str]] = {}
    for error in exc.errors():  # type: ignore[attr-defined]
        loc = str(error["loc"][0]) if error["loc"] else "__root__"
        messages = by_field.setdefault(loc, [])
        if error["msg"] not in messages:
            messages.append(error["msg"])
    if len(by_field) > 1:
        # root validators run without the fields that failed, so their complaint is noise
        by_field.pop("__root__", None)
    issues = []
    fields = sorted(impl.__fields__)
    for loc, messages in by_field.items():
        if loc == "__root__":
            path, message = f"{where}.kwargs", "; ".join(messages)
        else:
            path = f"{where}.{loc}" if loc in _OBJECT_FIELDS else f"{where}.kwargs.{loc}"
            message = _field_message(loc, messages, kwargs, fields, impl.expectation_type)
        issues.append(ConfigIssue(file, None, None, path, message))
    return issues


def _field_message(loc: str, messages: list[str], kwargs: dict, fields: list[str], etype: str) -> str:
    if messages == ["field required"]:
        return f"required by {etype}"
    if messages == ["extra fields not permitted"]:
        return f"not a kwarg of {etype}{_did_you_mean(loc, fields)}"
    # union types (number | date | {"$PARAMETER": ...}) yield one message per member
    useful = [m for m in messages if m != "value is not a valid dict"] or messages
    return f"invalid value {kwargs.get(loc)!r}: {'; '.join(useful)}"


def _is_row_level(impl: type[Expectation]) -> bool:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    return issubclass(impl, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation)


def _valid_band(band: Any) -> bool:
    return isinstance(band, list) and len(band) == 2 and all(_is_number(b) for b in band) and 0 <= band[0] <= band[1]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_column(name: str, known: set[str]) -> str:
    return f"unknown column {name!r}{_did_you_mean(name, known)} (known columns: {', '.join(sorted(known))})"


def _unknown_code_table(name: str, tables: set[str]) -> str:
    known = ", ".join(sorted(tables)) or "none"
    return f"unknown code table {name!r}{_did_you_mean(name, tables)} (code tables: {known})"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# --- line numbers ----------------------------------------------------------------------

_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def with_lines(issues: Sequence[ConfigIssue], text: str) -> list[ConfigIssue]:
    """`issues` of the JSON document `text`, each with the line of the key (or array element) its path names.

    A path that goes deeper than the document (a missing kwarg) takes the line of its
    nearest existing parent; issues that already have a line or have no path keep theirs.
    The positions come from `etl.yamlio`'s SourceMap: JSON is YAML, and valid JSON holds tabs
    only as whitespace, which YAML does not indent with, so they are read as spaces.
    """
    import dataclasses

    from etl.yamlio import parse_yaml

    try:
        _, smap = parse_yaml(text.replace("\t", " "), "")
    except ConfigError:  # best effort: the document was parsed as JSON already, so this should not happen
        return list(issues)
    out = []
    for issue in issues:
        located = issue
        if issue.line is None and issue.path:
            parts = tuple(int(m[1]) if m[1] else m[2] for m in _PATH_PART.finditer(issue.path))
            line = next(
                (
                    table[parts[:n]][0]
                    for n in range(len(parts), 0, -1)
                    for table in (smap.keys, smap.values)
                    if parts[:n] in table
                ),
                None,
            )
            located = dataclasses.replace(issue, line=line)
        out.append(located)
    return out


# --- run-time injection ----------------------------------------------------------------


def resolve_code_tables(suite: ExpectationSuite, domains: Mapping[str, Collection[Any]]) -> ExpectationSuite:
    """A copy of `suite` whose code-table expectations carry the table's codes as ``value_set``.

    Raises:
        ConfigError: naming every code table that `domains` does not have.
    """

    def lookup(exp: Expectation) -> tuple[str, Collection[Any] | None]:
        name = exp.code_table  # type: ignore[attr-defined]
        return name, domains.get(name)

    return _inject(suite, IN_CODE_TABLE, "code_table", "code table", sorted(domains), lookup)


def resolve_references(suite: ExpectationSuite, keys: Mapping[str, Collection[Any]]) -> ExpectationSuite:
    """A copy of `suite` whose reference expectations carry the referenced keys as ``value_set``.

    `keys` maps an entity name (or ``"entity.entity_column"``, which wins) to the keys
    existing in that entity's target table.

    Raises:
        ConfigError: naming every referenced entity that `keys` does not have.
    """

    def lookup(exp: Expectation) -> tuple[str, Collection[Any] | None]:
        entity, column = exp.entity, exp.entity_column  # type: ignore[attr-defined]
        qualified = f"{entity}.{column}"
        return qualified, keys.get(qualified, keys.get(entity))

    return _inject(suite, EXIST_IN_ENTITY, "entity", "referenced entity", sorted(keys), lookup)


def _inject(
    suite: ExpectationSuite,
    etype: str,
    kwarg: str,
    what: str,
    known: list[str],
    lookup: Callable[[Expectation], tuple[str, Collection[Any] | None]],
) -> ExpectationSuite:
    issues = []
    expectations = []
    for i, exp in enumerate(suite.expectations):
        update: dict[str, Any] = {"id": None}
        if exp.expectation_type == etype:
            name, values = lookup(exp)
            if values is None:
                issues.append(
                    ConfigIssue(
                        suite.name,
                        None,
                        None,
                        f"expectations[{i}].kwargs.{kwarg}",
                        f"unknown {what} {name!r} (known: {', '.join(known) or 'none'})",
                    )
                )
            else:
                update["value_set"] = as_value_set(values)
        # a shallow copy: deep-copying would duplicate every injected value_set
        expectations.append(exp.copy(update=update))
    if issues:
        raise ConfigError(issues)
    return ExpectationSuite(
        name=suite.name,
        expectations=expectations,
        suite_parameters=dict(suite.suite_parameters or {}),
        meta=dict(suite.meta or {}),
        notes=suite.notes,
    )


# --- starter suites --------------------------------------------------------------------


def init_suite(
    entity: str,
    fields: Mapping[str, FieldSpecLike],
    key: Sequence[str],
    code_tables: Mapping[str, str] | None = None,
) -> dict:
    """A starter suite (JSON-ready dict) from an entity's canonical field declarations.

    Generates: a row count band relative to the previous run (at least one row on the
    first run), not-null + unique for the key (compound unique for a compound key),
    not-null for non-nullable fields, ``expect_column_values_to_have_max_scale`` for
    decimals with a scale, true/false for booleans, a maximum length for strings that
    declare ``length`` (or ``max_length``), ``expect_column_values_to_exist_in_entity``
    for fields that declare ``references: "entity.field"`` (as
    :class:`etl.mapping.model.CanonicalField` does) and
    ``expect_column_values_to_be_in_code_table`` for each ``code_tables`` entry
    (field name -> code table name). Only ``type``, ``scale`` and ``nullable`` are
    required; the other attributes are read when present.

    Raises:
        ConfigError: unknown field types, or key / code-table fields not declared.
    """
    code_tables = dict(code_tables or {})
    issues = []
    for name, spec in fields.items():
        if getattr(spec, "type", None) not in FIELD_TYPES:
            issues.append(
                ConfigIssue(
                    entity,
                    None,
                    None,
                    f"fields.{name}.type",
                    f"unknown field type {getattr(spec, 'type', None)!r} (known: {', '.join(FIELD_TYPES)})",
                )
            )
    for name in [*key, *code_tables]:
        if name not in fields:
            issues.append(ConfigIssue(entity, None, None, f"fields.{name}", "not a declared field"))
    if not key:
        issues.append(ConfigIssue(entity, None, None, "key", "a business key is required"))
    if issues:
        raise ConfigError(issues)

    expectations: list[dict] = [
        _exp(
            ROW_COUNT,
            {"min_value": 1},
            relative_to_previous=list(DEFAULT_ROW_COUNT_BAND),
            level="batch",
            notes=(
                "on a full read: min_value/max_value are fixed limits, and the count must lie within "
                "relative_to_previous times the last complete read"
            ),
        )
    ]
    for column in key:
        expectations.append(_exp("expect_column_values_to_not_be_null", {"column": column}))
    if len(key) == 1:
        expectations.append(_exp("expect_column_values_to_be_unique", {"column": key[0]}))
    else:
        expectations.append(_exp("expect_compound_columns_to_be_unique", {"column_list": list(key)}))
    for name, spec in fields.items():
        if name not in key and not getattr(spec, "nullable", True):
            expectations.append(_exp("expect_column_values_to_not_be_null", {"column": name}))
        expectations.extend(_type_expectations(name, spec))
        references = getattr(spec, "references", None)
        if isinstance(references, str) and "." in references:
            other, other_column = references.split(".", 1)
            kwargs = {"column": name, "entity": other, "entity_column": other_column}
            expectations.append(_exp(EXIST_IN_ENTITY, kwargs))
        if name in code_tables:
            expectations.append(_exp(IN_CODE_TABLE, {"column": name, "code_table": code_tables[name]}))
    return {"name": entity, "expectations": expectations, "meta": {"generated_by": "erp-oa-sync init_suite"}}


def _type_expectations(name: str, spec: FieldSpecLike) -> list[dict]:
    if spec.type == "decimal" and getattr(spec, "scale", None) is not None:
        return [_exp(HAVE_MAX_SCALE, {"column": name, "scale": int(spec.scale)})]  # type: ignore[arg-type]
    if spec.type == "boolean":
        return [_exp("expect_column_values_to_be_in_set", {"column": name, "value_set": [True, False]})]
    max_length = getattr(spec, "length", None) or getattr(spec, "max_length", None)
    if spec.type == "string" and isinstance(max_length, int):
        return [_exp("expect_column_value_lengths_to_be_between", {"column": name, "max_value": max_length})]
    return []


def _exp(etype: str, kwargs: dict, notes: str | None = None, **meta: Any) -> dict:
    out: dict[str, Any] = {"type": etype, "kwargs": kwargs, "meta": meta}
    if notes:
        out["notes"] = notes
    return out
