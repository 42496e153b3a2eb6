"""Canonical types: one pandas representation per declared field type.

Every frame that enters matching, hashing or comparison passes through `coerce`,
whether it was just mapped from a source or read back from a database, so that
the same value always has the same representation (and the same row hash):

| type     | pandas dtype                          |
|----------|---------------------------------------|
| string   | `str` (NaN for null)                  |
| integer  | `Int64` (the whole int64 range, exact) |
| decimal  | `float64` rounded half away from zero to the field's scale |
| date     | `datetime64[ns]` at midnight          |
| datetime | `datetime64[ns]`, naive, project zone |
| boolean  | `boolean`                             |

Decimals are float64 rounded to scale half away from zero, as the `decimal` transform rounds
(`transforms.round_half_away`): exact for the 15 significant digits that master data amounts use
(Numeric(18,2) up to 10^13). A source value of more digits whose rounded float64 would not be the
exact decimal fails the type (it is quarantined, not published changed). Integers are read exactly
from integer columns, Python ints, Decimals and text; a float is taken only below 2^53, where it
holds every integer. A NaN or infinity of a numeric source fails the type (a Decimal NaN is a
value, not a NULL).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from etl.errors import DataError
from etl.mapping.model import CanonicalField
from etl.mapping.transforms import (
    FLOAT_EXACT_INT,
    FLOAT_INTEGER_PHRASE,
    INT64_MAX,
    INT64_MIN,
    RANGE_PHRASE,
    as_text,
    decimal_nans,
    exact_integer,
    exact_integers,
    inexact_decimals,
    round_half_away,
    ungroup_thousands,
)

__all__ = [
    "as_text",
    "coerce",
    "coerce_series",
    "empty_frame",
    "integer_failures",
    "not_finite",
    "out_of_range_dates",
    "row_hash",
]

_TRUE = {"1", "true", "t", "y", "yes", "是"}
_FALSE = {"0", "false", "f", "n", "no", "否"}


def coerce_series(
    series: pd.Series, spec: CanonicalField, timezone: str = "Asia/Shanghai"
) -> tuple[pd.Series, pd.Series]:
    """Cast to the canonical representation of `spec.type`; returns (values, mask of values that failed)."""
    present = series.notna()
    if spec.type == "string":
        values = as_text(series)
        lengths = values.str.len()
        values = values.where(lengths > 0)
        bad = present & values.isna()
        bad = bad | (lengths > spec.max_length).fillna(False).astype(bool)  # the target column holds no more
        return values, bad
    if spec.type in ("integer", "decimal"):
        present = present | decimal_nans(series)  # PostgreSQL's numeric 'NaN': a value to refuse, not a NULL
        if spec.type == "integer":
            return _integers(series, present)
        numbers = _numbers(series)
        bad = present.to_numpy(dtype=bool) & ~np.isfinite(numbers)
        scale = spec.scale or 0
        rounded, _, near = round_half_away(np.where(bad, np.nan, numbers), scale)
        _, inexact = inexact_decimals(series, rounded, scale, near & np.isfinite(rounded))
        rounded[inexact] = np.nan
        return pd.Series(rounded, index=series.index), pd.Series(bad | inexact, index=series.index)
    if spec.type in ("date", "datetime"):
        values = _to_datetime(series, timezone)
        bad = present & values.isna()
        if spec.type == "date":
            values = values.dt.normalize()
        return values, bad
    if spec.type == "boolean":
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.astype("boolean"), pd.Series(False, index=series.index)
        text = as_text(series).str.strip().str.lower()
        values = pd.Series(pd.NA, index=series.index, dtype="boolean")
        values[text.isin(_TRUE)] = True
        values[text.isin(_FALSE)] = False
        return values, present & values.isna()
    raise ValueError(f"unknown type {spec.type}")


def _numbers(series: pd.Series) -> np.ndarray:
    """float64 of a numeric column, or of numbers and numeric text (commas only as thousands separators); NaN for
    nulls and what is not a number."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numeric = series
    else:
        numeric = pd.to_numeric(ungroup_thousands(as_text(series)), errors="coerce")
    return np.array(pd.Series(numeric, index=series.index).astype("float64").to_numpy(na_value=np.nan))


def _integers(series: pd.Series, present: pd.Series) -> tuple[pd.Series, pd.Series]:
    """`coerce_series` of an integer field: the whole int64 range, exact.

    Integer columns are taken as they are; text, Python ints and Decimals are parsed through float64, and the few
    of 2^53 or more (which float64 does not hold) are read again exactly. A float is taken only below 2^53: a
    larger one may have lost digits before it got here, and fails the type.
    """
    kind = series.dtype.kind
    if kind == "i":
        return series.astype("Int64"), pd.Series(False, index=series.index)
    if kind == "u":
        unsigned = series.astype("UInt64")
        too_big = (unsigned > INT64_MAX).to_numpy(dtype=bool, na_value=False)
        ints = np.where(too_big, 0, unsigned.to_numpy(dtype=np.uint64, na_value=0)).astype(np.int64)
        mask = unsigned.isna().to_numpy(dtype=bool) | too_big
        return pd.Series(pd.arrays.IntegerArray(ints, mask), index=series.index), pd.Series(too_big, index=series.index)
    numbers = _numbers(series)
    finite = np.isfinite(numbers)
    valid = finite & (numbers == np.trunc(numbers)) & (np.abs(numbers) < FLOAT_EXACT_INT)
    ints = np.where(valid, numbers, 0).astype(np.int64)
    if kind != "f":
        large = np.flatnonzero(finite & (np.abs(numbers) >= FLOAT_EXACT_INT))
        if large.size:
            objects = series.to_numpy(dtype=object)[large]
            exact = large[np.array([not isinstance(v, float | np.floating) for v in objects], dtype=bool)]
            text = ungroup_thousands(as_text(series.iloc[exact])).to_numpy(dtype=object)
            ints[exact], valid[exact] = exact_integers(text)
    bad = present.to_numpy(dtype=bool) & ~valid
    return pd.Series(pd.arrays.IntegerArray(ints, ~valid), index=series.index), pd.Series(bad, index=series.index)


#: The reason of an integer the field's type rejects because int64 does not hold it.
INTEGER_RANGE_REASON = (
    f"value is outside the 64-bit integer range {INT64_MIN}..{INT64_MAX}: correct it at the source, or map the "
    "field as a string"
)
#: The reason of a whole float of 2^53 or more an integer field rejects.
INTEGER_FLOAT_REASON = f"value {FLOAT_INTEGER_PHRASE}"
#: The reason of a NaN or an infinity a number field rejects.
NOT_FINITE_REASON = (
    "value is NaN or infinite (a numeric source's 'NaN' or 'Infinity'), not a number the target can hold: correct "
    "it at the source, or read it through a `query:` that turns it into NULL"
)


def integer_failures(series: pd.Series, bad: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Of the rows an integer field's type failed (`bad`), (those outside int64, whole floats of 2^53 or more):
    their own reasons (`INTEGER_RANGE_REASON`, `INTEGER_FLOAT_REASON`). Only the failed rows are looked at."""
    outside = pd.Series(False, index=series.index)
    unsure = pd.Series(False, index=series.index)
    if not bad.any():
        return outside, unsure
    rows = bad.to_numpy(dtype=bool)
    text = ungroup_thousands(as_text(series[rows]))
    for label, value, written in zip(series.index[rows], series[rows].to_numpy(dtype=object), text, strict=True):
        if isinstance(value, float | np.floating):
            unsure[label] = bool(np.isfinite(value) and value == np.trunc(value))
        elif isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            outside[label] = True
        elif isinstance(written, str) and (number := exact_integer(written)) is not None:
            outside[label] = not INT64_MIN <= number <= INT64_MAX
    return outside, unsure


def not_finite(series: pd.Series, bad: pd.Series) -> pd.Series:
    """Of the rows a number field's type failed (`bad`), those holding a NaN or an infinity (`NOT_FINITE_REASON`)."""
    rows = bad.to_numpy(dtype=bool)
    found = decimal_nans(series) & rows
    if rows.any():
        text = as_text(series[rows]).str.strip().str.lower().str.lstrip("+-")
        found[rows] |= text.isin(["inf", "infinity", "nan"]).to_numpy(dtype=bool)
    return pd.Series(found, index=series.index)


#: The reason of a date or datetime the field's type rejects because it lies outside what it can hold.
RANGE_REASON = f"value {RANGE_PHRASE}"
_FIRST, _LAST = datetime(1677, 9, 21, 0, 12, 44), datetime(2262, 4, 11, 23, 47, 16)  # datetime64[ns]'s


def out_of_range_dates(series: pd.Series, spec: CanonicalField, bad: pd.Series) -> pd.Series:
    """Of the rows `coerce_series` failed (`bad`), those of a date or datetime field holding a real date outside
    1677-09-22..2262-04-11 (an ERP's `9999-12-31`): they are not invalid, the engine cannot hold them, and their
    reason is `RANGE_REASON`, which says how to remove them. Only the failed rows are looked at."""
    out = pd.Series(False, index=series.index)
    if spec.type not in ("date", "datetime") or not bad.any():
        return out
    for label, value in series[bad.to_numpy(dtype=bool)].items():
        moment = _as_datetime(value)
        out[label] = moment is not None and not _FIRST <= moment <= _LAST
    return out


def _as_datetime(value: Any) -> datetime | None:
    """A date, datetime or ISO text as a naive datetime; None for anything else."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


def _to_datetime(series: pd.Series, timezone: str) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return _as_ns(series.dt.tz_convert(timezone).dt.tz_localize(None))
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _as_ns(series)
    if isinstance(series.dtype, pd.StringDtype) or pd.api.types.infer_dtype(series, skipna=True) == "string":
        # timestamps repeat across a chunk: parse each distinct text once
        codes, uniques = pd.factorize(series)
        parsed = _parse_datetimes(pd.Series(uniques, dtype=series.dtype), timezone)
        if parsed.dtype.kind == "M":
            values = _as_ns(parsed).array
            return pd.Series(pd.api.extensions.take(values, codes, allow_fill=True), index=series.index)
    return _as_ns(pd.Series(_parse_datetimes(series, timezone), index=series.index))


def _parse_datetimes(series: pd.Series, timezone: str) -> pd.Series:
    """Values of any form (text, datetime objects) parsed as naive datetimes in `timezone`, NaT where not."""
    try:
        values = pd.to_datetime(series, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        values = pd.to_datetime(as_text(series), errors="coerce", format="mixed")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(timezone).dt.tz_localize(None)
    return pd.Series(values)


def _as_ns(values: pd.Series) -> pd.Series:
    """datetime64[ns]; values outside its range (e.g. a 9999-12-31 sentinel) become null, i.e. invalid, not a crash."""
    if values.dtype != "datetime64[ns]":
        values = values.where((values >= pd.Timestamp.min) & (values <= pd.Timestamp.max))
    return values.astype("datetime64[ns]")


def coerce(
    frame: pd.DataFrame, fields: Mapping[str, CanonicalField], timezone: str = "Asia/Shanghai", *, copy: bool = True
) -> pd.DataFrame:
    """Coerce every canonical column present in `frame` (other columns untouched).

    `copy=False` replaces the columns of `frame` itself and returns it: for a caller done with the
    uncoerced values, the frame is then not held twice while its columns are converted.
    """
    out = frame.copy() if copy else frame
    for name, spec in fields.items():
        if name in out.columns:
            if spec.type == "integer" and out[name].dtype.kind == "f":
                _check_read_back_integers(out[name], name)
            out[name] = _coerced_values(out[name], spec, timezone)
    return out


def _check_read_back_integers(values: pd.Series, name: str) -> None:
    """Stop when an integer field's values (read back from a database) came as floats of 2^53 or more: a reader made
    a column of integers and NULLs float64, which may have changed their last digits. Their cast would make them
    NULL, and the target would get NULL (or a changed value) silently."""
    floats = values.to_numpy(dtype="float64", na_value=np.nan)
    large = np.isfinite(floats) & (np.abs(floats) >= FLOAT_EXACT_INT)
    if large.any():
        raise DataError(
            f"integer field '{name}': {int(large.sum())} value(s) of 2^53 or more (e.g. {int(floats[large][0])}) were "
            "read back from a database as floating-point numbers, which may have changed their last digits; the sync "
            "stops rather than publish them changed or as NULL. Report this as a bug; meanwhile map the field as a "
            "string."
        )


def _coerced_values(series: pd.Series, spec: CanonicalField, timezone: str) -> pd.Series:
    """`coerce_series(series, spec, timezone)[0]`, without building the failure mask nobody reads here.

    Two shortcuts, same values: strings skip the null and length checks; decimals read back from a
    database (`Decimal` objects) are converted to float directly instead of through their text. For
    a value with at most `scale` decimals both routes round to the same float64.
    """
    if spec.type == "string":
        values = as_text(series)
        empty = (values.str.len() == 0).to_numpy(dtype=bool, na_value=False)  # in C++, no str object per value
        return values.where(~empty) if empty.any() else values
    if spec.type == "decimal" and series.dtype == object:
        numeric = _plain_numbers(series)
        if numeric is not None:
            numbers = numeric.to_numpy(dtype="float64")
            return pd.Series(
                round_half_away(np.where(np.isinf(numbers), np.nan, numbers), spec.scale or 0)[0], index=series.index
            )
    return coerce_series(series, spec, timezone)[0]


_PLAIN_NUMBERS = (Decimal, float, int)


def _plain_numbers(series: pd.Series) -> pd.Series | None:
    """float64 of an object column holding only Decimal / float / int values and nulls, else None."""
    values = series.to_numpy(dtype=object)
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds or not all(issubclass(k, _PLAIN_NUMBERS) and not issubclass(k, bool) for k in kinds):
        return None
    try:
        return pd.Series(values.astype("float64"), index=series.index)
    except (TypeError, ValueError, OverflowError):
        return None


def empty_frame(fields: Mapping[str, CanonicalField], extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """An empty frame with the canonical columns (and `extra` name -> dtype)."""
    data: dict[str, pd.Series] = {}
    for name, spec in fields.items():
        data[name] = coerce_series(pd.Series([], dtype=object), spec)[0]
    for name, dtype in (extra or {}).items():
        data[name] = pd.Series([], dtype=dtype)
    return pd.DataFrame(data)


def row_hash(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A stable 63-bit hash of the given columns per row (as int64, storable in BIGINT)."""
    if frame.empty:
        return pd.Series([], dtype="int64", index=frame.index)
    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return pd.Series((hashed >> np.uint64(1)).astype(np.int64), index=frame.index)
