"""Suite mistakes `erpoa expectations check` used to accept or refuse wrongly.

The `entity` / `entity_column` of `expect_column_values_to_exist_in_entity` are checked against the mappings as
the `code_table` of the code-table expectation is; a suite saved with a UTF-8 BOM (Windows Notepad) loads; a key
written twice in one JSON object (the last silently won) is a located error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.errors import ConfigError
from etl.validate.suites import check_suites, load_suite
from tests.helpers.project import tiny_sqlite_project

pytest.importorskip("great_expectations")

ENTITIES = {
    "employee": ["employee_code", "name", "department_code"],
    "department": ["department_code", "name", "status"],
}
EXIST = "expect_column_values_to_exist_in_entity"


def _exist(entity: str, column: str) -> dict:
    return {"type": EXIST, "kwargs": {"column": "department_code", "entity": entity, "entity_column": column}}


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding=encoding)
    return path


def _suite(*expectations: dict) -> str:
    return json.dumps({"name": "employee", "expectations": list(expectations), "meta": {}}, indent=2)


def _line(path: Path, fragment: str) -> int:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return next(n for n, line in enumerate(lines, 1) if fragment in line)


# ------------------------------------------------------------------------------------------ exist_in_entity
@pytest.mark.unit
def test_an_unknown_entity_of_a_reference_expectation_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee.json", _suite(_exist("departmnt", "department_code")))
    (issue,) = check_suites(tmp_path, ENTITIES)
    assert str(issue) == (
        f"{path}:{_line(path, 'departmnt')} expectations[0].kwargs.entity: unknown entity 'departmnt'; "
        "did you mean 'department'? (entities: department, employee)"
    )


@pytest.mark.unit
def test_an_unknown_field_of_the_referenced_entity_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee.json", _suite(_exist("department", "nam")))
    (issue,) = check_suites(tmp_path, ENTITIES)
    line = _line(path, '"nam"')
    assert str(issue) == (
        f"{path}:{line} expectations[0].kwargs.entity_column: unknown field 'nam' of entity "
        "'department'; did you mean 'name'? (its fields: department_code, name, status)"
    )


@pytest.mark.unit
def test_a_valid_reference_expectation_passes(tmp_path: Path) -> None:
    _write(tmp_path, "employee.json", _suite(_exist("department", "department_code")))
    assert check_suites(tmp_path, ENTITIES) == []
    # without the entities (a sync's check, which does not know them) nothing is said
    load_suite(tmp_path / "employee.json", ENTITIES["employee"])


@pytest.mark.sqlite
def test_expectations_check_reports_the_brief_example(tmp_path: Path) -> None:
    config = tiny_sqlite_project(tmp_path)
    suite = tmp_path / "expectations" / "employee.json"
    data = json.loads(suite.read_text(encoding="utf-8"))
    kwargs = {"column": "name", "entity": "employe", "entity_column": "nam"}
    data["expectations"].append({"type": EXIST, "kwargs": kwargs})
    suite.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    done = CliRunner().invoke(app, ["expectations", "check", "--config", str(config), "--json"])
    assert done.exit_code == 2, done.output
    (issue,) = json.loads(done.stdout)["issues"]
    index, line = len(data["expectations"]) - 1, _line(suite, '"employe"')
    assert issue.startswith(
        f"{suite}:{line} expectations[{index}].kwargs.entity: unknown entity 'employe'; "
        "did you mean 'employee'?"
    ), issue


# ------------------------------------------------------------------------------------------------ BOM, keys
@pytest.mark.unit
def test_a_suite_saved_with_a_bom_loads(tmp_path: Path) -> None:
    _write(tmp_path, "employee.json", _suite({"type": "expect_column_values_to_not_be_null",
                                               "kwargs": {"column": "name"}}), encoding="utf-8-sig")
    assert (tmp_path / "employee.json").read_bytes().startswith(b"\xef\xbb\xbf")
    suite = load_suite(tmp_path / "employee.json", ENTITIES["employee"])
    assert [e.expectation_type for e in suite.expectations] == ["expect_column_values_to_not_be_null"]
    assert check_suites(tmp_path, ENTITIES) == []


@pytest.mark.unit
def test_a_bom_suite_with_a_mistake_keeps_its_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee.json", _suite({"type": "expect_column_values_to_not_be_null",
                                                      "kwargs": {"column": "nmae"}}), encoding="utf-8-sig")
    (issue,) = check_suites(tmp_path, ENTITIES)
    assert str(issue).startswith(f"{path}:{_line(path, 'nmae')} expectations[0].kwargs.column: unknown column 'nmae'")


DUPLICATE = """\
{
  "name": "employee",
  "expectations": [
    {
      "type": "expect_column_values_to_not_be_null",
      "kwargs": {"column": "name"},
      "kwargs": {"column": "employee_code"}
    }
  ],
  "meta": {}
}
"""


@pytest.mark.unit
def test_a_key_written_twice_is_a_located_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee.json", DUPLICATE)
    with pytest.raises(ConfigError) as caught:
        load_suite(path, ENTITIES["employee"])
    (issue,) = caught.value.issues
    assert str(issue) == (
        f"{path}:7 expectations[0].kwargs: duplicate key; JSON keeps only the last one: keep only one of them"
    )
    assert [str(i) for i in check_suites(tmp_path, ENTITIES)] == [str(issue)]


@pytest.mark.unit
def test_a_duplicate_key_does_not_hide_the_other_mistakes(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee.json", DUPLICATE.replace('"employee_code"', '"employe_code"'))
    issues = [str(i) for i in check_suites(tmp_path, ENTITIES)]
    assert [i.split(" ", 1)[0] for i in issues] == [f"{path}:7", f"{path}:7"]
    assert "duplicate key" in issues[0] and "unknown column 'employe_code'" in issues[1]


def test_a_suite_saved_with_a_bom_runs_in_a_sync(tmp_path: Path) -> None:
    """Accepted by the checks, a BOM suite must also be read by the sync's own reading of its row-count limits."""
    from etl.config.project import load_project
    from etl.engine.pipeline import run_sync

    config_path = tiny_sqlite_project(tmp_path)
    suite = tmp_path / "expectations" / "department.json"
    suite.write_bytes(b"\xef\xbb\xbf" + suite.read_bytes())
    summary, _ = run_sync(load_project(config_path), entities=["department"], full_refresh=True)
    assert summary.status == "success", summary.message
