"""The Arrow fast paths of the mapping transforms give what the general (pandas / Python `re`) route gives.

Each `_old_*` function below is the implementation the fast path replaced, kept verbatim as the
reference; the tests feed both the inputs where the two engines differ: full-width and other
non-ASCII digits, every character Python calls whitespace, invisible characters, blank text,
None / NaN / pd.NA / NaT, object columns mixing types, ``-0`` and long digit runs.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.mapping import transforms as t
from etl.mapping.apply import _jsonable, _raw_json
from etl.mapping.model import CanonicalField
from etl.mapping.transforms import STR, as_text
from etl.mapping.types import coerce, coerce_series

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")]

WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
TRICKY_TEXT = (
    WHITESPACE + "\u200b\ufeff\u180e\x00"  # invisible and not-whitespace neighbours
    "aZ_-.,()¥$+eE0189"  # ASCII
    "０１９ＱＧａ－，．（）"  # full-width
    "٣०①²Ⅻﬁ"  # other digits and compatibility characters
    "张研\n"
)
NULLS = [None, np.nan, pd.NA]


def texts(alphabet: str = TRICKY_TEXT, max_size: int = 40) -> st.SearchStrategy[list[Any]]:
    """Lists of short strings over `alphabet`, with nulls of every kind."""
    return st.lists(st.one_of(st.sampled_from(NULLS), st.text(alphabet=alphabet, max_size=6)), max_size=max_size)


def both_dtypes(values: list[Any]) -> list[pd.Series]:
    """`values` as an object column (as drivers return) and as Arrow-backed text (as pandas reads)."""
    obj = pd.Series(values, dtype=object)
    return [obj, as_text(obj)]


def assert_same(actual: pd.Series, expected: pd.Series) -> None:
    pd.testing.assert_series_equal(actual, expected, check_exact=True)


def assert_same_floats(actual: np.ndarray, expected: np.ndarray) -> None:
    """Bit for bit, NaN equal to NaN and -0.0 different from 0.0."""
    assert actual.dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    known = ~np.isnan(expected)
    np.testing.assert_array_equal(actual[known].view(np.int64), expected[known].view(np.int64))


# --------------------------------------------------------------------------- the references


def _old_as_text(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.StringDtype):
        return s if s.dtype == STR else s.astype(STR)
    values = np.full(len(s), np.nan, dtype=object)
    notna = s.notna().pipe(t._flags)
    if notna.any():
        v = s[notna]
        if v.dtype == object:
            if pd.api.types.infer_dtype(v, skipna=False) == "string":
                text = v.to_numpy(dtype=object)
            else:
                cats = t._categories(v)
                text = np.empty(len(v), dtype=object)
                for cat in cats.unique():
                    part = (cats == cat).to_numpy()
                    text[part] = t._OBJECT_TEXT[cat](v[part])
        else:
            text = t._text_values(v)
        values[notna] = text
    return pd.Series(values, index=s.index, dtype=STR)


def _old_trim(s: pd.Series) -> pd.Series:
    text = _old_as_text(s)
    invisible = text.str.contains("[\u200b\ufeff]", regex=True).pipe(t._flags)
    if invisible.any():
        text = text.copy()
        text[invisible] = text[invisible].str.replace("[\u200b\ufeff]", "", regex=True).to_numpy()
    text = text.str.strip()
    messy = text.str.contains(r"[^\S ]| {2}", regex=True).pipe(t._flags)
    if messy.any():
        text = text.copy()
        text[messy] = text[messy].str.replace(r"\s+", " ", regex=True).to_numpy()
    return text.mask(text.eq(""))


def _old_extract(text: pd.Series, pattern: str, group: int) -> pd.Series:
    codes, uniques = pd.factorize(text)
    groups = pd.Series(uniques, dtype=STR).str.extract(pattern, expand=True)
    return t._take(groups.iloc[:, group - 1].astype(STR), codes, text.index)


def _old_text_floats(text: pd.Series) -> np.ndarray:
    return t._floats(pd.to_numeric(text, errors="coerce"))


def _old_ungroup(text: pd.Series) -> pd.Series:
    """Commas removed from valid thousands grouping only (``1.234,50`` keeps its comma and fails to parse)."""
    grouped = text.str.fullmatch(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?").fillna(False).astype(bool)
    return text.where(~grouped, text.str.replace(",", "", regex=False))


def _old_number_cleanup(text: pd.Series) -> pd.Series:
    out = text.str.normalize("NFKC").str.replace(r"[\s¥$€£]", "", regex=True)
    out = out.str.replace(r"^\((.+)\)$", r"-\1", regex=True)
    return _old_ungroup(out.str.replace(r"^([^-].*)-$", r"-\1", regex=True))


def _old_parse_number_text(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    notna = text.notna().pipe(t._flags)
    values = _old_text_floats(text)
    for cleanup in (_old_ungroup, _old_number_cleanup):
        retry = notna & np.isnan(values)
        if retry.any():
            values[retry] = _old_text_floats(cleanup(text[retry]))
    failed = notna & np.isnan(values)
    if failed.any():
        notna[failed] = ~t._blank(text[failed]).pipe(t._flags)
    return values, notna


def _old_quick_ints(text: pd.Series) -> np.ndarray | None:
    """The quick route of `_parse_int_text` before the fast path: pandas' nullable integers."""
    notna = text.notna().pipe(t._flags)
    quick = pd.to_numeric(text, errors="coerce", dtype_backend="numpy_nullable")
    if quick.dtype == "Int64" and not (notna & quick.isna().pipe(t._flags)).any():
        return np.array(quick.to_numpy(dtype=np.int64, na_value=0))
    return None


def _old_to_datetime(series: pd.Series, timezone: str) -> pd.Series:
    try:
        values = pd.to_datetime(series, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        values = pd.to_datetime(_old_as_text(series), errors="coerce", format="mixed")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(timezone).dt.tz_localize(None)
    values = pd.Series(values, index=series.index)
    if values.dtype != "datetime64[ns]":
        values = values.where((values >= pd.Timestamp.min) & (values <= pd.Timestamp.max))
    return values.astype("datetime64[ns]")


# --------------------------------------------------------------------------- character sets


def test_whitespace_is_what_python_and_arrow_call_whitespace() -> None:
    assert t._WHITESPACE == WHITESPACE
    assert "".join(re.findall(r"\s", "".join(map(chr, range(0x3001))))) == WHITESPACE
    kept = "\u200b\ufeff\u180e\x00"
    trimmed = pc.utf8_trim_whitespace(pa.array([f"{c}a{c}" for c in WHITESPACE + kept]))
    assert trimmed.to_pylist() == ["a"] * len(WHITESPACE) + [f"{c}a{c}" for c in kept]


def test_ascii_text_is_its_own_nfkc() -> None:
    ascii_chars = [chr(c) for c in range(128)]
    assert all(unicodedata.is_normalized("NFKC", a + b) for a in ascii_chars for b in ascii_chars)


# --------------------------------------------------------------------------- text


@given(texts())
@settings(max_examples=300, deadline=None)
def test_trim_as_before(values: list[Any]) -> None:
    for s in both_dtypes(values):
        assert_same(t.trim(s, None, None), _old_trim(s))


@given(texts())
@settings(max_examples=200, deadline=None)
def test_nfkc_as_before(values: list[Any]) -> None:
    for s in both_dtypes(values):
        assert_same(t.nfkc(s, None, None), _old_as_text(s).str.normalize("NFKC"))


@given(texts())
@settings(max_examples=100, deadline=None)
def test_code_key_as_before(values: list[Any]) -> None:
    text = _old_as_text(pd.Series(values, dtype=object))
    expected = text.str.normalize("NFKC").str.replace(r"\s+", "", regex=True).str.casefold()
    assert_same(t._code_key(text), expected)


def test_trim_keeps_chunked_text_and_index() -> None:
    part = pd.Series([" a ", None, "b  c"], dtype=STR)
    text = pd.concat([part, part])  # two Arrow chunks
    text.index = [5, 3, 9, 1, 2, 0]
    assert_same(t.trim(text, None, None), _old_trim(text))
    assert_same(t.nfkc(text, None, None), text.str.normalize("NFKC"))


MIXED_OBJECTS = [
    1, -0, 2**63 - 1, 2**63, -(2**63), np.int64(5), np.uint64(2**64 - 1), 1.5, -0.0, 12.0, 1e20, float("inf"),
    Decimal("1.50"), Decimal("-0"), True, np.bool_(False), date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5),
    datetime(2026, 1, 2, 3, 4, tzinfo=UTC), timedelta(hours=5), b"\xe4\xb8\xad", b"\xff", "text", np.str_("np"),
    pd.Timestamp("2026-01-02"), None, np.nan, pd.NA, pd.NaT, Decimal("NaN"),
]  # fmt: skip


@pytest.mark.parametrize(
    "series",
    [
        pd.Series(MIXED_OBJECTS, dtype=object),
        pd.Series(["a", None, np.nan, pd.NA, "b"], dtype=object),
        pd.Series(["a", pd.NaT, "b"], dtype=object),
        pd.Series(["a", Decimal("NaN")], dtype=object),
        pd.Series(["a", np.str_("b")], dtype=object),
        pd.Series([1, None, np.nan, np.int64(-7), pd.NA], dtype=object),
        pd.Series([1, 2**64 - 1], dtype=object),
        pd.Series([1, pd.NaT], dtype=object),
        pd.Series([None, np.nan], dtype=object),
        pd.Series([], dtype=object),
        pd.Series([0, -1, 2**63 - 1, -(2**63)], dtype="int64"),
        pd.Series([0, 2**64 - 1], dtype="uint64"),
        pd.Series([1, None, -5], dtype="Int64"),
        pd.Series([1, -5], dtype="int8"),
        pd.Series([1, -5], dtype="int32[pyarrow]"),
        pd.Series(pd.Categorical([1, 2, None])),
        pd.Series([1.5, np.nan, -0.0]),
    ],
)
def test_as_text_as_before(series: pd.Series) -> None:
    series.index = range(10, 10 + len(series))
    assert_same(as_text(series), _old_as_text(series))


# --------------------------------------------------------------------------- regex_extract

PATTERNS = [
    (r"QG-?(\d{4})", 1),
    (r"(\d+)$", 1),
    (r"(\d+)\Z", 1),
    (r"^\s*(\S+)", 1),
    (r"(\w+)\b", 1),
    (r"([[:digit:]]+)", 1),  # a set of characters to Python
    (r"(?P<y>\d{4})(\d{2})?", 1),
    (r"(\d{4})(\d{2})?", 2),  # an optional group: None where it took no part
    (r"(a|Q)(.*?)(\d)", 2),
    (r"(a)|b", 1),
    (r"(?i)(qg)", 1),
    (r"(?s)(.+)", 1),
    (r"(.)\1", 1),
    (r"(?=Q)(..)", 1),
    (r"(\D+)(\W)", 1),
    (r"([^a-z０-９\s]+)", 1),
    (r"((?:x*)*)", 1),
    (r"((?:ab)+)", 1),
    (r"(\d{1,3}(?:,\d{3})*(?:\.\d+)?)", 1),
    (r"(.$)", 1),
    (r"^([\S])", 1),
    (r"([^\S])", 1),
    (r"([\Sa])", 1),
    (r"(\A.|.\Z)", 1),
    (r"(x{2000})", 1),
]


@pytest.mark.parametrize(("pattern", "group"), PATTERNS)
@given(texts(alphabet=TRICKY_TEXT + "QGabx" * 4, max_size=30))
@settings(max_examples=60, deadline=None)
def test_extract_as_python(pattern: str, group: int, values: list[Any]) -> None:
    text = _old_as_text(pd.Series(values, dtype=object))
    assert_same(t._extract(text, pattern, group), _old_extract(text, pattern, group))


def test_extract_request_years_with_full_width_digits() -> None:
    text = pd.Series(["QG2026000123", "qg-2026", "QG２０２６000123", "ＱＧ２０２６", "QG-2025\n", None, ""], dtype=STR)
    out = t._extract(text, r"QG-?(\d{4})", 1)
    assert out.tolist()[:3] == ["2026", pytest.approx(np.nan, nan_ok=True), "２０２６"]
    assert_same(out, _old_extract(text, r"QG-?(\d{4})", 1))


# --------------------------------------------------------------------------- numbers

NUMBERISH = "0123456789-+.,e ()¥$\u3000\xa0０１９．－，"
EDGE_NUMBERS = [
    "-0", "-0.0", "-00", "0", "007", "+5", " 12 ", "1,234.50", "(1,234.50)", "12.5-", "¥1,234", "1e3", "1E3",
    ".5", "5.", "-.5", "nan", "inf", "-inf", "１２３．４５", "١٢٣", "", " ", "1_000", "0x1A", "12345678901234567",
    "1234567890123456", "123456789012345", "18446744073709551615", "-9223372036854775808", "0.1", "1.005",
    "999999999999.99", "0.00000000000001",
]  # fmt: skip


@given(st.lists(st.one_of(st.sampled_from(NULLS + EDGE_NUMBERS), st.text(alphabet=NUMBERISH, max_size=18))))
@settings(max_examples=400, deadline=None)
def test_text_floats_as_pandas(values: list[Any]) -> None:
    text = _old_as_text(pd.Series(values, dtype=object))
    assert_same_floats(t._text_floats(text), _old_text_floats(text))


@pytest.mark.parametrize(
    "values",
    [
        ["1", "2", "-0"],  # integers only: pandas' integer route, -0 is 0.0
        ["1", None, "-0"],  # a null: the float route, -0 is -0.0
        ["1.5", "-0", "2"],
        ["-0", "1", " 5 ", "+3"],  # the rest is integers too
        ["7", " -0 ", "+0"],
        ["7.5", " -0 ", "+0", "-00"],
        ["-0", "1", "1,234"],  # a failure: the float route
        ["1.5", "12345678901234567", "-0"],  # a long run of digits: pandas for all
        ["-5", "18446744073709551615"],
        [None, None],
        [],
    ],
)
def test_text_floats_follow_pandas_integer_and_float_routes(values: list[Any]) -> None:
    text = pd.Series(values, dtype=object).astype(STR)
    assert_same_floats(t._text_floats(text), _old_text_floats(text))


@given(st.lists(st.one_of(st.sampled_from(NULLS + EDGE_NUMBERS), st.text(alphabet=NUMBERISH, max_size=14))))
@settings(max_examples=300, deadline=None)
def test_parse_number_as_before(values: list[Any]) -> None:
    text = _old_as_text(pd.Series(values, dtype=object))
    got, got_notna = t._parse_number_text(text)
    expected, expected_notna = _old_parse_number_text(text)
    assert_same_floats(got, expected)
    np.testing.assert_array_equal(got_notna, expected_notna)


DRIVER_NUMBERS = st.one_of(
    st.none(),
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("NaN"), Decimal("-0"), Decimal("0E-10"), float("nan"), np.nan]),
)


@given(st.lists(DRIVER_NUMBERS, max_size=40))
@settings(max_examples=300, deadline=None)
def test_driver_numbers_parse_with_the_nulls_notna_gives(values: list[Any]) -> None:
    column = pd.Series(values, dtype=object)
    plain = t._decimal_floats(column)
    if plain is None:  # e.g. no value at all, or an integer beyond float range
        return
    got, bad = t._parse_number(column)
    expected_notna = column.notna().to_numpy(dtype=bool)
    np.testing.assert_array_equal(t._notna_where_nan(plain.copy(), column), expected_notna)
    np.testing.assert_array_equal(bad, expected_notna & ~np.isfinite(plain))
    assert_same_floats(got, np.where(bad, np.nan, plain))


def _old_decimal_floats(values: list[Any]) -> np.ndarray | None:
    try:
        return np.array(np.array(values, dtype=object).astype("float64"))
    except (TypeError, ValueError, OverflowError):
        return None


@given(st.lists(st.one_of(st.none(), st.decimals(allow_nan=True, allow_infinity=True, places=None)), min_size=1))
@settings(max_examples=400, deadline=None)
def test_decimal_columns_convert_as_float_does(values: list[Any]) -> None:
    got = t._decimal_floats(pd.Series(values, dtype=object))
    expected = None if all(v is None for v in values) else _old_decimal_floats(values)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert_same_floats(got, expected)


def test_plain_decimals_parse_as_pandas_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    digits = pd.Series((rng.random(20_000) * 10.0 ** rng.integers(1, 15, 20_000)).astype(np.int64).astype(str))
    cut = rng.integers(1, 6, len(digits))
    text = (digits.str.slice(0, -1) + "." + digits.str.slice(-1)).where(cut > 2, digits)
    text = ("-" + text).where(rng.random(len(text)) < 0.3, text).str.slice(0, 15).astype(STR)
    assert_same_floats(t._text_floats(text), _old_text_floats(text))


@given(st.lists(st.one_of(st.none(), st.from_regex(r"-?[0-9]{1,19}", fullmatch=True), st.sampled_from(EDGE_NUMBERS))))
@settings(max_examples=300, deadline=None)
def test_plain_ints_as_pandas(values: list[Any]) -> None:
    text = pd.Series(values, dtype=object).astype(STR)
    plain = t._plain_ints(text)
    if plain is not None:
        expected = _old_quick_ints(text)
        assert expected is not None
        np.testing.assert_array_equal(plain, expected)


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize("kind", ["date", "datetime"])
@pytest.mark.parametrize(
    "values",
    [
        ["2026-01-02 03:04:05", "2026-01-02", None, "junk", "", " 2026-01-03 ", "2026-02-30", "9999-12-31"] * 3,
        ["2026-01-02T03:04:05+08:00", "2026-01-02T01:00:00+08:00", None] * 2,
        ["2026-01-02 03:04:05.123456789", "2026-01-02"],
        [None, np.nan],
        [],
    ],
)
def test_text_dates_as_before(kind: str, values: list[Any]) -> None:
    spec = CanonicalField(type=kind)
    for s in both_dtypes(values):
        s.index = range(3, 3 + len(s))
        expected = _old_to_datetime(s, "Asia/Shanghai")
        if kind == "date":
            expected = expected.dt.normalize()
        assert_same(coerce_series(s, spec)[0], expected)


# --------------------------------------------------------------------------- quarantine JSON


def _raw_frames() -> list[pd.DataFrame]:
    n = 12
    mixed = pd.DataFrame(
        {
            "id": np.arange(n),
            "text": pd.Series(["a", None, "研发"] * 4, dtype=STR),
            "obj": pd.Series([np.int64(5), 1.5, None, "x", np.float64(2.5), True] * 2, dtype=object),
            "f": np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 0.5),
            "b": np.arange(n) % 2 == 0,
            "ts": pd.Series(pd.Timestamp("2026-01-02") + pd.to_timedelta(np.arange(n), unit="h")).where(
                np.arange(n) % 4 != 0
            ),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
            "I": pd.array([None if i % 4 == 0 else i for i in range(n)], dtype="Int64"),
            "cat": pd.Categorical(["a", "b", None] * 4),
            "flag": pd.array([None, True, False] * 4, dtype="boolean"),
        }
    )
    return [
        mixed,
        mixed.astype(object),
        mixed[["text"]].assign(more=mixed["text"]),  # one extension dtype: rows are not object
        mixed[["id", "f"]],  # numbers only: rows are float64
        mixed.rename(columns={"obj": "id"}),  # duplicate column names
    ]


@pytest.mark.parametrize("raw", _raw_frames())
def test_raw_json_as_per_row(raw: pd.DataFrame) -> None:
    rows = np.array([0, 3, 4, 7, 11])
    expected = {i: json.dumps(_jsonable(raw.iloc[i].to_dict()), ensure_ascii=False) for i in rows}
    assert _raw_json(raw, rows) == expected


@given(st.lists(st.one_of(st.none(), st.just(""), st.text(alphabet=TRICKY_TEXT, max_size=4)), max_size=30))
def test_string_coerce_as_before(values: list[Any]) -> None:
    """Empty text becomes null (found in C++ now, by length, instead of comparing str objects)."""
    series = pd.Series(values, dtype=object)
    frame = pd.DataFrame({"a": series})
    got = coerce(frame, {"a": CanonicalField(type="string")})
    text = as_text(series)
    empty = text.to_numpy(dtype=object) == ""
    pd.testing.assert_series_equal(got["a"], text.where(~empty) if empty.any() else text, check_names=False)
    assert frame["a"] is not got["a"] and frame["a"].tolist() == series.tolist()  # a copy by default
    inplace = coerce(frame, {"a": CanonicalField(type="string")}, copy=False)
    assert inplace is frame
    pd.testing.assert_series_equal(inplace["a"], got["a"])


def test_merge_takes_each_sources_values_as_a_reindex_would() -> None:
    """Sources are aligned to the golden keys column by column: the same values and dtypes as reindexing them."""
    from etl.engine.merge import _Aligned

    frame = pd.DataFrame(
        {
            "i": np.array([1, 2, 3]),
            "b": [True, False, True],
            "s": pd.Series(["a", None, "c"], dtype=STR),
            "d": pd.to_datetime(["2020-01-01", None, "2021-01-01"]),
            "f": [1.5, np.nan, 2.0],
            "o": [None, "x", 3],
            "n": pd.array([1, None, 3], dtype="Int64"),
        },
        index=pd.Index(["k1", "k2", "k3"]),
    )
    keys = pd.Index(["k0", "k3", "k1", "k9"])
    aligned, expected = _Aligned(frame, keys), frame.reindex(keys)
    for column in frame.columns:
        pd.testing.assert_series_equal(aligned[column], expected[column])


@pytest.mark.parametrize("sources", [["erp"], ["oa", "erp"], ["hr", "oa", "erp"], [f"s{n:02d}" for n in range(70)]])
def test_presence_labels_as_string_concatenation(sources: list[str]) -> None:
    """Per key, the sources present in name order joined by '+', as the string route wrote it."""
    from etl.engine.merge import _presence

    rng = np.random.default_rng(len(sources))
    index = pd.Index([f"k{i}" for i in range(500)])
    present = {s: rng.random(len(index)) < 0.6 for s in sources}
    expected = pd.Series("", index=index, dtype=STR)
    for source in sorted(sources):
        flag = pd.Series(present[source], index=index)
        expected = expected.where(~flag, expected + np.where(expected == "", "", "+") + source)
    pd.testing.assert_series_equal(_presence(present, index), expected)
    empty = pd.Index([], dtype=STR)
    assert _presence({s: np.zeros(0, dtype=bool) for s in sources}, empty).tolist() == []
