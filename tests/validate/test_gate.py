"""The quality gate with real Great Expectations: row/batch failures, bands, thresholds, docs."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.validate.custom import (
    ExpectColumnValuesToBeInCodeTable,
    ExpectColumnValuesToExistInEntity,
    ExpectColumnValuesToHaveMaxScale,
    ValueSet,
    has_max_scale,
)
from etl.validate.datadocs import SAMPLE_ROWS, build_data_docs, docs_json
from etl.validate.gate import BatchFailure, GateResult, gate_decision, validate_batch
from etl.validate.suites import load_suite, resolve_code_tables, resolve_references

gx = pytest.importorskip("great_expectations")
E = gx.expectations

pytestmark = pytest.mark.unit

EMPLOYEE_COLUMNS = ["employee_code", "name", "department_code", "status", "salary", "hire_date", "leave_date"]
STATUS = {"employee_status": ["active", "left"]}
DEPARTMENTS = {"department": ["D01", "D02"]}


def employee_frame() -> pd.DataFrame:
    """Six clean rows, then planted bad rows (keys B1..B6), on a non-default index."""
    rows = [
        ("E001", "Li Lei", "D01", "active", Decimal("1000.50"), "2020-01-01", None),
        ("E002", "Han Meimei", "D02", "left", Decimal("2000"), "2019-03-01", "2021-03-01"),
        ("E003", "Wang Fang", "D01", "active", Decimal("3000.10"), "2021-06-15", None),
        ("E004", "Zhao Lei", "D02", "active", Decimal("1500.25"), "2018-01-01", None),
        ("E005", "Sun Li", "D01", "left", Decimal("1800.00"), "2017-01-01", "2020-01-01"),
        ("E006", "Zhou Xun", None, "active", Decimal("2100.99"), "2022-02-02", None),
        # planted
        ("B1", None, "D01", "active", Decimal("1000"), "2020-01-01", None),  # name null
        ("B2", "Bad Dept", "D99", "active", Decimal("1000"), "2020-01-01", None),  # unknown department
        ("B3", "Bad Status", "D01", "retired", Decimal("1.234"), "2020-01-01", None),  # status + scale
        ("B4", "Early", "D02", "active", Decimal("1000"), "1890-05-01", None),  # hire date too early
        ("B5", "Leaves first", "D01", "left", Decimal("1000"), "2020-01-01", "2019-12-31"),  # leave < hire
        ("B6", "Dup one", "D01", "active", Decimal("1000"), "2020-01-01", None),
        ("B6", "Dup two", "D02", "active", Decimal("1000"), "2020-01-01", None),  # duplicate key
    ]
    df = pd.DataFrame(rows, columns=EMPLOYEE_COLUMNS)
    df["hire_date"] = pd.to_datetime(df["hire_date"])
    df["leave_date"] = pd.to_datetime(df["leave_date"])
    df.index = range(100, 100 + len(df))  # the gate must not depend on a RangeIndex
    return df


def employee_suite_json() -> dict:
    return {
        "name": "employee",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "employee_code"}},
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "employee_code"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "name"}},
            {
                "type": "expect_column_values_to_exist_in_entity",
                "kwargs": {"column": "department_code", "entity": "department", "entity_column": "department_code"},
            },
            {
                "type": "expect_column_values_to_be_in_code_table",
                "kwargs": {"column": "status", "code_table": "employee_status"},
            },
            {"type": "expect_column_values_to_have_max_scale", "kwargs": {"column": "salary", "scale": 2}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "hire_date", "min_value": "1950-01-01", "max_value": "2100-01-01"},
            },
            {
                "type": "expect_column_pair_values_a_to_be_greater_than_b",
                "kwargs": {
                    "column_A": "leave_date",
                    "column_B": "hire_date",
                    "ignore_row_if": "either_value_is_missing",
                },
            },
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": 1},
                "meta": {"relative_to_previous": [0.5, 2.0]},
            },
        ],
        "meta": {},
    }


def employee_suite(tmp_path: Path):
    path = tmp_path / "employee.json"
    path.write_text(json.dumps(employee_suite_json()), encoding="utf-8")
    suite = load_suite(path, EMPLOYEE_COLUMNS)
    return resolve_references(resolve_code_tables(suite, STATUS), DEPARTMENTS)


def failure_set(result: GateResult, keys: list[str]) -> set[tuple]:
    """(key..., expectation, column, value) of every row failure; a null value as None."""
    return {
        (*(row[k] for k in keys), row["expectation"], row["column"], None if row["value"] is pd.NA else row["value"])
        for row in result.row_failures.to_dict("records")
    }


def test_planted_rows_reported_once_per_broken_expectation(tmp_path):
    df = employee_frame()
    result = validate_batch(df, employee_suite(tmp_path), ["employee_code"])

    expected = {
        ("B1", "expect_column_values_to_not_be_null", "name", None),
        ("B2", "expect_column_values_to_exist_in_entity", "department_code", "D99"),
        ("B3", "expect_column_values_to_be_in_code_table", "status", "retired"),
        ("B3", "expect_column_values_to_have_max_scale", "salary", "1.234"),
        ("B4", "expect_column_values_to_be_between", "hire_date", "1890-05-01"),
        (
            "B5",
            "expect_column_pair_values_a_to_be_greater_than_b",
            "leave_date,hire_date",
            "leave_date=2019-12-31, hire_date=2020-01-01",
        ),
        ("B6", "expect_column_values_to_be_unique", "employee_code", "B6"),
    }
    assert failure_set(result, ["employee_code"]) == expected
    # both copies of the duplicated key are quarantined: one failure row each
    assert len(result.row_failures) == len(expected) + 1
    dup_rows = result.row_failures.loc[result.row_failures["employee_code"] == "B6", "row"]
    assert sorted(dup_rows) == [11, 12]  # positions in the input frame, not index labels
    assert result.row_failures["row"].tolist() == sorted(result.row_failures["row"])

    assert list(result.row_failures.columns) == ["employee_code", "expectation", "column", "value", "row"]
    assert result.batch_failures == []
    assert result.evaluated == len(df)
    assert result.failed_rows == 7  # B1..B5 + both B6 rows
    assert result.success is False
    assert result.expectations_evaluated == 9
    assert result.seconds > 0
    assert result.results.statistics["evaluated_expectations"] == 9
    # the null department of E006 is not a broken reference: nulls belong to not_null checks
    assert "E006" not in set(result.row_failures["employee_code"])


def test_only_expectations_with_unexpected_rows_are_validated_again_for_positions(tmp_path, monkeypatch):
    """The first pass asks GX for counts; only the row-level expectations with unexpected rows run again, for
    the failing positions. Verdicts and failures are those of one complete pass."""
    from great_expectations.datasource.fluent.interfaces import Batch

    import etl.validate.gate as gate

    df, suite, two_pass = employee_frame(), employee_suite(tmp_path), gate._validate
    passes: list[tuple[str, list[str]]] = []
    real = Batch.validate

    def validate(self, expect, **kwargs):
        passes.append((kwargs["result_format"]["result_format"], [e.expectation_type for e in expect.expectations]))
        return real(self, expect, **kwargs)

    monkeypatch.setattr(Batch, "validate", validate)
    two = validate_batch(df, suite, ["employee_code"])
    assert [p[0] for p in passes] == ["BASIC", "COMPLETE"]
    assert len(passes[0][1]) == 9
    assert sorted(passes[1][1]) == sorted(  # the seven broken row-level expectations; not the row count
        [
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_unique",
            "expect_column_values_to_exist_in_entity",
            "expect_column_values_to_be_in_code_table",
            "expect_column_values_to_have_max_scale",
            "expect_column_values_to_be_between",
            "expect_column_pair_values_a_to_be_greater_than_b",
        ]
    )
    monkeypatch.setattr(gate, "_validate", lambda batch, s: real(batch, s, result_format=dict(gate._RESULT_FORMAT)))
    one = validate_batch(df, suite, ["employee_code"])
    assert failure_set(two, ["employee_code"]) == failure_set(one, ["employee_code"])
    assert two.row_failures.equals(one.row_failures)
    verdicts = [(r.expectation_config.type, r.success) for r in one.results.results]
    assert [(r.expectation_config.type, r.success) for r in two.results.results] == verdicts
    passes.clear()
    monkeypatch.setattr(gate, "_validate", two_pass)
    clean = validate_batch(df.iloc[:6], suite, ["employee_code"])
    assert clean.success and [p[0] for p in passes] == ["BASIC"]


def test_clean_batch_succeeds(tmp_path):
    df = employee_frame().iloc[:6]
    result = validate_batch(df, employee_suite(tmp_path), ["employee_code"], previous_row_count=6)
    assert result.success
    assert result.row_failures.empty
    assert list(result.row_failures.columns) == ["employee_code", "expectation", "column", "value", "row"]
    assert result.failed_rows == 0
    decision = gate_decision(result, 6, 0.0, 0)
    assert decision.publish and decision.reasons == []


def test_compound_key_duplicates_and_date_order():
    df = pd.DataFrame(
        {
            "contract_no": ["C1", "C1", "C2", "C3", "C3"],
            "version": [1, 2, 1, 1, 1],
            "start_date": [dt.date(2024, 1, 1)] * 5,
            "end_date": [dt.date(2025, 1, 1), dt.date(2023, 1, 1), None, dt.date(2025, 1, 1), dt.date(2025, 1, 1)],
            "amount": [Decimal("10.00"), Decimal("10.005"), Decimal("1"), Decimal("2"), Decimal("3")],
        }
    )
    suite = gx.ExpectationSuite(
        name="contract",
        expectations=[
            E.ExpectCompoundColumnsToBeUnique(column_list=["contract_no", "version"]),
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="end_date", column_B="start_date", ignore_row_if="either_value_is_missing"
            ),
            ExpectColumnValuesToHaveMaxScale(column="amount", scale=2),
        ],
    )
    result = validate_batch(df, suite, ["contract_no", "version"])
    assert failure_set(result, ["contract_no", "version"]) == {
        ("C3", 1, "expect_compound_columns_to_be_unique", "contract_no,version", "contract_no=C3, version=1"),
        (
            "C1",
            2,
            "expect_column_pair_values_a_to_be_greater_than_b",
            "end_date,start_date",
            "end_date=2023-01-01, start_date=2024-01-01",
        ),
        ("C1", 2, "expect_column_values_to_have_max_scale", "amount", "10.005"),
    }
    assert len(result.row_failures) == 4  # both C3/1 rows
    assert result.row_failures["version"].dtype == df["version"].dtype
    assert result.failed_rows == 3


def test_row_count_band_relative_to_previous(tmp_path):
    suite = employee_suite(tmp_path)
    df = employee_frame().iloc[:6]

    first_run = validate_batch(df, suite, ["employee_code"])  # no previous: file bounds (>= 1)
    assert first_run.batch_failures == []

    shrunk = validate_batch(df, suite, ["employee_code"], previous_row_count=100)
    assert shrunk.batch_failures == [
        BatchFailure("expect_table_row_count_to_be_between", None, "observed 6 (expected min_value=50, max_value=200)")
    ]
    assert shrunk.row_failures.empty
    decision = gate_decision(shrunk, 6, None, None)
    assert not decision.publish
    assert "expect_table_row_count_to_be_between" in decision.reasons[0]

    grown = validate_batch(df, suite, ["employee_code"], previous_row_count=2)  # band 1..4
    assert [f.message for f in grown.batch_failures] == ["observed 6 (expected min_value=1, max_value=4)"]

    within = validate_batch(df, suite, ["employee_code"], previous_row_count=7)  # band 3..14
    assert within.batch_failures == []

    # a band given by the caller overrides the suite's factors
    tight = validate_batch(df, suite, ["employee_code"], previous_row_count=10, row_count_band=(0.9, 1.1))
    assert [f.message for f in tight.batch_failures] == ["observed 6 (expected min_value=9, max_value=11)"]
    assert suite.expectations[-1].min_value == 1  # the loaded suite itself is untouched


def test_row_count_band_added_when_suite_has_none():
    suite = gx.ExpectationSuite(name="dept", expectations=[E.ExpectColumnValuesToNotBeNull(column="code")])
    df = pd.DataFrame({"code": ["A", "B"]})
    assert validate_batch(df, suite, ["code"], row_count_band=(0.5, 2.0)).batch_failures == []
    result = validate_batch(df, suite, ["code"], previous_row_count=10, row_count_band=(0.5, 2.0))
    assert [(f.expectation, f.message) for f in result.batch_failures] == [
        ("expect_table_row_count_to_be_between", "observed 2 (expected min_value=5, max_value=20)")
    ]


def test_meta_level_batch_and_broken_expectations_fail_the_batch():
    df = pd.DataFrame({"code": ["A", "B", None], "qty": [1, 2, 3]})
    suite = gx.ExpectationSuite(
        name="item",
        expectations=[
            E.ExpectColumnValuesToNotBeNull(column="code", meta={"level": "batch"}),
            E.ExpectColumnValuesToNotBeNull(column="missing_column"),
            E.ExpectColumnValuesToBeBetween(column="qty", min_value=0, max_value=2),
        ],
    )
    result = validate_batch(df, suite, ["code"])
    by_column = {f.column: f for f in result.batch_failures}
    assert set(by_column) == {"code", "missing_column"}
    assert by_column["code"].message.startswith("1 of 3 values unexpected")
    assert by_column["missing_column"].message.startswith("could not be evaluated:")
    assert "missing_column" in by_column["missing_column"].message
    # the row-level rule still quarantines its row
    assert result.row_failures[["expectation", "value"]].values.tolist() == [
        ["expect_column_values_to_be_between", "3"]
    ]
    assert not gate_decision(result, 3, None, None).publish


def test_mostly_still_quarantines_each_bad_row():
    df = pd.DataFrame({"code": [f"C{i}" for i in range(10)], "flag": ["Y"] * 9 + ["?"]})
    suite = gx.ExpectationSuite(
        name="x", expectations=[E.ExpectColumnValuesToBeInSet(column="flag", value_set=["Y", "N"], mostly=0.8)]
    )
    result = validate_batch(df, suite, ["code"])
    assert result.results.success  # GX is satisfied...
    assert result.row_failures["code"].tolist() == ["C9"]  # ...but the bad row is still quarantined
    assert not result.success


def test_thresholds():
    df = pd.DataFrame({"code": [f"C{i}" for i in range(100)], "name": ["n"] * 97 + [None] * 3})
    suite = gx.ExpectationSuite(name="x", expectations=[E.ExpectColumnValuesToNotBeNull(column="name")])
    result = validate_batch(df, suite, ["code"])
    assert result.failed_rows == 3

    ok = gate_decision(result, 100, max_quarantined_pct=5.0, max_quarantined_rows=3)
    assert ok.publish
    assert ok.reasons == ["expect_column_values_to_not_be_null on name: 3 rows"]

    too_many_pct = gate_decision(result, 100, max_quarantined_pct=2.5, max_quarantined_rows=None)
    assert not too_many_pct.publish
    assert too_many_pct.reasons[0] == "3 of 100 rows (3.00 %) quarantined, more than the allowed 2.5 %"
    assert too_many_pct.reasons[1] == "expect_column_values_to_not_be_null on name: 3 rows"

    too_many_rows = gate_decision(result, 100, max_quarantined_pct=None, max_quarantined_rows=2)
    assert not too_many_rows.publish
    assert "more than the allowed 2 rows" in too_many_rows.reasons[0]

    assert gate_decision(result, 100, None, None).publish
    assert gate_decision(result, 0, 1.0, None).publish  # no division by zero


def test_custom_expectations_pass_and_fail():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "status": ["active", "left", "gone", None],
            "dept": ["D1", "D2", "D3", "D1"],
            "price": [Decimal("1.10"), Decimal("2.555"), Decimal("3"), None],
            "rate": [0.1 + 0.2, 1.005, 2.0, np.nan],
            "qty_text": ["1.50", "2", "abc", "1e-3"],
        }
    )
    suite = gx.ExpectationSuite(
        name="custom",
        expectations=[
            ExpectColumnValuesToBeInCodeTable(column="status", code_table="status"),
            ExpectColumnValuesToExistInEntity(column="dept", entity="department", entity_column="code"),
            ExpectColumnValuesToHaveMaxScale(column="price", scale=2),
            ExpectColumnValuesToHaveMaxScale(column="rate", scale=2),
            ExpectColumnValuesToHaveMaxScale(column="qty_text", scale=2),
        ],
    )
    suite = resolve_code_tables(suite, {"status": {"active", "left"}})
    suite = resolve_references(suite, {"department.code": ["D1", "D2"], "department": ["nope"]})
    result = validate_batch(df, suite, ["id"])
    assert {(r["id"], r["column"], r["value"]) for r in result.row_failures.to_dict("records")} == {
        ("c", "status", "gone"),
        ("c", "dept", "D3"),
        ("b", "price", "2.555"),
        ("b", "rate", "1.005"),
        ("c", "qty_text", "abc"),
        ("d", "qty_text", "1e-3"),
    }
    passing = validate_batch(df.iloc[[0]], suite, ["id"])
    assert passing.success


def test_has_max_scale_vectorised_kinds():
    assert has_max_scale(pd.Series([1, 2, 3]), 0).all()
    assert has_max_scale(pd.Series([1.5, 2.25, None], dtype="Float64"), 2).all()
    assert has_max_scale(pd.Series([1.234]), 2).tolist() == [False]
    decimals = pd.Series([Decimal("1.230"), Decimal("1E+5"), Decimal("Infinity"), Decimal("1" * 30 + ".12")])
    assert has_max_scale(decimals, 2).tolist() == [True, True, False, True]
    mixed = pd.Series(["1.5", 2, Decimal("0.001"), 1.25, dt.date(2024, 1, 1)], dtype=object)
    assert has_max_scale(mixed, 2).tolist() == [True, True, False, True, False]


def test_unresolved_value_set_and_bad_keys_are_config_errors():
    df = pd.DataFrame({"id": ["a"], "status": ["x"]})
    suite = gx.ExpectationSuite(
        name="s", expectations=[ExpectColumnValuesToBeInCodeTable(column="status", code_table="t")]
    )
    with pytest.raises(ConfigError) as err:
        validate_batch(df, suite, ["id"])
    assert err.value.issues[0].path == "expectations[0].kwargs.value_set"

    with pytest.raises(ConfigError) as err:
        validate_batch(df, resolve_code_tables(suite, {"t": ["x"]}), ["nope", "value"])
    messages = [issue.message for issue in err.value.issues]
    assert "key columns not in the batch: nope, value" in messages
    assert "key columns clash with result columns: value" in messages


def test_value_set_stays_out_of_serialised_results():
    keys = [f"K{i:06d}" for i in range(50_000)]
    df = pd.DataFrame({"id": ["a", "b"], "ref": ["K000001", "missing"]})
    suite = gx.ExpectationSuite(
        name="s", expectations=[ExpectColumnValuesToExistInEntity(column="ref", entity="e", entity_column="id")]
    )
    result = validate_batch(df, resolve_references(suite, {"e": keys}), ["id"])
    assert result.row_failures["id"].tolist() == ["b"]
    dumped = json.dumps(result.results.to_json_dict())
    assert "K049999" not in dumped
    assert len(dumped) < 20_000
    value_set = result.results.results[0].expectation_config.kwargs["value_set"]
    assert isinstance(value_set, ValueSet) and len(value_set) == 50_000


def test_string_and_datetime_dtypes_of_pandas_3(tmp_path):
    df = pd.DataFrame(
        {
            "code": pd.array(["A", "B", "C", None], dtype="string"),
            "when": pd.to_datetime(["2020-01-01", "1900-01-01", None, "2020-06-01"]).tz_localize("UTC"),
            "day": [dt.date(2020, 1, 1), dt.date(1900, 1, 1), None, dt.date(2020, 1, 1)],
            # an open-ended validity does not fit datetime64[ns]
            "valid_to": pd.to_datetime(["9999-12-31", "2020-01-01", "1800-01-01", None]),
        }
    )
    suite = gx.ExpectationSuite(
        name="dates",
        expectations=[
            E.ExpectColumnValuesToBeBetween(column="when", min_value="2000-01-01", max_value="2100-01-01"),
            E.ExpectColumnValuesToBeBetween(column="day", min_value="2000-01-01T00:00:00", max_value="2100-01-01"),
            E.ExpectColumnValuesToMatchRegex(column="code", regex="^[A-B]$"),
            E.ExpectColumnValuesToBeBetween(column="valid_to", min_value="1900-01-01", max_value="9999-12-31"),
        ],
    )
    result = validate_batch(df, suite, ["code"])
    assert result.batch_failures == []
    assert {(r["column"], r["value"]) for r in result.row_failures.to_dict("records")} == {
        ("when", "1900-01-01T00:00:00+00:00"),
        ("day", "1900-01-01"),
        ("code", "C"),
        ("valid_to", "1800-01-01"),
    }


def test_quiet_and_nothing_on_disk(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"code": ["A", None]})
    suite = gx.ExpectationSuite(name="q", expectations=[E.ExpectColumnValuesToNotBeNull(column="code")])
    validate_batch(df, suite, ["code"])
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err  # tqdm progress bars are off
    assert os.listdir(tmp_path) == []  # no gx/ project folder, no uncommitted/ docs
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "false"


def test_data_docs_index_in_out_dir(tmp_path, monkeypatch):
    gate_result = validate_batch(employee_frame(), employee_suite(tmp_path), ["employee_code"])
    other = validate_batch(
        pd.DataFrame({"code": ["A"]}),
        gx.ExpectationSuite(name="dept", expectations=[E.ExpectColumnValuesToNotBeNull(column="code")]),
        ["code"],
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    index = build_data_docs([gate_result, other.results], work / "docs")

    assert index == (work / "docs" / "index.html").resolve()
    assert index.is_file()
    assert os.listdir(work) == ["docs"]
    pages = list((work / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2
    employee_page = next((work / "docs" / "validations" / "employee").rglob("*.html")).read_text()
    assert "B3" in employee_page  # failing rows are shown by business key
    assert "employee_status" in employee_page
    assert "D01" not in employee_page  # injected key sets are not dumped into the page


def test_data_docs_from_the_compact_json_a_sync_keeps(tmp_path, monkeypatch):
    n = 5_000
    frame = pd.DataFrame({"code": [f"K{i:05d}" for i in range(n)], "amount": np.arange(n) * -1.0})
    suite = gx.ExpectationSuite(
        name="purchase", expectations=[E.ExpectColumnValuesToBeBetween(column="amount", min_value=0)]
    )
    result = validate_batch(frame, suite, ["code"])
    assert len(result.row_failures) == n - 1

    page = docs_json(result)

    kept = json.loads(page)["results"][0]["result"]
    assert kept["unexpected_count"] == n - 1
    assert len(kept["unexpected_list"]) == SAMPLE_ROWS  # cut to the sample a page shows, not every failing value
    assert len(kept["unexpected_index_list"]) == SAMPLE_ROWS
    assert len(page) < 100_000
    monkeypatch.chdir(tmp_path)
    index = build_data_docs([page, docs_json(result)], tmp_path / "docs")
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert index.is_file() and len(pages) == 2
    html = pages[0].read_text()
    assert "K00001" in html  # failing rows by business key, as from the result itself
    assert "K04999" not in html  # past the sample


@pytest.mark.slow
def test_a_million_rows_are_validated_and_each_bad_row_found():
    """At the scale of a large batch, with the custom expectations (their speed is measured in `benchmarks/`)."""
    n = 1_000_000
    rng = np.random.default_rng(7)
    codes = pd.array([f"E{i:07d}" for i in range(n)], dtype="string")
    status = rng.choice(np.array(["active", "left", "bogus"], dtype=object), n, p=[0.5, 0.49, 0.01])
    dept = rng.choice(np.array([f"D{i:03d}" for i in range(100)], dtype=object), n)
    cents = rng.integers(100_000, 5_000_000, n)
    df = pd.DataFrame(
        {
            "employee_code": codes,
            "name": pd.array(np.where(rng.random(n) < 0.01, None, "Zhang San"), dtype="string"),
            "department_code": pd.array(dept, dtype="string"),
            "status": pd.array(status, dtype="string"),
            "salary": cents / 100,
            "hire_date": pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 8000, n), unit="D"),
        }
    )
    suite = gx.ExpectationSuite(
        name="employee",
        expectations=[
            E.ExpectTableRowCountToBeBetween(min_value=1, meta={"relative_to_previous": [0.5, 2.0]}),
            E.ExpectColumnValuesToNotBeNull(column="employee_code"),
            E.ExpectColumnValuesToBeUnique(column="employee_code"),
            E.ExpectColumnValuesToMatchRegex(column="employee_code", regex=r"^E\d{7}$"),
            E.ExpectColumnValuesToNotBeNull(column="name"),
            ExpectColumnValuesToBeInCodeTable(column="status", code_table="employee_status"),
            ExpectColumnValuesToExistInEntity(
                column="department_code", entity="department", entity_column="department_code"
            ),
            ExpectColumnValuesToHaveMaxScale(column="salary", scale=2),
            E.ExpectColumnValuesToBeBetween(column="hire_date", min_value="1950-01-01", max_value="2100-01-01"),
        ],
    )
    suite = resolve_code_tables(suite, STATUS)
    suite = resolve_references(suite, {"department": [f"D{i:03d}" for i in range(100)]})
    result = validate_batch(df, suite, ["employee_code"], previous_row_count=n)
    assert result.batch_failures == []
    bogus = int((status == "bogus").sum())
    nameless = int(df["name"].isna().sum())
    assert result.failure_counts()[("expect_column_values_to_be_in_code_table", "status")] == bogus
    assert result.failure_counts()[("expect_column_values_to_not_be_null", "name")] == nameless
    assert result.failed_rows == int(((status == "bogus") | df["name"].isna().to_numpy()).sum())


DEFERRED_SCIPY = """
import sys
import pandas as pd
from etl.validate.gate import validate_batch
import great_expectations as gx

def scipy_stats():
    return type(sys.modules["scipy.stats"]).__name__

deferred = scipy_stats()
frame = pd.DataFrame({"code": ["A", "B", "C", "D"], "qty": [1.0, 1.0, 2.0, 2.5]})
plain = gx.ExpectationSuite(name="plain", expectations=[gx.expectations.ExpectColumnValuesToNotBeNull(column="code")])
assert validate_batch(frame, plain, ["code"]).success
after_plain = scipy_stats()
kl = gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
    column="qty", partition_object={"bins": [0, 1.5, 3], "weights": [0.5, 0.5]}, threshold=0.01
)
same = validate_batch(frame, gx.ExpectationSuite(name="kl", expectations=[kl]), ["code"])
skewed = frame.assign(qty=[1.0, 1.0, 1.0, 2.5])
other = validate_batch(skewed, gx.ExpectationSuite(name="kl", expectations=[kl]), ["code"])
divergence = other.results.results[0].result["observed_value"]
print(deferred, after_plain, scipy_stats(), same.success, other.success, round(divergence, 4))
"""


def test_scipy_stats_executes_only_for_an_expectation_that_uses_it():
    """`etl.validate` defers GX's import of `scipy.stats` (~56 MB): a suite without distribution
    expectations never executes it; a KL-divergence expectation loads it and validates as before."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", DEFERRED_SCIPY], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    deferred, after_plain, after_kl, same, other, divergence = done.stdout.split()
    assert (deferred, after_plain, after_kl) == ("_LazyModule", "_LazyModule", "module")
    assert (same, other) == ("True", "False")
    assert float(divergence) == pytest.approx(0.1308, abs=1e-4)  # scipy.stats.entropy([.75, .25], [.5, .5])
