"""The built-in transforms; importing this module registers them in `etl.mapping.registry`.

Conventions every transform follows:

* Vectorized: pandas/numpy/pyarrow operations only. Values that repeat
  (codes, dates, flags) are processed once per distinct value (`pd.factorize`). Text
  that pandas would walk in Python (NFKC, regular expressions with ``\\s`` or ``\\d``)
  goes through pyarrow's C++ kernels where their answer is provably Python's.
* Nulls (None/NaN/NA/NaT) pass through as nulls, except in the transforms about
  nulls (`default`, `constant`, `coalesce`, `required`).
* Text transforms first turn non-null values into text with `as_text`: integers,
  and floats holding integers (a driver's integer column with NULLs), without a
  trailing ``.0``; Decimals in fixed point (``1234.50``); dates and datetimes as
  ``YYYY-MM-DD`` at midnight, else ``YYYY-MM-DD HH:MM:SS``; times and MySQL TIME
  timedeltas as ``HH:MM:SS``; booleans as ``true``/``false``; bytes decoded as UTF-8.
  Text results have pandas' ``str`` dtype (`STR`, nulls are NaN).
* Typed parsers (`parse_date`, `parse_datetime`, `decimal`, `to_integer`,
  `to_boolean`, `multiply`) read blank text as null.
* Dates and datetimes are naive ``datetime64[ns]`` in the project timezone. That type
  covers 1677-09-22..2262-04-11: ERP sentinels such as ``9999-12-31`` or SAP's
  ``00000000`` are rejected unless a `null_if` before the parser removes them.
* Decimals are float64 rounded half away from zero to the field's scale (``1.005``
  → ``1.01``, as `decimal.ROUND_HALF_UP` would). Rounding and the excess-scale check
  are exact for values of up to 15 significant digits, which covers amounts and
  quantities (NUMERIC(18,2) up to 10^13). A value of 16+ digits whose rounding float64
  would get wrong (its result has 16+ digits, or it is within float64's error of a tie)
  is checked exactly and, if it would be published changed, rejected (``decimal_digits``).

Rejections: rows a transform cannot map are sent to ``ctx.reject(mask, rule, reason)``
and their value becomes null. The rules are ``parse_date``, ``parse_datetime``,
``decimal``, ``decimal_scale``, ``decimal_digits``, ``to_integer``, ``to_boolean``, ``multiply``,
``regex_extract``, ``match``, ``map_values``, ``max_length``, ``required`` and
``lookup:<table>``. A lookup with ``unmapped: fail`` records its rows under
``lookup_fail:<table>`` (`FATAL_RULE_PREFIX`): the caller checks `is_fatal(rule)`
and stops the run with `etl.errors.UnmappedValueError` before publishing, where the
other rules only quarantine their rows.
"""

from __future__ import annotations

import operator
import re
import zoneinfo
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BeforeValidator, Field, field_validator, model_validator

from etl.logs import mask_personal
from etl.mapping.registry import Gap, TextPlace, TransformArgs, TransformContext, transform

STR = pd.StringDtype(na_value=np.nan)
"""The dtype of every text result: pandas' default ``str`` dtype."""

FATAL_RULE_PREFIX = "lookup_fail:"
"""Rejections whose rule starts with this must stop the run before publishing."""

_NS_MIN = np.datetime64("1677-09-22", "us")
_NS_MAX = np.datetime64("2262-04-11T23:47:16", "us")
_ISO_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_RANGE_TEXT = "1677-09-22..2262-04-11"
RANGE_PHRASE = (
    f"is outside the supported range {_RANGE_TEXT}: remove a sentinel such as 9999-12-31 with `null_if` before "
    "the field is typed (`transforms: [{null_if: ['9999-12-31']}, ...]`, see docs/mapping.md)"
)
"""Why a date or datetime the engine cannot hold is rejected (after the quoted value)."""
_INVISIBLE = "\u200b\ufeff"  # zero-width space and BOM: pasted from web forms and Excel
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What Python calls whitespace: `str.isspace`, `str.strip`, ``re``'s ``\\s``, Arrow's ``utf8_trim_whitespace``.

Spelled out so that pyarrow's RE2 (whose ``\\s`` is ``[\\t\\n\\f\\r ]``) matches exactly these; a test
checks the list against the running Python.
"""
_INT64_MAX = "9223372036854775807"
_PLAIN_INT = r"^-?[0-9]{1,18}$"
_PLAIN_DECIMAL = r"^-?[0-9]+(?:\.[0-9]+)?$"
#: Below this a float64 holds every integer; a whole float of it or more may have lost digits.
FLOAT_EXACT_INT = 2.0**53

OnError = Literal["quarantine", "null"]


def is_fatal(rule: str) -> bool:
    """True when a rejection's `rule` must stop the run (a lookup with ``unmapped: fail``)."""
    return rule.startswith(FATAL_RULE_PREFIX)


# --------------------------------------------------------------------------- text


def as_text(s: pd.Series) -> pd.Series:
    """`s` as text (`STR` dtype), non-null values converted by the module's text rules."""
    if isinstance(s.dtype, pd.StringDtype):
        return s if s.dtype == STR else s.astype(STR)
    if pd.api.types.is_integer_dtype(s.dtype):  # ids: digits written by Arrow in C++
        return _from_arrow(pc.cast(pa.Array.from_pandas(s), pa.large_string()), s.index)
    if s.dtype == object and (text := _uniform_object_text(s)) is not None:
        return text
    values = np.full(len(s), np.nan, dtype=object)
    notna = s.notna().pipe(_flags)
    if notna.any():
        values[notna] = _text_values(s[notna])
    return _text_series(values, s.index)


_ARROW_REFUSED = (pa.ArrowException, OverflowError, TypeError, ValueError)


def _uniform_object_text(s: pd.Series) -> pd.Series | None:
    """`as_text` of an object column of only text or only integers besides nulls, converted in C; else None.

    pyarrow reads None, NaN and pd.NA as null, as pandas does, and refuses other values it cannot
    convert (NaT, a Decimal NaN), which then take the general route.
    """
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred not in ("string", "integer"):
        return None
    try:
        values = pa.array(
            s.to_numpy(), type=pa.large_string() if inferred == "string" else pa.int64(), from_pandas=True
        )
    except _ARROW_REFUSED:  # e.g. an integer beyond int64
        return None
    return _from_arrow(pc.cast(values, pa.large_string()), s.index)


def _text_series(values: np.ndarray, index: pd.Index) -> pd.Series:
    """`STR` text from an object array of str and NaN."""
    try:
        return _from_arrow(pa.array(values, type=pa.large_string(), from_pandas=True), index)
    except _ARROW_REFUSED:
        return pd.Series(values, index=index, dtype=STR)


def _text_values(v: pd.Series) -> np.ndarray:
    """Text of the non-null values `v` as an object array."""
    if isinstance(v.dtype, pd.CategoricalDtype):
        v = v.astype(object)
    kind = v.dtype.kind
    if kind == "O":
        return _object_text(v)
    if kind == "b":
        return np.where(v.pipe(_flags), "true", "false").astype(object)
    if kind == "f":
        return _float_text(v.to_numpy(dtype="float64"))
    if kind == "M":
        return _datetime_text(v)
    if kind == "m":
        return _timedelta_text(v)
    return v.astype(STR).to_numpy(dtype=object)


def _category(t: type) -> str:
    checks: list[tuple[str, tuple[type, ...]]] = [
        ("str", (str,)),
        ("bool", (bool, np.bool_)),
        ("int", (int, np.integer)),
        ("float", (float, np.floating)),
        ("decimal", (Decimal,)),
        ("datetime", (datetime,)),
        ("date", (date, np.datetime64)),
        ("time", (time,)),
        ("timedelta", (timedelta, np.timedelta64)),
        ("bytes", (bytes, bytearray)),
    ]
    return next((name for name, types in checks if issubclass(t, types)), "other")


def _categories(v: pd.Series) -> pd.Series:
    """Per non-null object value, its kind: str, int, float, decimal, datetime, ..."""
    types = v.map(type)
    return types.map({t: _category(t) for t in types.unique()})


_INFERRED_CATEGORY = {"string": "str", "integer": "int", "floating": "float", "decimal": "decimal", "boolean": "bool"}


def _object_text(v: pd.Series) -> np.ndarray:
    uniform = _INFERRED_CATEGORY.get(pd.api.types.infer_dtype(v, skipna=False))
    if uniform is not None:  # one kind of value: no type lookup per value
        return _OBJECT_TEXT[uniform](v)
    cats = _categories(v)
    out = np.empty(len(v), dtype=object)
    for cat in cats.unique():
        part = (cats == cat).to_numpy()
        out[part] = _OBJECT_TEXT[cat](v[part])
    return out


def _datetime_objects_text(v: pd.Series) -> np.ndarray:
    try:
        return _datetime_text(pd.to_datetime(v))
    except (ValueError, TypeError):  # naive and aware datetimes mixed in one column
        return v.astype(STR).to_numpy(dtype=object)


_OBJECT_TEXT: dict[str, Callable[[pd.Series], np.ndarray]] = {
    "str": lambda v: v.to_numpy(dtype=object),
    "bool": lambda v: np.where(v.astype(bool).to_numpy(), "true", "false").astype(object),
    "int": lambda v: v.astype(STR).to_numpy(dtype=object),
    "float": lambda v: _float_text(v.to_numpy(dtype="float64")),
    "decimal": lambda v: v.map("{:f}".format).to_numpy(dtype=object),
    "datetime": _datetime_objects_text,
    "date": _datetime_objects_text,
    "timedelta": lambda v: _timedelta_text(pd.to_timedelta(v)),
    "bytes": lambda v: v.str.decode("utf-8", errors="replace").to_numpy(dtype=object),
    "time": lambda v: v.astype(STR).to_numpy(dtype=object),
    "other": lambda v: v.astype(STR).to_numpy(dtype=object),
}


def _float_text(a: np.ndarray) -> np.ndarray:
    out = a.astype(str).astype(object)
    integral = np.isfinite(a) & (a == np.trunc(a)) & (np.abs(a) < 2.0**63)
    if integral.any():
        out[integral] = a[integral].astype(np.int64).astype(str)
    return out


def _datetime_text(dt: pd.Series) -> np.ndarray:
    full = dt.astype(STR)
    midnight = dt.eq(dt.dt.normalize())
    return full.where(~midnight, full.str.slice(0, 10)).to_numpy(dtype=object)


def _timedelta_text(td: pd.Series) -> np.ndarray:
    ns = td.to_numpy(dtype="timedelta64[ns]").astype(np.int64)
    secs, frac = np.divmod(np.abs(ns), 10**9)
    hours, rest = np.divmod(secs, 3600)

    def two(a: np.ndarray) -> pd.Series:
        return pd.Series(a).astype(STR).str.zfill(2)

    text = two(hours) + ":" + two(rest // 60) + ":" + two(rest % 60)
    micros = frac // 1000
    text = text.where(micros == 0, text + "." + pd.Series(micros).astype(STR).str.zfill(6))
    return text.where(ns >= 0, "-" + text).to_numpy(dtype=object)


def _scalar_text(value: Any) -> str:
    """One YAML scalar as text, by the same rules as `as_text`."""
    return str(as_text(pd.Series([value], dtype=object)).iloc[0])


def _coerce_text(value: Any) -> Any:
    if isinstance(value, int | float | bool | Decimal | date | time):
        return _scalar_text(value)
    return value


Text = Annotated[str, BeforeValidator(_coerce_text), TextPlace(_coerce_text)]
"""A YAML scalar read as text: ``0`` and ``yes`` (a YAML bool) become ``"0"``, ``"true"``."""

Scalar = str | bool | int | float | datetime | date


def _blank(text: pd.Series) -> pd.Series:
    return text.str.strip().eq("")


def _with_text(s: pd.Series, fn: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a text operation to the non-null values of `s`."""
    return fn(as_text(s))


def _take(values: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Expand per-unique `values` back to rows through factorize `codes` (-1 → null)."""
    taken = pd.api.extensions.take(values.array, codes, allow_fill=True)
    return pd.Series(taken, index=index)


def _expand(mask_u: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return np.where(codes >= 0, mask_u[codes] if len(mask_u) else False, False)


_PLURAL_VERBS = {"is": "are", "does": "do", "has": "have"}


def _reason(values: pd.Series, phrase: str, *, pii: bool = False) -> str:
    """``'x' does not match …`` for one value, ``3 values do not match …, e.g. 'x', 'y'`` for more.

    With `pii`, a value is quoted masked and only when every row has it: the reason is stored on
    each of its rows, and must not show one person's data on another person's row.
    """
    distinct = values.astype(STR).drop_duplicates()
    if pii:
        shown = [repr(mask_personal(distinct.iloc[0]))] if len(distinct) == 1 else []
    else:
        shown = [repr(v if len(v) <= 40 else v[:40] + "…") for v in distinct[:3]]
    if len(values) == 1:
        return f"{shown[0]} {phrase}"
    verb, rest = phrase.split(" ", 1)
    counted = f"{len(values)} values {_PLURAL_VERBS.get(verb, verb)} {rest}"
    return f"{counted}, e.g. {', '.join(shown)}" if shown else counted


def _report(ctx: TransformContext, s: pd.Series, bad: np.ndarray, *, rule: str, phrase: str, on_error: str) -> None:
    """Quarantine the rows under `bad` when the transform's `on_error` says so."""
    if on_error == "quarantine" and bad.any():
        # a refused value without text is a Decimal NaN (`decimal_nans`): shown as PostgreSQL writes it
        text = as_text(s[bad]).fillna("NaN")
        ctx.reject(_mask(bad, s.index), rule, _reason(text, phrase, pii=ctx.pii))


def _flags(x: pd.Series) -> np.ndarray:
    """A boolean Series as a writable numpy array, missing as False."""
    return np.array(x.fillna(False), dtype=bool)


def _mask(values: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=bool), index=index)


def _check_regex(value: Any) -> Any:
    pattern = _coerce_text(value)
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


Regex = Annotated[str, BeforeValidator(_check_regex)]


# --------------------------------------------------------------------------- Arrow text kernels
# pandas runs some string methods on Arrow text as a Python loop (`normalize`, and regular expressions
# with \s or \d on non-ASCII text); these helpers keep the hot transforms in pyarrow's C++ kernels.


def _arrow(text: pd.Series) -> pa.Array:
    """The Arrow array under `STR` text, in one chunk."""
    values = pa.array(text.array)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _from_arrow(values: pa.Array, index: pd.Index) -> pd.Series:
    """`STR` text from an Arrow string array."""
    return pd.Series(pd.arrays.ArrowStringArray(values.cast(pa.large_string()), dtype=STR), index=index)


def _bools(values: pa.Array) -> np.ndarray:
    """An Arrow boolean array as a writable numpy array, null as False."""
    return np.array(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _re2_chars(chars: str) -> str:
    r"""`chars` as RE2 escapes (``\x{3000}``), literal inside or outside a character class."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


def _on_distinct(values: pa.Array, rows: np.ndarray, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """`values` with the element-wise `fn` applied to the rows under `rows`, once per distinct value there."""
    if rows.all():
        encoded = values.dictionary_encode()
        return fn(encoded.dictionary).cast(values.type).take(encoded.indices)
    mask = pa.array(rows)
    return pc.replace_with_mask(values, mask, _on_distinct(values.filter(mask), np.ones(int(rows.sum()), bool), fn))


_RE2_SPACE = _re2_chars(_WHITESPACE)
_UNTRIMMED = f"^[{_RE2_SPACE}]|[{_RE2_SPACE}]$|[{_re2_chars(_INVISIBLE + _WHITESPACE.replace(' ', ''))}]| {{2}}|^$"
"""Text that `trim` changes: edge whitespace, invisible characters, whitespace but single spaces, ''."""
_NUMBER_JUNK = f"[{_RE2_SPACE}{_re2_chars('¥$€£')}]"
"""Currency signs and whitespace (after NFKC)."""
_GROUPED = r"^[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?$"
"""A number with valid thousands grouping (``-1,234,567.89``); ``1.234,50`` or ``1,2,3`` is not one."""


@transform("trim")
def trim(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Strip and collapse whitespace (tabs, newlines, NBSP, U+3000) to one space; blank → null: ``- trim``."""
    text = as_text(s)
    values = _arrow(text)
    untrimmed = _bools(pc.match_substring_regex(values, _UNTRIMMED))
    if not untrimmed.any():
        return text
    return _from_arrow(_on_distinct(values, untrimmed, _trim_values), text.index)


def _trim_values(values: pa.Array) -> pa.Array:
    """Non-null text without invisible characters, stripped, whitespace runs as one space, blank as null."""
    values = pc.replace_substring_regex(values, f"[{_re2_chars(_INVISIBLE)}]", "")
    # Collapsing every run is a no-op where each run already is one space.
    values = pc.replace_substring_regex(pc.utf8_trim_whitespace(values), f"[{_RE2_SPACE}]+", " ")
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


@transform("nfkc")
def nfkc(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Unicode NFKC: full-width to half-width (``００１２３`` → ``00123``): ``- nfkc``."""
    return _nfkc(as_text(s))


def _nfkc(text: pd.Series) -> pd.Series:
    """NFKC of `STR` text. ASCII text is its own NFKC, so only the distinct other values are normalized
    (by Python's `unicodedata`, as pandas does: pyarrow's kernel does not compose)."""
    values = _arrow(text)
    wide = _bools(pc.invert(pc.string_is_ascii(values)))
    if not wide.any():
        return text
    return _from_arrow(_on_distinct(values, wide, _nfkc_values), text.index)


def _nfkc_values(values: pa.Array) -> pa.Array:
    """NFKC of non-null text by pandas (Python's `unicodedata`, one call per value)."""
    return _arrow(_from_arrow(values, pd.RangeIndex(len(values))).str.normalize("NFKC"))


@transform("upper")
def upper(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Upper-case: ``- upper``."""
    return _with_text(s, lambda t: t.str.upper())


@transform("lower")
def lower(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Lower-case: ``- lower``."""
    return _with_text(s, lambda t: t.str.lower())


@transform("to_text")
def to_text(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Values as text (``123`` not ``123.0``, dates as ``2026-01-02``): ``- to_text``."""
    return as_text(s)


class PadArgs(TransformArgs):
    """Arguments of `pad_zeros`."""

    width: int = Field(ge=1)
    char: Text = Field(default="0", min_length=1, max_length=1)


@transform("pad_zeros", PadArgs, shorthand="width")
def pad_zeros(s: pd.Series, args: PadArgs, ctx: TransformContext) -> pd.Series:
    """Left-pad to a width (``123`` → ``000123``; longer values unchanged): ``- pad_zeros: 6``."""
    return _with_text(s, lambda t: t.str.pad(args.width, side="left", fillchar=args.char))


@transform("strip_zeros")
def strip_zeros(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Drop leading zeros, keeping one character (``000`` → ``0``): ``- strip_zeros``."""
    text = as_text(s)
    stripped = text.str.lstrip("0")
    return stripped.mask(stripped.eq("") & text.ne("").pipe(_flags), "0")


class RegexReplaceArgs(TransformArgs):
    """Arguments of `regex_replace`."""

    pattern: Regex
    replacement: Text = ""

    @model_validator(mode="after")
    def _replacement_fits_pattern(self) -> RegexReplaceArgs:
        try:
            re.compile(self.pattern).sub(self.replacement, "")
        except re.error as exc:
            raise ValueError(f"invalid replacement {self.replacement!r}: {exc}") from exc
        return self


@transform("regex_replace", RegexReplaceArgs)
def regex_replace(s: pd.Series, args: RegexReplaceArgs, ctx: TransformContext) -> pd.Series:
    r"""Regex substitution, ``\1`` for a group: ``- regex_replace: {pattern: '^ERP-', replacement: ''}``."""
    return _with_text(s, lambda t: t.str.replace(args.pattern, args.replacement, regex=True))


class RegexExtractArgs(TransformArgs):
    """Arguments of `regex_extract`."""

    pattern: Regex
    group: int | str = 1
    on_no_match: Literal["null", "keep", "quarantine"] = "null"

    @field_validator("group", mode="before")
    @classmethod
    def _digits_as_number(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @model_validator(mode="after")
    def _group_exists(self) -> RegexExtractArgs:
        compiled, group = re.compile(self.pattern), self.group
        if isinstance(group, int) and not 0 <= group <= compiled.groups:
            raise ValueError(
                f"group {group} does not exist: the pattern has {compiled.groups} group(s); "
                "use group: 0 for the whole match"
            )
        if isinstance(group, str) and group not in compiled.groupindex:
            raise ValueError(f"the pattern has no group named {group!r}")
        return self


_GLOBAL_FLAGS = re.compile(r"^(?:\(\?[aiLmsux]+\))*")


@transform("regex_extract", RegexExtractArgs)
def regex_extract(s: pd.Series, args: RegexExtractArgs, ctx: TransformContext) -> pd.Series:
    r"""A group of the first match (0: all): ``- regex_extract: {pattern: '(\d{6})', on_no_match: keep}``."""
    text = as_text(s)
    pattern, group = args.pattern, args.group
    if group == 0:  # wrap the pattern in a group, after its leading global flags such as (?i)
        flags = _GLOBAL_FLAGS.match(pattern).group(0)  # type: ignore[union-attr]
        pattern, group = f"{flags}({pattern[len(flags) :]})", 1
    number = group if isinstance(group, int) else re.compile(pattern).groupindex[group]
    out = _extract(text, pattern, number)
    missed = text.notna() & out.isna()
    if args.on_no_match == "keep":
        return out.where(~missed, text)
    if args.on_no_match == "quarantine":
        ctx.reject(missed, "regex_extract", _reason(text[missed], f"does not match {args.pattern}", pii=ctx.pii))
    return out


def _extract(text: pd.Series, pattern: str, group: int) -> pd.Series:
    """Capture group `group` of the first match of `pattern` in `STR` text, null where none.

    Python's `re` (its `\\d` matches full-width digits, RE2's does not), once per distinct value:
    request numbers repeat on every line.
    """
    codes, uniques = pd.factorize(text)
    search = re.compile(pattern).search
    # What `Series.str.extract` gives, without building a row of every group for each value (3x slower).
    found = [None if (m := search(value)) is None else m.group(group) for value in uniques.tolist()]
    return _take(pd.Series(found, dtype=STR), codes, text.index)


class ReplaceArgs(TransformArgs):
    """Arguments of `replace`."""

    old: Text = Field(min_length=1)
    new: Text = ""


@transform("replace", ReplaceArgs)
def replace(s: pd.Series, args: ReplaceArgs, ctx: TransformContext) -> pd.Series:
    """Literal substring replacement: ``- replace: {old: '（', new: '('}``."""
    return _with_text(s, lambda t: t.str.replace(args.old, args.new, regex=False))


class SliceArgs(TransformArgs):
    """Arguments of `slice`."""

    start: int = 0
    stop: int | None = None


@transform("slice", SliceArgs)
def slice_(s: pd.Series, args: SliceArgs, ctx: TransformContext) -> pd.Series:
    """Characters ``start:stop`` as in Python (negatives from the end): ``- slice: {start: 0, stop: 4}``."""
    return _with_text(s, lambda t: t.str.slice(args.start, args.stop))


class SplitPartArgs(TransformArgs):
    """Arguments of `split_part`."""

    sep: Text = Field(min_length=1)
    index: int


@transform("split_part", SplitPartArgs)
def split_part(s: pd.Series, args: SplitPartArgs, ctx: TransformContext) -> pd.Series:
    """Part `index` (0-based, -1 last; missing → null) of a split: ``- split_part: {sep: /, index: -1}``."""
    text = as_text(s)
    if text.isna().all():  # .str.split would return floats, which have no .str
        return text
    return text.str.split(args.sep, regex=False).str.get(args.index).astype(STR)


class AffixArgs(TransformArgs):
    """Arguments of `prefix` and `suffix`."""

    value: Text


@transform("prefix", AffixArgs, shorthand="value")
def prefix(s: pd.Series, args: AffixArgs, ctx: TransformContext) -> pd.Series:
    """Prepend a literal text: ``- prefix: 'ERP-'``."""
    return _with_text(s, lambda t: args.value + t)


@transform("suffix", AffixArgs, shorthand="value")
def suffix(s: pd.Series, args: AffixArgs, ctx: TransformContext) -> pd.Series:
    """Append a literal text: ``- suffix: '@example.com'``."""
    return _with_text(s, lambda t: t + args.value)


class MatchArgs(TransformArgs):
    """Arguments of `match`."""

    pattern: Regex
    on_mismatch: OnError = "quarantine"


@transform("match", MatchArgs, shorthand="pattern")
def match(s: pd.Series, args: MatchArgs, ctx: TransformContext) -> pd.Series:
    r"""Require the whole value to match a regex, else quarantine (or null): ``- match: '\d{17}[\dX]'``."""
    text = as_text(s)
    bad = text.notna() & ~text.str.fullmatch(args.pattern).fillna(False).astype(bool)
    if args.on_mismatch == "quarantine":
        ctx.reject(bad, "match", _reason(text[bad], f"does not match {args.pattern}", pii=ctx.pii))
    return text.mask(bad)


class MaxLengthArgs(TransformArgs):
    """Arguments of `max_length`."""

    length: int = Field(ge=1)
    on_excess: Literal["quarantine", "truncate"] = "quarantine"


@transform("max_length", MaxLengthArgs, shorthand="length")
def max_length(s: pd.Series, args: MaxLengthArgs, ctx: TransformContext) -> pd.Series:
    """Quarantine (or truncate) values longer than the target column: ``- max_length: 50``."""
    text = as_text(s)
    if args.on_excess == "truncate":
        return text.str.slice(0, args.length)
    long = (text.str.len() > args.length).fillna(False).astype(bool)
    ctx.reject(long, "max_length", _reason(text[long], f"is longer than {args.length} characters", pii=ctx.pii))
    return text.mask(long)


# --------------------------------------------------------------------------- nulls and constants


class NullIfArgs(TransformArgs):
    """Arguments of `null_if`."""

    values: list[Text] = Field(min_length=1)
    ignore_case: bool = False

    @field_validator("values", mode="before")
    @classmethod
    def _scalar_as_list(cls, value: Any) -> Any:
        return value if isinstance(value, list | tuple) else [value]


@transform("null_if", NullIfArgs, shorthand="values")
def null_if(s: pd.Series, args: NullIfArgs, ctx: TransformContext) -> pd.Series:
    """Treat placeholder values as null (compared as text): ``- null_if: ['', '-', 'N/A', '无']``."""
    text = as_text(s)
    values = args.values
    if args.ignore_case:
        text, values = text.str.casefold(), [v.casefold() for v in values]
    return s.mask(text.isin(values).pipe(_flags))


def _as_value(value: Any) -> Any:
    """YAML dates and datetimes become Timestamps so that they fill datetime64 columns."""
    return pd.Timestamp(value) if isinstance(value, date) else value


def _fill(s: pd.Series, where: np.ndarray, value: Any) -> pd.Series:
    value = _as_value(value)
    if isinstance(s.dtype, pd.StringDtype):
        value = value if isinstance(value, str) else _scalar_text(value)
    try:
        return s.mask(where, value)
    except (TypeError, ValueError):
        return s.astype(object).mask(where, value)


class ValueArgs(TransformArgs):
    """Arguments of `default` and `constant`."""

    value: Scalar


@transform("default", ValueArgs, shorthand="value")
def default(s: pd.Series, args: ValueArgs, ctx: TransformContext) -> pd.Series:
    """Fill nulls and empty strings: ``- default: '未分配'``."""
    missing = s.isna().pipe(_flags)
    if s.dtype.kind in "OUST" or isinstance(s.dtype, pd.StringDtype):
        missing |= s.eq("").pipe(_flags)
    return _fill(s, missing, args.value)


@transform("constant", ValueArgs, shorthand="value")
def constant(s: pd.Series, args: ValueArgs, ctx: TransformContext) -> pd.Series:
    """Every row gets the value (no source column needed): ``- constant: ERP``."""
    value = _as_value(args.value)
    out = pd.Series(value, index=s.index)
    return out.astype("datetime64[ns]") if isinstance(value, pd.Timestamp) and value.tzinfo is None else out


@transform("required")
def required(s: pd.Series, args: TransformArgs, ctx: TransformContext) -> pd.Series:
    """Quarantine rows whose value is null or blank: ``- required``."""
    missing = s.isna().pipe(_flags)
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        missing |= _blank(as_text(s)).pipe(_flags)
    ctx.reject(_mask(missing, s.index), "required", f"{ctx.field} is required but null or blank")
    return s


# --------------------------------------------------------------------------- multi-column


def _columns(frame: pd.DataFrame | pd.Series) -> list[pd.Series]:
    if isinstance(frame, pd.Series):
        return [frame]
    return [frame.iloc[:, i] for i in range(frame.shape[1])]


class ConcatArgs(TransformArgs):
    """Arguments of `concat`."""

    sep: Text = ""
    skip_nulls: bool = True


@transform("concat", ConcatArgs, multi_column=True)
def concat(frame: pd.DataFrame, args: ConcatArgs, ctx: TransformContext) -> pd.Series:
    """Join the `from` columns as text, skipping nulls: ``- concat: {sep: ' ', skip_nulls: true}``."""
    parts = [as_text(c) for c in _columns(frame)]
    out = parts[0]
    for part in parts[1:]:
        joined = out + args.sep + part
        if args.skip_nulls:
            joined = joined.where(part.notna(), out).where(out.notna(), part)
        out = joined
    return out


class CoalesceArgs(TransformArgs):
    """Arguments of `coalesce`."""

    skip_blank: bool = False


@transform("coalesce", CoalesceArgs, multi_column=True)
def coalesce(frame: pd.DataFrame, args: CoalesceArgs, ctx: TransformContext) -> pd.Series:
    """First non-null of the `from` columns (``skip_blank: true`` also skips blank text): ``- coalesce``."""
    columns = _columns(frame)
    if args.skip_blank:
        columns = [
            c.mask(_blank(as_text(c)).pipe(_flags)) if c.dtype == object or isinstance(c.dtype, pd.StringDtype) else c
            for c in columns
        ]
    if len({str(c.dtype) for c in columns}) > 1:
        columns = [c.astype(object) for c in columns]
    out = columns[0]
    for column in columns[1:]:
        out = out.where(out.notna().pipe(_flags), column.to_numpy())
    return out.infer_objects() if out.dtype == object else out


# --------------------------------------------------------------------------- value maps


class MapValuesArgs(TransformArgs):
    """Arguments of `map_values`."""

    mapping: dict[Text, Scalar | None] = Field(min_length=1)
    unmapped: Literal["keep", "null", "quarantine"] = "keep"
    ignore_case: bool = False

    @field_validator("mapping", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if None in value:
                raise ValueError("a mapping key is null; use `default` to fill nulls")
            return {_coerce_text(k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _case_insensitive_keys_distinct(self) -> MapValuesArgs:
        if self.ignore_case:
            folded: dict[str, str] = {}
            for key in self.mapping:
                other = folded.setdefault(key.casefold(), key)
                if other != key:
                    raise ValueError(f"keys {other!r} and {key!r} are the same when ignore_case is true")
        return self


@transform("map_values", MapValuesArgs)
def map_values(s: pd.Series, args: MapValuesArgs, ctx: TransformContext) -> pd.Series:
    """Small inline value map, keys compared as text: ``- map_values: {mapping: {'1': 男, '2': 女}}``."""
    text = as_text(s)
    mapping = dict(args.mapping)
    key = text
    if args.ignore_case:
        key, mapping = text.str.casefold(), {k.casefold(): v for k, v in mapping.items()}
    found = key.isin(list(mapping)).pipe(_flags)
    out = np.array(key.map(mapping).to_numpy(dtype=object))
    unmapped = text.notna().pipe(_flags) & ~found
    if args.unmapped == "keep":
        out[unmapped] = text.to_numpy(dtype=object)[unmapped]
    elif args.unmapped == "quarantine":
        reason = _reason(text[unmapped], "is not in the value map", pii=ctx.pii)
        ctx.reject(_mask(unmapped, s.index), "map_values", reason)
    result = pd.Series(out, index=s.index)
    if all(isinstance(v, str) for v in mapping.values() if v is not None):
        return result.astype(STR)
    return result.infer_objects()


class LookupDefault(TransformArgs):
    """``unmapped: {default: VALUE}``: unmapped values become VALUE and are reported as gaps."""

    default: Text | None


class LookupArgs(TransformArgs):
    """Arguments of `lookup`."""

    table: str = Field(min_length=1)
    output: Literal["code", "name"] = "code"
    unmapped: Literal["fail", "quarantine", "pass"] | LookupDefault = "quarantine"


def _code_key(text: pd.Series) -> pd.Series:
    """`etl.mapping.codes.normalize_code`, vectorized: NFKC, whitespace removed, case-folded."""
    spaced = _arrow(_nfkc(text))
    return _from_arrow(pc.replace_substring_regex(spaced, f"[{_RE2_SPACE}]+", ""), text.index).str.casefold()


@transform("lookup", LookupArgs, shorthand="table")
def lookup(s: pd.Series, args: LookupArgs, ctx: TransformContext) -> pd.Series:
    """Codes, names and synonyms → governed code: ``- lookup: {table: department, unmapped: pass}``."""
    spellings = ctx.code_tables[args.table].spellings(ctx.as_of, args.output)
    text = as_text(s)
    codes, uniques = pd.factorize(text)
    keys = _code_key(pd.Series(uniques, dtype=STR))
    found_u = keys.isin(list(spellings)).pipe(_flags)
    blank_u = keys.eq("").pipe(_flags)
    out = _take(keys.map(spellings).astype(STR), codes, s.index)
    unmapped = _expand(~found_u & ~blank_u, codes)
    if not unmapped.any():
        return out
    mask = _mask(unmapped, s.index)
    where = f"in code table '{args.table}' on {ctx.as_of}"
    reason = _reason(text[unmapped], f"is not {where}", pii=ctx.pii)
    policy = args.unmapped
    if policy == "quarantine":
        ctx.reject(mask, f"lookup:{args.table}", reason)
    elif policy == "fail":
        ctx.reject(mask, f"{FATAL_RULE_PREFIX}{args.table}", f"{reason} (unmapped: fail stops the run)")
    elif policy == "pass":
        ctx.gaps.append(Gap(values=s[unmapped], table=args.table, policy="pass"))
        return out.where(~mask, text)
    else:
        ctx.gaps.append(Gap(values=s[unmapped], table=args.table, policy="default"))
        return out.mask(mask, policy.default)
    return out


# --------------------------------------------------------------------------- typed parsers


def _check_format(fmt: str) -> str:
    if fmt in ("ISO8601", "mixed"):
        return fmt
    if "%" not in fmt:
        raise ValueError(f"format {fmt!r} has no strftime directive; write e.g. %Y-%m-%d for YYYY-MM-DD")
    try:
        datetime.strptime("", fmt)
    except ValueError as exc:
        if "bad directive" in str(exc) or "stray %" in str(exc):
            raise ValueError(f"format {fmt!r}: {exc}") from exc
    return fmt


class DateArgs(TransformArgs):
    """Arguments of `parse_date`."""

    format: list[str] = Field(min_length=1)
    on_error: OnError = "quarantine"

    @field_validator("format", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        return [_check_format(v) if isinstance(v, str) else v for v in values]


def _check_zone(zone: str | None) -> str | None:
    if zone is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {zone!r}; use an IANA name such as Asia/Shanghai") from exc
    return zone


class DatetimeArgs(DateArgs):
    """Arguments of `parse_datetime`."""

    timezone: Annotated[str | None, BeforeValidator(_check_zone)] = None


def _to_project_zone(dt: pd.Series, zone: str) -> np.ndarray:
    """Aware datetimes → naive datetime64[us] wall time in `zone`."""
    return dt.dt.tz_convert(zone).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def _parse_datetimes(
    s: pd.Series, args: DateArgs, ctx: TransformContext, rule: str, source_zone: str | None
) -> pd.Series:
    """Shared by parse_date (`source_zone` None: naive values kept) and parse_datetime."""
    n = len(s)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    local = np.zeros(n, dtype=bool)  # naive values, in the source's zone
    unparsed = np.zeros(n, dtype=bool)
    notna = s.notna().pipe(_flags)
    if s.dtype.kind == "M":
        if getattr(s.dtype, "tz", None) is not None:
            out[notna] = _to_project_zone(s[notna], ctx.timezone)
        else:
            out[:], local[:] = s.to_numpy(dtype="datetime64[us]"), notna
        text_rows = np.zeros(n, dtype=bool)
    elif s.dtype == object and notna.any() and pd.api.types.infer_dtype(s, skipna=True) != "string":
        cats = np.full(n, "", dtype=object)
        cats[notna] = _categories(s[notna]).to_numpy()
        naive = (cats == "date") | (cats == "datetime")
        is_dt = naive.copy()
        if (cats == "datetime").any():
            aware_rows = np.flatnonzero(cats == "datetime")
            aware_rows = aware_rows[s.iloc[aware_rows].map(operator.attrgetter("tzinfo")).notna().to_numpy()]
            naive[aware_rows] = False
            if len(aware_rows):
                out[aware_rows] = _to_project_zone(pd.to_datetime(s.iloc[aware_rows], utc=True), ctx.timezone)
        if naive.any():
            out[naive] = pd.to_datetime(s[naive]).to_numpy(dtype="datetime64[us]")
            local |= naive
        text_rows = notna & ~is_dt
    else:
        text_rows = notna
    if text_rows.any():
        text = as_text(s[text_rows]).str.strip()
        codes, uniques = pd.factorize(text.mask(text.eq("")))
        parsed_u, aware_u = _parse_unique(pd.Series(uniques, dtype=STR), args.format, ctx.timezone)
        positions = np.flatnonzero(text_rows)
        out[positions] = _take(pd.Series(parsed_u), codes, text.index).to_numpy(dtype="datetime64[us]")
        local[positions] = _expand(~aware_u, codes)
        unparsed[positions] = _expand(np.isnat(parsed_u), codes)
    formats = " or ".join(args.format)
    report = partial(_report, ctx, s, rule=rule, on_error=args.on_error)
    report(unparsed, phrase=f"does not match {formats}")
    local &= ~np.isnat(out)
    if source_zone is not None and source_zone != ctx.timezone and local.any():
        wall = pd.Series(out[local]).dt.tz_localize(source_zone, ambiguous="NaT", nonexistent="NaT")
        out[local] = _to_project_zone(wall, ctx.timezone)
        gap = local & np.isnat(out)
        report(gap, phrase=f"is not a valid local time in {source_zone} (daylight-saving change)")
    valid = ~np.isnat(out)
    out_of_range = valid & ((out < _NS_MIN) | (out > _NS_MAX))
    report(out_of_range, phrase=RANGE_PHRASE)
    out[out_of_range] = np.datetime64("NaT")
    return pd.Series(out, index=s.index).astype("datetime64[ns]")


def _parse_unique(u: pd.Series, formats: list[str], zone: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct strings with each format in turn: (datetime64[us] wall times, aware flags)."""
    parsed = np.full(len(u), np.datetime64("NaT"), dtype="datetime64[us]")
    aware = np.zeros(len(u), dtype=bool)
    todo = u.notna().pipe(_flags)
    for fmt in formats:
        if fmt in ("ISO8601", "mixed"):  # offsets are optional: parse the strings with one apart
            offset = u.str.contains(_ISO_OFFSET, regex=True).pipe(_flags)
            batches = [(todo & offset, True), (todo & ~offset, False)]
        else:
            batches = [(todo.copy(), "%z" in fmt or "%Z" in fmt)]
        for rows, with_zone in batches:
            if not rows.any():
                continue
            result = pd.to_datetime(u[rows], format=fmt, errors="coerce", utc=with_zone)
            hit = result.notna().pipe(_flags)
            positions = np.flatnonzero(rows)[hit]
            if with_zone:
                parsed[positions] = _to_project_zone(result[hit], zone)
                aware[positions] = True
            else:
                parsed[positions] = result[hit].to_numpy(dtype="datetime64[us]")
            todo[positions] = False
        if not todo.any():
            break
    return parsed, aware


@transform("parse_date", DateArgs, shorthand="format")
def parse_date(s: pd.Series, args: DateArgs, ctx: TransformContext) -> pd.Series:
    """Text → date, formats tried in order: ``- parse_date: ['%Y-%m-%d', '%Y/%m/%d', '%Y%m%d']``."""
    return _parse_datetimes(s, args, ctx, "parse_date", None).dt.normalize()


@transform("parse_datetime", DatetimeArgs, shorthand="format")
def parse_datetime(s: pd.Series, args: DatetimeArgs, ctx: TransformContext) -> pd.Series:
    """Text → project-zone datetime: ``- parse_datetime: {format: '%Y-%m-%d %H:%M:%S', timezone: UTC}``."""
    return _parse_datetimes(s, args, ctx, "parse_datetime", args.timezone or ctx.timezone)


def _number_cleanup(text: pd.Series) -> pd.Series:
    """Full-width digits, thousands separators, currency signs, ``(12.5)`` and SAP's trailing ``12.5-``."""
    t = _nfkc(text)
    t = _from_arrow(pc.replace_substring_regex(_arrow(t), _NUMBER_JUNK, ""), t.index)
    t = t.str.replace(r"^\((.+)\)$", r"-\1", regex=True)
    return ungroup_thousands(t.str.replace(r"^([^-].*)-$", r"-\1", regex=True))


def ungroup_thousands(text: pd.Series) -> pd.Series:
    """`STR` text with the commas removed from numbers grouped by thousands (``1,234.5`` → ``1234.5``).

    Other text keeps its commas, so that it does not parse as a number: ``1.234,50`` (a European amount)
    or ``1,2,3`` must be refused, not read as 1.2345 or 123.
    """
    values = _arrow(text)
    grouped = pc.match_substring_regex(values, _GROUPED)
    return _from_arrow(pc.if_else(grouped, pc.replace_substring(values, ",", ""), values), text.index)


def _parse_number(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (NaN for nulls, blank text and errors) and the mask of non-null non-numbers."""
    plain = _decimal_floats(s) if s.dtype == object else None
    if s.dtype.kind in "iuf":
        values, notna = np.array(s.to_numpy(dtype="float64", na_value=np.nan)), s.notna().pipe(_flags)
    elif plain is not None:
        values, notna = plain, _notna_where_nan(plain, s)
    else:
        values, notna = _parse_number_text(as_text(s))
    bad = notna & ~np.isfinite(values)
    values[bad] = np.nan
    return values, bad


def decimal_nans(s: pd.Series) -> np.ndarray:
    """The rows of `s` holding a Decimal NaN (PostgreSQL's numeric ``'NaN'``), which pandas counts as missing.

    It is a value of the source, not a NULL: number parsers refuse it rather than publish it as NULL. Only the
    values pandas calls missing are looked at, and one by one only when one of them is a Decimal.
    """
    found = np.zeros(len(s), dtype=bool)
    if s.dtype != object or s.empty:
        return found
    values = s.to_numpy(dtype=object)
    missing = np.flatnonzero(pd.isna(values))
    if missing.size and Decimal in set(map(type, values[missing])):
        found[missing] = [isinstance(v, Decimal) for v in values[missing]]
    return found


def _notna_where_nan(values: np.ndarray, s: pd.Series) -> np.ndarray:
    """`s.notna()` of an object column whose float64 `values` are known: only values that became NaN
    (nulls, mostly) are looked at, instead of every object."""
    notna = ~np.isnan(values)
    nan_at = np.flatnonzero(~notna)
    notna[nan_at] = pd.notna(s.to_numpy(dtype=object)[nan_at])
    return notna


def _parse_number_text(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`_parse_number` of `STR` text: float64 values and the mask of non-null, non-blank values."""
    notna = text.notna().pipe(_flags)
    values = _text_floats(text)
    # cheapest cleanup first: most failures are only thousands separators
    for cleanup in (ungroup_thousands, _number_cleanup):
        retry = notna & np.isnan(values)
        if retry.any():
            values[retry] = _text_floats(cleanup(text[retry]))
    failed = notna & np.isnan(values)
    if failed.any():
        notna[failed] = ~_blank(text[failed]).pipe(_flags)
    return values, notna


def _text_floats(text: pd.Series) -> np.ndarray:
    """`pd.to_numeric(text, errors="coerce")` as float64 (`_floats`), plain decimals parsed by Arrow in C++.

    For plain decimals of up to 15 characters both parsers round correctly (checked on millions of
    values). What the rest of the column does to them is kept too: pandas returns integers when every
    value is an integer, where ``-0`` becomes ``0.0`` instead of ``-0.0``; runs of 16+ digits (whose
    int/float handling differs) keep pandas' own route for the whole column.
    """
    values = _arrow(text)
    short = pc.less_equal(pc.utf8_length(values), 15)
    plain = _bools(pc.and_(pc.match_substring_regex(values, _PLAIN_DECIMAL), short))
    rest = ~plain & text.notna().pipe(_flags)
    if not plain.any() or pc.any(pc.match_substring_regex(values.filter(pa.array(rest)), "[0-9]{16}")).as_py():
        return _floats(pd.to_numeric(text, errors="coerce"))
    plain_values = values.filter(pa.array(plain))
    out = np.full(len(text), np.nan)
    out[plain] = pc.cast(plain_values, pa.float64()).to_numpy(zero_copy_only=False)
    # pandas parses all values as floats when one is null or not an integer, else all as integers
    floats = bool(text.isna().any()) or bool(pc.any(pc.match_substring(plain_values, ".")).as_py())
    if rest.any():
        others = text[rest]
        if floats:
            others = pd.concat([others, pd.Series(["0.5"], dtype=STR)])
        parsed = pd.to_numeric(others, errors="coerce")
        if parsed.dtype.kind not in "fi":
            return _floats(pd.to_numeric(text, errors="coerce"))
        floats |= parsed.dtype.kind == "f"
        out[rest] = _floats(parsed)[: int(rest.sum())]
    if not floats:
        out[plain] += 0.0  # as integers, -0 is 0 (as a float it is -0.0)
    return out


def _decimal_floats(s: pd.Series) -> np.ndarray | None:
    """float64 of an object column of only Decimal / int / float values and nulls (as drivers return
    DECIMAL columns), converted directly: `float(Decimal)` is correctly rounded, like parsing its text."""
    if pd.api.types.infer_dtype(s, skipna=True) == "string":  # the common case, decided in C
        return None
    values = s.to_numpy(dtype=object)
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds or not all(issubclass(k, Decimal | int | float) and not issubclass(k, bool) for k in kinds):
        return None
    if kinds == {Decimal}:
        # `float(Decimal)` formats the value and parses the text; Arrow parses every text in C++ (also
        # correctly rounded), a third faster. Only a signalling NaN, which float() refuses too, is not taken.
        text = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        try:
            return np.array(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        except pa.ArrowInvalid:
            pass
    try:
        return np.array(values.astype("float64"))
    except (TypeError, ValueError, OverflowError):
        return None


def _floats(x: pd.Series) -> np.ndarray:
    """A numeric Series as a writable float64 array, missing as NaN."""
    return np.array(x.to_numpy(dtype="float64", na_value=np.nan))


class DecimalArgs(TransformArgs):
    """Arguments of `decimal`."""

    scale: int = Field(ge=0, le=10)
    on_excess_scale: Literal["quarantine", "round"] = "round"
    on_error: OnError = "quarantine"


@transform("decimal", DecimalArgs, shorthand="scale")
def decimal(s: pd.Series, args: DecimalArgs, ctx: TransformContext) -> pd.Series:
    """Number → float64 rounded half away from zero to `scale` places: ``- decimal: 2``."""
    values, bad = _parse_number(s)
    bad |= decimal_nans(s)
    _report(ctx, s, bad, rule="decimal", phrase="is not a number", on_error=args.on_error)
    rounded, excess, near = round_half_away(values, args.scale)
    if args.on_excess_scale == "quarantine":
        places = f"more than {args.scale} decimal places"
        _report(ctx, s, excess, rule="decimal_scale", phrase=f"has {places}", on_error="quarantine")
        rounded[excess] = np.nan
    digits, inexact = inexact_decimals(s, rounded, args.scale, near & np.isfinite(rounded))
    for count in np.unique(digits[inexact]):
        _report(ctx, s, inexact & (digits == count), rule="decimal_digits", phrase=digits_phrase(int(count)),
                on_error="quarantine")
    rounded[inexact] = np.nan
    return pd.Series(rounded, index=s.index)


def round_half_away(values: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 `values` (parsed from decimals) rounded half away from zero to `scale` places, as their decimals
    would round (``1.005`` → ``1.01``, ``2.5`` → ``3``): (rounded, rows with more than `scale` decimal places,
    rows whose rounding float64 may get wrong: pass them to `inexact_decimals`). Used by the `decimal` transform
    and by the cast of a `decimal` field (`etl.mapping.types.coerce_series`)."""
    factor = 10.0**scale
    scaled = values * factor
    magnitude = np.abs(scaled)
    whole = np.floor(magnitude)
    fraction = magnitude - whole
    # Parsing (correctly rounded) and scaling by 10**scale err by at most 1.5 ulp (< 3.4e-16 relative), while
    # decimals of up to 15 significant digits differ by at least 1e-15 relative: 5e-16 of slack tells them
    # apart, so 1.005 (stored as 1.00499999999999989...) still rounds up to 1.01.
    slack = magnitude * 5e-16
    rounded = np.copysign(whole + (fraction >= 0.5 - np.minimum(slack, 0.1)), scaled) / factor + 0.0
    excess = np.minimum(fraction, 1 - fraction) > slack
    # Only a source value of 16+ significant digits can be rounded wrongly: when its result has 16+ digits, or
    # when it is within float64's error of a tie. Those few rows are checked exactly; the others never leave numpy.
    near = (magnitude >= MAX_EXACT_SCALED) | (np.abs(fraction - 0.5) <= 2 * np.minimum(slack, 0.1))
    return rounded, excess, near


#: Significant digits a decimal keeps exactly through float64 (`DBL_DIG`).
MAX_DIGITS = 15
#: A value times 10**scale at least this large has 16+ digits up to its scale (float64 may not hold its rounding).
MAX_EXACT_SCALED = 10.0**MAX_DIGITS - 1
_EXACT = Context(prec=200)


def digits_phrase(count: int) -> str:
    """The reason of a `decimal_digits` rejection (after the quoted value)."""
    return (
        f"has {count} significant digits; at most {MAX_DIGITS} are kept exactly, so the amount published would differ "
        "(correct it at the source, or map the field as a string)"
    )


def inexact_decimals(
    s: pd.Series, rounded: np.ndarray, scale: int | None, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(significant digits, mask) of the rows of `s` among `candidates` whose float64 value `rounded` (as a
    database receives it: its shortest repr) is not the source value rounded half up to `scale` places exactly
    (with `scale` None: not the source value itself).

    Source values of float dtype are what they are (binary already) and never inexact. Only the candidates'
    text is read, and only those of 16+ significant digits are compared one by one, as Decimals.
    """
    digits = np.zeros(len(s), dtype=np.int64)
    inexact = np.zeros(len(s), dtype=bool)
    if s.dtype.kind == "f" or not candidates.any():
        return digits, inexact
    rows = np.flatnonzero(candidates)
    text = _number_cleanup(as_text(s.iloc[rows]))
    counted = significant_digits(text)
    long = counted > MAX_DIGITS
    if not long.any():
        return digits, inexact
    quantum = None if scale is None else Decimal(1).scaleb(-scale)
    for row, value in zip(rows[long], text.to_numpy(dtype=object)[long], strict=True):
        try:
            exact = Decimal(value)
            if quantum is not None:
                exact = exact.quantize(quantum, rounding=ROUND_HALF_UP, context=_EXACT)
        except (InvalidOperation, ValueError):
            continue
        if exact != Decimal(repr(float(rounded[row]))):
            inexact[row] = True
    digits[rows] = counted
    return digits, inexact


def significant_digits(text: pd.Series) -> np.ndarray:
    """Significant digits of plain decimal text (``-0012.3400`` → 4, ``1000`` → 1); 0 for other text and nulls.

    >>> significant_digits(pd.Series(["-0012.3400", "1000", "1234567890123456.78", "1e5", None], dtype=STR)).tolist()
    [4, 1, 18, 0, 0]
    """
    values = _arrow(text)
    digits = pc.replace_substring_regex(values, "[-.]", "")
    digits = pc.utf8_rtrim(pc.utf8_ltrim(digits, characters="0"), characters="0")
    counts = pc.if_else(pc.match_substring_regex(values, _PLAIN_DECIMAL), pc.utf8_length(digits), 0)
    return np.asarray(counts.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)


class OnErrorArgs(TransformArgs):
    """Arguments of `to_integer`."""

    on_error: OnError = "quarantine"


def _parse_int_text(text: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact int64 parse of text: (values, valid mask, bad mask); blank text is null."""
    n = len(text)
    notna = text.notna().pipe(_flags)
    plain = _plain_ints(text)
    if plain is not None:
        return plain, notna, np.zeros(n, dtype=bool)
    quick = pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable")
    if quick.dtype == "Int64" and not (notna & quick.isna().pipe(_flags)).any():
        return np.array(quick.to_numpy(dtype=np.int64, na_value=0)), notna, np.zeros(n, dtype=bool)
    t = _number_cleanup(text.str.strip()).str.replace(r"\.0*$", "", regex=True)
    notna &= ~t.eq("").pipe(_flags)
    digits = notna & t.str.fullmatch(r"[+-]?\d+").pipe(_flags)
    magnitude = t[digits].str.lstrip("+-").str.lstrip("0")
    overflow = (magnitude.str.len() > 19) | (magnitude.str.len().eq(19) & (magnitude > _INT64_MAX))
    valid = digits.copy()
    valid[np.flatnonzero(digits)[overflow.pipe(_flags)]] = False
    values = np.zeros(n, dtype=np.int64)
    values[valid] = pd.to_numeric(t[valid]).to_numpy(dtype=np.int64)
    others = notna & ~digits  # e.g. 1e3
    if others.any():
        floats = _floats(pd.to_numeric(t[others], errors="coerce"))
        whole = np.isfinite(floats) & (floats == np.trunc(floats)) & (np.abs(floats) < FLOAT_EXACT_INT)
        positions = np.flatnonzero(others)[whole]
        values[positions], valid[positions] = floats[whole].astype(np.int64), True
        large = np.flatnonzero(others)[np.isfinite(floats) & (np.abs(floats) >= FLOAT_EXACT_INT)]  # e.g. 9.2e18
        values[large], valid[large] = exact_integers(t.to_numpy(dtype=object)[large])
    return values, valid, notna & ~valid


def exact_integers(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, mask of those that are whole numbers within int64) of number texts, read exactly as decimals:
    for the few values float64 does not hold (2^53 or more), one by one."""
    values = np.zeros(len(texts), dtype=np.int64)
    valid = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        number = exact_integer(text)
        if number is not None and INT64_MIN <= number <= INT64_MAX:
            values[i], valid[i] = number, True
    return values, valid


def exact_integer(text: Any) -> int | None:
    """The whole number a number text (``'9007199254740993'``, ``'9.2e18'``, ``'12.0'``) is exactly, any size; None
    for other text and for numbers with a fraction."""
    try:
        number = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    # beyond 400 digits neither a float nor an int64 holds it: not worth building the int
    if not number.is_finite() or number.adjusted() > 400 or number != number.to_integral_value(context=_EXACT):
        return None
    return int(number)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _plain_ints(text: pd.Series) -> np.ndarray | None:
    """int64 of text whose non-null values are all plain integers of up to 18 digits, cast by Arrow in C++
    (what `pd.to_numeric` returns for them), else None."""
    values = _arrow(text)
    if not pc.all(pc.match_substring_regex(values, _PLAIN_INT)).as_py():  # null when there are no values
        return None
    return np.array(pc.cast(values, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))


@transform("to_integer", OnErrorArgs)
def to_integer(s: pd.Series, args: OnErrorArgs, ctx: TransformContext) -> pd.Series:
    """Whole numbers (``'1,234'``, ``12.0``; not ``12.5``) → nullable Int64: ``- to_integer``."""
    kind = s.dtype.kind
    if kind in "iub":
        return s.astype("Int64")
    if kind == "f":
        floats = s.to_numpy(dtype="float64", na_value=np.nan)
        whole = np.isfinite(floats) & (floats == np.trunc(floats))
        # a float holds every integer only below 2**53: a larger one may have lost digits before it got here
        unsure = whole & (np.abs(floats) >= FLOAT_EXACT_INT)
        valid = whole & ~unsure
        values = np.where(valid, floats, 0).astype(np.int64)
        bad = s.notna().pipe(_flags) & ~whole
        _report(ctx, s, unsure, rule="to_integer", phrase=FLOAT_INTEGER_PHRASE, on_error=args.on_error)
    else:
        values, valid, bad = _parse_int_text(as_text(s))
        bad |= decimal_nans(s)
    _report(ctx, s, bad, rule="to_integer", phrase="cannot be read as a 64-bit integer", on_error=args.on_error)
    return pd.Series(pd.arrays.IntegerArray(values, ~valid), index=s.index)


FLOAT_INTEGER_PHRASE = (
    "is a floating-point number of 2^53 (9007199254740992) or more, which may have lost digits already (a float holds "
    "every integer only below 2^53): read it from an integer or text column, or map the field as a string"
)
"""Why a float that is a whole number of 2^53 or more is not taken as an integer (after the quoted value)."""


class BooleanArgs(TransformArgs):
    """Arguments of `to_boolean`."""

    true: list[Text] = Field(default_factory=lambda: ["1", "true", "y", "yes", "是", "t"], min_length=1)
    false: list[Text] = Field(default_factory=lambda: ["0", "false", "n", "no", "否", "f"], min_length=1)
    on_error: OnError = "quarantine"

    @model_validator(mode="after")
    def _disjoint(self) -> BooleanArgs:
        both = {v.strip().casefold() for v in self.true} & {v.strip().casefold() for v in self.false}
        if both:
            raise ValueError(f"{sorted(both)} listed as both true and false")
        return self


@transform("to_boolean", BooleanArgs)
def to_boolean(s: pd.Series, args: BooleanArgs, ctx: TransformContext) -> pd.Series:
    """Flags → nullable boolean, case-insensitive: ``- to_boolean: {true: [Y, 是], false: [N, 否]}``."""
    if s.dtype.kind == "b":
        return s.astype("boolean")
    text = as_text(s)
    codes, uniques = pd.factorize(text)
    keys = pd.Series(uniques, dtype=STR).str.strip().str.casefold()
    is_true = _expand(keys.isin([v.strip().casefold() for v in args.true]).pipe(_flags), codes)
    is_false = _expand(keys.isin([v.strip().casefold() for v in args.false]).pipe(_flags), codes)
    blank = _expand(keys.eq("").pipe(_flags), codes)
    known = is_true | is_false
    bad = text.notna().pipe(_flags) & ~known & ~blank
    _report(ctx, s, bad, rule="to_boolean", phrase="is not a listed true/false spelling", on_error=args.on_error)
    return pd.Series(pd.arrays.BooleanArray(is_true, ~known), index=s.index)


class MultiplyArgs(TransformArgs):
    """Arguments of `multiply`."""

    factor: float
    on_error: OnError = "quarantine"


@transform("multiply", MultiplyArgs, shorthand="factor")
def multiply(s: pd.Series, args: MultiplyArgs, ctx: TransformContext) -> pd.Series:
    """Numbers times a factor as float64, e.g. cents → yuan (round with `decimal`): ``- multiply: 0.01``."""
    values, bad = _parse_number(s)
    bad |= decimal_nans(s)
    # A value of 16+ digits float64 changes is set aside here: the `decimal` after it sees only the float.
    _report(ctx, s, bad, rule="multiply", phrase="is not a number", on_error=args.on_error)
    digits, inexact = inexact_decimals(s, values, None, ~bad & np.isfinite(values))
    for count in np.unique(digits[inexact]):
        _report(ctx, s, inexact & (digits == count), rule="decimal_digits", phrase=digits_phrase(int(count)),
                on_error="quarantine")
    product = values * args.factor
    product[inexact] = np.nan
    return pd.Series(product, index=s.index)
