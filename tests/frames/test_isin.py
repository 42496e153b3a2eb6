"""`etl.frames.isin` answers what pandas' `isin` answers, whatever the storage and candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.frames import isin

VALUES = ["a", "b", None, "", "全角Ａ", "0012", "a\x1fb", "b"]

CANDIDATES = [
    {"a", "0012"},
    ["b", None],
    [""],
    [],
    ["全角Ａ", "a\x1fb", "zz"],
    [1, "a"],  # not all text: pandas' route
    [np.nan, "b"],
    pd.Index(["b", "c"]),
    pd.Series(["", "a"]),
    (x for x in ["a", "b"]),
]


@pytest.mark.parametrize("storage", ["pyarrow", "python"])
@pytest.mark.parametrize("index", [False, True])
@pytest.mark.parametrize("case", range(len(CANDIDATES)))
def test_isin_agrees_with_pandas(storage: str, index: bool, case: int) -> None:
    dtype = pd.StringDtype(storage, na_value=np.nan)
    values: pd.Series | pd.Index = pd.Series(VALUES, dtype=dtype)
    if index:
        values = pd.Index(values)
    candidates = CANDIDATES[case]
    if case == len(CANDIDATES) - 1:
        expected = values.isin(["a", "b"])
        candidates = (x for x in ["a", "b"])
    else:
        expected = values.isin(candidates)
    got = isin(values, candidates)
    assert got.dtype == bool
    assert got.tolist() == np.asarray(expected).tolist()


def test_isin_of_numbers_is_pandas_isin() -> None:
    values = pd.Series([1, 2, None], dtype="Int64")
    assert isin(values, {2, 3}).tolist() == [False, True, False]


def test_arrow_candidates_of_another_string_type() -> None:
    values = pd.Series(["x", "y"], dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    assert isin(values, pd.Series(["y"], dtype=pd.StringDtype("python", na_value=np.nan))).tolist() == [False, True]
