"""Unquoted YAML 1.1 booleans and numbers where text is expected (review D5).

``OFF``, ``NO``, ``yes`` are booleans to YAML 1.1 and ``1.10`` or ``1_000`` numbers: in a code table or a
text argument of a transform they would silently become 'False', '1.1', '1000'. The loader refuses them,
located, like ``0101``; real booleans and numbers (``nullable: false``, ``scale: 2``) are left alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.mapping.loader import load_mappings
from tests.mapping.test_all_issues_at_once import _edit
from tests.mapping.test_loader import SUPPLIER, issues_of, project

pytestmark = pytest.mark.unit


def _summary(folder: Path) -> list[tuple[str, int | None, int | None, str, str]]:
    return [(i.file, i.line, i.column, i.path, i.message) for i in issues_of(folder)]


def test_booleans_and_rewritten_numbers_in_a_code_table_are_refused(tmp_path: Path) -> None:
    table = """\
        entries:
          - {code: active, synonyms: ["1"]}
          - {code: suspended, name: 停薪留职, synonyms: [OFF, NO, 8, 1.10, 1_000, 0.5, true]}
          - {code: yes, name: on}
        """
    assert _summary(project(tmp_path, {"codes/status.yaml": table})) == [
        ("mappings/codes/status.yaml", 3, 46, "entries[1].synonyms[0]",
         'YAML reads OFF as the boolean false; quote it ("OFF")'),
        ("mappings/codes/status.yaml", 3, 51, "entries[1].synonyms[1]",
         'YAML reads NO as the boolean false; quote it ("NO")'),
        ("mappings/codes/status.yaml", 3, 58, "entries[1].synonyms[3]",
         'YAML reads 1.10 as the number 1.1; quote it ("1.10") to keep it as written'),
        ("mappings/codes/status.yaml", 3, 64, "entries[1].synonyms[4]",
         'YAML reads 1_000 as the number 1000; quote it ("1_000") to keep it as written'),
        ("mappings/codes/status.yaml", 4, 12, "entries[2].code",
         'YAML reads yes as the boolean true; quote it ("yes")'),
        ("mappings/codes/status.yaml", 4, 23, "entries[2].name", 'YAML reads on as the boolean true; quote it ("on")'),
    ]  # fmt: skip


def test_quoted_spellings_load_as_written(tmp_path: Path) -> None:
    table = 'entries:\n  - {code: suspended, synonyms: ["OFF", "NO", "1.10", "1_000", 8, 0.5]}\n'
    tables = load_mappings(project(tmp_path, {"codes/status.yaml": table})).code_tables
    assert tables["status"].entries[0].synonyms == ["OFF", "NO", "1.10", "1_000", "8", "0.5"]


def test_map_values_keys_and_values_are_refused_when_yaml_rewrites_them(tmp_path: Path) -> None:
    folder = project(tmp_path)
    old = '{map_values: {mapping: {"1": M, "2": F}, unmapped: "null"}}'
    added = '"2": F, yes: M, no: F, 1.10: 1.20, "9": NO, true: false'
    _edit(folder, "employee.yaml", old, old.replace('"2": F', added))
    base = "sources.erp.fields.gender.transforms[0].map_values.mapping"
    assert [(i.column, i.path, i.message.split(";")[0]) for i in issues_of(folder)] == [
        (62, f"{base}.yes", "YAML reads yes as the boolean true"),
        (70, f"{base}.no", "YAML reads no as the boolean false"),
        (77, f"{base}.1.10", "YAML reads 1.10 as the number 1.1"),
        (83, f"{base}.1.10", "YAML reads 1.20 as the number 1.2"),
        (94, f"{base}.9", "YAML reads NO as the boolean false"),
    ]


def test_other_text_arguments_are_checked_too(tmp_path: Path) -> None:
    text = SUPPLIER.replace(
        "name: cVenName", "name: {from: cVenName, transforms: [{null_if: [N/A, no, 0.50, 1]}, {default: off}]}"
    )
    assert [(i.path, i.message.split(";")[0]) for i in issues_of(project(tmp_path, {"supplier.yaml": text}))] == [
        ("sources.erp.fields.name.transforms[0].null_if[1]", "YAML reads no as the boolean false"),
        ("sources.erp.fields.name.transforms[0].null_if[2]", "YAML reads 0.50 as the number 0.5"),
        ("sources.erp.fields.name.transforms[1].default", "YAML reads off as the boolean false"),
    ]


def test_real_booleans_and_numbers_are_not_reported(tmp_path: Path) -> None:
    text = (
        SUPPLIER.replace("  name: {type: string, length: 100}", "  name: {type: string, length: 100, nullable: no}\n"
                         "  limit: {type: decimal, scale: 2, tolerance: 0.010, compare: off}\n"
                         "  flag: {type: boolean}")
        .replace("      name: cVenName\n", "      name: cVenName\n"
                 "      limit: {from: iLimit, transforms: [{multiply: 1.50}, {decimal: 2}, {default: 0.50}]}\n"
                 "      flag: {from: bFlag, transforms: [{map_values: {mapping: {\"Y\": true, \"N\": false}}},"
                 " {default: false}]}\n")
        .replace("    id: cVenCode\n", "    id: cVenCode\n    sweep: no\n")
    )  # fmt: skip
    mapping = load_mappings(project(tmp_path, {"supplier.yaml": text})).entity("supplier")
    assert mapping.fields["name"].nullable is False
    assert mapping.fields["limit"].tolerance == 0.01
