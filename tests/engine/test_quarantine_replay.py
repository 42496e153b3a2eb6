"""The stewards' loop: `erpoa quarantine list|show`, fix a code table, `erpoa quarantine retry` (docs/mapping.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig
from etl.engine.pipeline import open_store, run_sync
from etl.store import schema as store_schema
from tests.helpers.project import NEW_UNIT, target_rows

pytestmark = pytest.mark.sqlite





def _cli(config: ProjectConfig, *args: str) -> tuple[int, Any]:
    done = CliRunner().invoke(app, ["quarantine", *args, "--config", str(config.config_path), "--json"])
    try:
        return done.exit_code, json.loads(done.stdout)
    except ValueError:
        return done.exit_code, done.output


def _add_code(config: ProjectConfig) -> None:
    codes = config.resolve(config.mappings) / "codes" / "department.yaml"
    codes.write_text(codes.read_text(encoding="utf-8") + NEW_UNIT, encoding="utf-8")


def _employees(config: ProjectConfig) -> dict[str, str]:
    """Published employees: business key -> the sources their golden record was built from."""
    return {r[0]: r[1] for r in target_rows(config, "md_employee", ["employee_code", "_presence"])}


def test_fix_the_code_table_then_retry_publishes_the_repaired_rows(synced) -> None:
    """The documented loop: rows of the replay that are still bad were bad before it; they do not refuse the rest."""
    config, manifest = synced
    moved = manifest["employee_in_unmapped_department"]["code"]
    invalid = manifest["invalid_id_number"]["code"]
    before = open_store(config).quarantine(entity="employee")
    assert "lookup:department" in set(before["rule"]) and "duplicate_key" in set(before["rule"])
    assert before["src_id"].nunique() > 2  # most of the replay stays bad: far above max_quarantined_pct=10
    assert _employees(config)[moved] == "erp"  # its OA record is quarantined

    _add_code(config)
    code, department = _cli(config, "retry", "department")
    assert code == 0 and department["still_quarantined"] == 0, department
    code, employee = _cli(config, "retry", "employee")
    assert code == 0, employee
    assert employee["inserted"] + employee["updated"] == 1
    assert employee["still_quarantined"] == before["src_id"].nunique() - 1

    employees = _employees(config)
    assert employees[moved] == "erp+oa"
    assert invalid not in employees  # its ID number still fails the suite: still not published
    after = open_store(config).quarantine(entity="employee")
    assert set(after["rule"]) == set(before["rule"]) - {"lookup:department"}
    assert set(after["src_id"]) == set(before["src_id"]) - {str(manifest["employee_in_unmapped_department"]["oa_id"])}


def test_a_replay_is_still_refused_by_a_failed_batch_expectation(synced) -> None:
    """Exempting rows already quarantined does not exempt the replay from its checks."""
    config, manifest = synced
    moved = manifest["employee_in_unmapped_department"]["code"]
    suite = config.resolve(config.expectations) / "employee.json"
    data = json.loads(suite.read_text(encoding="utf-8"))
    for exp in data["expectations"]:
        if exp["type"] == "expect_column_values_to_match_regex" and exp["kwargs"]["column"] == "id_number":
            exp["meta"] = {**exp.get("meta", {}), "level": "batch"}  # the replayed bad ID number fails the batch
    suite.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    _add_code(config)
    code, result = _cli(config, "retry", "employee")
    assert code == 4, result
    assert result["error"] == "QualityGateError"
    assert "expect_column_values_to_match_regex" in result["message"]
    assert _employees(config)[moved] == "erp"
    assert "lookup:department" in set(open_store(config).quarantine(entity="employee")["rule"])


def test_a_replay_refused_for_a_new_duplicate_names_the_record_it_collides_with(synced) -> None:
    """A code-table fix that gives the replayed department the key of a published one: the replay is refused by
    `max_quarantined_pct`, and the message says which records were counted and why, not only a percentage."""
    config, _ = synced
    with create_engine(config.connection("oa").sqlalchemy_url()).connect() as conn:
        published = conn.execute(text('SELECT id FROM "HrmDepartment" WHERE departmentcode = \'XZ01\'')).scalar_one()
    codes = config.resolve(config.mappings) / "codes" / "department.yaml"
    before, spellings = codes.read_text(encoding="utf-8"), '"0302", XZ01, 行政管理部'
    assert spellings + "]" in before
    codes.write_text(before.replace(spellings + "]", spellings + ", SZ01]"), encoding="utf-8")

    code, result = _cli(config, "retry", "department")
    assert code == 4, result
    message = result["message"]
    assert "100.0% of rows quarantined (1 of the 1 read), more than max_quarantined_pct=" in message
    assert f"Quarantined records counted: duplicate_key: 1 record (oa {published}; department_code 'D0302')." in message
    # Recorded as a sync's refusal is: `erpoa status` shows the entity failed, with what it read and why.
    store = open_store(config)
    run = store.runs(1)[0]
    assert (run["trigger"], run["status"]) == ("retry", "failed")
    entity_run = store.entity_run(run["run_id"], "department")
    assert entity_run is not None
    assert (entity_run["status"], entity_run["read_total"], entity_run["quarantined"]) == ("failed", 1, 2)
    assert "Quarantined records counted: duplicate_key" in entity_run["message"]


def test_show_gives_the_raw_record_with_personal_data_masked(synced) -> None:
    config, manifest = synced
    oa_id = str(manifest["employee_in_unmapped_department"]["oa_id"])
    rows = open_store(config).quarantine(entity="employee")
    qid = int(rows[(rows["src_id"] == oa_id) & (rows["stage"] == "map")]["id"].iloc[0])
    with create_engine(config.connection("oa").sqlalchemy_url()).connect() as conn:
        mobile, card, email = conn.execute(
            text('SELECT mobile, certificatenum, email FROM "HrmResource" WHERE id = :id'), {"id": int(oa_id)}
        ).one()
    code, row = _cli(config, "show", str(qid))
    assert code == 0, row
    raw = json.loads(row["raw"])
    assert raw["id"] == int(oa_id) and raw["dept_code"] == "SZ01" and raw["email"] == email
    assert raw["mobile"] == mobile[:3] + "*" * (len(mobile) - 7) + mobile[-4:]
    assert raw["certificatenum"].startswith(card[:4]) and card not in row["raw"] and mobile not in row["raw"]

    # A row stored before the store masked personal data is masked when shown.
    legacy = {"id": 9999, "dept_code": "X1", "mobile": "13800138000", "certificatenum": "330102199001011234"}
    store = open_store(config)
    with store.engine.begin() as conn:
        conn.execute(
            insert(store_schema.quarantine).values(
                run_id="legacy", entity="employee", source="oa", src_id="9999", stage="map", field="mobile",
                rule="match", value="13800138000", raw=json.dumps(legacy), status="open",
            )
        )
    legacy_id = int(store.quarantine(run_id="legacy")["id"].iloc[0])
    code, row = _cli(config, "show", str(legacy_id))
    assert code == 0, row
    assert row["value"] == "138****8000"
    assert json.loads(row["raw"]) == {**legacy, "mobile": "138****8000", "certificatenum": "3301**********1234"}
    code, listed = _cli(config, "list", "--entity", "employee")
    assert "13800138000" not in json.dumps(listed)

    help_text = CliRunner().invoke(app, ["quarantine", "show", "--help"]).output
    assert "masked" in help_text


def test_list_takes_only_known_statuses(synced) -> None:
    config, _ = synced
    done = CliRunner().invoke(app, ["quarantine", "list", "--status", "bogus", "--config", str(config.config_path)])
    assert done.exit_code == 2
    assert "'bogus' is not one of" in done.output and "superseded" in done.output
    assert "superseded" in CliRunner().invoke(app, ["quarantine", "list", "--help"]).output

    run_sync(config, entities=["employee"], full_refresh=True)  # the same problems found again
    code, superseded = _cli(config, "list", "--status", "superseded", "--entity", "employee")
    assert code == 0 and superseded["total"] > 0
    assert {r["status"] for r in superseded["rows"]} == {"superseded"}
    code, everything = _cli(config, "list", "--status", "ALL", "--entity", "employee", "--limit", "1000")
    assert code == 0
    assert {r["status"] for r in everything["rows"]} == {"open", "superseded"}
