"""Thousands separators in numeric text: only valid grouping is read, anything else is quarantined (review D10).

A European amount (``1.234,50``, common in SAP exports) read with its comma dropped would be 1000 times too
small and pass unnoticed; `decimal`, `to_integer` and the canonical coercion must refuse it instead.
"""

from __future__ import annotations

import pandas as pd
import pytest

from etl.mapping.model import CanonicalField
from etl.mapping.types import coerce_series
from tests.mapping.test_transforms import make_ctx, only_rejection, run, values

pytestmark = pytest.mark.unit


def test_decimal_reads_valid_thousands_grouping() -> None:
    ctx = make_ctx()
    data = ["1,234,567.89", "-1,234.5", "+1,234", "１，２３４.５", "(1,234.50)", "1,234.50-", "¥1,000", " 1,234 "]
    assert values(run("decimal", data, 2, ctx)) == [
        1234567.89,
        -1234.5,
        1234.0,
        1234.5,
        -1234.5,
        -1234.5,
        1000.0,
        1234.0,
    ]
    assert ctx.rejections == []


def test_decimal_quarantines_commas_that_are_not_thousands_grouping() -> None:
    ctx = make_ctx()
    out = run("decimal", ["1.234,50", "1,2,3,4", "12,34", "1,234", ",123", "1 234,50", "1,2345"], 2, ctx)
    assert values(out) == [None, None, None, 1234.0, None, None, None]
    rejection = only_rejection(ctx)
    assert rejection.rule == "decimal"
    assert rejection.mask.tolist() == [True, True, True, False, True, True, True]
    assert rejection.reason.startswith("6 values are not a number, e.g. '1.234,50', '1,2,3,4', '12,34'")


def test_to_integer_quarantines_commas_that_are_not_thousands_grouping() -> None:
    ctx = make_ctx()
    data = ["1,2,3,4", "1,234", "-12,345,678", "１，２３４", "(1,234)", "1.234,00", "12,34"]
    out = run("to_integer", data, None, ctx)
    assert values(out) == [None, 1234, -12345678, 1234, -1234, None, None]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("to_integer", [True, False, False, False, False, True, True])


@pytest.mark.parametrize("kind", ["integer", "decimal"])
def test_coercion_refuses_commas_that_are_not_thousands_grouping(kind: str) -> None:
    spec = CanonicalField(type=kind, scale=2 if kind == "decimal" else None)  # type: ignore[arg-type]
    out, bad = coerce_series(pd.Series(["1,234", "1.234,50", "1,2,3,4", None], dtype=object), spec)
    assert values(out) == [1234, None, None, None]
    assert bad.tolist() == [False, True, True, False]
