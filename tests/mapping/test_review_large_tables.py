"""A long code table written out is not an "alias bomb" (review D6).

The guard against aliases expanding a few lines into millions of values counts only what aliases add: a
supplier table of tens of thousands of entries loads, while a bomb is still refused at its anchor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.mapping.loader import load_mappings
from etl.yamlio import MAX_EXPANDED_VALUES, parse_yaml
from tests.mapping.test_loader import project

pytestmark = pytest.mark.unit


def _suppliers(count: int) -> str:
    rows = (f'  - {{code: "S{i:06d}", name: 供应商{i}号有限公司, synonyms: ["V{i:06d}"]}}\n' for i in range(count))
    return "entries:\n" + "".join(rows)


def test_a_code_table_far_beyond_the_alias_limit_loads(tmp_path: Path) -> None:
    """15,000 entries are ~135,000 values: more than MAX_EXPANDED_VALUES, but written out, not expanded."""
    tables = load_mappings(project(tmp_path, {"codes/supplier.yaml": _suppliers(15_000)})).code_tables
    table = tables["supplier"]
    assert len(table.entries) == 15_000
    assert table.entries[-1].synonyms == ["V014999"]


def test_the_limit_counts_what_aliases_add_to_a_large_file() -> None:
    text = _suppliers(13_000) + "extra:\n  few: &few [a, b, c]\n  again: [*few, *few]\n"
    data, _ = parse_yaml(text, "x.yaml")
    assert data["extra"]["again"] == [["a", "b", "c"], ["a", "b", "c"]]


def test_an_alias_bomb_is_still_refused_at_its_anchor() -> None:
    lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"b{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 10)}]" for n in range(1, 7)]
    with pytest.raises(ConfigError) as caught:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.column) == ("bomb.yaml", 4, 5)  # b3, whose aliases in b4 cross the limit
    assert issue.message == (
        f"aliases of this anchor make the file expand by more than {MAX_EXPANDED_VALUES} values; write the values out"
    )
