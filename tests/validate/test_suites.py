"""Suite files: loading and checking, starter suites, run-time code tables and references."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.validate.custom import ValueSet
from etl.validate.gate import validate_batch
from etl.validate.suites import (
    check_suites,
    init_suite,
    load_suite,
    resolve_code_tables,
    resolve_references,
)

gx = pytest.importorskip("great_expectations")

pytestmark = pytest.mark.unit

COLUMNS = ["employee_code", "name", "department_code", "status", "salary", "hire_date"]


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


def suite_doc(*expectations: dict, name: str = "employee") -> dict:
    return {"name": name, "expectations": list(expectations), "meta": {}}


def not_null(column: str) -> dict:
    return {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}, "meta": {}}


def issues_of(path: Path, columns=COLUMNS) -> list:
    with pytest.raises(ConfigError) as err:
        load_suite(path, columns)
    return err.value.issues


def test_valid_suite_round_trips_through_gx_json(tmp_path):
    original = gx.ExpectationSuite(
        name="employee",
        expectations=[
            gx.expectations.ExpectColumnValuesToNotBeNull(column="employee_code"),
            gx.expectations.ExpectColumnValuesToMatchRegex(column="employee_code", regex=r"^E\d+$", mostly=0.99),
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, meta={"relative_to_previous": [0.5, 2]}),
        ],
        meta={"owner": "hr"},
    )
    path = write(tmp_path / "employee.json", original.to_json_dict())
    loaded = load_suite(path, COLUMNS)
    assert loaded.name == "employee"
    assert [e.expectation_type for e in loaded.expectations] == [e.expectation_type for e in original.expectations]
    assert loaded.expectations[1].mostly == 0.99
    assert loaded.meta["owner"] == "hr"


def test_all_issues_reported_at_once(tmp_path):
    path = write(
        tmp_path / "employee.json",
        suite_doc(
            not_null("employe_code"),  # typo'd column
            {"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "salary", "min_value": 0}},
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "salary", "min_value": "lots"}},
            {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "name", "regex": "("}},
            {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["employee_code", "ver"]}},
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "name", "colum": "x"}},
        ),
    )
    issues = issues_of(path)
    by_path = {issue.path: issue for issue in issues}
    assert set(by_path) == {
        "expectations[0].kwargs.column",
        "expectations[1].type",
        "expectations[2].kwargs.min_value",
        "expectations[3].kwargs.regex",
        "expectations[4].kwargs.column_list[1]",
        "expectations[5].kwargs.colum",
    }
    assert all(issue.file == str(path) for issue in issues)
    text = path.read_text(encoding="utf-8").splitlines()
    # each issue points at the line of the key it names
    for issue, key in [
        (by_path["expectations[0].kwargs.column"], '"column": "employe_code"'),
        (by_path["expectations[1].type"], '"type": "expect_column_values_to_be_betwen"'),
        (by_path["expectations[3].kwargs.regex"], '"regex": "("'),
        (by_path["expectations[4].kwargs.column_list[1]"], '"ver"'),
        (by_path["expectations[5].kwargs.colum"], '"colum": "x"'),
    ]:
        assert key in text[issue.line - 1], (issue, text[issue.line - 1])
    assert str(by_path["expectations[1].type"]).startswith(
        f"{path}:{by_path['expectations[1].type'].line} expectations[1].type: unknown expectation type"
    )

    column = by_path["expectations[0].kwargs.column"].message
    assert "unknown column 'employe_code'" in column
    assert "did you mean 'employee_code'" in column
    assert "known columns: department_code, employee_code, hire_date, name, salary, status" in column

    unknown_type = by_path["expectations[1].type"].message
    assert "unknown expectation type 'expect_column_values_to_be_betwen'" in unknown_type
    assert "'expect_column_values_to_be_between'" in unknown_type

    assert by_path["expectations[2].kwargs.min_value"].message.startswith("invalid value 'lots':")
    assert "invalid regex" in by_path["expectations[3].kwargs.regex"].message
    assert "not a kwarg of expect_column_values_to_be_unique" in by_path["expectations[5].kwargs.colum"].message
    assert "did you mean 'column'" in by_path["expectations[5].kwargs.colum"].message


def test_unknown_code_table_is_named_with_its_line_and_a_close_match(tmp_path):
    in_code_table = {
        "type": "expect_column_values_to_be_in_code_table",
        "kwargs": {"column": "status", "code_table": "employee_statu"},
    }
    path = write(tmp_path / "employee.json", suite_doc(not_null("employee_code"), in_code_table))
    load_suite(path, COLUMNS)  # without the project's code tables the name is not checked
    with pytest.raises(ConfigError) as err:
        load_suite(path, COLUMNS, ["department", "employee_status"])
    (issue,) = err.value.issues
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if '"employee_statu"' in text)
    assert (issue.file, issue.line, issue.path) == (str(path), line, "expectations[1].kwargs.code_table")
    assert str(issue) == (
        f"{path}:{line} expectations[1].kwargs.code_table: unknown code table 'employee_statu'; "
        "did you mean 'employee_status'? (code tables: department, employee_status)"
    )
    assert load_suite(path, COLUMNS, {"employee_statu": object()}).name == "employee"  # a dict of tables is fine

    folder = tmp_path
    (issue,) = check_suites(folder, {"employee": COLUMNS}, ["department"])
    assert issue.path == "expectations[1].kwargs.code_table" and issue.line == line
    assert "did you mean" not in issue.message
    assert check_suites(folder, {"employee": COLUMNS}) == []


def test_issue_lines_follow_the_json_layout(tmp_path):
    """Compact and odd layouts: a missing kwarg takes its parent's line; escapes and nesting do not confuse it."""
    text = (
        '{"name": "emp\\"loyee", "meta": {"a": [1, {"b": "}]"}]},\n'
        '  "expectations": [\n'
        '    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "name"}},\n'
        '    {"type": "expect_column_values_to_be_between",\n'
        '     "kwargs": {}},\n'
        '    {"type": "expect_column_values_to_not_be_null",\n'
        '     "kwargs": {\n'
        '       "column": "nope"}}\n'
        "  ]}\n"
    )
    path = write(tmp_path / "employee.json", text)
    by_path = {issue.path: issue.line for issue in issues_of(path)}
    assert by_path == {"expectations[1].kwargs.column": 5, "expectations[2].kwargs.column": 8}


def test_malformed_json_points_at_the_line(tmp_path):
    path = write(tmp_path / "employee.json", '{\n  "name": "employee",\n  "expectations": [\n    {"type": }\n  ]\n}\n')
    (issue,) = issues_of(path)
    assert issue.line == 4
    assert issue.column == 14
    assert issue.message.startswith("invalid JSON:")
    assert str(issue).startswith(f"{path}:4:14")


def test_structure_and_project_meta_are_checked(tmp_path):
    path = write(
        tmp_path / "employee.json",
        {
            "name": "",
            "expectation": [],
            "expectations": [
                "not an object",
                {"expectation_type": "expect_column_values_to_not_be_null", "kwargs": {"column": "name"}},
                {**not_null("name"), "meta": {"level": "table"}},
                {
                    "type": "expect_column_mean_to_be_between",
                    "kwargs": {"column": "salary", "min_value": 1},
                    "meta": {"level": "row"},
                },
                {**not_null("name"), "meta": {"relative_to_previous": [0.5, 2]}},
                {
                    "type": "expect_table_row_count_to_be_between",
                    "kwargs": {"min_value": 1},
                    "meta": {"relative_to_previous": [2, 1]},
                },
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "salary", "min_value": 9, "max_value": 1},
                },
                {
                    "type": "expect_column_values_to_be_in_code_table",
                    "kwargs": {"column": "status", "code_table": "s", "value_set": ["a"]},
                },
            ],
        },
    )
    by_path = {issue.path: issue.message for issue in issues_of(path)}
    assert "did you mean 'expectations'" in by_path["expectation"]
    assert by_path["name"] == "the suite needs a non-empty string name"
    assert "must be an object" in by_path["expectations[0]"]
    assert "GX 1.x names the expectation in 'type'" in by_path["expectations[1].expectation_type"]
    assert by_path["expectations[2].meta.level"] == "must be 'row' or 'batch'"
    assert "cannot fail single rows" in by_path["expectations[3].meta.level"]
    assert (
        "only allowed on expect_table_row_count_to_be_between" in by_path["expectations[4].meta.relative_to_previous"]
    )
    assert "0 <= low <= high" in by_path["expectations[5].meta.relative_to_previous"]
    assert "min_value 9 is greater than max_value 1" in by_path["expectations[6].kwargs"]
    assert "filled in at run time" in by_path["expectations[7].kwargs.value_set"]


def test_check_suites_folder(tmp_path):
    folder = tmp_path / "expectations"
    folder.mkdir()
    write(folder / "employee.json", suite_doc(not_null("employee_code")))
    write(folder / "department.json", suite_doc(not_null("department_code"), name="dept"))
    write(folder / "contract.json", suite_doc(not_null("nope"), name="contract"))
    write(folder / "vendor.json", suite_doc(name="vendor"))
    known = {
        "employee": COLUMNS,
        "department": ["department_code", "name"],
        "contract": ["contract_no", "start_date"],
    }
    issues = check_suites(folder, known)
    assert [(Path(i.file).name, i.line, i.path) for i in issues] == [
        ("contract.json", 7, "expectations[0].kwargs.column"),
        ("department.json", 2, "name"),
        ("vendor.json", None, ""),
    ]
    assert "no entity named 'vendor'" in issues[2].message
    assert check_suites(tmp_path / "missing", known)[0].message == "suite folder does not exist"
    (folder / "contract.json").unlink()
    (folder / "vendor.json").unlink()
    write(folder / "department.json", suite_doc(not_null("department_code"), name="department"))
    assert check_suites(folder, known) == []


@dataclass
class Field:
    """Shaped like etl.mapping.model.CanonicalField."""

    type: str
    scale: int | None = None
    nullable: bool = True
    length: int | None = None
    references: str | None = None


CONTRACT_FIELDS = {
    "contract_no": Field("string", nullable=False, length=20),
    "version": Field("integer", nullable=False),
    "vendor_code": Field("string", references="vendor.code"),
    "status": Field("string", nullable=False),
    "amount": Field("decimal", scale=2, nullable=False),
    "signed": Field("boolean"),
    "start_date": Field("date"),
    "updated_at": Field("datetime"),
}


def test_init_suite_loads_back_and_validates_clean_data(tmp_path):
    doc = init_suite("contract", CONTRACT_FIELDS, ["contract_no", "version"], {"status": "contract_status"})
    types = [(e["type"], e["kwargs"].get("column") or e["kwargs"].get("column_list")) for e in doc["expectations"]]
    assert types == [
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_not_be_null", "contract_no"),
        ("expect_column_values_to_not_be_null", "version"),
        ("expect_compound_columns_to_be_unique", ["contract_no", "version"]),
        ("expect_column_value_lengths_to_be_between", "contract_no"),
        ("expect_column_values_to_exist_in_entity", "vendor_code"),
        ("expect_column_values_to_not_be_null", "status"),
        ("expect_column_values_to_be_in_code_table", "status"),
        ("expect_column_values_to_not_be_null", "amount"),
        ("expect_column_values_to_have_max_scale", "amount"),
        ("expect_column_values_to_be_in_set", "signed"),
    ]
    assert doc["expectations"][0]["meta"] == {"relative_to_previous": [0.5, 2.0], "level": "batch"}

    path = write(tmp_path / "contract.json", doc)
    suite = load_suite(path, CONTRACT_FIELDS)
    assert len(suite.expectations) == len(doc["expectations"])

    df = pd.DataFrame(
        {
            "contract_no": ["C1", "C1", "C2"],
            "version": [1, 2, 1],
            "vendor_code": ["V1", None, "V2"],
            "status": ["open", "closed", "open"],
            "amount": [Decimal("10.50"), Decimal("7"), Decimal("0.01")],
            "signed": [True, False, True],
            "start_date": pd.to_datetime(["2024-01-01", "2024-02-01", None]),
            "updated_at": pd.to_datetime(["2024-01-01 10:00", "2024-02-01 11:00", "2024-03-01 12:00"]),
        }
    )
    suite = resolve_code_tables(suite, {"contract_status": ["open", "closed"]})
    suite = resolve_references(suite, {"vendor.code": ["V1", "V2"]})
    result = validate_batch(df, suite, ["contract_no", "version"], previous_row_count=3)
    assert result.success, (result.row_failures, result.batch_failures)

    df.loc[2, "amount"] = Decimal("0.001")
    df.loc[1, "version"] = 1
    df.loc[0, "vendor_code"] = "V9"
    df.loc[2, "contract_no"] = "C" * 21
    failed = validate_batch(df, suite, ["contract_no", "version"])
    assert set(failed.row_failures["expectation"]) == {
        "expect_column_values_to_have_max_scale",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_exist_in_entity",
        "expect_column_value_lengths_to_be_between",
    }


def test_init_suite_single_key_and_bad_declarations():
    doc = init_suite("department", {"department_code": Field("string"), "name": Field("string")}, ["department_code"])
    assert {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "department_code"}, "meta": {}} in doc[
        "expectations"
    ]
    with pytest.raises(ConfigError) as err:
        init_suite("x", {"a": Field("money"), "b": Field("string")}, ["k"], {"c": "table"})
    paths = [issue.path for issue in err.value.issues]
    assert paths == ["fields.a.type", "fields.k", "fields.c"]
    assert "unknown field type 'money'" in err.value.issues[0].message


def test_resolve_code_tables_and_references(tmp_path):
    path = write(
        tmp_path / "employee.json",
        suite_doc(
            {
                "type": "expect_column_values_to_be_in_code_table",
                "kwargs": {"column": "status", "code_table": "employee_status"},
            },
            {
                "type": "expect_column_values_to_be_in_code_table",
                "kwargs": {"column": "name", "code_table": "no_such_table"},
            },
            {
                "type": "expect_column_values_to_exist_in_entity",
                "kwargs": {"column": "department_code", "entity": "department", "entity_column": "department_code"},
            },
        ),
    )
    suite = load_suite(path, COLUMNS)
    with pytest.raises(ConfigError) as err:
        resolve_code_tables(suite, {"employee_status": ["active"], "gender": ["m", "f"]})
    (issue,) = err.value.issues
    assert issue.path == "expectations[1].kwargs.code_table"
    assert issue.message == "unknown code table 'no_such_table' (known: employee_status, gender)"

    suite.expectations[1].code_table = "gender"
    resolved = resolve_code_tables(suite, {"employee_status": ("active", "left", "active"), "gender": ["m", "f"]})
    assert isinstance(resolved.expectations[0].value_set, ValueSet)
    assert resolved.expectations[0].value_set.members == ["active", "left"]
    assert suite.expectations[0].value_set is None  # the original is untouched

    with pytest.raises(ConfigError) as err:
        resolve_references(resolved, {"vendor": ["V1"]})
    assert "unknown referenced entity 'department.department_code' (known: vendor)" in err.value.issues[0].message
    referenced = resolve_references(resolved, {"department": {"D01", "D02"}})
    assert sorted(referenced.expectations[2].value_set) == ["D01", "D02"]
    assert len(referenced.expectations[0].value_set) == 2  # earlier injections are kept
    summary = referenced.to_json_dict()["expectations"][2]["kwargs"]["value_set"]
    assert summary["size"] == 2 and set(summary) == {"size", "sha1", "sample"}


def test_init_writes_the_suite_the_mapping_names(tmp_path):
    """`quality.suite` names the file the sync reads: `expectations init` writes that one."""
    from typer.testing import CliRunner

    from etl.cli.app import app
    from etl.cli.demo_cmd import write_project

    config = write_project(tmp_path / "p")
    mapping = config.parent / "mappings" / "department.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("\nquality:\n", "\nquality:\n  suite: org_units.json\n", 1), "utf-8")
    assert "suite: org_units.json" in mapping.read_text(encoding="utf-8")
    done = CliRunner().invoke(app, ["expectations", "init", "department", "--config", str(config)])
    assert done.exit_code == 0, done.output
    written = config.parent / "expectations" / "org_units.json"
    assert written.exists() and "org_units.json" in done.output.replace("\n", "")
    assert json.loads(written.read_text(encoding="utf-8"))["name"] == "department"
    check = CliRunner().invoke(app, ["expectations", "check", "--config", str(config)])
    assert check.exit_code == 0, check.output
