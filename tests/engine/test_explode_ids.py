"""The cross-reference rows cut out of gold `_ids` are exactly what `json.loads` of each finds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.engine.merge import _json_ids, _json_ids_text
from etl.engine.publish import _explode_ids


def _reference(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {
        (source, src_id, key)
        for key, text in zip(frame["golden_key"], frame["ids"], strict=True)
        if isinstance(text, str)
        for source, src_id in json.loads(text).items()
    }


def test_ids_written_by_merge_come_back_as_rows() -> None:
    index = pd.Index(["k1", "k2", "k3", "k4", "k5", "k6"])
    erp = pd.Series(["E1", 'say "x"', None, "back\\slash", "中文,逗号", "E6"], index=index)
    oa = pd.Series(["O1", None, "O3", "O4", None, '{"a":1}'], index=index)
    ids = _json_ids({"erp": erp.dropna(), "oa": oa.dropna()}, index)
    frame = pd.DataFrame({"golden_key": index.to_numpy(), "ids": ids.to_numpy()})
    frame.loc[len(frame)] = ["k7", np.nan]  # a gold row without ids contributes nothing
    rows = _explode_ids(frame, ["erp", "oa"])
    assert list(rows.columns) == ["source", "src_id", "golden_key"]
    got = set(rows.itertuples(index=False, name=None))
    assert got == _reference(frame)
    assert len(rows) == len(got) == 9
    assert ("erp", 'say "x"', "k2") in got and ("erp", "back\\slash", "k4") in got and ("oa", '{"a":1}', "k6") in got


def test_a_source_named_in_no_row_gives_no_rows() -> None:
    frame = pd.DataFrame({"golden_key": ["a"], "ids": ['{"erp":"1"}']})
    rows = _explode_ids(frame, ["erp", "oa", "hr"])
    assert rows.values.tolist() == [["erp", "1", "a"]]


PLAIN_ID = st.text(alphabet=st.characters(blacklist_characters='\\",', blacklist_categories=("Cs", "Cc")), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[st.one_of(st.none(), PLAIN_ID)] * 3), min_size=1, max_size=40))
def test_ids_json_built_in_arrow_is_the_general_routes(rows: list[tuple[str | None, ...]]) -> None:
    """The fast route (Arrow, column by column) writes what the general one writes, keys without ids included."""
    index = pd.Index([f"k{i}" for i in range(len(rows))])
    ids = {
        source: pd.Series([r[n] for r in rows], index=index, dtype=object).dropna()
        for n, source in enumerate(["erp", "oa", "hr"])
    }
    fast = _json_ids(ids, index)
    assert fast.tolist() == _json_ids_text(ids, index).tolist()
    assert [json.loads(t) for t in fast] == [
        {s: r[n] for n, s in enumerate(["erp", "oa", "hr"]) if r[n] is not None} for r in rows
    ]
