"""Compare ERP, OA and the target of one entity: pure, vectorised, no I/O.

`compare_entity` takes the canonical rows of both sources (the mirror, or a
fresh extraction), the published golden records, the open quarantine and the
mapping gaps, and returns one row per difference:

| class              | found how                                                              |
|--------------------|------------------------------------------------------------------------|
| `only_in_erp`      | key in ERP, not in OA (and OA has no quarantined record with that key) |
| `only_in_oa`       | key in OA, not in ERP (likewise)                                       |
| `field_mismatch`   | key in both, a compared field differs beyond tolerance                 |
| `mapping_gap`      | a code with no code-table entry (quarantine `lookup:*`, gap table)     |
| `duplicate_key`    | a business key that occurs more than once in one source                |
| `orphan_reference` | a `references:` field pointing at no active key of the other entity    |
| `target_drift`     | the target row is not what the sources' golden record says             |

Every difference appears once: a key with duplicates is reported as
`duplicate_key` only, a key missing on one side because that side's record
sits in quarantine is not also `only_in_*`, and an unmapped code is one
`mapping_gap` per code table, whatever the number of records and fields it affects.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.types import as_text, coerce_series, row_hash
from etl.store.repo import source_records

CLASSES = (
    "only_in_erp",
    "only_in_oa",
    "field_mismatch",
    "mapping_gap",
    "duplicate_key",
    "orphan_reference",
    "target_drift",
)
COLUMNS = ["diff_id", "class", "golden_key", "field", "erp_value", "oa_value", "target_value", "detail"]
QUARANTINE_COLUMNS = ["source", "src_id", "golden_key", "field", "rule", "value", "reason", "stage"]
GAP_COLUMNS = ["source", "field", "value", "code_table", "policy", "count"]
KEY = "_key"
SRC_ID = "_src_id"
SOURCES = ("erp", "oa")
PRESENCE = "erp+oa"
_CANONICAL_DTYPES = {"integer": "Int64", "boolean": "boolean"}


# --------------------------------------------------------------------------- identity and tolerance


def diff_id(entity: str, cls: str, ident: str | None, field: str | None) -> str:
    """Stable identity of a difference: the same problem gets the same id in every run."""
    text = "\x1f".join([entity, cls, ident or "", field or ""])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def tolerance_of(spec: CanonicalField) -> float:
    """The numeric tolerance of a field: `tolerance:` or half a unit of its last decimal place."""
    if spec.tolerance is not None:
        return float(spec.tolerance)
    return 0.5 * 10.0 ** -(spec.scale or 0)


def normalise_text(value: str) -> str:
    """How strings are compared: NFKC, no whitespace at all, case-folded."""
    return "".join(unicodedata.normalize("NFKC", value).split()).casefold()


# --------------------------------------------------------------------------- canonical frames


def _is_canonical(series: pd.Series, spec: CanonicalField) -> bool:
    dtype = series.dtype
    if spec.type == "string":
        return isinstance(dtype, pd.StringDtype)
    if spec.type in ("date", "datetime"):
        return str(dtype) == "datetime64[ns]"
    if spec.type == "decimal":
        return dtype == np.float64
    return str(dtype) == _CANONICAL_DTYPES[spec.type]


_DAY_NS = 86_400 * 10**9


def _has_time(column: pd.Series) -> bool:
    """Whether a datetime64[ns] column holds a value that is not at midnight (a DATETIME read for a date)."""
    values = column.to_numpy(dtype="datetime64[ns]")
    return bool(((values.view("int64") % _DAY_NS != 0) & ~np.isnat(values)).any())


def canonical(frame: pd.DataFrame, mapping: EntityMapping, timezone: str = "Asia/Shanghai") -> pd.DataFrame:
    """`frame` with every canonical column in its canonical dtype (columns already canonical are not copied)."""
    changed: dict[str, pd.Series] = {}
    for name, spec in mapping.fields.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        if not _is_canonical(column, spec):
            changed[name] = coerce_series(column, spec, timezone)[0]
        elif spec.type == "decimal":
            changed[name] = column.round(spec.scale or 0)
        elif spec.type == "date" and _has_time(column):
            changed[name] = column.dt.normalize()
    if KEY in frame.columns and not isinstance(frame[KEY].dtype, pd.StringDtype):
        changed[KEY] = as_text(frame[KEY]).astype("str")
    if not changed:
        return frame
    return frame.assign(**changed)


# --------------------------------------------------------------------------- value comparison


def tolerance_units(spec: CanonicalField) -> int:
    """The tolerance in units of the field's last decimal place, rounded down (exact: no binary floating point).

    Values are rounded to the scale, so they differ by whole units: `0.01` at scale 2 is 1 unit, and the
    default tolerance, half a unit, is 0 (equal only when equal to the last decimal place).
    """
    if spec.tolerance is None:
        return 0
    return math.floor(Decimal(str(spec.tolerance)).scaleb(spec.scale or 0))


def _units(series: pd.Series, scale: int) -> np.ndarray:
    """Numbers as whole units of the last decimal place (float64 holding integers; NaN for null).

    `rint(x * 10**scale)` recovers the exact decimal of every value float64 can tell apart at that scale
    (below about 7e13 for scale 2), and the difference of two such integers is exact, so a cent is a cent
    at any magnitude the canonical float can hold, unlike `|x - y|` with a few ulps of slack.
    """
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    return np.rint(values * 10.0**scale) if scale else np.rint(values)


def _blank(values: np.ndarray) -> np.ndarray:
    """Which text values are empty once normalised (whitespace only, '' ...): "no value", like null."""
    return np.fromiter((not normalise_text(str(v)) for v in values), dtype=bool, count=len(values))


def values_equal(a: pd.Series, b: pd.Series, spec: CanonicalField) -> np.ndarray:
    """Element-wise equality of two aligned canonical columns under the field's tolerance rules.

    Null equals null; null never equals a value. Decimals (and integers with a
    `tolerance`) are compared as whole units of their last decimal place and are
    equal within the tolerance; strings are equal when they are equal after NFKC,
    removing whitespace and case-folding, and a string that is empty after that
    (whitespace only) is no value, equal to null. Dates compare the day only
    (a time of day on one side is ignored); datetimes compare the instant.
    """
    if spec.type == "decimal" or (spec.type == "integer" and spec.tolerance is not None):
        x, y = _units(a, spec.scale or 0), _units(b, spec.scale or 0)
        nx, ny = np.isnan(x), np.isnan(y)
        with np.errstate(invalid="ignore"):
            close = np.abs(x - y) <= tolerance_units(spec)
        return np.where(nx | ny, nx & ny, close)
    if spec.type in ("integer", "boolean"):
        x = a.astype("Int64").to_numpy(dtype="int64", na_value=0)
        y = b.astype("Int64").to_numpy(dtype="int64", na_value=0)
        nx, ny = a.isna().to_numpy(), b.isna().to_numpy()
        return np.where(nx | ny, nx & ny, x == y)
    if spec.type in ("date", "datetime"):
        x = a.to_numpy(dtype="datetime64[ns]")
        y = b.to_numpy(dtype="datetime64[ns]")
        nx, ny = np.isnat(x), np.isnat(y)
        same = np.where(nx | ny, nx & ny, x == y)
        if spec.type == "date":
            # A value carrying a time of day (a DATETIME column) on one side: a date field says the day only.
            # Only the exact mismatches are truncated to the day.
            loose = np.flatnonzero(~same & ~nx & ~ny)
            if loose.size:
                same[loose] = x[loose].astype("datetime64[D]") == y[loose].astype("datetime64[D]")
        return same
    x = a.to_numpy(dtype=object)
    y = b.to_numpy(dtype=object)
    nx, ny = pd.isna(x), pd.isna(y)
    equal = np.asarray(x == y, dtype=bool) | (nx & ny)
    loose = np.flatnonzero(~equal & ~nx & ~ny)
    if loose.size:
        # Only the few exact mismatches pay for Unicode normalisation.
        nxs = np.fromiter((normalise_text(str(v)) for v in x[loose]), dtype=object, count=loose.size)
        nys = np.fromiter((normalise_text(str(v)) for v in y[loose]), dtype=object, count=loose.size)
        equal[loose[nxs == nys]] = True
    one = np.flatnonzero(nx ^ ny)
    if one.size:
        # Null on one side only: equal when the other side is blank ('   ', '\u3000', '').
        equal[one[_blank(np.where(nx[one], y[one], x[one]))]] = True
    return equal


def format_values(values: pd.Series | Sequence[Any], spec: CanonicalField | None) -> list[str | None]:
    """Canonical values as display text (decimals with their scale, dates as YYYY-MM-DD)."""
    out: list[str | None] = []
    for value in values:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out.append(None)
        elif spec is None or spec.type == "string":
            out.append(str(value))
        elif spec.type == "decimal":
            out.append(f"{float(value):.{spec.scale or 0}f}")
        elif spec.type == "integer":
            out.append(str(int(value)))
        elif spec.type == "date":
            out.append(pd.Timestamp(value).strftime("%Y-%m-%d"))
        elif spec.type == "datetime":
            out.append(pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S"))
        elif spec.type == "boolean":
            out.append("true" if bool(value) else "false")
        else:
            out.append(str(value))
    return out


# --------------------------------------------------------------------------- helpers


def _frame(frame: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame:
    if frame is None:
        return pd.DataFrame(columns=list(columns))
    missing = [c for c in columns if c not in frame.columns]
    return frame.assign(**dict.fromkeys(missing)) if missing else frame


def _detail(code: str, **params: Any) -> str:
    return json.dumps({"code": code, **{k: v for k, v in params.items() if v is not None}}, ensure_ascii=False)


def _record(frame: pd.DataFrame, mapping: EntityMapping) -> list[str]:
    """Each row's canonical fields as a JSON object (for drill-down of only_in_* differences)."""
    names = [n for n in mapping.fields if n in frame.columns]
    texts = {n: format_values(frame[n], mapping.fields[n]) for n in names}
    return [json.dumps({n: texts[n][i] for n in names}, ensure_ascii=False) for i in range(len(frame))]


class _Collector:
    """Differences found so far, each with the text that makes its identity."""

    def __init__(self, mapping: EntityMapping) -> None:
        self.mapping = mapping
        self.parts: list[pd.DataFrame] = []

    def add(
        self,
        cls: str,
        keys: Sequence[Any],
        field: str | Sequence[str | None] | None,
        *,
        erp: Sequence[Any] | None = None,
        oa: Sequence[Any] | None = None,
        target: Sequence[Any] | None = None,
        detail: Sequence[str] | str | None = None,
        ident: Sequence[Any] | None = None,
        field_in_identity: bool = True,
    ) -> None:
        """Differences of class `cls`; identity (`diff_id`) = (class, `ident` or the key, field).

        `field_in_identity=False`: the field is shown but not part of the identity (`ident` says it all).
        """
        n = len(keys)
        if not n:
            return
        none = [None] * n
        fields = [field] * n if field is None or isinstance(field, str) else list(field)
        self.parts.append(
            pd.DataFrame(
                {
                    "class": cls,
                    "golden_key": list(keys),
                    "field": fields,
                    "erp_value": none if erp is None else list(erp),
                    "oa_value": none if oa is None else list(oa),
                    "target_value": none if target is None else list(target),
                    "detail": [detail] * n if detail is None or isinstance(detail, str) else list(detail),
                    "_ident": list(keys) if ident is None else list(ident),
                    "_ifield": fields if field_in_identity else none,
                },
                dtype=object,
            )
        )

    def result(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=COLUMNS, dtype=object)
        frame = pd.concat(self.parts, ignore_index=True)
        frame = frame.drop_duplicates(subset=["class", "_ident", "_ifield"], keep="first")
        order = {c: i for i, c in enumerate(CLASSES)}
        frame = frame.assign(_order=frame["class"].map(order), _k=frame["_ident"].astype(str))
        frame = frame.sort_values(["_order", "_k", "field"], na_position="first", kind="stable")
        entity = self.mapping.entity
        ids = [
            diff_id(entity, c, None if pd.isna(i) else str(i), None if pd.isna(f) else str(f))
            for c, i, f in zip(frame["class"], frame["_ident"], frame["_ifield"], strict=True)
        ]
        frame.insert(0, "diff_id", ids)
        out = frame[COLUMNS].reset_index(drop=True).astype(object)
        return out.where(out.notna(), None)


# --------------------------------------------------------------------------- the classes


def _id_list(ids: Sequence[str]) -> str | None:
    return ", ".join(sorted(set(ids), key=lambda v: (len(v), v))) or None


def _duplicates(found: _Collector, key_field: str, dups: Mapping[str, pd.DataFrame], quarantine: pd.DataFrame) -> None:
    """duplicate_key: per golden key, the source ids that share it in each source."""
    ids: dict[str, dict[str, list[str]]] = {}
    for source, frame in dups.items():
        if frame.empty:
            continue
        src_ids = frame[SRC_ID] if SRC_ID in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        for key, part in src_ids.astype(object).groupby(frame[KEY].astype(object)):
            ids.setdefault(str(key), {}).setdefault(source, []).extend(str(v) for v in part if v is not None)
    q = quarantine[(quarantine["rule"] == "duplicate_key") & quarantine["golden_key"].notna()]
    for key, source, src_id in zip(q["golden_key"], q["source"], q["src_id"], strict=True):
        bucket = ids.setdefault(str(key), {}).setdefault(str(source), [])
        if src_id is not None and str(src_id) not in bucket:
            bucket.append(str(src_id))
    keys = sorted(ids)
    found.add(
        "duplicate_key",
        keys,
        key_field,
        erp=[_id_list(ids[k].get("erp", [])) for k in keys],
        oa=[_id_list(ids[k].get("oa", [])) for k in keys],
        detail=[_detail("duplicate_key", sources=sorted(ids[k])) for k in keys],
    )


_SHOWN_IDS = 20


def _ids_text(ids: Sequence[str]) -> str:
    """Source record ids for a detail: the first few, then how many more."""
    ordered = sorted(set(ids), key=lambda v: (len(v), v))
    rest = len(ordered) - _SHOWN_IDS
    return ", ".join(ordered[:_SHOWN_IDS]) + (f", … (+{rest})" if rest > 0 else "")


def _gap_occurrences(quarantine: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Unmapped values as one frame: quarantined `lookup:*` records (one row each) and gap-table rows (with counts)."""
    q = quarantine[quarantine["rule"].astype(str).str.match(r"^lookup(_fail)?:")]
    parts = []
    if len(q):
        parts.append(
            pd.DataFrame(
                {
                    "source": q["source"].astype(str).to_numpy(),
                    "field": q["field"].astype(str).to_numpy(),
                    "table": q["rule"].astype(str).str.split(":", n=1).str[1].to_numpy(),
                    "value": q["value"].to_numpy(dtype=object),
                    "src_id": q["src_id"].to_numpy(dtype=object),
                    "count": 1,
                    "policy": "quarantine",
                }
            )
        )
    if len(gaps):
        parts.append(
            pd.DataFrame(
                {
                    "source": gaps["source"].astype(str).to_numpy(),
                    "field": gaps["field"].astype(str).to_numpy(),
                    "table": gaps["code_table"].astype(str).to_numpy(),
                    "value": gaps["value"].to_numpy(dtype=object),
                    "src_id": None,
                    "count": pd.to_numeric(gaps["count"], errors="coerce").fillna(0).astype(int).to_numpy(),
                    "policy": gaps["policy"].astype(str).to_numpy(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["source", "field", "table", "value", "src_id", "count", "policy", "code"])
    out = pd.concat(parts, ignore_index=True)
    text = [None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in out["value"]]
    # The lookup's own reading of a code (NFKC, no whitespace, case-folded): ' sz01' and 'SZ01' are one code.
    codes, uniques = pd.factorize(pd.Series(text, dtype=object))
    normal = np.array([*(normalise_text(u) for u in uniques), ""], dtype=object)  # [-1]: a null value
    return out.assign(value=text, code=normal[codes])


def _mapping_gaps(found: _Collector, quarantine: pd.DataFrame, gaps: pd.DataFrame) -> None:
    """mapping_gap: one per (code table, unmapped code), however many fields and records it affects.

    A code missing from a table is one thing to fix (add it to the table), so it is one difference
    whose identity is the table and the code as the lookup reads it, never the records or fields it
    touched: it keeps its `diff_id` while the affected rows come and go. The detail says how many
    records per source it affects (`counts`: quarantined records plus the largest kept/defaulted
    count of its fields), which fields (`fields`) and which quarantined records (`src_ids`).
    """
    occ = _gap_occurrences(quarantine, gaps)
    if occ.empty:
        return
    pii = {name for name, spec in found.mapping.fields.items() if spec.pii}
    masked = (occ["field"].isin(pii) & occ["src_id"].notna()).to_numpy()
    if masked.any():
        # A personal field's quarantine keeps masked values only ('S**1'), which different codes share: such a
        # record is a gap of its own rather than merged with others under one masked spelling.
        ids = occ["source"].astype(str) + ":" + occ["src_id"].astype(str)
        occ.loc[masked, "code"] = occ.loc[masked, "code"].astype(str) + "#" + ids[masked]
    order = {name: i for i, name in enumerate(found.mapping.fields)}
    for (table, code), part in occ.groupby(["table", "code"], sort=True):
        fields = sorted(set(part["field"]), key=lambda f: (order.get(f, len(order)), f))
        # Shown under one field; a pii one if any, so that the report masks the values.
        shown = next((f for f in fields if f in found.mapping.fields and found.mapping.fields[f].pii), fields[0])
        held = part[part["policy"] == "quarantine"]
        kept = part[part["policy"] != "quarantine"]
        counts: dict[str, int] = {}
        for source in sorted(set(part["source"])):
            records = held.loc[held["source"] == source, "src_id"].astype(str).nunique()
            mine = kept[kept["source"] == source]
            counts[source] = int(records + (mine.groupby("field")["count"].sum().max() if len(mine) else 0))
        spellings = {
            s: ", ".join(sorted({v for v in part.loc[part["source"] == s, "value"] if v is not None})) or None
            for s in SOURCES
        }
        if len(held):
            code_name = "unmapped_quarantined"
            policy = None
        else:
            policy = str(sorted(set(kept["policy"]))[0])
            code_name = "unmapped_kept" if policy == "pass" else "unmapped_defaulted"
        src_ids = {
            str(s): _ids_text(ids.astype(str).tolist()) for s, ids in held.groupby("source", sort=True)["src_id"]
        }
        found.add(
            "mapping_gap",
            [None],
            shown,
            erp=[spellings["erp"]],
            oa=[spellings["oa"]],
            detail=_detail(
                code_name,
                table=str(table),
                policy=policy,
                counts=counts,
                src_ids=src_ids or None,
                fields=fields,
            ),
            ident=[f"{table}={code}"],
            field_in_identity=False,
        )


def _orphans(
    found: _Collector,
    mapping: EntityMapping,
    target: pd.DataFrame,
    active: np.ndarray,
    quarantine: pd.DataFrame,
    reference_keys: Mapping[str, set[Any]],
) -> None:
    """orphan_reference: active golden records pointing at no active key of the referenced entity."""
    q = quarantine[quarantine["rule"].astype(str).str.startswith("reference:") & quarantine["golden_key"].notna()]
    for row in q.itertuples(index=False):
        source = str(row.source or "")
        found.add(
            "orphan_reference",
            [row.golden_key],
            row.field,
            erp=[row.value if "erp" in source else None],
            oa=[row.value if "oa" in source else None],
            detail=_detail("orphan_quarantined", ref=str(row.rule).split(":", 1)[1], value=row.value),
        )
    for field, (entity, other) in mapping.references.items():
        ref = f"{entity}.{other}"
        known = reference_keys.get(ref, reference_keys.get(field))
        if known is None or field not in target.columns or target.empty:
            continue
        values = as_text(target[field])
        bad = np.flatnonzero(active & values.notna().to_numpy() & ~values.isin([str(k) for k in known]).to_numpy())
        if not bad.size:
            continue
        shown = format_values(target[field].iloc[bad], mapping.fields[field])
        found.add(
            "orphan_reference",
            target[KEY].iloc[bad].tolist(),
            field,
            target=shown,
            detail=[_detail("orphan_reference", ref=ref, value=v) for v in shown],
        )


class _Keys:
    """Golden keys of ERP, OA, target and quarantine as integer codes: one hash pass, then plain numpy.

    Code `n` stands for a missing key; arrays indexed by code have `n + 1`
    slots and slot `n` never matches anything.
    """

    def __init__(self, erp: pd.DataFrame, oa: pd.DataFrame, target: pd.DataFrame, extra: np.ndarray) -> None:
        parts = [erp[KEY].to_numpy(dtype=object), oa[KEY].to_numpy(dtype=object), target[KEY].to_numpy(dtype=object)]
        parts.append(np.asarray(extra, dtype=object))
        codes, uniques = pd.factorize(np.concatenate(parts))
        self.n = len(uniques)
        codes[codes < 0] = self.n
        bounds = np.cumsum([len(p) for p in parts])[:-1]
        self.erp, self.oa, self.target, self.extra = np.split(codes, bounds)

    def positions(self, codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """code -> row position among `rows` (-1 where absent)."""
        pos = np.full(self.n + 1, -1, dtype=np.int64)
        pos[codes[rows]] = rows
        pos[self.n] = -1
        return pos

    def flags(self, codes: np.ndarray) -> np.ndarray:
        """code -> True for the given codes."""
        out = np.zeros(self.n + 1, dtype=bool)
        out[codes] = True
        out[self.n] = False
        return out

    def counts(self, codes: np.ndarray) -> np.ndarray:
        out = np.bincount(codes, minlength=self.n + 1)
        out[self.n] = 0
        return out


def _take(series: pd.Series, rows: np.ndarray) -> pd.Series:
    """series.iloc[rows], without the copy when `rows` is every row in order."""
    if len(rows) == len(series) and (not len(rows) or (rows[0] == 0 and bool((np.diff(rows) == 1).all()))):
        return series
    return series.iloc[rows]


def _activity(frame: pd.DataFrame, mapping: EntityMapping) -> np.ndarray:
    deletion = mapping.deletion
    if deletion.status_field and deletion.inactive_values and deletion.status_field in frame.columns:
        return ~frame[deletion.status_field].astype("str").isin(deletion.inactive_values).to_numpy()
    return np.ones(len(frame), dtype=bool)


def _drift(
    found: _Collector,
    mapping: EntityMapping,
    sides: Mapping[str, tuple[pd.DataFrame, np.ndarray]],
    target: pd.DataFrame,
    keys: _Keys,
    is_dup: np.ndarray,
    timezone: str,
) -> None:
    """target_drift: target rows that differ from the golden record the sources give.

    `sides[source]` is (frame, code -> row position of its unique rows).
    """
    from etl.engine.merge import merge

    n = len(target)
    tcodes = keys.target
    pos_t = keys.positions(tcodes, np.arange(n))
    has = {}
    for source, (frame, pos) in sides.items():
        has[source] = pos[tcodes] >= 0
        rows = pos[pos >= 0]
        codes = keys.erp if source == "erp" else keys.oa
        missing = rows[(pos_t[codes[rows]] < 0) & ~is_dup[codes[rows]]]
        if missing.size:
            missing.sort()
            ids = frame[SRC_ID].iloc[missing].tolist()
            found.add(
                "target_drift",
                frame[KEY].iloc[missing].tolist(),
                None,
                erp=ids if source == "erp" else None,
                oa=ids if source == "oa" else None,
                detail=_detail("missing_in_target", source=source),
            )
    if not n:
        return
    skipped = is_dup[tcodes]
    active = target["_active"].fillna(False).astype(bool).to_numpy() if "_active" in target else np.ones(n, bool)
    mirrored = has["erp"] | has["oa"]
    lonely = np.flatnonzero(active & ~mirrored & ~skipped)
    if lonely.size:
        found.add(
            "target_drift",
            target[KEY].iloc[lonely].tolist(),
            None,
            detail=[
                _detail("no_source_record", presence=p)
                for p in (target["_presence"].iloc[lonely] if "_presence" in target else [None] * lonely.size)
            ],
        )
    expected = np.where(has["erp"] & has["oa"], PRESENCE, np.where(has["erp"], "erp", "oa")).astype(object)
    suspect = np.zeros(n, dtype=bool)
    if "_presence" in target:
        suspect |= target["_presence"].to_numpy(dtype=object) != expected
    fields = [f for f in mapping.fields if f in target.columns]
    if "_hash" in target and len(fields) == len(mapping.fields):
        stored = pd.to_numeric(target["_hash"], errors="coerce").astype("Int64").to_numpy(dtype="int64", na_value=0)
        suspect |= row_hash(target, fields).to_numpy(dtype="int64") != stored
    else:
        suspect[:] = True
    suspect |= active != _activity(target, mapping)
    rows = np.flatnonzero(suspect & mirrored & ~skipped)
    if not rows.size:
        return
    cand = target.iloc[rows].reset_index(drop=True)
    ccodes = tcodes[rows]
    frames = {}
    src = {}
    for source, (frame, pos) in sides.items():
        at = pos[ccodes]
        part = frame.iloc[at[at >= 0]]
        frames[source] = part if SRC_ID in part.columns else part.assign(**{SRC_ID: part[KEY]})
        src[source] = (frame.iloc[np.where(at >= 0, at, 0)], at >= 0) if len(frame) else None
    golden = merge(frames, mapping, timezone).golden
    golden = golden.set_index(KEY).reindex(cand[KEY]).reset_index()
    for name in fields:
        spec = mapping.fields[name]
        if not spec.compare:  # a timestamp and the like: part of the row, not something to reconcile
            continue
        bad = np.flatnonzero(~values_equal(cand[name], golden[name], spec))
        if not bad.size:
            continue
        values = {}
        for source, got in src.items():
            if got is not None and name in got[0].columns:
                shown = format_values(got[0][name].iloc[bad], spec)
                values[source] = [v if ok else None for v, ok in zip(shown, got[1][bad], strict=True)]
        found.add(
            "target_drift",
            cand[KEY].iloc[bad].tolist(),
            name,
            erp=values.get("erp"),
            oa=values.get("oa"),
            target=format_values(cand[name].iloc[bad], spec),
            detail=[_detail("value_drift", golden=g) for g in format_values(golden[name].iloc[bad], spec)],
        )
    if "_presence" in cand:
        exp = expected[rows]
        bad = np.flatnonzero(cand["_presence"].to_numpy(dtype=object) != exp)
        found.add(
            "target_drift",
            cand[KEY].iloc[bad].tolist(),
            "_presence",
            target=cand["_presence"].iloc[bad].tolist(),
            detail=[_detail("presence_drift", expected=e) for e in exp[bad]],
        )
    want = _activity(golden, mapping)
    bad = np.flatnonzero(active[rows] != want)
    found.add(
        "target_drift",
        cand[KEY].iloc[bad].tolist(),
        "_active",
        target=["true" if a else "false" for a in active[rows][bad]],
        detail=[_detail("active_drift", expected=bool(w)) for w in want[bad]],
    )


# --------------------------------------------------------------------------- entry point


def compare_entity(
    mapping: EntityMapping,
    erp: pd.DataFrame,
    oa: pd.DataFrame,
    target: pd.DataFrame,
    *,
    quarantine: pd.DataFrame | None = None,
    gaps: pd.DataFrame | None = None,
    reference_keys: Mapping[str, set[Any]] | None = None,
    timezone: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """The differences between ERP, OA and the target of one entity.

    `erp` / `oa`: each source's canonical rows with `_key` (golden key text) and
    `_src_id`. `target`: the target table (canonical fields, `_key`, `_active`,
    `_presence`, `_hash`). `quarantine`: open quarantine rows of the entity
    (`source, src_id, golden_key, field, rule, value`); `golden_key` should be
    filled where it can be derived. `gaps`: `erpoa_gap` rows (`source, field,
    value, code_table, policy, count`). `reference_keys`: for each
    `entity.field` that a `references:` points to, the set of active keys.

    Returns a frame with columns `diff_id, class, golden_key, field, erp_value,
    oa_value, target_value, detail` (values as display text, `detail` a JSON
    object with a `code`), sorted by class and key.
    """
    erp = canonical(_frame(erp, [KEY, SRC_ID]), mapping, timezone)
    oa = canonical(_frame(oa, [KEY, SRC_ID]), mapping, timezone)
    target = canonical(_frame(target, [KEY]), mapping, timezone)
    q = _frame(quarantine, QUARANTINE_COLUMNS).astype(object)
    q = q.where(q.notna(), None)
    found = _Collector(mapping)
    qkeyed = q[q["golden_key"].notna()]
    qkeyed = qkeyed.assign(_pos=np.arange(len(qkeyed)))
    keys = _Keys(erp, oa, target, qkeyed["golden_key"].astype(str).to_numpy(dtype=object))

    # duplicate keys: within a source here, or set aside by the merge (quarantine)
    count_e, count_o = keys.counts(keys.erp), keys.counts(keys.oa)
    dup_e, dup_o = count_e[keys.erp] > 1, count_o[keys.oa] > 1
    is_dup = (count_e > 1) | (count_o > 1) | keys.flags(keys.extra[(qkeyed["rule"] == "duplicate_key").to_numpy()])
    _duplicates(found, mapping.key[0], {"erp": erp[dup_e], "oa": oa[dup_o]}, q)
    _mapping_gaps(found, q, _frame(gaps, GAP_COLUMNS))
    # Source records set aside before merging (map stage) vs golden records the checks refused (gate, integrity).
    refused_rows = _golden_level(qkeyed)
    held = {s: keys.flags(keys.extra[((qkeyed["source"] == s) & ~refused_rows).to_numpy()]) for s in SOURCES}
    refused = keys.flags(keys.extra[refused_rows.to_numpy()])
    skip = is_dup | refused

    ue = np.flatnonzero(~dup_e & (keys.erp < keys.n))
    uo = np.flatnonzero(~dup_o & (keys.oa < keys.n))
    pos_e, pos_o = keys.positions(keys.erp, ue), keys.positions(keys.oa, uo)
    pos_t = keys.positions(keys.target, np.arange(len(target)))
    presence = target["_presence"].to_numpy(dtype=object) if "_presence" in target else None

    for cls, rows, codes, other_pos, other_held, frame, side in (
        ("only_in_erp", ue, keys.erp, pos_o, held["oa"], erp, "erp"),
        ("only_in_oa", uo, keys.oa, pos_e, held["erp"], oa, "oa"),
    ):
        c = codes[rows]
        lonely = rows[(other_pos[c] < 0) & ~is_dup[c] & ~other_held[c]]
        if not lonely.size:
            continue
        subset = frame.iloc[lonely]
        ids = subset[SRC_ID].astype(object).where(subset[SRC_ID].notna(), None).tolist()
        tp = pos_t[codes[lonely]]
        published = [presence[p] if presence is not None and p >= 0 else None for p in tp]
        found.add(
            cls,
            subset[KEY].tolist(),
            None,
            erp=ids if side == "erp" else None,
            oa=ids if side == "oa" else None,
            detail=[
                _detail("missing_in_oa" if side == "erp" else "missing_in_erp", record=json.loads(r), presence=p)
                for r, p in zip(_record(subset, mapping), published, strict=True)
            ],
        )
    _refused_only_in(found, qkeyed[refused_rows], keys, {"erp": pos_e, "oa": pos_o}, is_dup, held)

    ce = keys.erp[ue]
    pairs = ue[(pos_o[ce] >= 0) & ~skip[ce]]
    opos = pos_o[keys.erp[pairs]]
    # A field only one system feeds (the ERP's leaf flag) has nothing to be compared with.
    both = [n for n in mapping.fields if all(n in src.fields for src in mapping.sources.values())]
    for name, spec in mapping.fields.items():
        if (
            not spec.compare
            or name in mapping.key
            or name not in both
            or name not in erp.columns
            or name not in oa.columns
        ):
            continue
        a, b = _take(erp[name], pairs), _take(oa[name], opos)
        bad = np.flatnonzero(~values_equal(a, b, spec))
        if not bad.size:
            continue
        av, bv = a.iloc[bad], b.iloc[bad]
        tp = pos_t[keys.erp[pairs[bad]]]
        if name in target.columns and len(target):
            shown = format_values(target[name].iloc[np.where(tp >= 0, tp, 0)], spec)
            target_text = [t if p >= 0 else None for t, p in zip(shown, tp, strict=True)]
        else:
            target_text = [None] * bad.size
        found.add(
            "field_mismatch",
            erp[KEY].iloc[pairs[bad]].tolist(),
            name,
            erp=format_values(av, spec),
            oa=format_values(bv, spec),
            target=target_text,
            detail=_mismatch_details(av, bv, spec),
        )

    active = (
        target["_active"].fillna(False).astype(bool).to_numpy() if "_active" in target else np.ones(len(target), bool)
    )
    _orphans(found, mapping, target, active, q, reference_keys or {})
    _drift(found, mapping, {"erp": (erp, pos_e), "oa": (oa, pos_o)}, target, keys, skip, timezone)
    return found.result()


def _golden_level(q: pd.DataFrame) -> pd.Series:
    """Quarantine rows about golden records (refused by the gate or the reference check), not source rows."""
    if q["stage"].notna().any():
        return q["stage"].astype(str).str.match(r"^(gate|integrity)")
    return q["rule"].astype(str).str.startswith("reference:") | q["source"].astype(str).str.contains("+", regex=False)


def _source_ids(source: str, src_id: Any) -> dict[str, str]:
    """{source: id} of a quarantine row (golden-level rows hold a JSON object of ids: `source_records`)."""
    text = "" if src_id is None or pd.isna(src_id) else str(src_id)
    return dict(source_records(source, text)) if text else {}


def _refused_only_in(
    found: _Collector,
    refused: pd.DataFrame,
    keys: _Keys,
    positions: Mapping[str, np.ndarray],
    is_dup: np.ndarray,
    held: Mapping[str, np.ndarray],
) -> None:
    """only_in_*: golden records refused by the checks never reach the mirror, yet their presence is known."""
    if refused.empty:
        return
    codes = dict(zip(refused["golden_key"].astype(str), keys.extra[refused["_pos"].to_numpy()], strict=True))
    sides: dict[str, set[str]] = {}
    ids: dict[str, dict[str, str]] = {}
    rows = zip(refused["golden_key"].astype(str), refused["source"], refused["src_id"], strict=True)
    for key, source, src_id in rows:
        sides.setdefault(key, set()).update(s for s in str(source or "").split("+") if s in SOURCES)
        ids.setdefault(key, {}).update(_source_ids(str(source), src_id))
    for key in sorted(sides):
        if len(sides[key]) != 1:
            continue
        side = next(iter(sides[key]))
        other = "oa" if side == "erp" else "erp"
        code = codes[key]
        if positions[other][code] >= 0 or is_dup[code] or held[other][code]:
            continue
        found.add(
            f"only_in_{side}",
            [key],
            None,
            erp=[ids[key].get("erp")] if side == "erp" else None,
            oa=[ids[key].get("oa")] if side == "oa" else None,
            detail=_detail(f"missing_in_{other}", refused=True),
        )


def _tolerance_text(spec: CanonicalField) -> str | None:
    """The tolerance a numeric detail quotes, in plain decimals; None for an exact (integer) comparison.

    The default tolerance, half a unit of the last decimal place, needs one decimal more than the scale.
    """
    if spec.tolerance is None and spec.type != "decimal":
        return None
    scale = spec.scale or 0
    if spec.tolerance is None:
        return f"{tolerance_of(spec):.{scale + 1}f}"
    exponent = Decimal(str(spec.tolerance)).normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f"{float(spec.tolerance):.{max(scale, places)}f}"


def _no_value(value: Any) -> bool:
    """Null, or text that is blank once normalised."""
    if isinstance(value, str):
        return not normalise_text(value)
    return value is None or bool(pd.isna(value))


def _mismatch_details(a: pd.Series, b: pd.Series, spec: CanonicalField) -> list[str]:
    out = []
    numeric = spec.type in ("decimal", "integer")
    tolerance = _tolerance_text(spec) if numeric else None
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if _no_value(x):
            out.append(_detail("missing_erp"))
        elif _no_value(y):
            out.append(_detail("missing_oa"))
        elif numeric:
            # exact decimal text of each value (str gives a float's shortest round-trip digits), not float - float
            delta = f"{Decimal(str(x)) - Decimal(str(y)):+.{spec.scale or 0}f}"
            out.append(_detail("numeric", delta=delta, tolerance=tolerance))
        else:
            out.append(_detail("value"))
    return out
