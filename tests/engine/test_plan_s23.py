"""`erpoa plan` predicts what the sync does about references and quarantine counts (session 23, xb F1-F3).

* A plan that abolishes a department checks the employees pointing to it against the target as that plan leaves
  it: an edited employee of the abolished department is quarantined (`reference:...`), as the sync does, not
  planned as an update.
* `expect_column_values_to_exist_in_entity` sees what the plan publishes first, as `references:` does: the
  referenced entity's planned inserts are present, its planned inactivations are not.
* A record that fails several checks (an integrity and a gate rule) is counted once in the plan's `quarantined`,
  as the sync counts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import EntityResult, run_sync
from etl.engine.plan import plan_details
from tests.helpers.project import THREE, TINY, make_project, replace_in, source_sql, target_rows, urls_for

ENTITIES = ["department", "employee"]
REFERENCE = "reference:department.department_code"
EXISTS = "expect_column_values_to_exist_in_entity"


def _project(folder: Path, urls: dict[str, str] | None = None) -> ProjectConfig:
    """A tiny demo project (on SQLite unless `urls`), synced, whose small incremental batches the employee's 10%
    gate does not refuse."""
    config, _ = make_project(folder, urls or sqlite_urls(folder), size=TINY)
    assert config.config_path is not None
    with config.config_path.open("a", encoding="utf-8") as out:
        out.write("  pct_min_rows: 100\n")
    config = load_project(config.config_path)
    first, _ = run_sync(config, entities=ENTITIES)
    assert first.status == "success", first.entities
    return config


def _new_department(config: ProjectConfig, code: str, name: str) -> None:
    """A department of the ERP (code `0xxx`, `name`) and its entry in the department code table (`D0xxx`)."""
    replace_in(
        config.resolve(config.mappings) / "codes" / "department.yaml",
        ("  - {code: D0202,", f'  - {{code: D{code}, name: 部门{code}, synonyms: ["{code}"]}}\n  - {{code: D0202,'),
    )
    source_sql(
        config, "erp",
        'INSERT INTO "Department" VALUES (:code, :name, 2, 1, NULL, \'2026-12-01\', NULL, \'2026-12-01 10:00:00\')',
        code=code, name=name,
    )


def _new_employee(config: ProjectConfig, num: str, dept: str, *, id_number: str = "110101199001011234") -> None:
    source_sql(
        config, "erp",
        'INSERT INTO hr_hi_person VALUES (:num, :name, :dept, \'1\', :phone, :mail, :idnum, \'10\', \'2026-01-01\', '
        "NULL, '2026-12-01 11:00:00')",
        num=num, name=f"测试{num[-1]}", dept=dept, phone=f"1390000{num[-4:]}", mail=f"t{num}@hengtai.example.com",
        idnum=id_number,
    )


def _exist_in_department(config: ProjectConfig) -> None:
    """The employee suite checks its department with `expect_column_values_to_exist_in_entity`."""
    path = config.resolve(config.expectations) / "employee.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    suite["expectations"].append({
        "type": EXISTS,
        "kwargs": {"column": "department_code", "entity": "department", "entity_column": "department_code"},
        "meta": {},
    })
    path.write_text(json.dumps(suite, ensure_ascii=False, indent=2), encoding="utf-8")


def _figures(result: EntityResult) -> dict[str, Any]:
    return {k: getattr(result, k) for k in ("status", "inserted", "updated", "inactivated", "quarantined")}


def _plan_then_sync(config: ProjectConfig) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The plan's figures per entity and employee quarantine samples, then the sync's figures (its status
    `success` read as the plan's `planned`)."""
    plan, ctx = run_sync(config, entities=ENTITIES, dry_run=True)
    try:
        planned = {r.entity: _figures(r) for r in plan.entities}
        samples = plan_details(ctx, "employee", samples=50)["quarantined"]
    finally:
        ctx.close()
    sync, _ = run_sync(config, entities=ENTITIES)
    synced = {r.entity: {**_figures(r), "status": "planned" if r.status == "success" else r.status}
              for r in sync.entities}
    return planned, samples, synced


def _rules_of(samples: list[dict[str, Any]], employee: str) -> set[str]:
    return {s["rule"] for s in samples if employee in str(s["src_id"])}


@pytest.mark.parametrize("backend", THREE)
def test_an_employee_of_a_department_the_plan_abolishes_is_quarantined_as_the_sync_does(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = _project(tmp_path / "p", urls_for(backend, request, tmp_path / "p"))
    _new_department(config, "0701", "新事业部")
    _new_employee(config, "000901", "0701")
    synced, _ = run_sync(config, entities=ENTITIES)
    assert [r.status for r in synced.entities] == ["success", "success"]
    assert synced.entities[1].inserted == 1, synced.entities[1]
    # the department is abolished as the employee is edited
    source_sql(config, "erp", "UPDATE \"Department\" SET \"dDepEndDate\" = '2026-12-05', "
               "\"dModifyDate\" = '2026-12-05 10:00:00' WHERE \"cDepCode\" = '0701'")
    source_sql(config, "erp", "UPDATE hr_hi_person SET \"cPsn_Name\" = '测试乙', "
               "\"dModifyDate\" = '2026-12-05 11:00:00' WHERE \"cPsn_Num\" = '000901'")

    planned, samples, done = _plan_then_sync(config)

    assert planned["department"]["inactivated"] == 1, planned
    assert planned["employee"]["updated"] == 0, planned
    assert REFERENCE in _rules_of(samples, "000901"), samples
    assert planned == done
    names = {r[0]: r[1] for r in target_rows(config, "md_employee", ["employee_code", "name"])}
    assert names["000901"] == "测试1"  # the edit waits in quarantine


@pytest.mark.sqlite
def test_exist_in_entity_sees_the_departments_the_plan_publishes_first(tmp_path: Path) -> None:
    config = _project(tmp_path / "p")
    _exist_in_department(config)
    _new_department(config, "0702", "新二部")
    _new_employee(config, "000902", "0702")

    planned, samples, done = _plan_then_sync(config)

    assert (planned["department"]["inserted"], planned["employee"]["inserted"]) == (1, 1), planned
    assert not _rules_of(samples, "000902"), samples
    assert planned == done


@pytest.mark.sqlite
def test_a_record_failing_two_checks_is_counted_once_and_exist_in_entity_sees_a_planned_abolition(
    tmp_path: Path,
) -> None:
    """000903 points to a department the plan abolishes (both `references:` and the suite's expectation catch it)
    and has a malformed ID number (the suite's regex): one quarantined record in the plan, as in the sync."""
    config = _project(tmp_path / "p")
    _exist_in_department(config)
    _new_department(config, "0703", "新三部")
    synced, _ = run_sync(config, entities=["department"])
    assert synced.entities[0].inserted == 1, synced.entities[0]
    source_sql(config, "erp", "UPDATE \"Department\" SET \"dDepEndDate\" = '2026-12-05', "
               "\"dModifyDate\" = '2026-12-05 10:00:00' WHERE \"cDepCode\" = '0703'")
    _new_employee(config, "000903", "0703", id_number="12345")

    planned, samples, done = _plan_then_sync(config)

    assert _rules_of(samples, "000903") >= {REFERENCE, EXISTS, "expect_column_values_to_match_regex"}, samples
    assert planned["employee"]["inserted"] == 0, planned
    assert planned == done
    records = {(s["source"], s["src_id"]) for s in samples}
    assert planned["employee"]["quarantined"] == len(records), (planned, samples)


@pytest.mark.parametrize("backend", THREE)
def test_a_plan_reads_a_referenced_column_as_the_sync_leaves_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A column need not be unique: a value stays while a record the plan leaves alone has it; a renamed record's
    old value goes and its new one counts (`build.active_values`, which both reference checks read)."""
    from etl.engine.build import active_values

    config = _project(tmp_path / "p", urls_for(backend, request, tmp_path / "p"))
    for code, name in (("0704", "同名部"), ("0705", "同名部"), ("0706", "旧名部")):
        _new_department(config, code, name)
    synced, _ = run_sync(config, entities=["department"])
    assert synced.entities[0].inserted == 3, synced.entities[0]
    source_sql(config, "erp", "UPDATE \"Department\" SET \"dDepEndDate\" = '2026-12-05', "
               "\"dModifyDate\" = '2026-12-05 10:00:00' WHERE \"cDepCode\" = '0704'")
    source_sql(config, "erp", "UPDATE \"Department\" SET \"cDepName\" = '新名部', "
               "\"dModifyDate\" = '2026-12-05 10:00:00' WHERE \"cDepCode\" = '0706'")

    plan, ctx = run_sync(config, entities=["department"], dry_run=True)
    try:
        assert (plan.entities[0].updated, plan.entities[0].inactivated) == (2, 1), plan.entities[0]
        planned = set(active_values(ctx, "department", "name", merging="employee"))
    finally:
        ctx.close()
    assert {"同名部", "新名部"} <= planned and "旧名部" not in planned, planned
    _, ctx = run_sync(config, entities=["department"])
    try:
        assert set(active_values(ctx, "department", "name", merging="employee")) == planned
    finally:
        ctx.close()


@pytest.mark.sqlite
def test_a_plan_the_gate_would_refuse_publishes_nothing_to_the_entities_after_it(tmp_path: Path) -> None:
    """The sync publishes nothing of an entity its gate refuses: what the entities merged after it (an
    `expect_column_values_to_exist_in_entity` need not make it a dependency) check against stays the target's."""
    from etl.engine.build import active_values

    config = _project(tmp_path / "p")
    _new_department(config, "0707", "新七部")
    replace_in(config.resolve(config.mappings) / "department.yaml",
               ("  max_quarantined_pct: 20", "  max_quarantined_pct: 20\n  max_quarantined_rows: 0"))

    plan, ctx = run_sync(config, entities=["department"], full_refresh=True, dry_run=True)
    try:
        assert (plan.entities[0].status, plan.entities[0].inserted) == ("failed", 1), plan.entities[0]
        planned = set(active_values(ctx, "department", "department_code", merging="contract"))
    finally:
        ctx.close()
    assert "D0707" not in planned
    refused, ctx = run_sync(config, entities=["department"], full_refresh=True)
    try:
        assert refused.entities[0].exit_code == 4, refused.entities[0]
        assert set(active_values(ctx, "department", "department_code", merging="contract")) == planned
    finally:
        ctx.close()
