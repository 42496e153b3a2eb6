"""`erpoa mappings suggest`: unmapped source values, their counts, the closest code table entries, the YAML to paste."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.demo.generate import DemoSize, build_demo
from etl.mapping.apply import map_chunk
from etl.mapping.loader import MappingSet, load_mappings
from etl.mapping.suggest import Suggestion, suggest, unmapped_values, yaml_snippet

REPO = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 3, 1)
UNMAPPED = ["source", "field", "table", "value", "count"]


@pytest.fixture(scope="module")
def shipped() -> MappingSet:
    return load_mappings(REPO / "mappings")


def employee_oa(dept_codes: list[object]) -> pd.DataFrame:
    """Raw OA employee rows with the given department spellings, every other column NULL."""
    mapping = load_mappings(REPO / "mappings").entity("employee")
    columns = mapping.sources["oa"].columns
    rows = [
        dict.fromkeys(columns) | {"id": i, "workcode": f"{i:06d}", "dept_code": d} for i, d in enumerate(dept_codes)
    ]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def unmapped_frame(values: dict[str, int], table: str = "department") -> pd.DataFrame:
    field = "department_code" if table == "department" else "status"
    return pd.DataFrame(
        {"source": "oa", "field": field, "table": table, "value": list(values), "count": list(values.values())}
    )


# --------------------------------------------------------------------------- pure


@pytest.mark.unit
def test_unmapped_values_are_counted_after_the_transforms_before_the_lookup(shipped: MappingSet) -> None:
    raw = employee_oa([" sz01 ", "SZ01", "ＳＺ０１", "ｓｃ０１", "市场营销中心", "数字化转型办公室", None, "  "])
    frame = unmapped_values(raw, shipped.entity("employee"), "oa", shipped.code_tables, AS_OF)
    assert list(frame.columns) == UNMAPPED
    got = dict(zip(frame["value"], frame["count"], strict=True))
    # nfkc, trim and upper run first: three spellings of SZ01 are one value; sc01 and 市场营销中心 map.
    assert got == {"SZ01": 3, "数字化转型办公室": 1}
    assert set(frame["table"]) == {"department"} and set(frame["field"]) == {"department_code"}


@pytest.mark.unit
def test_unmapped_values_respect_the_validity_dates(shipped: MappingSet) -> None:
    raw = employee_oa(["XX01", "信息技术部", "SCB3"])
    before = unmapped_values(raw, shipped.entity("employee"), "oa", shipped.code_tables, date(2019, 6, 1))
    assert sorted(before["value"]) == ["XX01", "信息技术部"]  # 信息部 is valid from 2020-01-01
    after = unmapped_values(raw, shipped.entity("employee"), "oa", shipped.code_tables, AS_OF)
    assert after.empty and list(after.columns) == UNMAPPED


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "code", "spelling"),
    [
        ("市场营销部", "D0101", "市场营销中心"),
        ("市场部门", "D0101", "市场部"),
        ("采购管理中心", "D0401", "采购中心"),
        ("第二生产事业部（二车间）", "D0502", "第二生产事业部"),
    ],
)
def test_closest_entries_find_the_unit_a_chinese_name_means(
    shipped: MappingSet, value: str, code: str, spelling: str
) -> None:
    (found,) = suggest(unmapped_frame({value: 4}), shipped.code_tables)
    assert (found.value, found.count, found.table) == (value, 4, "department")
    best_spelling, best_code, score = found.candidates[0]
    assert (best_code, best_spelling) == (code, spelling)
    assert 0 < score <= 100
    assert [c[2] for c in found.candidates] == sorted((c[2] for c in found.candidates), reverse=True)


@pytest.mark.unit
def test_values_like_nothing_known_get_no_candidates_and_a_new_code_placeholder(shipped: MappingSet) -> None:
    (found,) = suggest(unmapped_frame({"数字化转型办公室": 2}), shipped.code_tables)
    assert found.candidates == []
    snippet = yaml.safe_load(yaml_snippet([found]))
    assert snippet == {"entries": [{"code": "NEW_CODE", "synonyms": ["数字化转型办公室"]}]}


@pytest.mark.unit
def test_limit_caps_the_candidates(shipped: MappingSet) -> None:
    (found,) = suggest(unmapped_frame({"市场营销部": 1}), shipped.code_tables, limit=1)
    assert len(found.candidates) == 1


def sections(snippet: str) -> dict[str, object]:
    """The snippet split at its `# mappings/codes/<table>.yaml` headers, each section parsed on its own."""
    out: dict[str, object] = {}
    table, lines = None, []
    for line in [*snippet.splitlines(), "# mappings/codes/<end>.yaml"]:
        if line.startswith("# mappings/codes/"):
            if table is not None:
                out[table] = yaml.safe_load("\n".join(lines))
            table, lines = line.split("/")[-1].split(".yaml")[0], []
        else:
            lines.append(line)
    return out


@pytest.mark.unit
def test_yaml_snippet_has_one_parseable_section_per_code_table(shipped: MappingSet) -> None:
    found = suggest(unmapped_frame({"市场营销部": 3, "采购管理中心": 1}), shipped.code_tables)
    found += suggest(unmapped_frame({"在职人员": 2}, table="employee_status"), shipped.code_tables)
    parsed = sections(yaml_snippet(found))
    assert parsed == {
        "department": {
            "entries": [{"code": "D0101", "synonyms": ["市场营销部"]}, {"code": "D0401", "synonyms": ["采购管理中心"]}]
        },
        "employee_status": {"entries": [{"code": "active", "synonyms": ["在职人员"]}]},
    }


@pytest.mark.unit
def test_a_value_unmapped_in_two_fields_is_one_synonym(shipped: MappingSet) -> None:
    # A department's code and its name may both look up `department`: the same spelling fails in both.
    frame = pd.concat([unmapped_frame({"SZ01": 1}), unmapped_frame({"SZ01": 1}).assign(field="name")])
    found = suggest(frame, shipped.code_tables)
    assert [(s.field, s.value) for s in found] == [("department_code", "SZ01"), ("name", "SZ01")]
    entries = sections(yaml_snippet(found))["department"]["entries"]  # type: ignore[index]
    assert [entry["synonyms"] for entry in entries] == [["SZ01"]]


def paste(snippet_entries: list[dict[str, object]], table_file: Path) -> None:
    """What a steward does with the snippet: add each value to the `synonyms:` of the entry with that code."""
    data = yaml.safe_load(table_file.read_text(encoding="utf-8"))
    by_code = {str(entry["code"]): entry for entry in data["entries"]}
    for new in snippet_entries:
        entry = by_code[str(new["code"])]
        entry["synonyms"] = [*entry.get("synonyms", []), *new["synonyms"]]  # type: ignore[misc]
    table_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.mark.unit
def test_pasting_the_snippet_makes_the_values_map(tmp_path: Path, shipped: MappingSet) -> None:
    raw = employee_oa(["市场营销部", "市场营销部", "采购管理中心", "CG01"])
    mapping = shipped.entity("employee")
    before = map_chunk(raw, mapping, "oa", shipped.code_tables, as_of=AS_OF)
    assert before.rejects["rule"].tolist() == ["lookup:department"] * 3

    found = suggest(unmapped_values(raw, mapping, "oa", shipped.code_tables, AS_OF), shipped.code_tables)
    assert {(s.value, s.count) for s in found} == {("市场营销部", 2), ("采购管理中心", 1)}
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", folder, ignore=shutil.ignore_patterns("flows"))
    paste(sections(yaml_snippet(found))["department"]["entries"], folder / "codes" / "department.yaml")  # type: ignore[index]

    fixed = load_mappings(folder)  # still a valid, unambiguous code table
    after = map_chunk(raw, fixed.entity("employee"), "oa", fixed.code_tables, as_of=AS_OF)
    assert after.rejects.empty
    assert after.rows["department_code"].tolist() == ["D0101", "D0101", "D0401", "D0401"]
    assert unmapped_values(raw, fixed.entity("employee"), "oa", fixed.code_tables, AS_OF).empty


# --------------------------------------------------------------------------- on the demo, through the CLI


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small SQLite demo project; returns its erpoa.yaml."""
    folder = tmp_path_factory.mktemp("suggest-demo")
    urls = sqlite_urls(folder)
    build_demo(urls["erp"], urls["oa"], DemoSize(departments=12, employees=80, requisitions=20, contracts=10), seed=3)
    yield write_project(folder, urls)
    from etl.db.connect import dispose_all

    dispose_all()


def oa_count(config: Path, sql: str) -> int:
    engine = sa.create_engine(sqlite_urls(config.parent)["oa"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("entity", "count_sql"),
    [
        ("department", "SELECT count(*) FROM HrmDepartment WHERE departmentcode = 'SZ01'"),
        (
            "employee",
            "SELECT count(*) FROM HrmResource r JOIN HrmDepartment d ON d.id = r.departmentid "
            "WHERE d.departmentcode = 'SZ01'",
        ),
    ],
)
def test_the_oa_only_department_is_listed_with_its_count(demo: Path, entity: str, count_sql: str) -> None:
    result = CliRunner().invoke(app, ["mappings", "suggest", entity, "--config", str(demo), "--json"])
    assert result.exit_code == 0, result.output
    found = [Suggestion(**s) for s in json.loads(result.stdout)]
    sz01 = [s for s in found if s.value == "SZ01" and s.field == "department_code"]
    assert len(sz01) == 1, found
    assert (sz01[0].source, sz01[0].field, sz01[0].table) == ("oa", "department_code", "department")
    assert sz01[0].count == oa_count(demo, count_sql) >= 1
    assert sz01[0].candidates, "closest entries are listed"


@pytest.mark.sqlite
def test_suggest_prints_a_table_and_the_yaml_to_paste(demo: Path) -> None:
    result = CliRunner().invoke(app, ["mappings", "suggest", "department", "--config", str(demo), "--yaml"])
    assert result.exit_code == 0, result.output
    assert "department: unmapped source values" in result.stdout
    assert "SZ01" in result.stdout
    snippet = result.stdout[result.stdout.index("# mappings/codes/department.yaml") :]
    entries = sections(snippet)["department"]["entries"]  # type: ignore[index]
    assert any("SZ01" in e["synonyms"] for e in entries)


@pytest.mark.sqlite
def test_suggest_says_so_when_everything_maps(demo: Path) -> None:
    result = CliRunner().invoke(app, ["mappings", "suggest", "contract", "--config", str(demo)])
    assert result.exit_code == 0, result.output
    assert "every source value is mapped" in result.stdout


@pytest.mark.sqlite
def test_suggest_for_an_unknown_entity_lists_the_known_ones(demo: Path) -> None:
    result = CliRunner().invoke(app, ["mappings", "suggest", "employe", "--config", str(demo)])
    assert result.exit_code == 2
    assert "unknown entity 'employe'" in result.output and "employee" in result.output
    assert "Traceback" not in result.output
