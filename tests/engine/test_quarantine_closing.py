"""The quarantine loop: findings that name a golden record's source records, and what `quarantine retry` says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig
from etl.engine.pipeline import open_store, run_sync
from etl.store import schema as store_schema
from tests.helpers.project import NEW_UNIT, execute_sql, make_project, urls_for

GATE_RULE = "expect_column_values_to_match_regex"  # the demo's malformed ID number, on a record of both sources


def _run(config: ProjectConfig, *args: str) -> Result:
    return CliRunner().invoke(app, ["quarantine", *args, "--config", str(config.config_path)])


def _cli(config: ProjectConfig, *args: str) -> tuple[int, Any]:
    done = _run(config, *args, "--json")
    try:
        return done.exit_code, json.loads(done.stdout)
    except ValueError:
        return done.exit_code, done.output


def _finding(config: ProjectConfig, manifest: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """The open gate finding of the employee with the malformed ID number: its id and the ids it names."""
    rows = open_store(config).quarantine(entity="employee")
    code = manifest["invalid_id_number"]["code"]
    row = rows[(rows["rule"] == GATE_RULE) & (rows["golden_key"] == code)]
    assert len(row) == 1, rows
    ids = json.loads(row["src_id"].item())
    assert set(ids) == {"erp", "oa"} and row["source"].item() == "erp+oa", ids
    return int(row["id"].item()), ids


def _status(config: ProjectConfig, qid: int) -> str:
    rows = open_store(config).quarantine(status=None)
    return str(rows.loc[rows["id"] == qid, "status"].item())


def _delete(config: ProjectConfig, ids: dict[str, str], *sources: str) -> None:
    statements = {
        "erp": f"DELETE FROM hr_hi_person WHERE \"cPsn_Num\" = '{ids['erp']}'",
        "oa": f'DELETE FROM "HrmResource" WHERE id = {ids["oa"]}',
    }
    for source in sources:
        execute_sql(config.connection(source).sqlalchemy_url(), statements[source])


def _runs(config: ProjectConfig) -> int:
    engine = create_engine(config.connection("recon").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(store_schema.runs)).scalar() or 0)
    finally:
        engine.dispose()


# 1. findings naming both sources' records -----------------------------------------------------------------------
@pytest.mark.sqlite
def test_a_full_read_closes_a_gate_finding_whose_records_are_all_gone(synced) -> None:
    config, manifest = synced
    qid, ids = _finding(config, manifest)
    _delete(config, ids, "erp", "oa")
    summary, _ = run_sync(config, entities=["employee"], full_refresh=True)
    assert summary.status == "success", summary.message
    assert _status(config, qid) == "vanished"


@pytest.mark.sqlite
def test_a_sweeping_sync_closes_a_gate_finding_whose_records_are_all_gone(synced) -> None:
    config, manifest = synced
    qid, ids = _finding(config, manifest)
    _delete(config, ids, "erp", "oa")
    summary, _ = run_sync(config, entities=["employee"])  # incremental, with the deletion sweep
    assert summary.status == "success", summary.message
    assert _status(config, qid) == "vanished"


@pytest.mark.postgres
def test_a_sweeping_sync_closes_a_gate_finding_on_postgres(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The same on PostgreSQL: sources extracted and swept in threads, the links loaded beside the publish."""
    config, manifest = make_project(tmp_path / "project", urls_for("postgres", request, tmp_path))
    summary, _ = run_sync(config, full_refresh=True, entities=["department", "employee"])
    assert summary.status == "success", summary.message
    qid, ids = _finding(config, manifest)
    _delete(config, ids, "erp", "oa")
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    assert _status(config, qid) == "vanished"


@pytest.mark.sqlite
def test_retry_closes_a_gate_finding_whose_records_are_all_gone(synced) -> None:
    config, manifest = synced
    qid, ids = _finding(config, manifest)
    _delete(config, ids, "erp", "oa")
    code, out = _cli(config, "retry", "employee", "--id", str(qid))
    assert code == 0, out
    assert _status(config, qid) == "vanished"
    assert out["vanished"] == 1 and out["still_quarantined"] == 0, out


@pytest.mark.sqlite
def test_a_gate_finding_stays_open_while_one_of_its_records_remains(synced) -> None:
    config, manifest = synced
    qid, ids = _finding(config, manifest)
    _delete(config, ids, "oa")  # the ERP record, which nothing re-reads, still has the malformed number
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    assert _status(config, qid) == "open"
    _delete(config, ids, "erp")
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    assert _status(config, qid) == "vanished"


# 3. a retry with nothing to replay -------------------------------------------------------------------------------
def _add_code(config: ProjectConfig) -> None:
    codes = config.resolve(config.mappings) / "codes" / "department.yaml"
    codes.write_text(codes.read_text(encoding="utf-8") + NEW_UNIT, encoding="utf-8")


@pytest.mark.sqlite
def test_retry_with_nothing_open_says_so_and_records_no_run(synced) -> None:
    config, _ = synced
    _add_code(config)
    code, out = _cli(config, "retry", "department")
    assert code == 0 and out["still_quarantined"] == 0, out
    runs = _runs(config)
    code, out = _cli(config, "retry", "department")
    assert code == 2, out
    assert "department: nothing to replay: it has no open quarantine rows" in out["message"], out
    assert "erpoa quarantine list --entity department --status all" in out["message"], out
    done = _run(config, "retry", "department")
    assert done.exit_code == 2 and "nothing to replay" in done.stderr, done.output
    assert _runs(config) == runs


# 4. a retry that applies a mapping's new field --------------------------------------------------------------------
def _add_field(config: ProjectConfig, name: str) -> None:
    """A department field the tables do not have yet, from the demo ERP's department leader."""
    path = config.resolve(config.mappings) / "department.yaml"
    text = path.read_text(encoding="utf-8")
    field = "  updated_at: {type: datetime, compare: false}\n"
    source = "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"
    assert field in text and source in text
    text = text.replace(field, field + f"  {name}: {{type: string, length: 20}}\n")
    text = text.replace(source, source + f"      {name}: {{from: cDepLeader, transforms: [trim]}}\n")
    path.write_text(text, encoding="utf-8")


@pytest.mark.sqlite
def test_retry_says_what_it_changed_in_the_tables(synced) -> None:
    config, _ = synced
    _add_field(config, "leader")
    done = _run(config, "retry", "department")  # the log says it on stderr; the summary on stdout
    assert done.exit_code == 0, done.output
    assert "department: added column md_department.leader" in done.stdout, done.stdout
    _add_field(config, "deputy")
    code, out = _cli(config, "retry", "department")
    assert code == 0, out
    assert out["table_changes"] == [
        "added column md_department.deputy",
        "field leader is not filled yet (its column was added by a run that did not fill every record): "
        "the next `erpoa sync` reads department completely to fill them",
    ], out
    # A replay fills its own records only: until a sync reads the entity completely, each one says what is left.
    code, out = _cli(config, "retry", "department")
    assert code == 0, out
    assert out["table_changes"] == [
        "fields deputy, leader are not filled yet (their columns were added by a run that did not fill every "
        "record): the next `erpoa sync` reads department completely to fill them"
    ], out
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    assert summary.entities[0].message == (
        "fields deputy, leader are not filled yet (their columns were added by a run that did not fill every "
        "record): department is read completely to fill them"
    )
    code, out = _cli(config, "retry", "department")  # nothing left to change
    assert code == 0 and out["table_changes"] == [], out
