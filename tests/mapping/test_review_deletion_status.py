"""`deletion.inactive_values` and `set_status` are checked against the codes of the status field's lookup (D9).

A typo there (`lfet`) would re-activate every leaver; where the status field's values are knowable (each
source ends with a `lookup` giving codes), a value that is not a code is refused, located, with did-you-mean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.mapping.loader import load_mappings
from tests.mapping.test_all_issues_at_once import _edit
from tests.mapping.test_loader import issues_of, project

pytestmark = pytest.mark.unit

CODES = "codes: active, invalid, left, retired"


def test_an_inactive_value_that_is_not_a_code_is_refused(tmp_path: Path) -> None:
    folder = project(tmp_path)
    old = "inactive_values: [left, retired, invalid]"
    _edit(folder, "employee.yaml", old, old.replace("left", "lfet"))
    _edit(folder, "employee.yaml", "set_status: left", "set_status: gone")
    issues = issues_of(folder)
    assert [(i.file, i.path, i.message) for i in issues] == [
        ("mappings/employee.yaml", "deletion.inactive_values[0]",
         "'lfet' is not a code of employee_status (the lookup of status), so the status field never holds it; "
         f"did you mean 'left'? {CODES}"),
        ("mappings/employee.yaml", "deletion.set_status",
         "'gone' is not a code of employee_status (the lookup of status), so the status field never holds it; "
         f"{CODES}"),
    ]  # fmt: skip
    text = (folder / "employee.yaml").read_text(encoding="utf-8").splitlines()
    assert text[issues[0].line - 1][issues[0].column - 1 :].startswith("lfet")
    assert text[issues[1].line - 1][issues[1].column - 1 :].startswith("gone")


def test_values_are_not_checked_when_they_cannot_be_known(tmp_path: Path) -> None:
    """A source that passes unmapped values through, or a status not made by a lookup: no false alarm."""
    folder = project(tmp_path)
    _edit(folder, "employee.yaml", "inactive_values: [left, retired, invalid]", "inactive_values: [lfet]")
    _edit(
        folder,
        "employee.yaml",
        "{lookup: {table: employee_status, unmapped: fail}}",
        "{lookup: {table: employee_status, unmapped: pass}}",
    )
    load_mappings(folder)
    _edit(folder, "employee.yaml", "{lookup: {table: employee_status, unmapped: pass}}", "upper")
    load_mappings(folder)


def test_a_lookup_default_counts_as_a_value_of_the_status(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _edit(folder, "employee.yaml", "unmapped: {default: invalid}", "unmapped: {default: unknown}")
    _edit(folder, "employee.yaml", "inactive_values: [left, retired, invalid]", "inactive_values: [left, unknown]")
    load_mappings(folder)
