"""Canonical types: one pandas representation per declared field type.

Every frame that enters matching, hashing or comparison passes through `coerce`,
whether it was just mapped from a source or read back from a database, so that
the same value always has the same representation (and the same row hash):

| type     | pandas dtype                          |
|----------|---------------------------------------|
| string   | `str` (NaN for null)                  |
| integer  | `Int64`                               |
| decimal  | `float64` rounded to the field's scale |
| date     | `datetime64[ns]` at midnight          |
| datetime | `datetime64[ns]`, naive, project zone |
| boolean  | `boolean`                             |

Decimals are float64 rounded to scale: exact for the 15 significant digits that
master data amounts use (Numeric(18,2) up to 10^13). A source value of more digits whose rounded
float64 would not be the exact decimal fails the type (it is quarantined, not published changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from etl.mapping.model import CanonicalField
from etl.mapping.transforms import MAX_EXACT_SCALED, RANGE_PHRASE, as_text, inexact_decimals, ungroup_thousands

__all__ = ["as_text", "coerce", "coerce_series", "empty_frame", "out_of_range_dates", "row_hash"]

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
        numeric = (
            series
            if pd.api.types.is_numeric_dtype(series.dtype) and series.dtype != bool
            else pd.to_numeric(ungroup_thousands(as_text(series)), errors="coerce")
        )
        numeric = pd.Series(numeric, index=series.index).astype("float64")
        bad = present & (numeric.isna() | ~np.isfinite(numeric.fillna(0)))
        if spec.type == "integer":
            # float64 holds every integer exactly only below 2**53: beyond, a value would be silently altered
            # (or overflow Int64 and crash the chunk), so it is rejected like any other non-integer.
            bad = bad | (present & ((numeric.fillna(0) % 1 != 0) | (numeric.abs().fillna(0) >= 2**53)))
            return numeric.where(~bad).round().astype("Int64"), bad
        rounded = numeric.where(~bad).round(spec.scale or 0)
        return rounded, bad | _inexact(series, numeric, rounded, spec.scale or 0)
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


def _inexact(series: pd.Series, numeric: pd.Series, rounded: pd.Series, scale: int) -> pd.Series:
    """Rows of a decimal field whose source value (Decimal objects or text: a float source is binary already) has
    more significant digits than float64 holds and would be published changed (`transforms.inexact_decimals`):
    they fail the type, like a value that is not a number, rather than be altered silently."""
    if series.dtype.kind == "f" or series.empty:
        return pd.Series(False, index=series.index)
    values = rounded.to_numpy(dtype="float64", na_value=np.nan)
    scaled = np.abs(numeric.to_numpy(dtype="float64", na_value=np.nan)) * 10.0**scale
    fraction = scaled - np.floor(scaled)
    near = (scaled >= MAX_EXACT_SCALED) | (np.abs(fraction - 0.5) <= np.minimum(scaled * 1e-15, 0.2))
    return pd.Series(inexact_decimals(series, values, scale, near & np.isfinite(values))[1], index=series.index)


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
            out[name] = _coerced_values(out[name], spec, timezone)
    return out


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
            return numeric.where(~np.isinf(numeric)).round(spec.scale or 0)
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
