"""Examples in docs/mapping.md that quote the shipped mappings stay what the mappings are."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from etl.mapping.loader import load_mappings

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "mapping.md"

pytestmark = pytest.mark.unit


def _block_after(text: str, intro: str) -> str:
    """The first fenced block after the line `intro`."""
    start = text.index(intro)
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, start)
    assert match, f"no code block after {intro!r}"
    return match.group(1)


def test_the_worked_example_is_the_oa_source_of_employee_yaml() -> None:
    block = _block_after(DOCS.read_text(encoding="utf-8"), "The OA source of `mappings/employee.yaml`:")
    shown = yaml.safe_load(textwrap.dedent(block))
    real = yaml.safe_load((REPO / "mappings" / "employee.yaml").read_text(encoding="utf-8"))["sources"]["oa"]
    assert shown == {"oa": real}


def test_the_mappings_check_example_gives_the_shipped_mapping_version() -> None:
    example = re.compile(r"\$ erpoa mappings check mappings\nok .*; mapping version (\w+)\n")
    shown = example.findall(DOCS.read_text(encoding="utf-8"))
    assert shown == [load_mappings(REPO / "mappings").version]
