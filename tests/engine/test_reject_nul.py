"""Text with NUL is found the same way in Arrow-backed text and in object columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from etl.engine.extract import _has_nul

pytestmark = pytest.mark.unit

VALUES = ["plain", "a\x00b", "\x00", "", None, np.nan, "全角\x00", "x" * 300 + "\x00"]
EXPECTED = [False, True, True, False, False, False, True, True]


@pytest.mark.parametrize("dtype", [pd.StringDtype(na_value=np.nan), pd.StringDtype(), object])
def test_nul_found_in_every_storage_of_text(dtype: object) -> None:
    values = pd.Series(VALUES, dtype=dtype, index=range(10, 18))
    found = _has_nul(values)
    assert found.dtype == bool
    assert found.tolist() == EXPECTED
    assert found.index.equals(values.index)


def test_non_text_values_of_an_object_column_have_no_nul() -> None:
    assert _has_nul(pd.Series([1, b"a\x00", "b\x00", 2.5], dtype=object)).tolist() == [False, False, True, False]
