"""Unit tests of the built-in transforms (`etl.mapping.transforms`), run through the registry."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from etl.mapping import registry
from etl.mapping.codes import CodeEntry, CodeTable, normalize_code
from etl.mapping.registry import TransformContext
from etl.mapping.transforms import STR, as_text, is_fatal

pytestmark = pytest.mark.unit

DEPARTMENT = CodeTable(
    name="department",
    entries=[
        CodeEntry(code="D01", name="研发部", synonyms=["R&D", "研发中心", "101"]),
        CodeEntry(code="D02", name="市场部", synonyms=["MKT"], valid_to=date(2025, 12, 31)),
        CodeEntry(code="D05", name="市场与品牌部", synonyms=["市场部", "MKT"], valid_from=date(2026, 1, 1)),
    ],
)


def make_ctx(as_of: date = date(2026, 3, 1), tz: str = "Asia/Shanghai") -> TransformContext:
    return TransformContext(
        field="employee.code",
        source="erp",
        frame=pd.DataFrame(),
        code_tables={"department": DEPARTMENT},
        as_of=as_of,
        timezone=tz,
    )


@pytest.fixture
def ctx() -> TransformContext:
    return make_ctx()


def run(name: str, data: Any, raw: Any = None, ctx: TransformContext | None = None) -> pd.Series:
    """Parse `raw` as YAML would hand it over and apply transform `name`."""
    tdef = registry.get(name)
    series = data if isinstance(data, pd.Series | pd.DataFrame) else pd.Series(data, dtype=object)
    return tdef.fn(series, registry.parse_args(tdef, raw), ctx or make_ctx())


def values(s: pd.Series) -> list[Any]:
    """Values with every null flavour as None, for readable comparisons."""
    return [None if pd.isna(v) else v for v in s.tolist()]


def only_rejection(ctx: TransformContext) -> registry.Rejection:
    assert len(ctx.rejections) == 1, [(r.rule, r.reason) for r in ctx.rejections]
    return ctx.rejections[0]


# --------------------------------------------------------------------------- registry


EXPECTED = {
    "trim", "nfkc", "upper", "lower", "to_text", "pad_zeros", "strip_zeros", "regex_replace", "regex_extract",
    "replace", "slice", "split_part", "prefix", "suffix", "match", "max_length", "null_if", "default",
    "constant", "required", "concat", "coalesce", "map_values", "lookup", "parse_date", "parse_datetime",
    "decimal", "to_integer", "to_boolean", "multiply",
}  # fmt: skip


def test_every_builtin_is_registered_with_a_one_line_yaml_doc() -> None:
    assert set(registry.known_transforms()) >= EXPECTED
    for name in EXPECTED:
        tdef = registry.get(name)
        assert "\n" not in tdef.doc, name
        assert f"``- {name}" in tdef.doc, name


def test_only_concat_and_coalesce_take_several_columns() -> None:
    assert {n for n in EXPECTED if registry.get(n).multi_column} == {"concat", "coalesce"}


# --------------------------------------------------------------------------- text conversion


def test_as_text_renders_driver_values_like_a_person_would_write_them() -> None:
    mixed = pd.Series(
        [
            123, 45.0, 1.5, Decimal("1234.50"), Decimal("1E+2"), np.int64(7), True, "x",
            datetime(2026, 1, 2), datetime(2026, 1, 2, 10, 30), date(2026, 1, 3), time(9, 5),
            timedelta(hours=25, minutes=3), b"\xe4\xb8\xad", None, np.nan, pd.NA,
        ],
        dtype=object,
    )  # fmt: skip
    assert values(as_text(mixed)) == [
        "123", "45", "1.5", "1234.50", "100", "7", "true", "x", "2026-01-02", "2026-01-02 10:30:00",
        "2026-01-03", "09:05:00", "25:03:00", "中", None, None, None,
    ]  # fmt: skip
    assert as_text(mixed).dtype == STR


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        (pd.Series([101.0, np.nan, 7.25]), ["101", None, "7.25"]),
        (pd.Series([1, None, 3], dtype="Int64"), ["1", None, "3"]),
        (pd.Series([5, 6]), ["5", "6"]),
        (pd.Series([True, False]), ["true", "false"]),
        (
            pd.Series(pd.to_datetime(["2026-01-02 00:00", "2026-01-02 08:00", None])),
            ["2026-01-02", "2026-01-02 08:00:00", None],
        ),
        (pd.Series(["a", None], dtype="string"), ["a", None]),
        (pd.Series(pd.to_timedelta(["-1:30:00"])), ["-01:30:00"]),
    ],
)  # fmt: skip
def test_as_text_by_dtype(series: pd.Series, expected: list[Any]) -> None:
    assert values(as_text(series)) == expected


def test_to_text_transform_keeps_integers_without_trailing_zero(ctx: TransformContext) -> None:
    assert values(run("to_text", pd.Series([1001.0, None]), ctx=ctx)) == ["1001", None]


# --------------------------------------------------------------------------- trim, nfkc, case


def test_trim_strips_and_collapses_every_kind_of_whitespace(ctx: TransformContext) -> None:
    raw = [" 张\u3000\u3000三 ", "a\t\tb\nc", "\u00a0研发部\u00a0", "x\u200by", "\ufeffABC", "  ", "", None, 42]
    out = run("trim", raw, ctx=ctx)
    assert values(out) == ["张 三", "a b c", "研发部", "xy", "ABC", None, None, None, "42"]
    assert out.dtype == STR


@given(st.lists(st.one_of(st.none(), st.text(alphabet=" \t\n\u3000\u00a0\u2003ab张0"))))
@settings(max_examples=200, deadline=None)
def test_trim_equals_split_join(texts: list[str | None]) -> None:
    expected = [" ".join(t.split()) or None if t is not None else None for t in texts]
    assert values(run("trim", texts)) == expected


def test_nfkc_turns_full_width_into_half_width(ctx: TransformContext) -> None:
    out = run("nfkc", ["００１２３", "ＡＢＣ－１", "（研发）\u3000部", "①", None, 12], ctx=ctx)
    assert values(out) == ["00123", "ABC-1", "(研发) 部", "1", None, "12"]


def test_upper_and_lower(ctx: TransformContext) -> None:
    assert values(run("upper", ["abc研发", None, "ｘ"], ctx=ctx)) == ["ABC研发", None, "Ｘ"]
    assert values(run("lower", ["ABC", None], ctx=ctx)) == ["abc", None]


# --------------------------------------------------------------------------- zeros


def test_pad_zeros(ctx: TransformContext) -> None:
    assert values(run("pad_zeros", ["123", 45, 7.0, "1234567", None, "张"], 6, ctx)) == [
        "000123", "000045", "000007", "1234567", None, "00000张",
    ]  # fmt: skip
    assert values(run("pad_zeros", ["7"], {"width": 3, "char": "X"}, ctx)) == ["XX7"]


def test_strip_zeros(ctx: TransformContext) -> None:
    assert values(run("strip_zeros", ["0000123", "000", "0", "A01", "00A1", "", None, 120], ctx=ctx)) == [
        "123", "0", "0", "A01", "A1", "", None, "120",
    ]  # fmt: skip


def test_nfkc_trim_strip_zeros_pad_zeros_compose(ctx: TransformContext) -> None:
    data: pd.Series = pd.Series([" ００１２３ ", "\u3000０", None, 123.0], index=[10, 11, 12, 13], dtype=object)
    for name, raw in [("nfkc", None), ("trim", None), ("strip_zeros", None), ("pad_zeros", 6)]:
        data = run(name, data, raw, ctx)
    assert values(data) == ["000123", "000000", None, "000123"]
    assert list(data.index) == [10, 11, 12, 13]


# --------------------------------------------------------------------------- regex and literal edits


def test_regex_replace(ctx: TransformContext) -> None:
    out = run("regex_replace", ["ERP-001", "erp-2", None, 7], {"pattern": "(?i)^erp-(\\d+)$", "replacement": r"E\1"})
    assert values(out) == ["E001", "E2", None, "7"]
    assert values(run("regex_replace", ["a-b-c"], {"pattern": "-"}, ctx)) == ["abc"]


def test_regex_extract_groups(ctx: TransformContext) -> None:
    data = ["工号: 00123", "ID 45", "无", None]
    assert values(run("regex_extract", data, {"pattern": r"(\d+)"}, ctx)) == ["00123", "45", None, None]
    named = {"pattern": r"(?P<prefix>[A-Z]+) (?P<num>\d+)", "group": "num"}
    assert values(run("regex_extract", data, named, ctx)) == [None, "45", None, None]
    whole = {"pattern": r"(?i)id \d+", "group": 0}
    assert values(run("regex_extract", data, whole, ctx)) == [None, "ID 45", None, None]
    assert ctx.rejections == []


def test_regex_extract_of_repeated_values_keeps_rows_and_index(ctx: TransformContext) -> None:
    data = pd.Series(["QG-2024-1", None, "x", "QG-2024-1", "QG2023", "x", "ＱＧ-２０２５"], index=[9, 3, 5, 1, 7, 0, 2])
    out = run("regex_extract", data, {"pattern": r"QG-?(\d{4})", "on_no_match": "keep"}, ctx)
    assert out.index.tolist() == [9, 3, 5, 1, 7, 0, 2]
    assert values(out) == ["2024", None, "x", "2024", "2023", "x", "ＱＧ-２０２５"]


def test_regex_extract_no_match_policies() -> None:
    data = ["A12", "xyz", None]
    keep = run("regex_extract", data, {"pattern": r"(\d+)", "on_no_match": "keep"})
    assert values(keep) == ["12", "xyz", None]
    ctx = make_ctx()
    out = run("regex_extract", data, {"pattern": r"(\d+)", "on_no_match": "quarantine"}, ctx)
    assert values(out) == ["12", None, None]
    rejection = only_rejection(ctx)
    assert rejection.rule == "regex_extract"
    assert rejection.mask.tolist() == [False, True, False]
    assert rejection.reason == r"'xyz' does not match (\d+)"


def test_replace_slice_split_part_prefix_suffix(ctx: TransformContext) -> None:
    assert values(run("replace", ["（研发）", None], {"old": "（", "new": "("}, ctx)) == ["(研发）", None]
    assert values(run("replace", [1010], {"old": 0}, ctx)) == ["11"]
    assert values(run("slice", ["20260102", "研发中心", None], {"start": 0, "stop": 4}, ctx)) == [
        "2026", "研发中心", None,
    ]  # fmt: skip
    assert values(run("slice", ["ABC-01"], {"start": -2}, ctx)) == ["01"]
    split = ["总部/研发部/平台组", "总部", None]
    assert values(run("split_part", split, {"sep": "/", "index": -1}, ctx)) == ["平台组", "总部", None]
    assert values(run("split_part", split, {"sep": "/", "index": 1}, ctx)) == ["研发部", None, None]
    assert values(run("prefix", [1, None], "ERP-", ctx)) == ["ERP-1", None]
    assert values(run("suffix", ["zhang"], "@example.com", ctx)) == ["zhang@example.com"]


def test_match_quarantines_values_not_fully_matching() -> None:
    ctx = make_ctx()
    ids = ["11010519491231002X", "1101051949123100", None]
    out = run("match", ids, r"\d{17}[\dX]", ctx)
    assert values(out) == ["11010519491231002X", None, None]
    assert only_rejection(ctx).rule == "match"
    assert only_rejection(ctx).mask.tolist() == [False, True, False]
    lenient = make_ctx()
    run("match", ids, {"pattern": r"\d{17}[\dX]", "on_mismatch": "null"}, lenient)
    assert lenient.rejections == []


def test_max_length() -> None:
    ctx = make_ctx()
    out = run("max_length", ["研发部", "研发中心平台组", None], 4, ctx)
    assert values(out) == ["研发部", None, None]
    assert only_rejection(ctx).rule == "max_length"
    assert only_rejection(ctx).mask.tolist() == [False, True, False]
    assert values(run("max_length", ["研发中心平台组"], {"length": 4, "on_excess": "truncate"})) == ["研发中心"]


# --------------------------------------------------------------------------- nulls and constants


def test_null_if(ctx: TransformContext) -> None:
    data = ["", "-", "N/A", "无", "x", None, "n/a"]
    assert values(run("null_if", data, ["", "-", "N/A", "无"], ctx)) == [None, None, None, None, "x", None, "n/a"]
    assert values(run("null_if", data, {"values": ["N/A"], "ignore_case": True}, ctx))[-1] is None
    assert values(run("null_if", ["-", "x"], "-", ctx)) == [None, "x"]


def test_null_if_compares_non_text_values_as_text(ctx: TransformContext) -> None:
    assert values(run("null_if", pd.Series([0, 5, 0]), [0], ctx)) == [None, 5.0, None]
    sentinel = pd.Series(pd.to_datetime(["1900-01-01", "2026-01-02"]))
    out = run("null_if", sentinel, [date(1900, 1, 1)], ctx)
    assert values(out) == [None, pd.Timestamp("2026-01-02")]
    assert out.dtype.kind == "M"


def test_default_fills_nulls_and_empty_strings(ctx: TransformContext) -> None:
    assert values(run("default", ["a", None, "", " "], "未分配", ctx)) == ["a", "未分配", "未分配", " "]
    assert values(run("default", pd.Series(["a", None], dtype="str"), 0, ctx)) == ["a", "0"]
    assert values(run("default", pd.Series([1.5, np.nan]), 0, ctx)) == [1.5, 0.0]
    filled = run("default", pd.Series(pd.to_datetime(["2026-01-02", None])), date(1970, 1, 1), ctx)
    assert values(filled) == [pd.Timestamp("2026-01-02"), pd.Timestamp("1970-01-01")]
    assert filled.dtype.kind == "M"


def test_constant_needs_no_source_column(ctx: TransformContext) -> None:
    nulls = pd.Series([None, None, None], index=[5, 6, 7], dtype=object)
    out = run("constant", nulls, "ERP", ctx)
    assert values(out) == ["ERP"] * 3
    assert list(out.index) == [5, 6, 7]
    assert values(run("constant", nulls, 1, ctx)) == [1, 1, 1]
    assert run("constant", nulls, date(2026, 1, 1), ctx).dtype == "datetime64[ns]"


def test_required_quarantines_null_and_blank() -> None:
    ctx = make_ctx()
    out = run("required", ["A1", None, " ", "\u3000", "B2"], ctx=ctx)
    assert values(out) == ["A1", None, " ", "\u3000", "B2"]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("required", [False, True, True, True, False])


# --------------------------------------------------------------------------- multi-column


def test_concat_joins_columns_skipping_nulls(ctx: TransformContext) -> None:
    frame = pd.DataFrame({"last": ["张", None, "李", None], "first": ["三", "四", None, None], "n": [1, 2, 3.0, None]})
    assert values(run("concat", frame, {"sep": " "}, ctx)) == ["张 三 1", "四 2", "李 3", None]
    assert values(run("concat", frame, {"sep": "-", "skip_nulls": False}, ctx)) == ["张-三-1", None, None, None]
    assert values(run("concat", frame[["last", "first"]], None, ctx)) == ["张三", "四", "李", None]


def test_concat_date_and_mysql_time_then_parse_datetime(ctx: TransformContext) -> None:
    frame = pd.DataFrame(
        {"day": [date(2026, 1, 2), datetime(2026, 1, 3)], "at": [timedelta(hours=9, minutes=30), time(18, 0, 5)]}
    )
    joined = run("concat", frame, {"sep": " "}, ctx)
    assert values(joined) == ["2026-01-02 09:30:00", "2026-01-03 18:00:05"]
    parsed = run("parse_datetime", joined, "%Y-%m-%d %H:%M:%S", ctx)
    assert values(parsed) == [pd.Timestamp("2026-01-02 09:30"), pd.Timestamp("2026-01-03 18:00:05")]


def test_coalesce(ctx: TransformContext) -> None:
    frame = pd.DataFrame({"mobile": [None, "139", None, None], "phone": ["010-1", "010-2", None, 5]})
    assert values(run("coalesce", frame, None, ctx)) == ["010-1", "139", None, 5]
    same = pd.DataFrame({"a": [1.0, np.nan], "b": [2.0, 3.0]})
    out = run("coalesce", same, None, ctx)
    assert (values(out), out.dtype) == ([1.0, 3.0], np.float64)
    blanks = pd.DataFrame({"a": ["", " ", "x"], "b": ["y", "z", "w"]})
    assert values(run("coalesce", blanks, None, ctx)) == ["", " ", "x"]
    assert values(run("coalesce", blanks, {"skip_blank": True}, ctx)) == ["y", "z", "x"]


# --------------------------------------------------------------------------- map_values


def test_map_values_keys_compared_as_text() -> None:
    ctx = make_ctx()
    mapping = {"mapping": {1: "男", 2: "女"}}  # YAML gives int keys
    assert values(run("map_values", [1, "2", 2.0, 3, None], mapping, ctx)) == ["男", "女", "女", "3", None]
    assert values(run("map_values", [3], {**mapping, "unmapped": "null"}, ctx)) == [None]
    out = run("map_values", ["1", "9", None], {**mapping, "unmapped": "quarantine"}, ctx)
    assert values(out) == ["男", None, None]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist(), rejection.reason) == (
        "map_values", [False, True, False], "'9' is not in the value map",
    )  # fmt: skip


def test_map_values_ignore_case_non_text_targets_and_explicit_null(ctx: TransformContext) -> None:
    raw = {"mapping": {"Y": True, "N": False, "-": None}, "ignore_case": True, "unmapped": "null"}
    assert values(run("map_values", ["y", "N", "-", "?"], raw, ctx)) == [True, False, None, None]
    assert ctx.rejections == []


# --------------------------------------------------------------------------- lookup


def test_lookup_maps_codes_names_and_synonyms_after_normalizing() -> None:
    ctx = make_ctx()
    data = ["D01", " 研发部 ", "r&d", "ｒ＆ｄ", "研发\u3000中心", 101, "d01", None, " "]
    out = run("lookup", data, "department", ctx)
    assert values(out) == ["D01"] * 7 + [None, None]
    assert out.dtype == STR
    assert ctx.rejections == []
    assert ctx.gaps == []


def test_lookup_output_name(ctx: TransformContext) -> None:
    out = run("lookup", ["R&D", "mkt"], {"table": "department", "output": "name"}, ctx)
    assert values(out) == ["研发部", "市场与品牌部"]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [(date(2025, 6, 1), ["D02", "D02", None]), (date(2026, 1, 1), ["D05", "D05", "D05"])],
)
def test_lookup_respects_validity_periods(as_of: date, expected: list[str | None]) -> None:
    ctx = make_ctx(as_of=as_of)
    out = run("lookup", ["市场部", "MKT", "市场与品牌部"], {"table": "department", "unmapped": "quarantine"}, ctx)
    assert values(out) == expected
    assert len(ctx.rejections) == (1 if None in expected else 0)


def test_lookup_unmapped_quarantine_is_the_default() -> None:
    ctx = make_ctx()
    s = pd.Series(["R&D", "财务部", None, "财务部", "HR"], index=list("abcde"), dtype=object)
    out = run("lookup", s, "department", ctx)
    assert values(out) == ["D01", None, None, None, None]
    rejection = only_rejection(ctx)
    assert rejection.rule == "lookup:department"
    assert rejection.mask.tolist() == [False, True, False, True, True]
    assert list(rejection.mask.index) == list("abcde")
    assert rejection.reason == "3 values are not in code table 'department' on 2026-03-01, e.g. '财务部', 'HR'"
    assert not is_fatal(rejection.rule)


def test_lookup_unmapped_fail_is_recorded_as_a_fatal_rejection() -> None:
    ctx = make_ctx()
    run("lookup", ["财务部", "R&D"], {"table": "department", "unmapped": "fail"}, ctx)
    rejection = only_rejection(ctx)
    assert rejection.rule == "lookup_fail:department"
    assert is_fatal(rejection.rule)
    assert rejection.mask.tolist() == [True, False]


def test_lookup_unmapped_pass_keeps_the_value_and_reports_a_gap() -> None:
    ctx = make_ctx()
    out = run("lookup", ["R&D", " 财务部", 7, None], {"table": "department", "unmapped": "pass"}, ctx)
    assert values(out) == ["D01", " 财务部", "7", None]
    assert ctx.rejections == []
    [gap] = ctx.gaps
    assert (gap.table, gap.policy, gap.values.tolist(), list(gap.values.index)) == (
        "department", "pass", [" 财务部", 7], [1, 2],
    )  # fmt: skip


def test_lookup_unmapped_default_substitutes_and_reports_a_gap() -> None:
    ctx = make_ctx()
    out = run("lookup", ["R&D", "财务部"], {"table": "department", "unmapped": {"default": "D99"}}, ctx)
    assert values(out) == ["D01", "D99"]
    [gap] = ctx.gaps
    assert (gap.policy, gap.values.tolist()) == ("default", ["财务部"])
    assert ctx.rejections == []


def test_lookup_unknown_table_at_run_time_is_a_key_error(ctx: TransformContext) -> None:
    with pytest.raises(KeyError):
        run("lookup", ["x"], "no_such_table", ctx)


@given(st.lists(st.text(alphabet="aA Ａｂ\u3000\t研发部R&DＲ＆Ｄ中心0１")))
@settings(max_examples=200, deadline=None)
def test_lookup_normalizes_exactly_like_normalize_code(texts: list[str]) -> None:
    spellings = DEPARTMENT.spellings(date(2026, 3, 1))
    expected = [None if not normalize_code(t) else spellings.get(normalize_code(t)) for t in texts]
    out = run("lookup", texts, {"table": "department", "unmapped": "quarantine"})
    assert values(out) == expected


# --------------------------------------------------------------------------- dates


DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"]


def test_parse_date_tries_formats_in_order() -> None:
    ctx = make_ctx()
    data = ["2026-01-02", "2026/1/3", "20260104", 20260105, " 2026-01-06 ", None, "", "2026-13-45"]
    out = run("parse_date", data, DATE_FORMATS, ctx)
    assert out.dtype == "datetime64[ns]"
    assert values(out) == [pd.Timestamp(f"2026-01-0{d}") for d in range(2, 7)] + [None, None, None]
    rejection = only_rejection(ctx)
    assert rejection.rule == "parse_date"
    assert rejection.mask.tolist() == [False] * 7 + [True]
    assert rejection.reason == "'2026-13-45' does not match %Y-%m-%d or %Y/%m/%d or %Y%m%d"


def test_parse_date_chinese_format_and_reason_with_count() -> None:
    ctx = make_ctx()
    out = run("parse_date", ["2026年1月2日", "2026年13月1日", "明天", "明天"], "%Y年%m月%d日", ctx)
    assert values(out) == [pd.Timestamp("2026-01-02"), None, None, None]
    assert only_rejection(ctx).reason == "3 values do not match %Y年%m月%d日, e.g. '2026年13月1日', '明天'"


def test_parse_date_passes_dates_and_datetimes_through_normalized() -> None:
    ctx = make_ctx()
    data = [
        date(2026, 1, 2),
        datetime(2026, 1, 3, 15, 30),
        pd.Timestamp("2026-01-04 08:00"),
        np.datetime64("2026-01-05T10:00"),
        datetime(2026, 1, 5, 20, 0, tzinfo=UTC),  # 04:00 on the 6th in Shanghai
        "2026-01-07",
    ]
    out = run("parse_date", data, "%Y-%m-%d", ctx)
    assert values(out) == [pd.Timestamp(f"2026-01-0{d}") for d in range(2, 8)]
    assert ctx.rejections == []
    column = pd.Series(pd.to_datetime(["2026-01-02 23:59", None], format="ISO8601"))
    assert values(run("parse_date", column, "%Y-%m-%d", ctx)) == [pd.Timestamp("2026-01-02"), None]


def test_parse_date_on_error_null_and_out_of_range_sentinels() -> None:
    lenient = make_ctx()
    assert values(run("parse_date", ["bad"], {"format": "%Y-%m-%d", "on_error": "null"}, lenient)) == [None]
    assert lenient.rejections == []
    ctx = make_ctx()
    out = run("parse_date", ["9999-12-31", "2026-01-02", datetime(9999, 12, 31)], "%Y-%m-%d", ctx)
    assert values(out) == [None, pd.Timestamp("2026-01-02"), None]
    rejection = only_rejection(ctx)
    assert rejection.mask.tolist() == [True, False, True]
    assert "outside the supported range" in rejection.reason
    cleaned = run("parse_date", run("null_if", ["9999-12-31"], ["9999-12-31"]), "%Y-%m-%d")
    assert values(cleaned) == [None]


def test_parse_datetime_converts_from_the_source_zone() -> None:
    ctx = make_ctx()
    out = run("parse_datetime", ["2026-01-02 10:00:00", None], {"format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"}, ctx)
    assert values(out) == [pd.Timestamp("2026-01-02 18:00"), None]
    assert out.dtype == "datetime64[ns]"
    same_zone = run("parse_datetime", ["2026-01-02 10:00:00"], "%Y-%m-%d %H:%M:%S", ctx)
    assert values(same_zone) == [pd.Timestamp("2026-01-02 10:00")]


def test_parse_datetime_offsets_and_aware_values() -> None:
    ctx = make_ctx()
    data = [
        "2026-01-02T10:00:00+00:00",
        "2026-01-02T10:00:00Z",
        "2026-01-02T10:00:00",
        datetime(2026, 1, 2, 10, tzinfo=UTC),
        datetime(2026, 1, 2, 10),
    ]
    out = run("parse_datetime", data, {"format": "ISO8601", "timezone": "UTC"}, ctx)
    assert values(out) == [pd.Timestamp("2026-01-02 18:00")] * 5
    with_offset = run("parse_datetime", ["2026-01-02 10:00 +0100"], "%Y-%m-%d %H:%M %z", ctx)
    assert values(with_offset) == [pd.Timestamp("2026-01-02 17:00")]
    assert ctx.rejections == []


def test_parse_datetime_rejects_local_times_skipped_by_daylight_saving() -> None:
    ctx = make_ctx()
    raw = {"format": "%Y-%m-%d %H:%M", "timezone": "America/New_York"}
    out = run("parse_datetime", ["2026-03-08 02:30", "2026-03-08 12:00"], raw, ctx)
    assert values(out) == [None, pd.Timestamp("2026-03-09 00:00")]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("parse_datetime", [True, False])
    assert "daylight-saving" in rejection.reason


# --------------------------------------------------------------------------- numbers


def test_decimal_parses_text_and_driver_numbers(ctx: TransformContext) -> None:
    data = [
        "1,234.50",
        "1.005",
        "-1.005",
        2.675,
        Decimal("3.14159"),
        7,
        "¥1,000",
        "(12.5)",
        "12.5-",
        "１２.３",
        "",
        None,
    ]
    out = run("decimal", data, 2, ctx)
    assert out.dtype == np.float64
    assert values(out) == [1234.5, 1.01, -1.01, 2.68, 3.14, 7.0, 1000.0, -12.5, -12.5, 12.3, None, None]
    assert ctx.rejections == []
    assert values(run("decimal", ["2.5", "-0.4"], 0, ctx)) == [3.0, 0.0]


def test_decimal_errors_and_excess_scale() -> None:
    ctx = make_ctx()
    out = run("decimal", ["abc", "1.5", "1..2"], 2, ctx)
    assert values(out) == [None, 1.5, None]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("decimal", [True, False, True])
    strict = make_ctx()
    raw = {"scale": 2, "on_excess_scale": "quarantine"}
    out = run("decimal", ["1.234", "1.2300", 0.1 + 0.2, Decimal("5.125"), 3], raw, strict)
    assert values(out) == [None, 1.23, 0.3, None, 3.0]
    rejection = only_rejection(strict)
    assert rejection.rule == "decimal_scale"
    assert rejection.mask.tolist() == [True, False, False, True, False]
    assert rejection.reason == "2 values have more than 2 decimal places, e.g. '1.234', '5.125'"
    lenient = make_ctx()
    assert values(run("decimal", ["x"], {"scale": 2, "on_error": "null"}, lenient)) == [None]
    assert lenient.rejections == []


AMOUNTS = st.decimals(min_value=-(10**11), max_value=10**11, places=4, allow_nan=False, allow_infinity=False)


@given(AMOUNTS)
@settings(max_examples=300, deadline=None)
def test_decimal_rounds_half_up_like_decimal_arithmetic(value: Decimal) -> None:
    """Up to 15 significant digits, text and float inputs round exactly as Decimal does."""
    expected = float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    assert values(run("decimal", [str(value), float(value)], 2)) == [expected, expected]


@given(AMOUNTS)
@settings(max_examples=300, deadline=None)
def test_decimal_excess_scale_is_detected_exactly(value: Decimal) -> None:
    ctx = make_ctx()
    run("decimal", [str(value)], {"scale": 2, "on_excess_scale": "quarantine"}, ctx)
    assert bool(ctx.rejections) == (value != value.quantize(Decimal("0.01")))


def test_to_integer(ctx: TransformContext) -> None:
    data = ["12", "0012", "12.00", 12.0, "1,234", " 7 ", "1e3", "1798234567890123456", Decimal("5"), None, ""]
    out = run("to_integer", data, None, ctx)
    assert out.dtype == "Int64"
    assert values(out) == [12, 12, 12, 12, 1234, 7, 1000, 1798234567890123456, 5, None, None]
    assert ctx.rejections == []


def test_to_integer_rejections() -> None:
    ctx = make_ctx()
    out = run("to_integer", ["12.5", "9223372036854775808", "abc", "9223372036854775807"], None, ctx)
    assert values(out) == [None, None, None, 9223372036854775807]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("to_integer", [True, True, True, False])
    floats = make_ctx()
    assert values(run("to_integer", pd.Series([1.0, np.nan, 2.5]), None, floats)) == [1, None, None]
    assert only_rejection(floats).mask.tolist() == [False, False, True]


def test_to_integer_keeps_integer_columns(ctx: TransformContext) -> None:
    assert values(run("to_integer", pd.Series([1, None], dtype="Int64"), None, ctx)) == [1, None]
    assert values(run("to_integer", pd.Series([3, 4]), None, ctx)) == [3, 4]


def test_to_boolean_defaults(ctx: TransformContext) -> None:
    data = ["Y", "yes", "是", "TRUE", 1, 1.0, "0", "否", "n", False, None, " "]
    out = run("to_boolean", data, None, ctx)
    assert out.dtype == "boolean"
    assert values(out) == [True] * 6 + [False] * 4 + [None, None]
    assert ctx.rejections == []


def test_to_boolean_custom_spellings_and_unknown_values() -> None:
    ctx = make_ctx()
    raw = {"true": ["在职", True], "false": ["离职"]}  # YAML turns `yes`/`true` into a bool
    out = run("to_boolean", ["在职", "离职", "true", "退休"], raw, ctx)
    assert values(out) == [True, False, True, None]
    rejection = only_rejection(ctx)
    assert (rejection.rule, rejection.mask.tolist()) == ("to_boolean", [False, False, False, True])
    assert values(run("to_boolean", pd.Series([True, False]))) == [True, False]


def test_multiply_then_decimal_converts_cents_to_yuan(ctx: TransformContext) -> None:
    yuan = run("decimal", run("multiply", ["12345", 99, None], 0.01, ctx), 2, ctx)
    assert values(yuan) == [123.45, 0.99, None]


# --------------------------------------------------------------------------- nulls, indexes, dtypes


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("trim", None), ("nfkc", None), ("upper", None), ("pad_zeros", 4), ("strip_zeros", None),
        ("regex_replace", {"pattern": "a"}), ("slice", {"stop": 2}), ("lookup", "department"),
        ("parse_date", "%Y-%m-%d"), ("parse_datetime", "%Y-%m-%d"), ("decimal", 2), ("to_integer", None),
        ("to_boolean", None), ("map_values", {"mapping": {"a": "b"}}), ("null_if", "x"), ("multiply", 2),
        ("split_part", {"sep": "/", "index": 0}), ("regex_extract", {"pattern": "(a)"}), ("match", "a"),
        ("max_length", 2), ("to_text", None), ("prefix", "x"),
    ],
)  # fmt: skip
def test_nulls_pass_through_and_index_is_kept(name: str, raw: Any) -> None:
    ctx = make_ctx()
    s = pd.Series([None, np.nan, pd.NA], index=[3, 3, 9], dtype=object)
    out = run(name, s, raw, ctx)
    assert out.isna().all()
    assert list(out.index) == [3, 3, 9]
    assert ctx.rejections == []
    assert ctx.gaps == []


MINIMAL_ARGS: dict[str, Any] = {
    "pad_zeros": 3, "regex_replace": {"pattern": "a"}, "regex_extract": {"pattern": "(a)"}, "replace": {"old": "a"},
    "split_part": {"sep": "/", "index": 0}, "prefix": "x", "suffix": "x", "match": "a", "max_length": 2,
    "null_if": "a", "default": "x", "constant": "x", "map_values": {"mapping": {"a": "b"}}, "lookup": "department",
    "parse_date": "%Y", "parse_datetime": "%Y", "decimal": 2, "multiply": 2,
}  # fmt: skip


@pytest.mark.parametrize("dtype", [object, "str"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_transform_accepts_an_empty_chunk(name: str, dtype: Any) -> None:
    empty = pd.Series([], dtype=dtype)
    data = pd.DataFrame({"a": empty, "b": empty}) if registry.get(name).multi_column else empty
    assert len(run(name, data, MINIMAL_ARGS.get(name))) == 0


@pytest.mark.parametrize(
    ("name", "raw"),
    [("trim", None), ("nfkc", None), ("strip_zeros", None), ("pad_zeros", 6), ("lookup", "department"),
     ("parse_date", "%Y-%m-%d"), ("decimal", 2), ("to_integer", None), ("null_if", "-")],
)  # fmt: skip
def test_object_and_str_columns_give_the_same_result(name: str, raw: Any) -> None:
    data = [" ００１２３ ", "2026-01-02", "研发部", "1,234.50", "-", "007", None]
    as_object = run(name, pd.Series(data, dtype=object), raw, make_ctx())
    as_str = run(name, pd.Series(data, dtype="str"), raw, make_ctx())
    assert values(as_object) == values(as_str)
    assert name == "null_if" or as_object.dtype == as_str.dtype  # null_if keeps the input dtype


# --------------------------------------------------------------------------- argument validation


def parse(name: str, raw: Any) -> registry.TransformArgs:
    return registry.parse_args(registry.get(name), raw)


def test_bad_regex_is_reported_with_the_re_error() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("invalid regular expression '([a-z]': missing ), unterminated")
    ):
        parse("regex_replace", {"pattern": "([a-z]"})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        parse("match", "[")
    with pytest.raises(ValidationError, match="invalid replacement"):
        parse("regex_replace", {"pattern": "(a)", "replacement": r"\2"})
    with pytest.raises(ValidationError, match="group 2 does not exist"):
        parse("regex_extract", {"pattern": "(a)", "group": 2})
    with pytest.raises(ValidationError, match="no group named 'x'"):
        parse("regex_extract", {"pattern": "(?P<y>a)", "group": "x"})


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("pad_zeros", {"width": 6, "fill": "0"}, "Extra inputs are not permitted"),
        ("lookup", {"table": "department", "on_missing": "pass"}, "Extra inputs are not permitted"),
        ("pad_zeros", {"width": "six"}, "valid integer"),
        ("pad_zeros", 0, "greater than or equal to 1"),
        ("pad_zeros", {"width": 6, "char": "00"}, "at most 1 character"),
        ("decimal", 11, "less than or equal to 10"),
        ("decimal", {"scale": 2, "on_excess_scale": "truncate"}, "'quarantine' or 'round'"),
        ("lookup", {"table": "department", "unmapped": "ignore"}, "unmapped"),
        ("lookup", {"table": "department", "output": "label"}, "'code' or 'name'"),
        ("parse_date", "YYYY-MM-DD", "no strftime directive"),
        ("parse_date", "%Y-%Q", "bad directive"),
        ("parse_datetime", {"format": "%Y", "timezone": "Asia/Beijing"}, "unknown timezone"),
        ("to_boolean", {"true": ["1", "Y"], "false": ["y"]}, "both true and false"),
        ("map_values", {"mapping": {"a": 1, "A": 2}, "ignore_case": True}, "the same when ignore_case"),
        ("null_if", {"values": []}, "at least 1 item"),
        ("pad_zeros", None, "Field required"),
    ],
)
def test_argument_errors(name: str, raw: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse(name, raw)


@pytest.mark.parametrize("name", ["trim", "map_values", "concat", "regex_replace", "to_integer"])
def test_scalar_for_a_transform_without_shorthand(name: str) -> None:
    with pytest.raises(ValueError, match=f"transform '{name}' takes no scalar argument"):
        parse(name, "x")


def test_yaml_scalars_become_text_where_text_is_expected() -> None:
    assert parse("null_if", [0, "-", date(1900, 1, 1)]).model_dump()["values"] == ["0", "-", "1900-01-01"]
    assert parse("replace", {"old": 0, "new": 1}).model_dump() == {"old": "0", "new": "1"}
    assert parse("lookup", {"table": "t", "unmapped": {"default": 0}}).model_dump()["unmapped"] == {"default": "0"}
    assert parse("to_boolean", {"true": [True, 1], "false": [False]}).model_dump()["true"] == ["true", "1"]
    assert parse("match", 123).model_dump()["pattern"] == "123"
