"""Apply one source's mapping to a chunk of raw rows: pure, vectorized, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from etl.mapping import registry
from etl.mapping.codes import CodeTable
from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.registry import Rejection, TransformContext
from etl.mapping.transforms import MAX_DIGITS, decimal_nans
from etl.mapping.types import (
    INTEGER_FLOAT_REASON,
    INTEGER_RANGE_REASON,
    NOT_FINITE_REASON,
    RANGE_REASON,
    as_text,
    coerce_series,
    integer_failures,
    not_finite,
    out_of_range_dates,
)

SRC_ID = "_src_id"
REJECT_COLUMNS = ["_src_id", "field", "rule", "value", "reason", "raw"]
GAP_COLUMNS = ["field", "table", "policy", "value", "count"]
FATAL_PREFIX = "lookup_fail:"


@dataclass
class MappedChunk:
    """The outcome of mapping a chunk: accepted canonical rows, rejected rows, unmapped values."""

    rows: pd.DataFrame
    rejects: pd.DataFrame
    gaps: pd.DataFrame
    fatal: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))


def source_ids(raw: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """The source id of each row: id columns as text, joined with `|`."""
    ids = as_text(raw[id_columns[0]].reset_index(drop=True)).fillna("")
    for column in id_columns[1:]:
        ids = ids + "|" + as_text(raw[column].reset_index(drop=True)).fillna("")
    ids.index = raw.index
    return ids


def map_chunk(
    raw: pd.DataFrame,
    mapping: EntityMapping,
    source: str,
    code_tables: Mapping[str, CodeTable],
    *,
    as_of: date,
    timezone: str = "Asia/Shanghai",
    fields: list[str] | None = None,
) -> MappedChunk:
    """Map `raw` (rows of `source`) to canonical fields.

    Rows with any rejection (transform, type cast, missing key) leave `rows` and
    appear in `rejects`, one line per (row, rule). `fields` limits the mapping to
    some fields (the key sweep maps only the key).
    """
    spec = mapping.sources[source]
    raw = raw.reset_index(drop=True)
    out: dict[str, pd.Series] = {SRC_ID: source_ids(raw, spec.id)}
    rejections: list[tuple[str, Rejection]] = []
    gaps: list[pd.DataFrame] = []
    wanted = fields if fields is not None else list(spec.fields)
    for name in wanted:
        fspec = spec.fields[name]
        canonical = mapping.fields[name]
        value: pd.Series | pd.DataFrame
        if len(fspec.columns) > 1:
            value = raw[fspec.columns]
        elif fspec.columns:
            value = raw[fspec.columns[0]]
        else:
            value = pd.Series([None] * len(raw), index=raw.index, dtype=object)
        ctx = TransformContext(
            field=name,
            source=source,
            frame=raw,
            code_tables=code_tables,
            as_of=as_of,
            timezone=timezone,
            pii=canonical.pii,
        )
        for raw_spec in fspec.transforms:
            tname, targs = registry.split_spec(raw_spec)
            tdef = registry.get(tname)
            value = tdef.fn(value, registry.parse_args(tdef, targs), ctx)
        assert isinstance(value, pd.Series)
        typed, bad = coerce_series(value, canonical, timezone)
        if bad.any():
            rejections.extend((name, r) for r in _type_rejections(value, canonical, bad))
        rejections.extend((name, r) for r in ctx.rejections)
        for gap in ctx.gaps:
            counts = as_text(gap.values.dropna()).value_counts()
            gaps.append(
                pd.DataFrame(
                    {
                        "field": name,
                        "table": gap.table,
                        "policy": gap.policy,
                        "value": counts.index,
                        "count": counts.to_numpy(),
                    }
                )
            )
        out[name] = typed
    rows = pd.DataFrame(out, index=raw.index)
    for key in mapping.key:
        if key in rows.columns:
            missing = rows[key].isna()
            for name, rej in rejections:
                if name == key:
                    missing = missing & ~rej.mask.reindex(rows.index, fill_value=False).astype(bool)
            if missing.any():
                rejections.append((key, Rejection(missing, "key_missing", f"business key field '{key}' is empty")))
    return _split(raw, rows, spec.fields, rejections, gaps)


#: A decimal field's number that float64 would publish changed (`etl.mapping.types.coerce_series`).
TOO_MANY_DIGITS = (
    f"value has more than {MAX_DIGITS} significant digits; at most {MAX_DIGITS} are kept exactly, so the amount "
    "published would differ (correct it at the source, or map the field as a string)"
)


#: A string field's value that is empty (`etl.mapping.types.coerce_series` reads no text as no value).
EMPTY_STRING = (
    "value is an empty string, which a string field does not take as a value: end the field's transforms with "
    "`trim` (blank -> null) or `null_if: ['']` (see docs/mapping.md)"
)


def _type_rejections(value: pd.Series, canonical: CanonicalField, bad: pd.Series) -> list[Rejection]:
    """The rows a field's type refused (`bad`), by why: a date the engine cannot hold (an ERP's 9999-12-31), a
    NaN or infinity, a decimal of more digits than it keeps exactly, an integer outside int64 or a float too large
    to be sure of, an empty string, else a value that is not of the type."""
    rule = f"type:{canonical.type}"
    special = pd.Series(False, index=bad.index)
    found = []
    if canonical.type in ("date", "datetime"):
        special = out_of_range_dates(value, canonical, bad)
        if special.any():
            found.append(Rejection(special, rule, RANGE_REASON))
    elif canonical.type in ("decimal", "integer"):
        special = not_finite(value, bad)
        if special.any():
            found.append(Rejection(special, rule, NOT_FINITE_REASON))
        if canonical.type == "decimal":
            numbers = pd.to_numeric(as_text(value).str.replace(",", "", regex=False), errors="coerce")
            digits = bad & ~special & numbers.notna()
            found.append(Rejection(digits, rule, TOO_MANY_DIGITS))
            special = special | digits
        else:
            outside, unsure = integer_failures(value, bad & ~special)
            found += [Rejection(outside, rule, INTEGER_RANGE_REASON), Rejection(unsure, rule, INTEGER_FLOAT_REASON)]
            special = special | outside | unsure
        found = [r for r in found if r.mask.any()]
    elif canonical.type == "string":
        special = bad & as_text(value).str.len().eq(0).to_numpy(dtype=bool, na_value=False)
        if special.any():
            found.append(Rejection(special, rule, EMPTY_STRING))
    rest = bad & ~special
    if rest.any():
        found.append(Rejection(rest, rule, _type_reason(canonical)))
    return found


def _type_reason(spec: object) -> str:
    kind = getattr(spec, "type", "value")
    extra = ""
    if kind == "string" and isinstance(spec, CanonicalField):
        extra = f" of at most {spec.max_length} characters"
        if spec.length is None:
            extra += " (the target column's size when a field sets no `length:`; set one of up to 4000 for more)"
    return f"value is not a valid {kind}{extra}"


def _split(
    raw: pd.DataFrame,
    rows: pd.DataFrame,
    fields: Mapping[str, object],
    rejections: list[tuple[str, Rejection]],
    gaps: list[pd.DataFrame],
) -> MappedChunk:
    gap_frame = (
        pd.concat(gaps, ignore_index=True).groupby(["field", "table", "policy", "value"], as_index=False)["count"].sum()
        if gaps
        else pd.DataFrame(columns=GAP_COLUMNS)
    )
    if not rejections:
        return MappedChunk(rows=rows, rejects=pd.DataFrame(columns=REJECT_COLUMNS), gaps=gap_frame)
    bad_any = np.zeros(len(rows), dtype=bool)
    parts = []
    for name, rej in rejections:
        mask = rej.mask.reindex(rows.index, fill_value=False).to_numpy(dtype=bool)
        bad_any |= mask
        columns = getattr(fields.get(name), "columns", []) if name in fields else []
        original = (raw.loc[mask, columns[0]] if columns else rows.loc[mask, name]).reset_index(drop=True)
        shown = as_text(original)
        if shown.isna().any():  # a refused value without text is a Decimal NaN
            shown = shown.mask(decimal_nans(original), "NaN")
        parts.append(
            pd.DataFrame(
                {
                    SRC_ID: rows.loc[mask, SRC_ID].to_numpy(),
                    "field": name,
                    "rule": rej.rule,
                    "value": shown.to_numpy(),
                    "reason": rej.reason,
                    "_row": np.flatnonzero(mask),
                }
            )
        )
    rejects = pd.concat(parts, ignore_index=True)
    # Only rejected rows are serialised: the raw row is what a steward replays.
    rejects["raw"] = rejects["_row"].map(_raw_json(raw, rejects["_row"].unique()))
    rejects = rejects.drop(columns="_row")
    fatal = rejects[rejects["rule"].str.startswith(FATAL_PREFIX)]
    return MappedChunk(rows=rows[~bad_any], rejects=rejects, gaps=gap_frame, fatal=fatal)


def _raw_json(raw: pd.DataFrame, rows: np.ndarray) -> dict[int, str]:
    """JSON of the raw rows at positions `rows`, each as ``raw.iloc[i].to_dict()`` gives it."""
    if len(rows) == 0 or raw.iloc[int(rows[0])].dtype != object:
        return {i: _row_json(raw.iloc[i].to_dict()) for i in rows}
    # A row of object dtype holds each column's own value, boxed as Python's: so do the column's
    # `to_dict`, without building a Series per row.
    part = raw.iloc[rows]
    columns = [part.iloc[:, j].to_dict().values() for j in range(part.shape[1])]
    names = list(raw.columns)
    return {
        i: _row_json(dict(zip(names, values, strict=True)))
        for i, values in zip(rows, zip(*columns, strict=True), strict=True)
    }


def _row_json(row: dict[str, object]) -> str:
    return json.dumps(_jsonable(row), ensure_ascii=False)


def _jsonable(row: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
            out[key] = None
        elif isinstance(value, int | float | str | bool):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def key_spellings(
    typed: str,
    mapping: EntityMapping,
    code_tables: Mapping[str, CodeTable],
    *,
    as_of: date,
    timezone: str = "Asia/Shanghai",
) -> dict[str, str]:
    """The golden keys `typed` becomes when each source's key mapping reads it, as {golden key: source}.

    What a person types is the source's spelling (`1` for work code `000001`, a full-width `１２３`); a composite key's
    parts are written with `|` between them. Sources whose key mapping rejects the value, or reads a key field from
    several columns, give nothing; a key equal to `typed` is left out.
    """
    parts = typed.split("|")
    if len(parts) != len(mapping.key):
        return {}
    found: dict[str, str] = {}
    for source, spec in mapping.sources.items():
        fields = [spec.fields.get(name) for name in mapping.key]
        if any(f is None or len(f.columns) != 1 for f in fields):
            continue
        raw = pd.DataFrame({column: [None] for column in spec.columns}, dtype=object)
        for f, part in zip(fields, parts, strict=True):
            raw[f.columns[0]] = [part]  # type: ignore[union-attr]
        mapped = map_chunk(raw, mapping, source, code_tables, as_of=as_of, timezone=timezone, fields=mapping.key)
        if len(mapped.rows) != 1:
            continue
        key = "|".join(str(as_text(mapped.rows[name]).iloc[0]) for name in mapping.key)
        if key != typed:
            found.setdefault(key, source)
    return found
