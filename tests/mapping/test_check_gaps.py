"""Mistakes `erpoa mappings check` used to accept: each is now a located error with the fix.

A `quality.suite` naming a file that does not exist (the entity silently ran without its quality gate), an
inverted `quality.row_count_band` (every full refresh was refused), a code-table entry with an empty code, and
an entity listing itself in `depends_on`, a key padded wider than its field's `length:` (every row
quarantined), a `nullable: false` field that no source maps (every record was published without it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.errors import ConfigError
from etl.mapping.loader import load_mappings, suite_file_issues
from tests.helpers.project import tiny_sqlite_project

REPO = Path(__file__).resolve().parents[2]


def _mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", folder, ignore=shutil.ignore_patterns("flows"))
    return folder


def _edit(path: Path, old: str, new: str) -> int:
    """Replace `old` by `new` in `path`; the 1-based line where `new` starts."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return text[: text.index(new)].count("\n") + 1


def _issues(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_mappings(folder)
    return [str(i) for i in caught.value.issues]


# --------------------------------------------------------------------------------------------- quality.suite
@pytest.mark.unit
def test_a_suite_file_that_does_not_exist_is_located_with_the_closest_name(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    line = _edit(folder / "department.yaml", "quality:\n", "quality:\n  suite: dept.json\n") + 1
    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "department.json").write_text("{}", encoding="utf-8")
    mappings = load_mappings(folder)
    (issue,) = suite_file_issues(mappings, suites)
    assert str(issue) == (
        f"mappings/department.yaml:{line}:10 quality.suite: suite file 'dept.json' not found in expectations/; "
        "did you mean 'department.json'?"
    )
    (suites / "dept.json").write_text("{}", encoding="utf-8")
    assert suite_file_issues(mappings, suites) == []


@pytest.mark.unit
def test_an_entity_without_a_suite_stays_without_one(tmp_path: Path) -> None:
    """No `quality.suite` and no `<entity>.json`: no suite, as documented; not an error."""
    mappings = load_mappings(_mappings(tmp_path))
    assert suite_file_issues(mappings, tmp_path / "expectations") == []


@pytest.mark.unit
def test_no_close_name_says_how_to_write_the_suite(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    _edit(folder / "department.yaml", "quality:\n", "quality:\n  suite: org_units.json\n")
    (issue,) = suite_file_issues(load_mappings(folder), tmp_path / "expectations")
    assert issue.message == (
        "suite file 'org_units.json' not found in expectations/; fix the name, or write it with "
        "`erpoa expectations init department`"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_sqlite_project(tmp_path)


def _misname_suite(project: Path) -> int:
    return _edit(project.parent / "mappings" / "department.yaml", "quality:\n", "quality:\n  suite: dept.json\n") + 1


@pytest.mark.sqlite
@pytest.mark.parametrize("command", [["mappings", "check"], ["expectations", "check"]])
def test_the_checks_report_a_misnamed_suite(project: Path, command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--config", str(project), "--json"])
    assert done.exit_code == 0, done.output
    line = _misname_suite(project)
    done = CliRunner().invoke(app, [*command, "--config", str(project), "--json"])
    assert done.exit_code == 2, done.output
    issues = json.loads(done.stdout)["issues"]
    assert [i for i in issues if "quality.suite" in i] == [
        f"mappings/department.yaml:{line}:10 quality.suite: suite file 'dept.json' not found in expectations/; "
        "did you mean 'department.json'?"
    ], issues


@pytest.mark.sqlite
def test_expectations_check_no_longer_says_the_entity_has_no_suite(project: Path) -> None:
    _misname_suite(project)
    done = CliRunner().invoke(app, ["expectations", "check", "--config", str(project)])
    assert done.exit_code == 2, done.output
    assert "department has no suite" not in done.output


# ------------------------------------------------------------------------------------ quality.row_count_band
@pytest.mark.unit
@pytest.mark.parametrize("band", ["[1.2, 0.9]", "[-0.5, 2]"])
def test_a_row_count_band_out_of_order_is_located(tmp_path: Path, band: str) -> None:
    folder = _mappings(tmp_path)
    line = _edit(folder / "department.yaml", "quality:\n", f"quality:\n  row_count_band: {band}\n") + 1
    (issue,) = _issues(folder)
    assert issue.startswith(f"mappings/department.yaml:{line}:19 quality.row_count_band: ")
    assert "must be [low, high] with 0 <= low <= high" in issue


@pytest.mark.unit
def test_a_row_count_band_in_order_loads(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    _edit(folder / "department.yaml", "quality:\n", "quality:\n  row_count_band: [0.9, 0.9]\n")
    assert load_mappings(folder).entity("department").quality.row_count_band == (0.9, 0.9)


# ------------------------------------------------------------------------------------------- empty code, self
@pytest.mark.unit
@pytest.mark.parametrize("code", ['""', '"  "'])
def test_a_code_table_entry_with_an_empty_code_is_located(tmp_path: Path, code: str) -> None:
    folder = _mappings(tmp_path)
    line = _edit(folder / "codes" / "department.yaml", "  - {code: D01,", f"  - {{code: {code},")
    (issue,) = _issues(folder)
    assert issue.startswith(f"mappings/codes/department.yaml:{line}:")
    assert " entries[0].code: " in issue
    assert "the code is empty; give the entry its unified code" in issue


@pytest.mark.unit
def test_an_entity_depending_on_itself_is_located(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    key = "key: department_code\n"
    line = _edit(folder / "department.yaml", key, f"depends_on: [department]\n{key}")
    (issue,) = _issues(folder)
    assert issue == (
        f"mappings/department.yaml:{line}:14 depends_on[0]: entity 'department' cannot depend on itself; "
        "remove it from depends_on"
    )


# ------------------------------------------------------------------------------------------ pad_zeros > length
@pytest.mark.unit
def test_padding_wider_than_the_fields_length_is_located(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    line = _edit(folder / "employee.yaml", "strip_zeros, {pad_zeros: 6}]\n      name: {from: cPsn_Name",
                 "strip_zeros, {pad_zeros: 8}]\n      name: {from: cPsn_Name")
    (issue,) = _issues(folder)
    assert issue.startswith(f"mappings/employee.yaml:{line}:")
    assert " sources.erp.fields.employee_code.transforms[3].pad_zeros: pads to 8 characters but the field's length " \
        "is 6: every value would be too long and quarantined; pad to at most 6, or raise the field's `length:`" in issue


@pytest.mark.unit
def test_padding_within_the_length_or_followed_by_another_transform_is_accepted(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    _edit(folder / "employee.yaml", "length: 6, nullable: false", "length: 8, nullable: false")
    _edit(folder / "employee.yaml", "strip_zeros, {pad_zeros: 6}]\n      name: {from: cPsn_Name",
          "strip_zeros, {pad_zeros: 8}]\n      name: {from: cPsn_Name")
    _edit(folder / "contract.yaml", "strip_zeros, {pad_zeros: 6}]}", "strip_zeros, {pad_zeros: 30}, trim]}")
    assert load_mappings(folder).entity("employee").fields["employee_code"].length == 8


# ------------------------------------------------------------------------------- a required field never mapped
@pytest.mark.unit
def test_a_required_field_that_no_source_maps_is_located(tmp_path: Path) -> None:
    folder = _mappings(tmp_path)
    required = "fields:\n  cost_center: {type: string, nullable: false}\n"
    line = _edit(folder / "department.yaml", "fields:\n", required) + 1
    (issue,) = _issues(folder)
    assert issue == (
        f"mappings/department.yaml:{line}:3 fields.cost_center: field 'cost_center' is `nullable: false` but no source "
        "maps it: every record would be published without it; map it under sources.<erp|oa>.fields, or drop "
        "`nullable: false`"
    )
    _edit(folder / "department.yaml", "cost_center: {type: string, nullable: false}", "cost_center: {type: string}")
    assert "cost_center" in load_mappings(folder).entity("department").fields


def test_a_misnamed_suite_stops_the_sync_before_it_reads(tmp_path: Path) -> None:
    """Before a sync and a plan (and Airflow's start_run: one preflight), not only in the checks."""
    config_path = tiny_sqlite_project(tmp_path)
    mapping = tmp_path / "mappings" / "department.yaml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace("quality:\n", "quality:\n  suite: dept.json\n", 1),
                       encoding="utf-8")
    for command in ("plan", "sync"):
        done = CliRunner().invoke(app, [command, "department", "--config", str(config_path)])
        assert done.exit_code == 2, done.output
        assert "quality.suite: suite file 'dept.json' not found in expectations/; did you mean 'department.json'?" in (
            done.output.replace("\n", " ")
        ), done.output
