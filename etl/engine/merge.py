"""Match and merge: per-field survivorship over the sources' canonical rows. Pure, vectorized."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.mapping.model import EntityMapping
from etl.mapping.types import coerce

KEY = "_key"
SRC_ID = "_src_id"


@dataclass
class MergeResult:
    """Golden records (indexed by `_key`) and the source rows set aside as duplicate keys."""

    golden: pd.DataFrame
    duplicates: pd.DataFrame


def split_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose `_key` occurs once, and every row of keys that occur more than once."""
    dup = frame[KEY].duplicated(keep=False)
    if not dup.any():  # the usual case: no copy of the rows
        return frame, frame.iloc[:0]
    return frame[~dup], frame[dup]


def _presence(present: Mapping[str, np.ndarray], index: pd.Index) -> pd.Series:
    """Per golden key, the sources that have a row of it, in name order joined by '+' ('erp+oa')."""
    names = sorted(present)
    # Which sources have the key, as the bits of a number; each combination that occurs is labelled once.
    combination = np.zeros(len(index), dtype=np.int64 if len(names) < 63 else object)  # object: Python's ints
    for bit, source in enumerate(names):
        combination += present[source].astype(combination.dtype) * (1 << bit)
    codes, combinations = pd.factorize(combination)
    labels = np.array(["+".join(s for bit, s in enumerate(names) if int(n) >> bit & 1) for n in combinations])
    return pd.Series(labels[codes] if len(labels) else [], index=index, dtype="str")


def _json_ids(ids: Mapping[str, pd.Series], index: pd.Index) -> pd.Series:
    """`{"erp":"<id>","oa":"<id>"}` per golden key, sources without a row left out.

    Built by Arrow in C++ column by column (`_json_ids_text` is the general route, for ids that
    need escaping). Not with `binary_join_element_wise(..., null_handling="skip")`: pyarrow 26
    drops the rows where every value is null from its result.
    """
    joined = pa.array([""] * len(index), pa.large_string())
    for source, series in ids.items():
        aligned = series if series.index is index else series.reindex(index)
        text = aligned.astype("str")
        if text.str.contains(r'[\\",]', regex=True).fillna(False).any():
            return _json_ids_text(ids, index)  # ids that need escaping (or hold commas): the general route
        present = pa.array(aligned.notna().to_numpy())
        pair = pc.binary_join_element_wise(
            _large(f'"{source}":"'),
            pc.fill_null(pa.array(text.to_numpy(dtype=object), pa.large_string(), from_pandas=True), _large("")),
            _large('"'),
            _large(""),
        )
        after = pc.binary_join_element_wise(joined, pair, _large(","))
        joined = pc.if_else(present, pc.if_else(pc.equal(joined, _large("")), pair, after), joined)
    out = pc.binary_join_element_wise(_large("{"), joined, _large("}"), _large(""))
    return pd.Series(out.to_numpy(zero_copy_only=False), index=index, dtype="str")


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _json_ids_text(ids: Mapping[str, pd.Series], index: pd.Index) -> pd.Series:
    parts = []
    for source, series in ids.items():
        escaped = (
            series.reindex(index)
            .astype("str")
            .str.replace("\\", "\\\\", regex=False)
            .str.replace('"', '\\"', regex=False)
        )
        parts.append(('"' + source + '":"' + escaped + '"').where(series.reindex(index).notna(), ""))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.str.cat(part, sep=",")
    joined = joined.str.replace(r"^,+|,+$", "", regex=True).str.replace(r",{2,}", ",", regex=True)
    return "{" + joined + "}"


def merge(frames: Mapping[str, pd.DataFrame], mapping: EntityMapping, timezone: str = "Asia/Shanghai") -> MergeResult:
    """Build one golden record per key from each source's rows.

    `frames[source]` holds that source's current canonical rows with `_key` and
    `_src_id`. Keys duplicated within one source are removed (returned in
    `duplicates` with a `_source` column) and never merged at random.
    """
    clean: dict[str, pd.DataFrame] = {}
    dups = []
    for source, frame in frames.items():
        ok, dup = split_duplicates(frame)
        if not dup.empty:
            dups.append(dup.assign(_source=source))
        clean[source] = ok.set_index(KEY, drop=False)
    keys = pd.concat([pd.Series(f.index) for f in clean.values()], ignore_index=True) if clean else pd.Series([])
    index = pd.Index(keys.drop_duplicates().sort_values(ignore_index=True), name=KEY)
    golden = pd.DataFrame(index=index)
    golden[KEY] = index.to_numpy()
    surv = mapping.survivorship
    recency = surv.recency_field
    # Each source's row positions in the golden index, looked up once (not per field and source); a field's
    # values are taken by them when it is merged, so the sources are never held aligned as whole frames.
    aligned = {s: _Aligned(f, index) for s, f in clean.items()}
    for field in mapping.fields:
        rule = surv.rule(field)
        columns = {s: aligned[s][field] for s, f in clean.items() if field in f.columns}
        if not columns:
            golden[field] = pd.Series(np.nan, index=index, dtype=object)
            continue
        if rule == "most_recent" and recency:
            golden[field] = _most_recent(
                columns, {s: aligned[s][recency] for s, f in clean.items() if recency in f}, index
            )
            continue
        order = [s for s in (rule if isinstance(rule, list) else list(clean)) if s in columns]
        order += [s for s in columns if s not in order]
        value = columns[order[0]]
        for source in order[1:]:
            value = value.where(value.notna(), columns[source])
        golden[field] = value
    golden["_presence"] = _presence({s: a.positions >= 0 for s, a in aligned.items()}, index)
    golden["_ids"] = _json_ids({s: a[SRC_ID] for s, a in aligned.items()}, index) if clean else pd.Series(dtype="str")
    golden = coerce(golden.reset_index(drop=True), mapping.fields, timezone, copy=False)
    duplicates = pd.concat(dups, ignore_index=True) if dups else pd.DataFrame(columns=[KEY, SRC_ID, "_source"])
    return MergeResult(golden=golden, duplicates=duplicates)


class _Aligned:
    """Columns of `frame` (unique index) reindexed to `index` on demand, missing rows as NA.

    `aligned[c]` is `frame.reindex(index)[c]`, without building the whole reindexed frame.
    """

    def __init__(self, frame: pd.DataFrame, index: pd.Index) -> None:
        self.frame, self.index = frame, index
        self.positions = frame.index.get_indexer(index)

    def __getitem__(self, column: str) -> pd.Series:
        values = pd.api.extensions.take(self.frame[column].array, self.positions, allow_fill=True)
        return pd.Series(values, index=self.index, name=column)


def _most_recent(values: Mapping[str, pd.Series], stamps: Mapping[str, pd.Series], index: pd.Index) -> pd.Series:
    """Per key, the value from the source with the latest non-null recency stamp (ties: first source)."""
    sources = list(values)
    stamp = pd.DataFrame({s: stamps.get(s, pd.Series(pd.NaT, index=index)) for s in sources}, index=index)
    stamp = stamp.where(pd.DataFrame({s: values[s].notna() for s in sources}, index=index))
    filled = stamp.astype("datetime64[ns]").fillna(pd.Timestamp.min)
    winner = filled.idxmax(axis=1)
    out = values[sources[0]].copy()
    for source in sources[1:]:
        out = out.where(winner != source, values[source])
    first_nonnull = values[sources[0]]
    for source in sources[1:]:
        first_nonnull = first_nonnull.where(first_nonnull.notna(), values[source])
    return out.where(out.notna(), first_nonnull)
