"""Every issue of a file in one pass, and no follow-on issues that point to the wrong fix.

A duplicate key, a field pydantic rejects or a broken code table must not hide
the file's other mistakes until a next round, nor make references to the broken
file look like references to a missing one. Range errors say what is allowed,
and an unknown entity name says where it was written and what was meant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config.project import load_project
from etl.errors import ConfigError, ConfigIssue
from etl.mapping.codes import CodeTable
from etl.mapping.loader import COMMAND_LINE, CodeTables, check_transforms, load_mappings, run_entities_origin
from etl.mapping.model import CanonicalField, EntityMapping, QualitySpec
from etl.yamlio import parse_yaml, validate_model
from tests.mapping.test_loader import REPO, SUPPLIER, issues_of, project

pytestmark = pytest.mark.unit


def _edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, (name, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _lines(issues: list[ConfigIssue]) -> list[str]:
    return [str(issue) for issue in issues]


# --------------------------------------------------------------------------- duplicate keys


def test_a_duplicate_key_is_one_issue_among_the_others_of_the_file(tmp_path: Path) -> None:
    text = SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: string, nullable: maybe}") + (
        "description: first\ndescription: second\nsurvivorship:\n  default: [erp, hr]\n"
    )
    issues = issues_of(project(tmp_path, {"supplier.yaml": text}, shipped=False))
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [
        ("fields.name.nullable", "expected true or false, got 'maybe'"),
        ("description", "duplicate key"),
        ("survivorship.default[1]", "source 'hr' not found"),
    ]
    assert (issues[1].line, issues[1].column) == (16, 1)  # the second `description:`


def test_a_duplicate_key_in_a_valid_file_is_still_reported() -> None:
    data, smap = parse_yaml("type: string\ntype: integer\n", "x.yaml")
    assert data == {"type": "integer"}  # what YAML keeps; the issue says to keep one
    assert _lines(smap.duplicates) == ["x.yaml:2:1 type: duplicate key; keep only one of them"]
    with pytest.raises(ConfigError) as caught:
        validate_model(CanonicalField, data, smap)
    assert _lines(caught.value.issues) == _lines(smap.duplicates)


def test_a_duplicate_key_in_a_code_table_does_not_hide_its_other_issues(tmp_path: Path) -> None:
    table = "owner: a\nowner: b\nentries:\n  - {code: A, synonym: [x]}\n"
    issues = issues_of(project(tmp_path, {"codes/units.yaml": table}, shipped=False))
    assert [(i.line, i.path) for i in issues] == [(2, "owner"), (4, "entries[0].synonym")]


def test_a_duplicate_key_in_erpoa_yaml_does_not_hide_its_other_issues(tmp_path: Path) -> None:
    config = tmp_path / "erpoa.yaml"
    config.write_text(
        "project: demo\nproject: again\nconnections:\n  erp: {url: 'sqlite:///e.db'}\n  oa: {url: 'sqlite:///o.db'}\n"
        "  target: {url: 'sqlite:///t.db'}\n  recon: {url: 'sqlite:///r.db'}\nreportz: reports\n"
        "run:\n  chunk_size: lots\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_project(config)
    assert [(i.line, i.path) for i in caught.value.issues] == [(2, "project"), (8, "reportz"), (10, "run.chunk_size")]


# --------------------------------------------------------------------------- no rounds


def test_semantic_checks_run_beside_the_field_errors_of_the_same_file(tmp_path: Path) -> None:
    folder = project(tmp_path)
    for old, new in [
        ("name: {type: string, length: 50}", "name: {type: string, length: 50, nullable: maybe}"),
        ("gender: {type: string, length: 1}", "gender: {type: text, length: 1}"),
        ("email: {type: string, length: 100}", "email: {type: string, length: 0}"),
        ("hire_date: {type: date}", "hire_date: {type: date, lenght: 3}"),
        ("mobile: [oa, erp]", "mobile: [hr, erp]"),
    ]:
        _edit(folder, "employee.yaml", old, new)
    issues = issues_of(folder)
    assert [i.path for i in issues] == [
        "fields.name.nullable",
        "fields.gender.type",
        "fields.email.length",
        "fields.hire_date.lenght",
        "survivorship.fields.mobile[0]",
    ]
    assert issues[-1].message.startswith("source 'hr' not found; known: erp, oa")


def test_checks_that_read_an_invalid_part_are_skipped(tmp_path: Path) -> None:
    """A bad field still counts as declared; a bad source still counts as a source; nothing is guessed."""
    text = (
        SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: datetime, length: -1}").replace(
            "    table: Vendor\n", "    table: Vendor\n    overlap: soon\n"
        )
        + "survivorship:\n  fields:\n    name: [erp]\n    nmae: [erp]\n  recency_field: name\n"
    )
    issues = issues_of(project(tmp_path, {"supplier.yaml": text}, shipped=False))
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [
        ("fields.name.length", "expected a whole number from 1 to 4000, got -1"),
        ("sources.erp.overlap", "'soon' is not a duration"),
        ("survivorship.fields.nmae", "field 'nmae' not found"),
    ]


def test_every_spelling_conflict_comes_with_the_invalid_entries_of_the_table(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: A, synonyms: [x, y]}
          - {code: B, synonyms: [x]}
          - {code: C, synonym: [z]}
          - {code: D, synonyms: [y]}
        """
    issues = issues_of(project(tmp_path, {"codes/units.yaml": table}, shipped=False))
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [
        ("entries[1].synonyms[0]", "'x' maps to both 'A' and 'B'"),
        ("entries[2].synonym", "unknown key 'synonym'"),
        ("entries[3].synonyms[0]", "'y' maps to both 'A' and 'D'"),
    ]


# --------------------------------------------------------------------------- no false follow-on issues


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("codes/department.yaml", '"02", CW00, 财务审计体系]', '"02", CW00, 财务审计体系, YX00]'),
        ("codes/contract_kind.yaml", "entries:\n", "entries:\n\t- {code: X}\n"),
        ("codes/department.yaml", "owner:", "entries: 3\nowner:"),
    ],
    ids=["synonym conflict", "tab", "duplicate entries key"],
)
def test_lookups_of_a_code_table_that_failed_are_not_reported_as_missing(
    tmp_path: Path, name: str, old: str, new: str
) -> None:
    folder = project(tmp_path)
    _edit(folder, name, old, new)
    issues = issues_of(folder)
    assert {i.file for i in issues} == {f"mappings/{name}"}, _lines(issues)


def test_a_lookup_near_a_failed_table_name_suggests_it(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _edit(folder, "codes/contract_kind.yaml", "entries:\n", "entries:\n\t- {code: X}\n")
    _edit(folder, "contract.yaml", "table: contract_kind", "table: contract_kinds")
    lookup = next(i for i in issues_of(folder) if i.file == "mappings/contract.yaml")
    assert "did you mean 'contract_kind'?" in lookup.message


def test_check_transforms_skips_failed_tables_for_every_caller() -> None:
    """Flows check their lookups with `check_transforms` and the tables of `load_code_tables` too."""
    tables = CodeTables()
    tables.failed.add("department")
    _, smap = parse_yaml("t: [{lookup: department}, {lookup: departmnt}]\n", "flow.yaml")
    issues = check_transforms([{"lookup": "department"}, {"lookup": "departmnt"}], smap, ("t",), tables)
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [("t[1].lookup", "code table 'departmnt' not found")]
    plain: dict[str, CodeTable] = {}
    assert len(check_transforms([{"lookup": "department"}], smap, ("t",), plain)) == 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("key: employee_code\n", "key: employee_code\n  bad: [\n"),
        ("key: employee_code\n", "key: employee_code\ntarget: 3\n"),
    ],
    ids=["yaml syntax", "invalid model"],
)
def test_references_to_an_entity_that_failed_are_not_reported_as_missing(tmp_path: Path, old: str, new: str) -> None:
    folder = project(tmp_path)
    _edit(folder, "employee.yaml", old, new)
    issues = issues_of(folder)
    assert {i.file for i in issues} == {"mappings/employee.yaml"}, _lines(issues)


def test_references_from_a_file_that_failed_are_still_checked(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _edit(folder, "purchase.yaml", "references: employee.employee_code}", "references: employe.employee_code}")
    _edit(folder, "purchase.yaml", "\ntarget:", "\ntarget: 3\nignored:")
    paths = [i.path for i in issues_of(folder)]
    assert "fields.requester_code.references" in paths and "target" in paths


# --------------------------------------------------------------------------- unknown entity names


def test_unknown_entities_say_where_they_were_written_and_what_was_meant() -> None:
    mappings = load_mappings(REPO / "mappings")
    with pytest.raises(ConfigError) as caught:
        mappings.order(["employe", "department", "nosuch"], origin=run_entities_origin("erpoa.yaml"))
    assert _lines(caught.value.issues) == [
        "erpoa.yaml run.entities: unknown entity 'employe'; did you mean 'employee'? "
        "known entities: department, employee, contract, purchase",
        "erpoa.yaml run.entities: unknown entity 'nosuch'; known entities: department, employee, contract, purchase",
    ]
    with pytest.raises(ConfigError) as caught:
        mappings.entity("nosuch", origin=COMMAND_LINE)
    assert str(caught.value).startswith("command-line argument ENTITY: unknown entity 'nosuch'; known entities: ")


def test_an_unknown_entity_without_origin_has_no_stray_colon() -> None:
    with pytest.raises(ConfigError) as caught:
        load_mappings(REPO / "mappings").order(["employe"])
    assert not str(caught.value).startswith(":")
    assert "run.entities" in str(caught.value) and "did you mean 'employee'?" in str(caught.value)


# --------------------------------------------------------------------------- range errors


@pytest.mark.parametrize(
    ("model", "text", "expected"),
    [
        (CanonicalField, "length: 0", "length: expected a whole number from 1 to 4000, got 0"),
        (CanonicalField, "{type: decimal, scale: 11}", "scale: expected a whole number from 0 to 10, got 11"),
        (CanonicalField, "tolerance: -0.5", "tolerance: expected a number of at least 0, got -0.5"),
        (CanonicalField, "length: 2.5", "length: expected a whole number, got 2.5"),
        (QualitySpec, "max_quarantined_pct: 150", "max_quarantined_pct: expected a number from 0 to 100, got 150"),
        (QualitySpec, "max_quarantined_rows: -1", "max_quarantined_rows: expected a whole number of at least 0"),
        (QualitySpec, "row_count_band: [1, 2, 3]", "row_count_band: expected a list of 2 items, got 3"),
        (QualitySpec, "row_count_band: [1]", "row_count_band[1]: item [1] is missing; expected a list of 2 items"),
    ],
)
def test_range_errors_say_what_is_allowed(model: type, text: str, expected: str) -> None:
    data, smap = parse_yaml(text, "x.yaml")
    with pytest.raises(ConfigError) as caught:
        validate_model(model, data, smap)
    (issue,) = caught.value.issues
    assert f"{issue.path}: {issue.message}".startswith(expected)
    assert "Input should be" not in issue.message


def test_partition_rows_says_its_minimum(tmp_path: Path) -> None:
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": SUPPLIER + "partition_rows: 10\n"}, shipped=False))
    assert issue.message == "expected a whole number of at least 1000, got 10"
    assert EntityMapping.model_fields["partition_rows"].metadata  # the bound the message reads
