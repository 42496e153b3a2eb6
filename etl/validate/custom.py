"""Custom Great Expectations expectations used by erp-oa-sync suites.

Importing this module registers three expectations with GX (the `Expectation`
metaclass registers every concrete subclass under its snake_case name):

* ``expect_column_values_to_be_in_code_table`` (kwargs ``column``, ``code_table``):
  the value is a code of the governed code table. The suite file only names the
  table; ``value_set`` is injected at run time by :func:`etl.validate.suites.resolve_code_tables`.
* ``expect_column_values_to_exist_in_entity`` (kwargs ``column``, ``entity``,
  ``entity_column``): a foreign key that must exist in another entity's target table;
  ``value_set`` (the existing keys) is injected by :func:`etl.validate.suites.resolve_references`.
* ``expect_column_values_to_have_max_scale`` (kwargs ``column``, ``scale``): the value
  has at most ``scale`` decimal places. Works for ``Decimal`` objects, floats, integers
  and numeric strings. Floats are compared with a tolerance, because a binary float
  cannot hold most decimal fractions exactly (``0.1 + 0.2`` has scale 1, not 17).

Run-time value sets are wrapped in :class:`ValueSet`. GX walks an expectation's kwargs
element by element many times per validation (pydantic ``.dict()``, metric ids,
deep copies): a plain list of 1,000,000 keys made one validation take minutes. A
``ValueSet`` is opaque to those walks and serialises as a summary (size, digest,
sample), so results and Data Docs do not carry every key either.

All three are column map expectations: nulls are skipped (use
``expect_column_values_to_not_be_null``) and failing rows are reported through
``unexpected_index_list``, so the gate quarantines them row by row. Only the pandas
engine is implemented.
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Collection, Iterable, Iterator
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.renderer_configuration import RendererConfiguration, RendererValueType
from great_expectations.render.util import num_to_str
from great_expectations.types import SerializableDictDot

IN_CODE_TABLE = "expect_column_values_to_be_in_code_table"
EXIST_IN_ENTITY = "expect_column_values_to_exist_in_entity"
HAVE_MAX_SCALE = "expect_column_values_to_have_max_scale"
#: Expectations whose ``value_set`` the caller fills in at run time.
RUNTIME_VALUE_SET = frozenset({IN_CODE_TABLE, EXIST_IN_ENTITY})

_LIBRARY_METADATA: dict[str, Any] = {
    "maturity": "experimental",
    "tags": ["erp-oa-sync"],
    "contributors": ["erp-oa-sync developers"],
    "requirements": [],
}


ScaleField = Annotated[int, pydantic.Field(ge=0, le=38)]


class ValueSet(SerializableDictDot):
    """An immutable set of allowed values that GX carries around without looking inside.

    Deliberately not a list/tuple/set subclass: pydantic and GX iterate those. It is a
    ``SerializableDictDot`` because that is what GX's JSON conversion asks for
    (``to_json_dict``); use :attr:`members`, not the dict-like ``values()``.
    """

    def __init__(self, values: Iterable[Any]) -> None:
        self._values: list[Any] = list(dict.fromkeys(values))
        self._digest: str | None = None
        self._lookup: frozenset | None = None

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __contains__(self, value: object) -> bool:
        if self._lookup is None:
            self._lookup = frozenset(self._values)
        return value in self._lookup

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueSet) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"ValueSet({len(self)} values)"

    def __copy__(self) -> ValueSet:
        return self

    def __deepcopy__(self, memo: dict) -> ValueSet:
        return self

    @property
    def members(self) -> list[Any]:
        """The values, without duplicates, in first-seen order."""
        return self._values

    @property
    def digest(self) -> str:
        """Content hash: tells apart value sets in GX metric ids."""
        if self._digest is None:
            joined = "\x1f".join(f"{type(v).__name__}:{v}" for v in self._values)
            self._digest = hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()
        return self._digest

    def to_json_dict(self) -> dict[str, Any]:
        """Summary used wherever GX serialises kwargs (metric ids, results, Data Docs)."""
        sample = [v if isinstance(v, str | int | float | bool) else str(v) for v in self._values[:5]]
        return {"size": len(self), "sha1": self.digest, "sample": sample}


def as_value_set(values: Any) -> Any:
    """Wrap a collection in a ValueSet; None and GX ``$PARAMETER`` dicts pass through."""
    if values is None or isinstance(values, ValueSet):
        return values
    if isinstance(values, dict):
        # a suite parameter, or the summary a ValueSet leaves in serialised results
        if "$PARAMETER" in values or {"size", "sha1"} <= values.keys():
            return values
        raise ValueError("value_set must be a list of values")
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError("value_set must be a list of values")
    return ValueSet(values)


# --- vectorised checks (pure pandas, unit-testable without GX) -------------------------


def in_value_set(column: pd.Series, value_set: Any, what: str) -> pd.Series:
    """True where the value is one of `value_set`. Refuses to run without a resolved set."""
    if value_set is None:
        # Passing silently would publish unchecked foreign keys and codes.
        raise ValueError(f"value_set of {what} was not resolved before validation")
    if isinstance(value_set, ValueSet):
        return column.isin(value_set.members)
    if isinstance(value_set, Collection) and not isinstance(value_set, str | dict):
        return column.isin(list(value_set))
    raise ValueError(f"value_set of {what} is not a collection of values")


def has_max_scale(column: pd.Series, scale: int) -> pd.Series:
    """True where the value has at most `scale` decimal places (nulls are True).

    Integers always pass; floats use a tolerance; Decimals and numeric strings are
    exact. A value that is not a number (a date, a non-numeric string, infinity)
    fails.
    """
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return pd.Series(True, index=column.index)
    if pd.api.types.is_float_dtype(dtype):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(_float_ok(values, scale) | np.isnan(values), index=column.index)
    values = column.to_numpy(dtype=object)
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "decimal":
        ok = _decimals_ok(values, scale)
    elif kind in ("integer", "boolean", "empty"):
        ok = np.ones(len(values), dtype=bool)
    elif kind in ("floating", "mixed-integer-float"):
        floats = np.asarray(values, dtype=float)
        ok = _float_ok(floats, scale) | np.isnan(floats)
    else:
        ok = np.fromiter((_any_ok(v, scale) for v in values), dtype=bool, count=len(values))
    return pd.Series(ok, index=column.index)


def _float_ok(values: np.ndarray, scale: int) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * (10.0**scale)
        # a few ulps of slack for the decimal->binary rounding of the input itself
        tolerance = np.abs(scaled) * 1e-12 + 1e-9
        return np.isfinite(scaled) & (np.abs(scaled - np.round(scaled)) <= tolerance)


def _decimals_ok(values: np.ndarray, scale: int) -> np.ndarray:
    quantum = Decimal(1).scaleb(-scale)
    try:
        # quantize is the fastest exact test; it raises for NaN/Infinity and for values
        # with more digits than the context precision, which the slow path handles.
        return np.fromiter(
            (d is None or d.is_nan() or d == d.quantize(quantum) for d in values), dtype=bool, count=len(values)
        )
    except (decimal.InvalidOperation, AttributeError, TypeError):
        return np.fromiter((_any_ok(v, scale) for v in values), dtype=bool, count=len(values))


def _decimal_places(d: Decimal) -> int | None:
    """Exact number of significant decimal places, None for NaN/Infinity."""
    if not d.is_finite():
        return None
    _, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros)) if any(digits) else 0


def _any_ok(value: Any, scale: int) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value) or _float_ok(np.array([float(value)]), scale)[0])
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except decimal.InvalidOperation:
            return False
    if isinstance(value, Decimal):
        places = _decimal_places(value)
        return places is not None and places <= scale
    return False


# --- metric providers ------------------------------------------------------------------


class ColumnValuesInCodeTable(ColumnMapMetricProvider):
    """Row condition: value is a code of the (run-time resolved) code table."""

    condition_metric_name = "column_values.in_code_table"
    condition_value_keys = ("code_table", "value_set")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, code_table: str | None = None, value_set: Any = None, **kwargs):
        return in_value_set(column, value_set, f"code table {code_table!r}")


class ColumnValuesExistInEntity(ColumnMapMetricProvider):
    """Row condition: value is an existing key of another entity."""

    condition_metric_name = "column_values.exist_in_entity"
    condition_value_keys = ("entity", "entity_column", "value_set")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(
        cls,
        column: pd.Series,
        entity: str | None = None,
        entity_column: str | None = None,
        value_set: Any = None,
        **kwargs,
    ):
        return in_value_set(column, value_set, f"entity {entity}.{entity_column}")


class ColumnValuesMaxScale(ColumnMapMetricProvider):
    """Row condition: value has at most `scale` decimal places."""

    condition_metric_name = "column_values.max_scale"
    condition_value_keys = ("scale",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, scale: int = 0, **kwargs):
        return has_max_scale(column, int(scale))


# --- expectations ----------------------------------------------------------------------


def _simple_prescriptive(template: str, configuration: Any, runtime_configuration: dict | None):
    """Legacy (Data Docs HTML) rendering that never prints the possibly huge value_set."""
    kwargs = dict(getattr(configuration, "kwargs", None) or {})
    params = {k: v for k, v in kwargs.items() if k != "value_set"}
    mostly = params.get("mostly")
    if isinstance(mostly, (int, float)) and mostly < 1:
        params["mostly_pct"] = num_to_str(mostly * 100, no_scientific=True)
        template += ", at least $mostly_pct % of the time"
    styling = (runtime_configuration or {}).get("styling")
    return [
        RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={"template": f"$column {template}.", "params": params, "styling": styling},
        )
    ]


def _add_params(renderer_configuration: RendererConfiguration, names: tuple[str, ...]) -> None:
    for name in names:
        renderer_configuration.add_param(name=name, param_type=RendererValueType.STRING)


class ExpectColumnValuesToBeInCodeTable(ColumnMapExpectation):
    """Expect each value to be a code of the named governed code table.

    Args:
        column: the column to check.
        code_table: name of the code table (as declared in the code tables configuration).
        value_set: the table's codes, injected at run time by `resolve_code_tables`;
            leave it out of suite files.
    """

    code_table: str
    value_set: Any = None

    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA
    map_metric = "column_values.in_code_table"
    success_keys = ("code_table", "value_set", "mostly")
    args_keys = ("column", "code_table")

    class Config:
        json_encoders: ClassVar[dict] = {ValueSet: ValueSet.to_json_dict}

    @pydantic.validator("code_table")
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("code_table must name a code table")
        return v

    @pydantic.validator("value_set", pre=True)
    def _wrap_value_set(cls, v: Any) -> Any:
        return as_value_set(v)

    @classmethod
    def _prescriptive_template(cls, renderer_configuration: RendererConfiguration) -> RendererConfiguration:
        _add_params(renderer_configuration, ("column", "code_table"))
        renderer_configuration.template_str = "$column values must be codes of code table $code_table."
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None, **kwargs):
        return _simple_prescriptive(
            "values must be codes of code table $code_table", configuration, runtime_configuration
        )


class ExpectColumnValuesToExistInEntity(ColumnMapExpectation):
    """Expect each value to exist as a key of another entity (a foreign key check).

    Args:
        column: the referencing column.
        entity: the referenced entity (e.g. ``department``).
        entity_column: the referenced key column in that entity's target table.
        value_set: the existing keys, injected at run time by `resolve_references`;
            leave it out of suite files.
    """

    entity: str
    entity_column: str
    value_set: Any = None

    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA
    map_metric = "column_values.exist_in_entity"
    success_keys = ("entity", "entity_column", "value_set", "mostly")
    args_keys = ("column", "entity", "entity_column")

    class Config:
        json_encoders: ClassVar[dict] = {ValueSet: ValueSet.to_json_dict}

    @pydantic.validator("entity", "entity_column")
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @pydantic.validator("value_set", pre=True)
    def _wrap_value_set(cls, v: Any) -> Any:
        return as_value_set(v)

    @classmethod
    def _prescriptive_template(cls, renderer_configuration: RendererConfiguration) -> RendererConfiguration:
        _add_params(renderer_configuration, ("column", "entity", "entity_column"))
        renderer_configuration.template_str = "$column values must exist in $entity_column of $entity."
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None, **kwargs):
        return _simple_prescriptive(
            "values must exist in $entity_column of $entity", configuration, runtime_configuration
        )


class ExpectColumnValuesToHaveMaxScale(ColumnMapExpectation):
    """Expect each value to have at most `scale` decimal places.

    Args:
        column: a decimal column (Decimal objects, floats or numeric strings).
        scale: the maximum number of decimal places, as in ``DECIMAL(precision, scale)``.
    """

    scale: ScaleField

    library_metadata: ClassVar[dict[str, Any]] = _LIBRARY_METADATA
    map_metric = "column_values.max_scale"
    success_keys = ("scale", "mostly")
    args_keys = ("column", "scale")

    @classmethod
    def _prescriptive_template(cls, renderer_configuration: RendererConfiguration) -> RendererConfiguration:
        renderer_configuration.add_param(name="column", param_type=RendererValueType.STRING)
        renderer_configuration.add_param(name="scale", param_type=RendererValueType.NUMBER)
        renderer_configuration.template_str = "$column values must have at most $scale decimal places."
        return renderer_configuration

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None, **kwargs):
        return _simple_prescriptive(
            "values must have at most $scale decimal places", configuration, runtime_configuration
        )
