"""What `erpoa plan` shows in its samples: values in their field's type, only real changes, and no file written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import run_sync
from etl.engine.plan import NEW_COLUMNS, plan_details
from tests.helpers.project import THREE, TINY, execute_sql, make_project, replace_in, tiny_sqlite_project, urls_for


def _edit(config: ProjectConfig, file: str, old: str, new: str) -> ProjectConfig:
    replace_in(config.resolve(config.mappings) / file, (old, new))
    return load_project(config.config_path)


def _plan(config: ProjectConfig, entity: str, samples: int = 50) -> tuple[Any, dict[str, Any]]:
    summary, ctx = run_sync(config, entities=[entity], full_refresh=True, dry_run=True)
    try:
        return summary.entities[0], plan_details(ctx, entity, samples=samples)
    finally:
        ctx.close()


def _quoted(config: ProjectConfig, name: str) -> str:
    return name if config.connection("erp").sqlalchemy_url().startswith("mysql") else f'"{name}"'


@pytest.fixture(params=THREE)
def departments(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectConfig:
    """A TINY demo project whose departments were synced once."""
    config, _ = make_project(tmp_path / "project", urls_for(request.param, request, tmp_path), size=TINY)
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    return config


def test_a_new_field_is_listed_in_every_update_it_causes(departments: ProjectConfig) -> None:
    """Adding `leader` updates every department: each sample says so, null leaders too, never `changes: {}`."""
    config = _edit(
        departments,
        "department.yaml",
        "  updated_at: {type: datetime, compare: false}\n",
        "  updated_at: {type: datetime, compare: false}\n  leader: {type: string, length: 20}\n",
    )
    config = _edit(
        config,
        "department.yaml",
        "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n",
        "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"
        "      leader: {from: cDepLeader, transforms: [trim]}\n",
    )
    result, details = _plan(config, "department")
    assert result.updated > 0 and len(details["updates"]) == min(result.updated, 50)
    for update in details["updates"]:
        assert set(update["changes"]) == {"leader"}, update  # nothing else changes: no fake datetime change
        assert update["changes"]["leader"]["old"] is None
        # None -> None alone would read as no change: the note says the record fills the new column
        assert update["note"] == f"{NEW_COLUMNS} leader", update
    assert any(u["changes"]["leader"]["new"] for u in details["updates"])  # the demo ERP has leaders
    assert any(u["changes"]["leader"]["new"] is None for u in details["updates"])  # and departments without


def _fractional_modify_times(config: ProjectConfig) -> None:
    """Every ERP department modified at a time with microseconds, then a full sync of the departments."""
    erp = config.connection("erp").sqlalchemy_url()
    q = lambda name: _quoted(config, name)  # noqa: E731
    if erp.startswith("mysql"):
        execute_sql(erp, "ALTER TABLE Department MODIFY dModifyDate DATETIME(6)")
    # Newer than any OA `modified`: the ERP's time survives (most_recent).
    execute_sql(erp, f"UPDATE {q('Department')} SET {q('dModifyDate')} = '2027-03-01 10:00:00.654321'")
    synced, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert synced.status == "success", synced.message


def test_fractional_seconds_the_target_cannot_keep_are_no_change(departments: ProjectConfig) -> None:
    """A modify time with microseconds, stored by a column that keeps less (MariaDB `DATETIME`), is no change of
    `updated_at` in an update's sample; the renamed department shows its name changed, and only that."""
    config = departments
    _fractional_modify_times(config)
    erp = config.connection("erp").sqlalchemy_url()
    q = lambda name: _quoted(config, name)  # noqa: E731
    execute_sql(erp, f"UPDATE {q('Department')} SET {q('cDepName')} = 'Renamed' WHERE {q('cDepCode')} = '0101'")
    result, details = _plan(config, "department")
    assert result.updated >= 1, result
    assert all("updated_at" not in u["changes"] for u in details["updates"]), details["updates"]
    [renamed] = [u for u in details["updates"] if u["key"] == "D0101"]
    assert renamed["changes"].keys() == {"name"}, renamed
    assert renamed["changes"]["name"]["new"] == "Renamed"


def test_fractional_seconds_plan_counts_what_the_sync_does(departments: ProjectConfig) -> None:
    """After a sync, a plan of unchanged sources plans no update, as the sync then publishes none."""
    config = departments
    _fractional_modify_times(config)
    planned, _ = _plan(config, "department")
    synced, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert synced.entities[0].updated == 0
    assert planned.updated == synced.entities[0].updated, planned


@pytest.fixture(params=THREE)
def purchases(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectConfig:
    """The demo project (default size) after a full sync of every entity."""
    config, _ = make_project(tmp_path / "project", urls_for(request.param, request, tmp_path))
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    return config


def test_sample_values_have_their_field_type_and_equal_values_are_no_change(purchases: ProjectConfig) -> None:
    config = purchases
    oa = config.connection("oa").sqlalchemy_url()
    execute_sql(oa, "UPDATE formtable_main_12_dt1 SET sl = sl + 1")
    result, details = _plan(config, "purchase", samples=20)
    assert result.updated > 0, result
    for update in details["updates"]:
        assert update["changes"].keys() == {"quantity"}, update  # line_no, amounts, dates: equal, not shown
        change = update["changes"]["quantity"]
        assert type(change["old"]) is float and type(change["new"]) is float, change
        assert change["new"] == pytest.approx(change["old"] + 1)
    # Inserts: a purchase line the target does not have yet.
    execute_sql(config.connection("target").sqlalchemy_url(), "DELETE FROM md_purchase_line")
    _, details = _plan(config, "purchase", samples=3)
    assert details["inserts"], details
    for row in details["inserts"]:
        assert type(row["line_no"]) is int and type(row["request_year"]) is int, row
        assert type(row["quantity"]) is float and isinstance(row["request_no"], str), row


@pytest.mark.sqlite
def test_plan_json_shows_numbers_as_numbers(tmp_path: Path) -> None:
    path = tiny_sqlite_project(tmp_path)
    plan = CliRunner().invoke(app, ["plan", "--json", "--config", str(path)])
    payload = json.loads(plan.stdout)
    [row, *_] = payload["details"]["contract"]["inserts"]
    assert isinstance(row["amount"], float) and isinstance(row["contract_no"], str), row


@pytest.mark.sqlite
def test_plan_before_the_first_sync_creates_no_target_file(tmp_path: Path) -> None:
    """A plan reads a SQLite target that does not exist as empty; it does not create the file."""
    path = tiny_sqlite_project(tmp_path)
    plan = CliRunner().invoke(app, ["plan", "--config", str(path)])
    assert plan.exit_code in (0, 4), plan.output  # 4: the demo's planted problems, the gate would refuse
    assert "inserts (sample)" in plan.output
    assert not [p.name for p in tmp_path.glob("target.db*")]
    status = CliRunner().invoke(app, ["status", "--config", str(path)])
    assert status.exit_code == 0, status.output
    synced, _ = run_sync(load_project(path), entities=["department"])
    assert synced.status == "success", synced.message
    assert (tmp_path / "target.db").exists()
    result, _ = _plan(load_project(path), "department")
    assert (result.status, result.inserted, result.updated) == ("planned", 0, 0)


@pytest.mark.sqlite
def test_plan_before_the_first_sync_creates_no_store_file(tmp_path: Path) -> None:
    path = tiny_sqlite_project(tmp_path)
    plan = CliRunner().invoke(app, ["plan", "--config", str(path)])
    assert plan.exit_code in (0, 4), plan.output
    assert not [p.name for p in tmp_path.glob("recon.db*")]
