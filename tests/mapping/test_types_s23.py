"""The type casts of `decimal` and `integer` fields (`etl.mapping.types.coerce_series`).

* A `decimal` field mapped without the `decimal` transform rounded with pandas' `round` (half to even on the
  binary float: 0.125 -> 0.12, 1.005 -> 1.00, 2.5 -> 2) where the docs and the transform round half away from zero
  (0.13, 1.01, 3). The cast now rounds as the transform does.
* A numeric source's NaN (PostgreSQL `numeric 'NaN'`, a `Decimal('NaN')` to the driver) was published as NULL:
  pandas calls it missing. It is quarantined, with a reason that says NaN.
* An `integer` field refused every value of 2^53 or more ("value is not a valid integer"), though its type is a
  64-bit integer: the whole int64 range is now taken exactly, and what it refuses (outside int64, a float too large to
  hold every integer) says why.
* An empty string was refused with a reason about the string's length.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

import etl.db.read
from etl.config.project import load_project
from etl.engine.pipeline import open_store, run_sync
from etl.errors import DataError
from etl.mapping.apply import map_chunk
from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.registry import TransformContext
from etl.mapping.transforms import DecimalArgs, OnErrorArgs, decimal, to_integer
from etl.mapping.types import coerce, coerce_series
from tests.helpers.project import THREE, TINY, execute_sql, make_project, replace_in, urls_for

pytestmark = pytest.mark.unit

TIES = ["0.125", "1.005", "-2.675", "2.5", "0.5", "-0.5", "1.115", "-1.115", "12345678901.125"]
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


def _ctx(frame: pd.DataFrame | None = None) -> TransformContext:
    return TransformContext(
        field="amount",
        source="erp",
        frame=frame if frame is not None else pd.DataFrame(),
        code_tables={},
        as_of=date(2026, 1, 1),
        timezone="Asia/Shanghai",
        pii=False,
    )


def _half_up(value: str, scale: int) -> float:
    return float(Decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP))


def _as(kind: str, values: list[str]) -> pd.Series:
    if kind == "text":
        return pd.Series(values, dtype=object)
    if kind == "Decimal":
        return pd.Series([Decimal(v) for v in values], dtype=object)
    return pd.Series([float(v) for v in values])


@pytest.mark.parametrize("scale", [0, 1, 2])
@pytest.mark.parametrize("kind", ["text", "Decimal", "float"])
def test_the_decimal_cast_rounds_half_away_from_zero_like_the_transform(kind: str, scale: int) -> None:
    spec = CanonicalField(type="decimal", scale=scale)
    series = _as(kind, TIES)
    cast, bad = coerce_series(series, spec)
    assert not bad.any()
    assert cast.tolist() == [_half_up(v, scale) for v in TIES]
    assert cast.tolist() == decimal(series, DecimalArgs(scale=scale), _ctx()).tolist()
    # values read back from a database (`coerce`'s own route for Decimals) round the same
    assert coerce(pd.DataFrame({"a": series}), {"a": spec})["a"].tolist() == cast.tolist()


def test_the_decimal_cast_agrees_with_exact_rounding_on_many_values() -> None:
    rng = np.random.default_rng(23)
    whole = rng.integers(-(10**9), 10**9, 3000)
    places = rng.integers(1, 6, 3000)
    fraction = rng.integers(0, 10**5, 3000)
    texts = [f"{w}.{str(f).zfill(5)[:p]}" for w, f, p in zip(whole, fraction, places, strict=True)]
    texts += [f"{w}.{p}5" for w, p in zip(whole[:500], places[:500], strict=True)]  # ties at 2 places
    for scale in (0, 2):
        cast, bad = coerce_series(pd.Series(texts, dtype=object), CanonicalField(type="decimal", scale=scale))
        assert not bad.any()
        assert cast.tolist() == [_half_up(t, scale) for t in texts]


def test_negative_zero_is_zero() -> None:
    cast, _ = coerce_series(pd.Series(["-0.001", "-0.4"]), CanonicalField(type="decimal", scale=0))
    assert [np.copysign(1.0, v) for v in cast] == [1.0, 1.0]


@pytest.mark.parametrize("spec", [CanonicalField(type="decimal", scale=2), CanonicalField(type="integer")])
def test_a_numeric_nan_or_infinity_is_quarantined_not_published_as_null(spec: CanonicalField) -> None:
    series = pd.Series([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), None, Decimal("7")], dtype=object)
    values, bad = coerce_series(series, spec)
    assert bad.tolist() == [True, True, True, False, False]
    assert values.isna().tolist() == [True, True, True, True, False]
    for floats in (pd.Series([np.inf, -np.inf, np.nan, 7.0]), pd.Series(["NaN", "inf", None, "7"], dtype=object)):
        assert coerce_series(floats, spec)[1].tolist() == [True, True, False, False]


def test_the_decimal_transform_and_multiply_quarantine_a_decimal_nan() -> None:
    series = pd.Series([Decimal("NaN"), Decimal("1.005"), None], dtype=object)
    ctx = _ctx()
    out = decimal(series, DecimalArgs(scale=2), ctx)
    assert out.tolist()[1] == 1.01 and np.isnan(out.tolist()[0])
    assert [(r.rule, r.reason, r.mask.tolist()) for r in ctx.rejections] == [
        ("decimal", "'NaN' is not a number", [True, False, False])
    ]
    ctx = _ctx()
    to_integer(pd.Series([Decimal("NaN"), "1"], dtype=object), OnErrorArgs(), ctx)
    assert [(r.rule, r.mask.tolist()) for r in ctx.rejections] == [("to_integer", [True, False])]


INTEGERS: list[Any] = [
    9007199254740993,
    INT64_MAX,
    INT64_MIN,
    123456789012345678,
    -9007199254740993,
    1,
    None,
]


@pytest.mark.parametrize("kind", ["int64", "Int64", "object ints", "text", "grouped text", "Decimal", "to_integer"])
def test_integers_are_taken_exactly_over_the_whole_int64_range(kind: str) -> None:
    present = [v for v in INTEGERS if v is not None]
    series = {
        "int64": pd.Series(present, dtype="int64"),
        "Int64": pd.Series(INTEGERS, dtype="Int64"),
        "object ints": pd.Series(INTEGERS, dtype=object),
        "text": pd.Series([None if v is None else str(v) for v in INTEGERS], dtype=object),
        "grouped text": pd.Series([None if v is None else f"{v:,}" for v in INTEGERS], dtype=object),
        "Decimal": pd.Series([None if v is None else Decimal(v) for v in INTEGERS], dtype=object),
        "to_integer": to_integer(pd.Series([None if v is None else str(v) for v in INTEGERS]), OnErrorArgs(), _ctx()),
    }[kind]
    values, bad = coerce_series(series, CanonicalField(type="integer"))
    assert not bad.any()
    assert values.dtype == "Int64"
    expected = present if kind == "int64" else INTEGERS
    assert [None if v is pd.NA else int(v) for v in values] == expected


def _type_reasons(values: list[Any], field_type: str = "integer", dtype: Any = object) -> dict[str, list[str]]:
    """map_chunk of `values` in a one-field mapping: {reason: the values refused for it}."""
    mapping = EntityMapping.model_validate(
        {
            "entity": "thing",
            "key": "code",
            "fields": {
                "code": {"type": "string"},
                "value": {"type": field_type, "scale": 2} if field_type == "decimal" else {"type": field_type},
            },
            "sources": {"erp": {"table": "t", "id": "id", "fields": {"code": "id", "value": "v"}}},
            "target": {"table": "md_thing"},
        }
    )
    raw = pd.DataFrame({"id": [f"D{i}" for i in range(len(values))], "v": pd.Series(values, dtype=dtype)})
    chunk = map_chunk(raw, mapping, "erp", {}, as_of=date(2026, 1, 1))
    rejects = chunk.rejects
    assert set(rejects["rule"]) <= {f"type:{field_type}"}
    return {reason: list(group["value"]) for reason, group in rejects.groupby("reason")}


def test_an_integer_field_says_why_it_refuses_a_value() -> None:
    reasons = _type_reasons(
        ["9223372036854775808", 2**64 + 1, "-9,223,372,036,854,775,809", "12.5", "abc", "9007199254740993", "1e3"]
    )
    assert reasons == {
        "value is outside the 64-bit integer range -9223372036854775808..9223372036854775807: correct it at the "
        "source, or map the field as a string": [
            "9223372036854775808",
            "18446744073709551617",
            "-9,223,372,036,854,775,809",
        ],
        "value is not a valid integer": ["12.5", "abc"],
    }


def test_an_integer_field_refuses_a_float_that_may_have_lost_digits() -> None:
    # a float of 2^53 or more may be a rounded integer (9007199254740993 read through a float is ...992)
    reasons = _type_reasons([9007199254740992.0, 9007199254740991.0, 1.5, np.nan], dtype="float64")
    [(reason, refused)] = [(r, v) for r, v in reasons.items() if r != "value is not a valid integer"]
    assert refused == ["9007199254740992"]
    assert reason.startswith("value is a floating-point number of 2^53 (9007199254740992) or more")
    assert reasons["value is not a valid integer"] == ["1.5"]
    ctx = _ctx()
    out = to_integer(pd.Series([9007199254740992.0, 9007199254740991.0]), OnErrorArgs(), ctx)
    assert out.tolist() == [pd.NA, 9007199254740991]
    assert [r.mask.tolist() for r in ctx.rejections] == [[True, False]]
    assert "floating-point number of 2^53" in ctx.rejections[0].reason


def test_a_nan_is_refused_as_nan() -> None:
    reasons = _type_reasons([Decimal("NaN"), Decimal("Infinity"), Decimal("1.5")], field_type="decimal")
    [reason] = reasons
    assert reason.startswith("value is NaN or infinite"), reasons
    assert reasons[reason] == ["NaN", "Infinity"]


def test_an_empty_string_is_refused_for_being_empty_not_long() -> None:
    reasons = _type_reasons(["", "x" * 300, "ok"], field_type="string")
    assert list(reasons.values()) == [[""], ["x" * 300]]
    empty, long = reasons
    assert "empty string" in empty and "`trim`" in empty and "null_if" in empty
    assert "at most 255 characters" in long


# ----------------------------------------------------------------------------------------------- end to end

BIG = {"D01": 9007199254740993, "D02": INT64_MAX, "D03": INT64_MIN, "D04": 123456789012345678}
AMOUNTS = {"D01": "0.125", "D02": "1.005", "D03": "-2.675", "D04": "2.5"}


def _add_columns(config: Any) -> list[str]:
    """ERP departments get a BIGINT, a BIGINT-as-text and a NUMERIC column; the mapping reads them as integer and
    decimal fields without transforms. Returns the department codes given values (the others hold NULL)."""
    erp = config.connection("erp").sqlalchemy_url()
    engine = create_engine(erp)
    dialect = engine.dialect.name
    q = "`" if dialect == "mysql" else '"'
    with engine.connect() as conn:
        codes = sorted(r[0] for r in conn.execute(text(f"SELECT {q}cDepCode{q} FROM {q}Department{q}")))[:5]
    engine.dispose()
    for column, sql_type in (("nBig", "BIGINT"), ("cBig", "VARCHAR(30)"), ("nAmt", "NUMERIC(20,4)")):
        execute_sql(erp, f"ALTER TABLE {q}Department{q} ADD COLUMN {q}{column}{q} {sql_type}")
    rows = [
        {"c": code, "b": big, "t": str(big), "a": amount}
        for code, big, amount in zip(codes, BIG.values(), AMOUNTS.values(), strict=False)
    ]
    execute_sql(
        erp,
        f"UPDATE {q}Department{q} SET {q}nBig{q} = :b, {q}cBig{q} = :t, {q}nAmt{q} = :a WHERE {q}cDepCode{q} = :c",
        rows,
    )
    if dialect == "postgresql":  # only PostgreSQL's numeric holds a NaN
        execute_sql(erp, f"UPDATE {q}Department{q} SET {q}nAmt{q} = 'NaN' WHERE {q}cDepCode{q} = :c", {"c": codes[4]})
    replace_in(
        config.resolve(config.mappings) / "department.yaml",
        (
            "  updated_at: {type: datetime, compare: false}\n",
            "  updated_at: {type: datetime, compare: false}\n  big: {type: integer}\n  big_text: {type: integer}\n"
            "  amount: {type: decimal, scale: 2}\n  amount0: {type: decimal, scale: 0}\n",
        ),
        (
            "      updated_at: {from: [dModifyDate, dDepBeginDate], transforms: [coalesce]}\n",
            "      updated_at: {from: [dModifyDate, dDepBeginDate], transforms: [coalesce]}\n"
            "      big: nBig\n      big_text: cBig\n      amount: nAmt\n      amount0: nAmt\n",
        ),
    )
    return codes


def test_integers_read_back_as_floats_stop_the_sync_rather_than_become_null() -> None:
    """A reader that makes a column of integers and NULLs float64 may have changed integers of 2^53 or more: `coerce`
    (of values read back from the stage or the target) stops instead of publishing them as NULL."""
    spec = {"big": CanonicalField(type="integer")}
    below = coerce(pd.DataFrame({"big": [9007199254740991.0, np.nan]}), spec)["big"]
    assert below.tolist() == [9007199254740991, pd.NA]
    with pytest.raises(DataError, match=r"integer field 'big': 1 value\(s\) of 2\^53 or more"):
        coerce(pd.DataFrame({"big": [123456789012345680.0, np.nan]}), spec)


#: Whether database reads keep a column of integers and NULLs exact (`etl.db.read.records_frame`, proposed with this
#: fix): without, the stage's big integers are read back as floats and the sync stops (see the test above).
READS_EXACT = hasattr(etl.db.read, "records_frame")


@pytest.mark.xfail(not READS_EXACT, strict=True, reason="needs etl.db.read.records_frame (reads keep integers exact)")
@pytest.mark.parametrize("backend", THREE)
def test_large_integers_and_half_up_amounts_reach_the_target_exactly(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config, _ = make_project(tmp_path / "project", urls_for(backend, request, tmp_path), size=TINY)
    codes = _add_columns(config)
    assert config.config_path is not None
    config = load_project(config.config_path)
    first, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert first.entities[0].status == "success", first.message
    found = open_store(config).quarantine(entity="department")
    typed = found[found["rule"].str.startswith("type:")]
    nan = [(codes[4], "amount", "NaN"), (codes[4], "amount0", "NaN")] if backend == "postgres" else []
    assert sorted(zip(typed["src_id"], typed["field"], typed["value"], strict=True)) == nan, typed.to_dict("records")
    assert typed["reason"].str.startswith("value is NaN or infinite").all()
    engine = create_engine(config.connection("target").sqlalchemy_url())
    q = engine.dialect.identifier_preparer.quote
    with engine.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                text(f"SELECT department_code, big, big_text, amount, amount0 FROM {q('md_department')}")
            )
        }
    engine.dispose()
    for code, big, amount in zip(codes, BIG.values(), AMOUNTS.values(), strict=False):
        got_big, got_text, got_amount, got_amount0 = rows[f"D{code}"]  # the code table's unified code
        assert (int(got_big), int(got_text)) == (big, big), code
        assert Decimal(str(got_amount)) == Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), code
        assert Decimal(str(got_amount0)) == Decimal(amount).quantize(Decimal(1), rounding=ROUND_HALF_UP), code
    # read back from the stage and the target, the values hash as they were mapped: nothing to update
    second, _ = run_sync(config, full_refresh=True, entities=["department"])
    counts = second.entities[0]
    assert counts.status == "success", second.message
    assert (counts.updated, counts.inserted, counts.unchanged) == (0, 0, len(rows)), counts
