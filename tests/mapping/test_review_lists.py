"""A key or a survivorship priority list naming the same thing twice is refused, located (review D8).

`key: [department_code, department_code]` would key every record as `D0101|D0101` and make the target's
upsert fail; a source listed twice in a priority list says nothing and hides a typo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.mapping.loader import load_mappings
from tests.mapping.test_all_issues_at_once import _edit
from tests.mapping.test_loader import SUPPLIER, issues_of, project

pytestmark = pytest.mark.unit


def test_a_key_field_listed_twice_is_refused_at_the_repetition(tmp_path: Path) -> None:
    folder = project(tmp_path)
    _edit(folder, "department.yaml", "\nkey: department_code\n", "\nkey: [department_code, department_code]\n")
    (issue,) = issues_of(folder)
    assert (issue.file, issue.path) == ("mappings/department.yaml", "key[1]")
    assert issue.message == "key field 'department_code' is listed twice; list each key field once"
    line = (folder / "department.yaml").read_text(encoding="utf-8").splitlines()[issue.line - 1]
    assert line[issue.column - 1 :].startswith("department_code]")


def test_a_target_key_field_listed_twice_is_refused(tmp_path: Path) -> None:
    text = SUPPLIER.replace("  table: md_supplier\n", "  table: md_supplier\n  key: [supplier_code, supplier_code]\n")
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert (issue.line, issue.column, issue.path) == (15, 24, "target.key[1]")
    assert issue.message.startswith("key field 'supplier_code' is listed twice")


def test_a_source_listed_twice_in_a_priority_list_is_refused(tmp_path: Path) -> None:
    text = (
        SUPPLIER.replace(
            "      name: cVenName\n",
            "      name: cVenName\n  oa:\n    table: uf_vendor\n    id: id\n    fields:\n"
            "      supplier_code: code\n      name: name\n",
        )
        + "survivorship:\n  default: [erp, oa, erp]\n  fields:\n    name: [oa, oa]\n"
    )
    issues = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert [(i.line, i.column, i.path, i.message) for i in issues] == [
        (22, 22, "survivorship.default[2]", "source 'erp' is listed twice; list each source once"),
        (24, 16, "survivorship.fields.name[1]", "source 'oa' is listed twice; list each source once"),
    ]


def test_a_target_key_that_leaves_out_a_business_key_field_is_refused(tmp_path: Path) -> None:
    """`target.key: [name]` was accepted: golden records of one name overwrote each other in the target (18
    departments published as 2 rows, the run reporting 18 inserted). A target key with every business key field
    and more is unique per golden record and is accepted."""
    text = SUPPLIER.replace("  table: md_supplier\n", "  table: md_supplier\n  key: [name]\n")
    (issue,) = issues_of(project(tmp_path / "subset", {"supplier.yaml": text}))
    assert (issue.line, issue.path) == (15, "target.key")
    assert issue.message.startswith("the target key leaves out the business key field(s) supplier_code: golden ")
    wider = SUPPLIER.replace("  table: md_supplier\n", "  table: md_supplier\n  key: [name, supplier_code]\n")
    assert load_mappings(project(tmp_path / "superset", {"supplier.yaml": wider})).entity("supplier").target_key == [
        "name", "supplier_code"
    ]


@pytest.mark.parametrize(
    ("overlap", "said"),
    [
        ("-600", "overlap -600 is negative"),
        ("800000d", "overlap '800000d' is longer than 366 days"),
        ("99999999999999", "'99999999999999' is too long a duration"),
    ],
)
def test_an_overlap_that_is_negative_or_too_long_is_refused(tmp_path: Path, overlap: str, said: str) -> None:
    """`overlap: -600` was accepted and skipped the rows changed just after the watermark; `800000d` passed the check
    and failed every incremental read (`date value out of range`)."""
    source = "    id: cVenCode\n"
    text = SUPPLIER.replace(source, f"{source}    cursor: dModifyDate\n    overlap: {overlap}\n")
    (issue,) = issues_of(project(tmp_path, {"supplier.yaml": text}))
    assert issue.path == "sources.erp.overlap"
    assert said in issue.message, issue.message


def test_names_yaml_reads_as_booleans_are_refused_with_the_quoting(tmp_path: Path) -> None:
    """`key: no` and a field named `no` (单号) gave "expected a list ..., got False" and "fields[0]: Input should be a
    valid string", without the quoting the docs promise; each is now one located issue, and nothing else."""
    text = (
        "entity: doc\nkey: no\nfields:\n  no: {type: string}\n  name: {type: string}\n"
        "sources:\n  erp:\n    table: t\n    id: id\n    fields: {no: no, name: {from: on}}\ntarget: {table: md_doc}\n"
    )
    issues = issues_of(project(tmp_path / "bare", {"doc.yaml": text}, shipped=False))
    assert [(i.line, i.column, i.path, i.message) for i in issues] == [
        (2, 6, "key", 'YAML reads no as the boolean false; quote it ("no")'),
        (4, 3, "fields.no", 'YAML reads no as the boolean false; quote it ("no")'),
        (10, 14, "sources.erp.fields.no", 'YAML reads no as the boolean false; quote it ("no")'),
        (10, 18, "sources.erp.fields.no", 'YAML reads no as the boolean false; quote it ("no")'),
        (10, 35, "sources.erp.fields.name.from", 'YAML reads on as the boolean true; quote it ("on")'),
    ]
    quoted = text.replace("key: no", 'key: "no"').replace("  no:", '  "no":').replace("{no: no,", '{"no": "no",')
    mappings = load_mappings(project(tmp_path / "quoted", {"doc.yaml": quoted.replace("from: on", 'from: "on"')},
                                     shipped=False))
    assert mappings.entity("doc").key == ["no"]
