"""Data-driven mapping cases: `tests/cases/<entity>/*.yaml`, one test per file.

Each case names an entity and one of its sources, the day the code tables are
read on (`as_of`), raw source rows as a driver would hand them over, and what
must come out of the real `map_chunk` with the real `mappings/` files:

    description: what the case shows (one line)
    entity: employee
    source: oa
    as_of: 2026-03-01
    timezone: Asia/Shanghai          # optional
    code_entries:                    # optional: entries appended to a real code table
      department: [{code: D0599, name: 生产四部, valid_to: 2025-12-31}]
    rows:                            # source columns left out are NULL
      - {id: 1, workcode: "００１２３", dept_code: 市场营销中心}
    expect:                          # accepted rows in input order; only the listed fields compared
      - {src_id: "1", employee_code: "000123", department_code: D0101}
    quarantine:                      # every non-fatal rejection, as a multiset; reason optional (a fragment)
      - {src_id: "2", field: department_code, rule: "lookup:department", reason: "not in code table"}
    fatal:                           # rejections that stop the run (`unmapped: fail`)
      - {src_id: "3", field: status, rule: "lookup_fail:employee_status"}
    gaps:                            # values kept (`pass`) or defaulted (`default`), with counts
      - {field: status, table: employee_status, policy: default, value: "99", count: 1}

Lists left out mean "none". Quote codes in YAML (``"000123"``): unquoted ones
are numbers, which is exactly what a driver may hand over when it is wanted.
A new case is a new file; nothing here changes.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from etl.mapping.apply import SRC_ID, MappedChunk, map_chunk
from etl.mapping.codes import CodeEntry, CodeTable
from etl.mapping.loader import MappingSet, load_mappings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "cases"
CASE_FILES = sorted(CASES.glob("*/*.yaml"))
CASE_KEYS = {
    "description", "entity", "source", "as_of", "timezone", "code_entries", "rows", "expect", "quarantine",
    "fatal", "gaps",
}  # fmt: skip


@cache
def demo_mappings() -> MappingSet:
    """The shipped mappings and code tables, loaded once."""
    return load_mappings(REPO / "mappings")


def load_case(path: Path) -> dict[str, Any]:
    """The case file, checked for typos in its own keys."""
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict), f"{path}: a case is a mapping"
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{path}: unknown case keys {sorted(unknown)}; allowed: {sorted(CASE_KEYS)}"
    missing = {"entity", "source", "as_of", "rows", "expect"} - set(case)
    assert not missing, f"{path}: missing case keys {sorted(missing)}"
    assert path.parent.name == case["entity"], f"{path}: lives under tests/cases/{case['entity']}/"
    return case


def raw_frame(rows: list[dict[str, Any]], columns: list[str], path: Path) -> pd.DataFrame:
    """Rows as a driver returns them: every column the source reads, NULL where the case is silent."""
    for row in rows:
        unknown = set(row) - set(columns)
        assert not unknown, f"{path}: columns {sorted(unknown)} are not read by this source; it reads {columns}"
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns, dtype=object)


def code_tables(mappings: MappingSet, extra: dict[str, list[dict[str, Any]]] | None) -> dict[str, CodeTable]:
    """The real code tables, with a case's extra entries appended (validated like the real ones)."""
    tables = dict(mappings.code_tables)
    for name, entries in (extra or {}).items():
        real = tables[name]
        added = [CodeEntry.model_validate(e) for e in entries]
        tables[name] = CodeTable(name=real.name, description=real.description, entries=[*real.entries, *added])
    return tables


def plain(value: Any) -> Any:
    """A frame cell as a YAML-comparable Python value: nulls None, Timestamps datetimes, numpy scalars Python."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def same(expected: Any, actual: Any) -> bool:
    """`expected` (from YAML) equals `actual` (from the frame); a YAML date matches a midnight timestamp."""
    actual = plain(actual)
    if isinstance(expected, date) and not isinstance(expected, datetime):
        return isinstance(actual, datetime) and actual.time() == datetime.min.time() and actual.date() == expected
    if isinstance(expected, float) or isinstance(actual, float):
        return expected is not None and actual is not None and math.isclose(expected, actual, abs_tol=1e-9)
    return bool(expected == actual) and type(expected) is type(actual)


def rejections(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return sorted((str(r[SRC_ID]), str(r["field"]), str(r["rule"])) for _, r in frame.iterrows())


def check_rejections(frame: pd.DataFrame, wanted: list[dict[str, Any]], what: str) -> None:
    expected = sorted((str(w["src_id"]), str(w["field"]), str(w["rule"])) for w in wanted)
    got = rejections(frame)
    detail = frame[[SRC_ID, "field", "rule", "value", "reason"]].to_string() if len(frame) else "(none)"
    assert got == expected, f"{what}: expected {expected}\ngot {got}\n{detail}"
    for w in wanted:
        if "reason" in w:
            hit = frame[(frame[SRC_ID] == str(w["src_id"])) & (frame["field"] == w["field"])]
            assert hit["reason"].str.contains(str(w["reason"]), regex=False).any(), (
                f"{what}: no reason containing {w['reason']!r} for {w}: {hit['reason'].tolist()}"
            )


def run_case(case: dict[str, Any], path: Path) -> MappedChunk:
    mappings = demo_mappings()
    mapping = mappings.entity(case["entity"])
    assert case["source"] in mapping.sources, f"{path}: {case['entity']} has sources {list(mapping.sources)}"
    spec = mapping.sources[case["source"]]
    raw = raw_frame(case["rows"], spec.columns, path)
    return map_chunk(
        raw,
        mapping,
        case["source"],
        code_tables(mappings, case.get("code_entries")),
        as_of=case["as_of"],
        timezone=case.get("timezone", "Asia/Shanghai"),
    )


@pytest.mark.parametrize("path", CASE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in CASE_FILES])
def test_case(path: Path) -> None:
    case = load_case(path)
    chunk = run_case(case, path)

    rows = chunk.rows.reset_index(drop=True)
    expect = case["expect"] or []
    assert len(rows) == len(expect), (
        f"{len(rows)} rows accepted, {len(expect)} expected:\n{rows.to_string()}\nrejects:\n{chunk.rejects.to_string()}"
    )
    for i, wanted in enumerate(expect):
        for field, value in wanted.items():
            column = SRC_ID if field == "src_id" else field
            assert column in rows.columns, f"expect[{i}]: no field {field!r}; fields: {list(rows.columns)}"
            got = rows.at[i, column]
            assert same(value, got), f"expect[{i}].{field}: expected {value!r}, got {plain(got)!r}"

    fatal_mask = chunk.rejects["rule"].astype(str).str.startswith("lookup_fail:") if len(chunk.rejects) else []
    check_rejections(chunk.rejects[~np.asarray(fatal_mask, dtype=bool)], case.get("quarantine") or [], "quarantine")
    check_rejections(chunk.fatal, case.get("fatal") or [], "fatal")

    gaps = sorted(
        (str(g["field"]), str(g["table"]), str(g["policy"]), str(g["value"]), int(g["count"]))
        for _, g in chunk.gaps.iterrows()
    )
    wanted_gaps = sorted(
        (str(g["field"]), str(g["table"]), str(g["policy"]), str(g["value"]), int(g["count"]))
        for g in case.get("gaps") or []
    )
    assert gaps == wanted_gaps, f"gaps: expected {wanted_gaps}, got {gaps}"


def test_every_entity_has_cases() -> None:
    entities = set(demo_mappings().entities)
    covered = {p.parent.name for p in CASE_FILES}
    assert entities <= covered, f"entities without cases in tests/cases/: {sorted(entities - covered)}"


def test_cases_cover_every_unmapped_policy() -> None:
    """Between them the cases exercise quarantine, fail, pass and default lookups."""
    seen: set[str] = set()
    for path in CASE_FILES:
        case = load_case(path)
        seen |= {str(q["rule"]).split(":")[0] for q in case.get("quarantine") or []}
        seen |= {"fail" for _ in case.get("fatal") or []}
        seen |= {str(g["policy"]) for g in case.get("gaps") or []}
    assert {"lookup", "fail", "pass", "default"} <= seen


def test_the_docs_example_case_passes(tmp_path: Path) -> None:
    """The case docs/mapping.md shows a steward ("Testing a mapping with data-driven cases") passes as written."""
    docs = (REPO / "docs" / "mapping.md").read_text(encoding="utf-8")
    section = docs.split("## Testing a mapping with data-driven cases", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / yaml.safe_load(example)["entity"] / "docs_example.yaml"
    path.parent.mkdir()
    path.write_text(example, encoding="utf-8")
    test_case(path)
