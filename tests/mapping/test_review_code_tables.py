"""Code tables whose entries overlap in time (review D3, D4).

A spelling under two codes, or a code under two names, on dates where both entries are in force, makes the
lookup depend on the order of the entries: the loader refuses it, located at the second entry, with the fix.
Entries whose periods do not overlap (a dated reorganisation) stay valid.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from etl.mapping.codes import CodeEntry, CodeTable
from etl.mapping.loader import load_mappings
from tests.mapping.test_loader import issues_of, project

pytestmark = pytest.mark.unit

# The docs' reorganisation recipe with the "close the old entry" step forgotten (entries[20] is new).
REORGANISED = '  - {code: D0110, name: 市场营销中心, synonyms: [SC01, "0110"], valid_from: 2025-01-01}\n'


def _append(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_a_new_dated_entry_overlapping_the_old_one_is_refused_with_the_fix(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _append(folder, "codes/department.yaml", REORGANISED)
    issues = issues_of(folder)
    assert [str(i) for i in issues] == [
        "mappings/codes/department.yaml:34:25 entries[20].name: '市场营销中心' maps to both 'D0101' (entries[6], "
        "always) and 'D0110' (entries[20], from 2025-01-01) on overlapping dates; close entries[6] with valid_to: "
        "2024-12-31",
        "mappings/codes/department.yaml:34:44 entries[20].synonyms[0]: 'SC01' maps to both 'D0101' (entries[6], "
        "always) and 'D0110' (entries[20], from 2025-01-01) on overlapping dates; close entries[6] with valid_to: "
        "2024-12-31",
    ]


def test_closing_the_old_entry_makes_the_reorganisation_valid(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _append(folder, "codes/department.yaml", REORGANISED)
    path = folder / "codes/department.yaml"
    text = path.read_text(encoding="utf-8")
    old = '  - {code: D0101, name: 市场部, synonyms: ["0101", SC01, 市场营销中心]}'
    path.write_text(text.replace(old, old[:-1] + ", valid_to: 2024-12-31}"), encoding="utf-8")
    table = load_mappings(folder).code_tables["department"]
    assert table.spellings(date(2024, 12, 31))["sc01"] == "D0101"
    assert table.spellings(date(2025, 1, 1))["sc01"] == "D0110"


@pytest.mark.parametrize(
    ("first", "second", "fix"),
    [
        ("valid_from: 2020-01-01", "valid_from: 2024-07-01", "close entries[0] with valid_to: 2024-06-30"),
        ("valid_from: 2024-07-01", "valid_to: 2024-12-31", "close entries[1] with valid_to: 2024-06-30"),
        ("valid_to: 2025-06-30", "valid_to: 2024-12-31", "give the entries non-overlapping valid_from/valid_to"),
    ],
)
def test_overlap_of_any_two_periods_is_found(tmp_path: Path, first: str, second: str, fix: str) -> None:
    table = f"entries:\n  - {{code: A, synonyms: [x], {first}}}\n  - {{code: B, synonyms: [x], {second}}}\n"
    (issue,) = issues_of(project(tmp_path, {"codes/units.yaml": table}, shipped=False))
    assert (issue.line, issue.path) == (3, "entries[1].synonyms[0]")
    assert issue.message.startswith("'x' maps to both 'A' (entries[0], ")
    assert issue.message.endswith(f"on overlapping dates; {fix}")


def test_non_overlapping_dated_entries_stay_valid(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: A, synonyms: [x], valid_to: 2024-12-31}
          - {code: B, synonyms: [x], valid_from: 2025-01-01, valid_to: 2025-12-31}
          - {code: C, synonyms: [x], valid_from: 2026-01-01}
        """
    tables = load_mappings(project(tmp_path, {"codes/units.yaml": table})).code_tables
    assert [tables["units"].spellings(date(y, 6, 1))["x"] for y in (2024, 2025, 2026)] == ["A", "B", "C"]


def test_the_model_refuses_overlapping_entries_too() -> None:
    entries = [CodeEntry(code="A", synonyms=["x"]), CodeEntry(code="B", synonyms=["x"], valid_from=date(2025, 1, 1))]
    with pytest.raises(ValueError, match="on overlapping dates; close entries\\[0\\] with valid_to: 2024-12-31"):
        CodeTable(name="units", entries=entries)


# --------------------------------------------------------------------------- D4: one code, two names


def test_one_code_under_two_names_is_refused_with_the_fix(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _append(folder, "codes/department.yaml", "  - {code: D0101, name: 市场二部, synonyms: [SC02]}\n")
    (issue,) = issues_of(folder)
    assert str(issue) == (
        "mappings/codes/department.yaml:34:25 entries[20].name: code 'D0101' already has entry entries[6] "
        "(name 市场部) valid on the same dates as this one (name 市场二部); one code gives one name: merge the "
        "entries, or date them with non-overlapping valid_from/valid_to"
    )


def test_an_entry_without_name_for_a_named_code_is_refused_at_its_code(tmp_path: Path) -> None:
    """What `erpoa mappings suggest --yaml` prints (`- code: D01` with synonyms), pasted as a new entry."""
    table = "entries:\n  - {code: D01, name: 营销中心}\n  - code: D01\n    synonyms: [YX01]\n"
    (issue,) = issues_of(project(tmp_path, {"codes/units.yaml": table}, shipped=False))
    assert (issue.line, issue.column, issue.path) == (3, 11, "entries[1].code")
    assert (
        "code 'D01' already has entry entries[0] (name 营销中心) valid on the same dates as this one (name (none))"
        in issue.message
    )


def test_one_code_renamed_on_a_date_and_repeated_entries_stay_valid(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: D01, name: 市场部, valid_to: 2025-12-31}
          - {code: D01, name: 市场与品牌部, synonyms: [市场部], valid_from: 2026-01-01}
          - {code: D02, name: 财务部, synonyms: [CW01]}
          - {code: D02, name: 财务部, synonyms: [CW02]}
        """
    table_ = load_mappings(project(tmp_path, {"codes/units.yaml": table})).code_tables["units"]
    assert table_.spellings(date(2025, 6, 1), output="name")["d01"] == "市场部"
    assert table_.spellings(date(2026, 6, 1), output="name")["市场部"] == "市场与品牌部"
    assert table_.spellings(date(2026, 6, 1), output="name")["cw02"] == "财务部"
