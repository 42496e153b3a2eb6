"""A `string` field without `length:` gets a target column of 255 characters: longer values are rejected, not
left to fail the publish (PostgreSQL and MariaDB refuse them with an internal error; SQLite would keep them)."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.mapping.apply import _type_reason
from etl.mapping.model import DEFAULT_LENGTH, CanonicalField
from etl.mapping.types import coerce_series

pytestmark = pytest.mark.unit


def test_a_string_without_length_is_rejected_beyond_the_columns_size() -> None:
    spec = CanonicalField(type="string")
    values, bad = coerce_series(pd.Series(["a" * DEFAULT_LENGTH, "b" * (DEFAULT_LENGTH + 1), None]), spec)
    assert bad.tolist() == [False, True, False]
    assert values.iloc[0] == "a" * DEFAULT_LENGTH
    reason = _type_reason(spec)
    assert f"at most {DEFAULT_LENGTH} characters" in reason and "length:" in reason, reason


def test_a_declared_length_still_decides() -> None:
    spec = CanonicalField(type="string", length=1000)
    _, bad = coerce_series(pd.Series(["c" * 1000, "c" * 1001]), spec)
    assert bad.tolist() == [False, True]
    assert _type_reason(spec) == "value is not a valid string of at most 1000 characters"
