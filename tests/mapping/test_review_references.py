"""A reference between fields of different types is refused (review U8), and an invalid field name is located
at its key with the field in the path (review U7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mapping.test_all_issues_at_once import _edit
from tests.mapping.test_loader import issues_of, project

pytestmark = pytest.mark.unit


def test_a_reference_to_a_field_of_another_type_is_refused(tmp_path: Path) -> None:
    folder = project(tmp_path)
    old = "department_code: {type: string, length: 20, references: department.department_code}"
    _edit(folder, "employee.yaml", old, "department_code: {type: integer, references: department.name}")
    (issue,) = issues_of(folder)
    assert (issue.file, issue.line, issue.path) == ("mappings/employee.yaml", 8, "fields.department_code.references")
    assert issue.message == "department.name is string, this field is integer; give this field `type: string`"


def test_an_invalid_field_name_is_located_at_its_key(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _edit(folder, "department.yaml", "\n  status:", "\n  负责人: {type: string}\n  status:")
    lines = (folder / "department.yaml").read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("  负责人:"))
    issues = [i for i in issues_of(folder) if "must be lower-case" in i.message]
    assert [(i.line, i.column, i.path) for i in issues] == [(line, 3, "fields.负责人")]
    assert issues[0].message == "field name '负责人' must be lower-case letters, digits and _ and not start with _"
