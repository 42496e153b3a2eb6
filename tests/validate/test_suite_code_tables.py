"""A suite naming a code table the project does not have is reported by `erpoa expectations check` and by a sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project
from etl.engine.pipeline import run_sync
from etl.errors import ConfigError
from tests.helpers.project import tiny_sqlite_project

pytestmark = pytest.mark.sqlite

TYPO = {
    "type": "expect_column_values_to_be_in_code_table",
    "kwargs": {"column": "status", "code_table": "employee_statu"},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_sqlite_project(tmp_path)


def _add_typo(project: Path) -> tuple[Path, int]:
    """Append the expectation to the demo's employee suite; returns the file and the line of its code_table."""
    suite = project.parent / "expectations" / "employee.json"
    data = json.loads(suite.read_text(encoding="utf-8"))
    data["expectations"].append(TYPO)
    suite.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = suite.read_text(encoding="utf-8").splitlines()
    return suite, next(n for n, line in enumerate(lines, 1) if '"employee_statu"' in line)


def test_expectations_check_names_an_unknown_code_table(project: Path) -> None:
    done = CliRunner().invoke(app, ["expectations", "check", "--config", str(project), "--json"])
    assert done.exit_code == 0, done.output
    suite, line = _add_typo(project)
    index = len(json.loads(suite.read_text(encoding="utf-8"))["expectations"]) - 1
    done = CliRunner().invoke(app, ["expectations", "check", "--config", str(project), "--json"])
    assert done.exit_code == 2, done.output
    (issue,) = json.loads(done.stdout)["issues"]
    where = f"{suite}:{line} expectations[{index}].kwargs.code_table"
    assert issue.startswith(f"{where}: unknown code table 'employee_statu'")
    assert "did you mean 'employee_status'?" in issue


def test_a_sync_names_the_suite_file_and_line(project: Path) -> None:
    """Before this was checked at load, the sync failed with the suite's name and a wrong expectation index."""
    suite, line = _add_typo(project)
    try:
        summary, _ = run_sync(load_project(project), entities=["employee"])
    except ConfigError as exc:  # the pre-run suite check, once it is given the project's code tables
        message = str(exc)
    else:  # the entity fails when its suite is first loaded
        (employee,) = summary.entities
        assert summary.exit_code == 2 and employee.error == "ConfigError"
        message = employee.message or ""
    assert f"{suite}:{line} " in message
    assert "did you mean 'employee_status'?" in message


def test_a_suite_a_mapping_names_with_quality_suite_is_checked_as_its_entity(project: Path) -> None:
    folder = project.parent
    (folder / "expectations" / "employee.json").rename(folder / "expectations" / "hr_employee.json")
    mapping = folder / "mappings" / "employee.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("\nquality:\n", "\nquality:\n  suite: hr_employee.json\n", 1), encoding="utf-8")
    done = CliRunner().invoke(app, ["expectations", "check", "--config", str(project), "--json"])
    assert done.exit_code == 0, done.output
    assert "employee" not in json.loads(done.stdout)["entities_without_suite"]
