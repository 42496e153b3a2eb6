"""A published key that becomes duplicated in one source keeps its last published version (session 23, xb F6).

* An ERP-only employee keyed a second time in the ERP ('47 ' normalises to 000047) is not published as a leaver:
  both members are quarantined (`duplicate_key`), the target, its cross-reference link and the plan leave the
  record alone, also when a later incremental run re-reads only one member; once the duplicate is deleted at the
  source, the next sync publishes the record's new version and closes the rows.
* A department both systems have, keyed twice in the ERP, keeps the fields only the ERP gives and its
  `_presence`; the OA's change made meanwhile is published once the duplicate is gone.
* A new key duplicated from its first appearance stays unpublished, as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import EntityResult, open_store, run_sync
from etl.engine.plan import plan_details
from tests.helpers.project import TINY, make_project, source_sql, target_rows, urls_for

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]
EMPLOYEE_COLUMNS = ["employee_code", "name", "status", "_active", "_presence", "_hash"]
DEPARTMENT_COLUMNS = ["department_code", "name", "is_leaf", "updated_at", "_active", "_presence", "_hash"]


@pytest.fixture(params=BACKENDS)
def synced(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ProjectConfig, dict[str, Any]]:
    """A tiny demo project, synced, whose small incremental batches the employee's 10% gate does not refuse."""
    folder = tmp_path / "project"
    urls = sqlite_urls(folder) if request.param == "sqlite" else urls_for(request.param, request, folder)
    config, manifest = make_project(folder, urls, size=TINY)
    assert config.config_path is not None
    with config.config_path.open("a", encoding="utf-8") as out:
        out.write("  pct_min_rows: 100\n")
    config = load_project(config.config_path)
    first, _ = run_sync(config, entities=["department", "employee"])
    assert first.status == "success", first.entities
    return config, manifest


def _stamp(minutes: int) -> datetime:
    """A source stamp `minutes` after a quarter of an hour ago, in the sources' zone: inside the next read."""
    now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0)
    return now - timedelta(minutes=15) + timedelta(minutes=minutes)


def _row(config: ProjectConfig, table: str, columns: list[str], key: str) -> tuple[Any, ...] | None:
    return next((r for r in target_rows(config, table, columns) if r[0] == key), None)


def _result(config: ProjectConfig, entity: str, **options: Any) -> tuple[EntityResult, Any]:
    summary, ctx = run_sync(config, entities=[entity], **options)
    assert summary.status in ("success", "planned"), summary.entities
    return next(e for e in summary.entities if e.entity == entity), ctx


def _copy_person(config: ProjectConfig, num: str, copy: str, stamp: datetime) -> None:
    """Key the ERP person `num` a second time as `copy`, stamped `stamp`."""
    source_sql(
        config, "erp",
        'INSERT INTO hr_hi_person SELECT :copy, "cPsn_Name", "cDept_num", "rSex", "cPsnMobilePhone", "cPsnEmail", '
        '"cPsnIDNum", "rPersonType", "dEnterDate", "dLastDate", :t FROM hr_hi_person WHERE "cPsn_Num" = :num',
        copy=copy, num=num, t=stamp,
    )


def _open_rules(config: ProjectConfig, entity: str, key: str) -> dict[tuple[str, str], str]:
    rows = open_store(config).quarantine(entity=entity, status="open")
    rows = rows[rows["golden_key"] == key]
    return {(str(s), str(i)): str(r) for s, i, r in zip(rows["source"], rows["src_id"], rows["rule"], strict=True)}


def _reasons(config: ProjectConfig, entity: str, key: str) -> set[str]:
    rows = open_store(config).quarantine(entity=entity, status="open")
    return set(rows.loc[rows["golden_key"] == key, "reason"].astype(str))


DUPLICATE = "this business key occurs more than once in the source; fix the source or the key mapping"
HELD = f"{DUPLICATE} (until then the target keeps the record as last published)"


def _statuses(config: ProjectConfig, entity: str, key: str) -> dict[str, set[str]]:
    rows = open_store(config).quarantine(entity=entity, status=None)
    rows = rows[(rows["golden_key"] == key) & (rows["rule"] == "duplicate_key")]
    return {str(i): set(rows.loc[rows["src_id"] == i, "status"].astype(str)) for i in rows["src_id"].unique()}


def test_an_erp_only_employee_keyed_twice_keeps_its_published_version(synced) -> None:
    config, manifest = synced
    code = sorted(manifest["employees_only_in_erp"])[0]
    copy = f"{int(code)} "  # normalises to `code`
    before = _row(config, "md_employee", EMPLOYEE_COLUMNS, code)
    assert before is not None and before[2:5] == ("active", True, "erp")
    _copy_person(config, code, copy, _stamp(0))

    plan, ctx = _result(config, "employee", dry_run=True)
    details = plan_details(ctx, "employee", samples=50)
    assert (plan.inserted, plan.updated, plan.inactivated) == (0, 0, 0)
    assert code not in details["inactivations"]
    assert {(q["src_id"], q["rule"]) for q in details["quarantined"] if q["source"] == "erp"} == {
        (code, "duplicate_key"), (copy, "duplicate_key")
    }

    result, _ = _result(config, "employee")
    assert (result.inserted, result.updated, result.inactivated) == (0, 0, 0)
    assert _row(config, "md_employee", EMPLOYEE_COLUMNS, code) == before  # not `left`, not inactive
    assert _open_rules(config, "employee", code) == {("erp", code): "duplicate_key", ("erp", copy): "duplicate_key"}
    assert _reasons(config, "employee", code) == {HELD}
    links = {(x["source"], x["src_id"]): bool(x["active"]) for x in open_store(config).xref("employee", code)}
    assert links == {("erp", code): True}  # the published record's link stays; the copy is not linked
    mirrored = source_sql(config, "target", 'SELECT "_src_id" FROM erpoa_src_employee WHERE "_key" = :k', k=code)
    assert {r[0] for r in mirrored} == {code, copy}  # both members: a later run finds the duplicate again

    # An incremental run that re-reads only the original member: still held, still quarantined.
    source_sql(
        config, "erp", 'UPDATE hr_hi_person SET "cPsn_Name" = :n, "dModifyDate" = :t WHERE "cPsn_Num" = :c',
        n="改过的名字", t=_stamp(1), c=code,
    )
    plan, _ = _result(config, "employee", dry_run=True)
    assert (plan.inserted, plan.updated, plan.inactivated) == (0, 0, 0)
    result, _ = _result(config, "employee")
    assert (result.inserted, result.updated, result.inactivated) == (0, 0, 0)
    assert _row(config, "md_employee", EMPLOYEE_COLUMNS, code) == before
    assert set(_open_rules(config, "employee", code)) == {("erp", code), ("erp", copy)}

    # The duplicate deleted at the source: the record's new version is published, the rows closed.
    source_sql(config, "erp", 'DELETE FROM hr_hi_person WHERE "cPsn_Num" = :c', c=copy)
    result, _ = _result(config, "employee")
    assert (result.updated, result.inactivated) == (1, 0)
    after = _row(config, "md_employee", EMPLOYEE_COLUMNS, code)
    assert after is not None and after[1:5] == ("改过的名字", "active", True, "erp")
    assert _open_rules(config, "employee", code) == {}
    assert "open" not in set().union(*_statuses(config, "employee", code).values())


def test_a_department_of_both_systems_keyed_twice_in_the_erp_keeps_its_erp_side(synced) -> None:
    config, _ = synced
    before = _row(config, "md_department", DEPARTMENT_COLUMNS, "D0101")
    assert before is not None and before[2] is not None and before[5] == "erp+oa"
    oa_id = next(x["src_id"] for x in open_store(config).xref("department", "D0101") if x["source"] == "oa")
    # SC01 is a synonym of D0101 in the code table: a second ERP department of the same key.
    source_sql(
        config, "erp", 'INSERT INTO "Department" VALUES (\'SC01\', :n, 2, 1, NULL, :d, NULL, :t)',
        n="市场部(副本)", d=_stamp(0).date(), t=_stamp(0),
    )
    changed = _stamp(1)  # the OA's department changes meanwhile (its stamp wins `updated_at`)
    source_sql(config, "oa", 'UPDATE "HrmDepartment" SET modified = :t WHERE id = :i', t=changed, i=int(oa_id))

    plan, ctx = _result(config, "department", dry_run=True)
    assert (plan.inserted, plan.updated, plan.inactivated) == (0, 0, 0), plan_details(ctx, "department")
    result, _ = _result(config, "department")
    assert (result.inserted, result.updated, result.inactivated) == (0, 0, 0)
    assert _row(config, "md_department", DEPARTMENT_COLUMNS, "D0101") == before  # is_leaf kept, erp+oa
    assert set(_open_rules(config, "department", "D0101")) == {("erp", "0101"), ("erp", "SC01")}

    source_sql(config, "erp", 'DELETE FROM "Department" WHERE "cDepCode" = :c', c="SC01")
    result, _ = _result(config, "department")
    assert result.updated == 1
    after = _row(config, "md_department", DEPARTMENT_COLUMNS, "D0101")
    assert after is not None and after[1:3] == before[1:3] and after[5] == "erp+oa"
    assert str(after[3]).startswith(str(changed))  # the OA's change, mirrored while the key was held
    assert _open_rules(config, "department", "D0101") == {}


def test_a_new_key_duplicated_from_its_first_appearance_stays_unpublished(synced) -> None:
    config, manifest = synced
    code = sorted(manifest["employees_only_in_erp"])[0]
    for num in ("000990", "990 "):
        _copy_person(config, code, num, _stamp(0))
    plan, ctx = _result(config, "employee", dry_run=True)
    assert (plan.inserted, plan.updated, plan.inactivated) == (0, 0, 0), plan_details(ctx, "employee")
    result, _ = _result(config, "employee")
    assert (result.inserted, result.updated, result.inactivated) == (0, 0, 0)
    assert _row(config, "md_employee", EMPLOYEE_COLUMNS, "000990") is None
    assert _open_rules(config, "employee", "000990") == {
        ("erp", "000990"): "duplicate_key", ("erp", "990 "): "duplicate_key"
    }
    assert _reasons(config, "employee", "000990") == {DUPLICATE}  # nothing published to keep
