"""The quarantine loop's loose ends: vanished records, stale reasons, fixed duplicates, long ids, CLI checks."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig
from etl.engine.lock import lock_name
from etl.engine.pipeline import open_store, run_sync
from etl.store import schema as store_schema
from etl.store.repo import Store
from tests.helpers.project import NEW_UNIT, execute_sql, target_rows


def _cli(config: ProjectConfig, *args: str, as_json: bool = True) -> tuple[int, Any]:
    done = CliRunner().invoke(
        app, [*args, "--config", str(config.config_path), *(["--json"] if as_json else [])]
    )
    try:
        return done.exit_code, json.loads(done.stdout)
    except ValueError:
        return done.exit_code, done.output


def _oa(config: ProjectConfig, statement: str) -> None:
    execute_sql(config.connection("oa").sqlalchemy_url(), statement)


def _rows(config: ProjectConfig, entity: str, src_id: str) -> pd.DataFrame:
    rows = open_store(config).quarantine(entity=entity, status=None)
    return rows[rows["src_id"] == src_id]


def _add_code(config: ProjectConfig) -> None:
    codes = config.resolve(config.mappings) / "codes" / "department.yaml"
    codes.write_text(codes.read_text(encoding="utf-8") + NEW_UNIT, encoding="utf-8")


# D5 ---------------------------------------------------------------------------------------------------------------
def _long_ids_survive(url: str) -> None:
    """A merge row holding every source's long ids is stored, found by its src_id and resolved."""
    store = Store(create_engine(url))
    store.migrate()
    long_id = json.dumps({"erp": "E" * 255, "oa": "号" * 255}, ensure_ascii=False)
    frame = pd.DataFrame(
        {"source": ["erp+oa"], "src_id": [long_id], "golden_key": ["K1"], "rule": ["gate_rule"], "reason": ["x"]}
    )
    assert store.add_quarantine("r1", "employee", frame, stage="gate0") == 1
    store.add_quarantine("r2", "employee", frame, stage="gate0")  # found again: the first row is superseded
    rows = store.quarantine(entity="employee", status=None)
    assert list(rows["src_id"]) == [long_id, long_id]
    assert list(rows["status"]) == ["superseded", "open"]
    assert store.resolve_quarantine("employee", "erp+oa", [long_id], "r3") == 1
    store.engine.dispose()


def _downgrade_to_version_4(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM erpoa_quarantine"))
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE erpoa_quarantine ALTER COLUMN src_id TYPE VARCHAR(255)"))
        else:
            conn.execute(text(
                "ALTER TABLE erpoa_quarantine DROP INDEX ix_erpoa_quarantine_src, MODIFY src_id VARCHAR(255) NULL, "
                "ADD INDEX ix_erpoa_quarantine_src (entity, source, src_id)"
            ))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 4"))
    engine.dispose()


@pytest.mark.postgres
def test_long_source_ids_fit_the_quarantine_on_postgres(pg_url: str) -> None:
    _long_ids_survive(pg_url)
    _downgrade_to_version_4(pg_url)
    _long_ids_survive(pg_url)  # the migration widens a version 4 store's column
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM erpoa_schema_version")).scalar() == store_schema.SCHEMA_VERSION
    assert "ix_erpoa_quarantine_src" in {i["name"] for i in inspect(engine).get_indexes("erpoa_quarantine")}
    engine.dispose()


@pytest.mark.mariadb
def test_long_source_ids_fit_the_quarantine_on_mariadb(mariadb_url: str) -> None:
    _long_ids_survive(mariadb_url)
    _downgrade_to_version_4(mariadb_url)
    _long_ids_survive(mariadb_url)
    engine = create_engine(mariadb_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM erpoa_schema_version")).scalar() == store_schema.SCHEMA_VERSION
        # the lookup by source id still uses the (prefix) index
        plan = conn.execute(text(
            "EXPLAIN SELECT id FROM erpoa_quarantine WHERE entity='employee' AND source='erp+oa' AND src_id='x'"
        )).mappings().all()
    assert any(r["key"] == "ix_erpoa_quarantine_src" for r in plan), plan
    engine.dispose()


# D4 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_a_record_failing_another_rule_keeps_only_its_current_reason(synced) -> None:
    config, manifest = synced
    oa_id = str(manifest["employee_in_unmapped_department"]["oa_id"])
    old = _rows(config, "employee", oa_id)
    qid = int(old[old["rule"] == "lookup:department"]["id"].iloc[0])
    _oa(config, f"UPDATE \"HrmResource\" SET departmentid = 7, startdate = '2015.03.02' WHERE id = {oa_id}")
    code, out = _cli(config, "quarantine", "retry", "employee", "--id", str(qid))
    assert code == 0, out
    rows = _rows(config, "employee", oa_id)
    assert set(rows.loc[rows["status"] == "open", "rule"]) == {"parse_date"}
    assert rows.loc[rows["id"] == qid, "status"].item() == "resolved"
    assert out["still_quarantined"] == 1 and out["still_quarantined_rows"] == 1


# D2 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_retry_closes_a_quarantined_record_deleted_at_the_source(synced) -> None:
    config, manifest = synced
    oa_id = str(manifest["unmapped_oa_department"]["oa_id"])
    assert set(_rows(config, "department", oa_id)["status"]) == {"open"}
    _oa(config, f'DELETE FROM "HrmDepartment" WHERE id = {oa_id}')
    code, out = _cli(config, "quarantine", "retry", "department")
    assert code == 0, out
    assert out["vanished"] == 1 and out["still_quarantined"] == 0 and out["still_quarantined_rows"] == 0
    assert set(_rows(config, "department", oa_id)["status"]) == {"vanished"}
    code, listed = _cli(config, "quarantine", "list", "--entity", "department")
    assert listed["total"] == 0


@pytest.mark.sqlite
def test_a_sweeping_sync_closes_a_quarantined_record_deleted_at_the_source(synced) -> None:
    config, manifest = synced
    oa_id = str(manifest["unmapped_oa_department"]["oa_id"])
    _oa(config, f'DELETE FROM "HrmDepartment" WHERE id = {oa_id}')
    summary, _ = run_sync(config, entities=["department"])  # incremental, with the deletion sweep
    assert summary.status == "success", summary.message
    assert set(_rows(config, "department", oa_id)["status"]) == {"vanished"}


# D3 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_duplicate_key_rows_are_resolved_once_the_duplicate_is_gone(synced) -> None:
    config, manifest = synced
    dup = manifest["duplicate_oa_workcodes"][0]
    kept, deleted = (str(i) for i in dup["oa_ids"])
    assert set(_rows(config, "employee", deleted)["rule"]) == {"duplicate_key"}
    _oa(config, f'DELETE FROM "HrmResource" WHERE id = {deleted}')
    summary, _ = run_sync(config, entities=["employee"])  # sweeps: the duplicate is gone
    assert summary.status == "success", summary.message
    presence = dict(target_rows(config, "md_employee", ["employee_code", "_presence"]))
    assert presence[dup["code"]] == "erp+oa"
    assert set(_rows(config, "employee", deleted)["status"]) == {"vanished"}
    assert set(_rows(config, "employee", kept)["status"]) == {"resolved"}


@pytest.mark.sqlite
def test_retry_does_not_requarantine_a_duplicate_deleted_at_the_source(synced) -> None:
    config, manifest = synced
    dup = manifest["duplicate_oa_workcodes"][0]
    deleted = str(dup["oa_ids"][1])
    _oa(config, f'DELETE FROM "HrmResource" WHERE id = {deleted}')
    code, out = _cli(config, "quarantine", "retry", "employee")
    assert code == 0, out
    assert out["vanished"] == 1
    assert "open" not in set(_rows(config, "employee", deleted)["status"])
    kept = str(dup["oa_ids"][0])  # the retry alone publishes the key without the duplicate
    assert "open" not in set(_rows(config, "employee", kept)["status"]), _rows(config, "employee", kept)


# U2 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_retry_names_the_ids_it_cannot_replay(synced) -> None:
    config, _ = synced
    rows = open_store(config).quarantine(status=None)
    department = int(rows[rows["entity"] == "department"]["id"].iloc[0])
    employee = int(rows[(rows["entity"] == "employee") & (rows["status"] == "open")]["id"].iloc[0])
    code, out = _cli(config, "quarantine", "retry", "employee", "--id", str(department), "--id", "99999")
    assert code == 2, out
    assert f"id {department}: a row of department" in out["message"] and "id 99999: no such" in out["message"]
    run_sync(config, entities=["employee"], full_refresh=True)  # supersedes the employee rows
    code, out = _cli(config, "quarantine", "retry", "employee", "--id", str(employee))
    assert code == 2 and "not open (status superseded)" in out["message"], out
    fresh = open_store(config).quarantine(entity="employee")
    code, out = _cli(config, "quarantine", "retry", "employee", "--id", str(int(fresh["id"].iloc[0])), "--id", "99999")
    assert code == 0, out
    assert out["skipped_ids"] == [{"id": 99999, "reason": "no such quarantine row"}]


# U8 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_list_checks_entity_and_limit(synced) -> None:
    config, _ = synced
    code, out = _cli(config, "quarantine", "list", "--entity", "employe")
    assert code == 2 and "did you mean 'employee'" in out["message"], out
    code, out = _cli(config, "quarantine", "list", "--entity", "purchase_order")  # an approval flow
    assert code == 0, out
    code, out = _cli(config, "quarantine", "list", "--limit", "-1")
    assert code == 2, out
    code, everything = _cli(config, "quarantine", "list", "--limit", "0")
    assert code == 0 and len(everything["rows"]) == everything["total"] > 0


# U5, U6 -----------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_plan_shows_presence_changes_and_status_inactivations(synced) -> None:
    config, manifest = synced
    moved = manifest["employee_in_unmapped_department"]["code"]
    _add_code(config)
    code, out = _cli(config, "quarantine", "retry", "department")
    assert code == 0, out
    leaver = "000002"
    execute_sql(
        config.connection("erp").sqlalchemy_url(),
        f"UPDATE hr_hi_person SET \"rPersonType\" = 20, \"dModifyDate\" = '2030-01-01 00:00:00' "
        f"WHERE \"cPsn_Num\" = '{leaver}'",
    )
    code, plan = _cli(config, "plan", "employee", "--full-refresh", "--samples", "200")
    details = plan["details"]["employee"]
    updates = {u["key"]: u["changes"] for u in details["updates"]}
    assert updates[moved]["_presence"] == {"old": "erp", "new": "erp+oa"}, updates[moved]
    assert leaver in details["inactivations"]


# U1 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_retry_of_an_approval_flow_says_how_flows_are_retried(synced) -> None:
    config, _ = synced
    code, out = _cli(config, "quarantine", "retry", "purchase_order")
    assert code == 2, out
    assert "approval flow" in out["message"] and "erpoa flows run" in out["message"]
    assert "did you mean" not in out["message"]


# U3, U4 -----------------------------------------------------------------------------------------------------------
@pytest.mark.sqlite
def test_retry_summary_counts_records_and_rows(synced) -> None:
    config, _ = synced
    code, out = _cli(config, "quarantine", "retry", "department", as_json=False)
    assert code == 0, out
    assert "replayed 1 quarantined record(s) (2 row(s))" in out, out
    assert "1 record(s) still quarantined (2 open row(s))" in out, out


@pytest.mark.sqlite
def test_retry_waits_for_the_lock_with_wait(synced) -> None:
    config, _ = synced
    store = open_store(config)
    mapping_target = "target:md_department"
    with store.engine.begin() as conn:
        conn.execute(store_schema.locks.insert().values(
            name=lock_name("department", mapping_target), owner="someone", host=socket.gethostname()[:100],
            pid=os.getpid(),
        ))
    code, out = _cli(config, "quarantine", "retry", "department", "--wait", "0.5")
    assert code == 5, out
    assert "another sync holds the lock" in out["message"]
