"""`load_mappings`: every file and code table checked together, every issue located, all at once.

The per-mistake catalogue lives in test_broken_mappings.py; these tests cover
the loader's API (order, version, lookups by name, connection checks) and the
locating rules of `etl.yamlio` that the catalogue relies on.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest

from etl.errors import ConfigError, ConfigIssue
from etl.mapping.loader import load_mappings
from etl.yamlio import parse_yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

SUPPLIER = """\
entity: supplier
key: supplier_code
fields:
  supplier_code: {type: string, length: 20, nullable: false}
  name: {type: string, length: 100}
sources:
  erp:
    table: Vendor
    id: cVenCode
    fields:
      supplier_code: {from: cVenCode, transforms: [trim, upper]}
      name: cVenName
target:
  table: md_supplier
"""


def project(tmp_path: Path, files: dict[str, str] | None = None, *, shipped: bool = True) -> Path:
    """A mappings folder: the shipped files (optionally) plus `files` (name -> YAML text)."""
    folder = tmp_path / "mappings"
    if shipped:
        shutil.copytree(REPO / "mappings", folder, ignore=shutil.ignore_patterns("flows"))
    else:
        folder.mkdir(parents=True)
    for name, text in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def issues_of(folder: Path, **kwargs: object) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_mappings(folder, **kwargs)  # type: ignore[arg-type]
    return caught.value.issues


# --------------------------------------------------------------------------- the shipped set


def test_shipped_mappings_load_in_dependency_order() -> None:
    mappings = load_mappings(REPO / "mappings")
    assert list(mappings.entities) == ["department", "employee", "contract", "purchase"]
    assert set(mappings.code_tables) == {"department", "employee_status", "contract_kind", "contract_status"}
    assert re.fullmatch(r"[0-9a-f]{12}", mappings.version)
    assert mappings.order(["purchase", "department"]) == ["department", "purchase"]
    assert set(mappings.files) == set(mappings.source_maps) == set(mappings.entities)
    assert mappings.entity("employee").entity == "employee"


def test_unknown_entity_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown entity 'employe'; did you mean 'employee'\? known entities: "
                       r"department, employee"):
        load_mappings(REPO / "mappings").entity("employe")


def test_version_is_stable_and_changes_with_any_file(tmp_path: Path) -> None:
    folder = project(tmp_path)
    first = load_mappings(folder).version
    assert load_mappings(folder).version == first
    table = folder / "codes" / "contract_kind.yaml"
    table.write_text(table.read_text(encoding="utf-8").replace("[采购]", "[采购, 物资采购]"), encoding="utf-8")
    assert load_mappings(folder).version != first


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    (missing,) = issues_of(tmp_path / "nowhere")
    assert "mapping folder not found" in missing.message
    (empty,) = issues_of(project(tmp_path, shipped=False))
    assert empty.message == "no mapping files (*.yaml) found"


def test_subfolders_other_than_codes_are_not_entities(tmp_path: Path) -> None:
    folder = project(tmp_path, {"flows/ignored.yaml": "not: an entity\n"})
    assert list(load_mappings(folder).entities) == ["department", "employee", "contract", "purchase"]


# --------------------------------------------------------------------------- connections


def test_connections_are_checked_only_when_given(tmp_path: Path) -> None:
    folder = project(tmp_path)
    load_mappings(folder)  # no project config: names are not checked
    load_mappings(folder, connections=["erp", "oa", "target", "recon"])
    issues = issues_of(folder, connections=["erp", "target", "recon"])
    assert {i.path for i in issues} == {"sources.oa.connection"}
    assert len(issues) == 4  # one per entity file
    assert all("connection 'oa' not found; known: erp, recon, target" in i.message for i in issues)


# --------------------------------------------------------------------------- cross-file checks


def test_issues_of_several_files_come_together_sorted_by_file_and_line(tmp_path: Path) -> None:
    folder = project(
        tmp_path,
        {
            "supplier.yaml": SUPPLIER.replace("nullable: false", "nullable: maybe"),
            "vendor.yaml": SUPPLIER.replace("supplier", "vendor").replace("[trim, upper]", "[trimm]"),
            "codes/vendor_kind.yaml": "entries:\n  - {code: A, synonym: [x]}\n",
        },
    )
    issues = issues_of(folder)
    assert [(Path(i.file).name, i.line) for i in issues] == [
        ("vendor_kind.yaml", 2),
        ("supplier.yaml", 4),
        ("vendor.yaml", 11),
    ]
    assert [i.file for i in issues] == sorted(i.file for i in issues)


def test_one_source_entities_need_no_survivorship(tmp_path: Path) -> None:
    """The implicit default [erp, oa] is not held against an entity without an oa source."""
    folder = project(tmp_path, {"supplier.yaml": SUPPLIER})
    assert load_mappings(folder).entity("supplier").survivorship.default == ["erp", "oa"]


def test_a_written_default_must_name_real_sources(tmp_path: Path) -> None:
    folder = project(tmp_path, {"supplier.yaml": SUPPLIER + "survivorship:\n  default: [erp, oa]\n"})
    (issue,) = issues_of(folder)
    assert (issue.line, issue.path) == (16, "survivorship.default[1]")
    assert issue.message == "source 'oa' not found; known: erp"


def test_the_same_entity_in_two_files(tmp_path: Path) -> None:
    folder = project(tmp_path, {"zz_employee_copy.yaml": SUPPLIER.replace("entity: supplier", "entity: employee")})
    (issue,) = issues_of(folder)
    assert issue.file.endswith("zz_employee_copy.yaml") and issue.path == "entity"
    assert "entity 'employee' is also defined in" in issue.message and "employee.yaml" in issue.message


def test_a_cycle_through_references_is_located_at_the_reference(tmp_path: Path) -> None:
    a = SUPPLIER.replace("supplier", "alpha").replace(
        "  name: {type: string, length: 100}", "  name: {type: string, length: 100, references: beta.beta_code}"
    )
    b = SUPPLIER.replace("supplier", "beta").replace(
        "  name: {type: string, length: 100}", "  name: {type: string, length: 100, references: alpha.alpha_code}"
    )
    (issue,) = issues_of(project(tmp_path, {"alpha.yaml": a, "beta.yaml": b}))
    assert issue.file.endswith("alpha.yaml")
    assert (issue.line, issue.path) == (5, "fields.name.references")
    assert "cycle: alpha -> beta -> alpha" in issue.message


def test_a_field_may_not_reference_its_own_entity(tmp_path: Path) -> None:
    text = SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: string, references: supplier.name}")
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert (issue.path, issue.message) == ("fields.name.references", "a field cannot reference its own entity")


# --------------------------------------------------------------------------- code tables


def test_spellings_are_compared_normalised_and_the_conflict_is_located(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: A, name: 研发部, synonyms: [YF01]}
          - code: B
            name: 研发中心
            synonyms: [ｙｆ ０１]
        """
    (issue,) = issues_of(project(tmp_path, {"codes/units.yaml": table}))
    assert (issue.line, issue.path) == (5, "entries[1].synonyms[0]")
    assert issue.message.startswith("'ｙｆ ０１' maps to both 'A' and 'B'")


def test_one_spelling_under_two_codes_is_fine_with_different_valid_from(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: D02, name: 市场部, valid_to: 2025-12-31}
          - {code: D05, name: 市场与品牌部, synonyms: [市场部], valid_from: 2026-01-01}
        """
    tables = load_mappings(project(tmp_path, {"codes/units.yaml": table})).code_tables
    assert tables["units"].spellings(date(2026, 3, 1))["市场部"] == "D05"


# --------------------------------------------------------------------------- locating (etl.yamlio)


def test_block_mappings_are_located_at_their_key_flow_values_at_the_value() -> None:
    _, smap = parse_yaml("a:\n  b:\n    c: 1\n  d: {e: 2}\n", "x.yaml")
    assert smap.locate(("a", "b")) == (2, 3)  # the `b:` line, not its first child
    assert smap.locate(("a", "d")) == (4, 6)  # the `{` of a flow mapping
    assert smap.locate(("a", "d", "e")) == (4, 10)
    assert smap.locate(("a", "b", "missing")) == (2, 3)  # deepest ancestor that exists
    assert smap.locate(("a", "b", "c"), key=True) == (3, 5)


def test_yaml_errors_are_located_and_explained() -> None:
    cases = {
        "a: {b: 1\nc: 2\n": (2, 2, "that starts at line 1, column 4"),
        "a:\n\tb: 1\n": (2, 1, "(a tab; YAML is indented with spaces only)"),
        "a: 2026-02-30\n": (1, 4, "'2026-02-30' looks like a date but is not one"),
    }
    for text, (line, column, fragment) in cases.items():
        with pytest.raises(ConfigError) as caught:
            parse_yaml(text, "x.yaml")
        (issue,) = caught.value.issues
        assert (issue.line, issue.column) == (line, column), text
        assert fragment in issue.message, (text, issue.message)


def test_numbers_nobody_meant_are_reported_and_quoted_ones_are_not(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: T1, synonyms: [12:30, "12:30", 0x1F, 007, "007", 0.5, 1_000]}
        """
    issues = issues_of(project(tmp_path, {"codes/times.yaml": table}))
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [
        ("entries[0].synonyms[0]", "YAML reads 12:30 as the number 750"),
        ("entries[0].synonyms[2]", "YAML reads 0x1F as the number 31"),
        ("entries[0].synonyms[3]", "YAML reads 007 as the number 7"),
        ("entries[0].synonyms[6]", "YAML reads 1_000 as the number 1000"),
    ]


def test_union_alternatives_make_one_issue(tmp_path: Path) -> None:
    text = SUPPLIER.replace("name: cVenName", "name: {from: cVenName, transforms: [{constant: [1, 2]}]}")
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert issue.path == "sources.erp.fields.name.transforms[0].constant.value"
    assert issue.message.startswith("got [1, 2]; expected one of: text; true or false; a whole number")


def test_a_mapping_value_inside_a_union_reports_only_its_own_mistakes(tmp_path: Path) -> None:
    text = SUPPLIER.replace(
        "[trim, upper]", "[trim, {lookup: {table: department, unmapped: {default: X, when: always}}}]"
    )
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert issue.path == "sources.erp.fields.supplier_code.transforms[1].lookup.unmapped.when"
    assert issue.message == "unknown key 'when'; allowed keys: default"


def test_keys_that_look_like_type_names_stay_in_the_path(tmp_path: Path) -> None:
    text = SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: string}\n  date: {type: day}")
    issues = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert [i.path for i in issues] == ["fields.date.type"]


def test_unknown_keys_of_free_named_sections_list_the_allowed_keys(tmp_path: Path) -> None:
    text = SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: string, lenght: 100}")
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert issue.path == "fields.name.lenght"
    assert issue.message.startswith("unknown key 'lenght'; did you mean 'length'? allowed keys: type, scale, length")
