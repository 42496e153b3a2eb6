"""Deletion sweep and gate fixes: records restored at the source are read again, an emptied source is refused,
the sweep reads the id columns the extraction resolved, and a plan's gate decides as the sync's."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import run_sync
from tests.helpers.project import execute_sql, urls_for
from tests.reliability import write_tiny_project

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]

MAPPING = """\
entity: item
key: code
fields:
  code: {type: string, length: 20, nullable: false}
  name: {type: string, length: 60}
  qty: {type: integer}
  updated_at: {type: datetime, compare: false}
sources:
  erp:
    table: erp_item
    id: id
    cursor: modified
    fields:
      code: code
      name: name
      qty: qty
      updated_at: modified
target:
  table: md_item
"""

START = datetime(2026, 6, 1, 9, 0, 0)


def _fetch(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(statement), params)]
    finally:
        engine.dispose()


def _row(n: int, *, qty: str = "1", minutes: int | None = None) -> dict[str, Any]:
    return {"id": f"I{n:02d}", "code": f"C{n:02d}", "name": f"item {n}", "qty": qty,
            "m": START + timedelta(minutes=n if minutes is None else minutes)}


def _insert(config: ProjectConfig, rows: list[dict[str, Any]]) -> None:
    execute_sql(config.connection("erp").sqlalchemy_url(),
                "INSERT INTO erp_item (id, code, name, qty, modified) VALUES (:id, :code, :name, :qty, :m)", rows)


def _project(backend: str, request: pytest.FixtureRequest, tmp_path: Path, mapping: str = MAPPING,
             count: int = 7) -> ProjectConfig:
    urls = urls_for(backend, request, tmp_path)
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id VARCHAR(20) NOT NULL, code VARCHAR(20) NOT NULL, "
                             "name VARCHAR(60), qty VARCHAR(20), modified TIMESTAMP NULL)")
    path = write_tiny_project(tmp_path / "project", urls, {"item": mapping})
    config = load_project(path)
    _insert(config, [_row(n) for n in range(1, count + 1)])
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    return config


def _active(config: ProjectConfig) -> dict[str, bool]:
    rows = _fetch(config.connection("target").sqlalchemy_url(), "SELECT code, _active FROM md_item")
    return {code: bool(active) for code, active in rows}


def _sync(config: ProjectConfig, **kwargs: Any) -> Any:
    summary, _ = run_sync(config, **kwargs)
    return summary.entities[0]


# --------------------------------------------------------------------------- xa F2: restored records


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_restored_with_its_old_modify_time_is_active_again(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = _project(backend, request, tmp_path)
    url = config.connection("erp").sqlalchemy_url()
    execute_sql(url, "UPDATE erp_item SET name = 'item 7b', modified = :m WHERE id = 'I07'",
                {"m": START + timedelta(hours=3)})
    assert _sync(config).updated == 1  # the watermark is now past the other rows' modify times
    execute_sql(url, "DELETE FROM erp_item WHERE id IN ('I01', 'I02')")
    assert _sync(config).inactivated == 2
    assert not _active(config)["C01"] and not _active(config)["C02"]
    _insert(config, [_row(1), _row(2)])  # restored from a backup: their old modify times, below the watermark
    result = _sync(config)
    assert result.status == "success", result.message
    assert result.updated == 2 and result.inactivated == 0
    assert result.read["erp"] >= 2  # the rows read again count as read (the gate's percentage judges them too)
    assert "2 row(s) of source erp that the target's mirror did not hold" in (result.message or "")
    assert all(_active(config).values())
    again = _sync(config)  # the hashes now hold them: nothing read again, nothing changes
    assert (again.status, again.inserted, again.updated, again.inactivated) == ("success", 0, 0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_deleted_by_a_full_refresh_and_restored_is_active_again(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A complete read that removes mirrored ids makes the recorded hashes unknown: the sweep reads the mirror,
    finds the restored id by hash and reads it again in the same run."""
    config = _project(backend, request, tmp_path)
    url = config.connection("erp").sqlalchemy_url()
    execute_sql(url, "UPDATE erp_item SET modified = :m WHERE id = 'I07'", {"m": START + timedelta(hours=3)})
    execute_sql(url, "DELETE FROM erp_item WHERE id = 'I03'")
    assert _sync(config, full_refresh=True).inactivated == 1
    _insert(config, [_row(3)])
    result = _sync(config)
    assert result.status == "success", result.message
    assert result.updated == 1
    assert all(_active(config).values())
    again = _sync(config)
    assert (again.inserted, again.updated, again.inactivated) == (0, 0, 0)


@pytest.mark.sqlite
def test_a_late_row_below_the_watermark_is_read_by_the_sweep(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A row committed late with a cursor value older than the watermark (no sweep finds what was never
    mirrored otherwise); a quarantined row is not read again on every run."""
    config = _project("sqlite", request, tmp_path)
    url = config.connection("erp").sqlalchemy_url()
    execute_sql(url, "UPDATE erp_item SET modified = :m WHERE id = 'I07'", {"m": START + timedelta(hours=3)})
    _sync(config)
    _insert(config, [_row(8, minutes=30), _row(9, qty="many", minutes=31)])  # I09's qty is not an integer
    result = _sync(config)
    assert result.status == "success", result.message
    assert result.inserted == 1 and result.quarantined == 1
    assert _active(config)["C08"]
    again = _sync(config)  # I09 has an open finding: not read again
    assert (again.inserted, again.updated, again.quarantined) == (0, 0, 0)


# --------------------------------------------------------------------------- xa F3: an emptied source


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sweep_that_finds_the_source_empty_is_refused(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = _project(backend, request, tmp_path)
    execute_sql(config.connection("erp").sqlalchemy_url(), "DELETE FROM erp_item")
    summary, _ = run_sync(config, dry_run=True)
    planned = summary.entities[0]
    assert planned.exit_code == 4 and "would refuse" in (planned.message or ""), planned.message
    summary, _ = run_sync(config)
    result = summary.entities[0]
    assert summary.status != "success" and result.exit_code == 4
    message = result.message or ""
    assert "quality gate refused to publish" in message
    assert "source 'erp' returned no rows" in message and "7 record(s)" in message
    assert "erpoa sync item --full-refresh" in message
    assert all(_active(config).values()) and len(_active(config)) == 7  # nothing published
    accepted = _sync(config, full_refresh=True)  # how an empty source is accepted
    assert accepted.status == "success" and accepted.inactivated == 7


@pytest.mark.sqlite
def test_a_sweep_that_finds_some_ids_deletes_as_before(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    config = _project("sqlite", request, tmp_path)
    execute_sql(config.connection("erp").sqlalchemy_url(), "DELETE FROM erp_item WHERE id IN ('I01', 'I04', 'I07')")
    result = _sync(config)
    assert result.status == "success" and result.inactivated == 3


# --------------------------------------------------------------------------- xc F2: id column spelled otherwise


@pytest.mark.postgres
def test_the_sweep_reads_a_mixed_case_id_column_as_the_extraction_does(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    urls = urls_for("postgres", request, tmp_path)
    execute_sql(urls["erp"], 'CREATE TABLE person_src ("EmployeeCode" VARCHAR(20) PRIMARY KEY, "Name" VARCHAR(50), '
                             '"ModifiedAt" TIMESTAMP)')
    execute_sql(urls["erp"], 'INSERT INTO person_src VALUES (:c, :n, :m)',
                [{"c": f"E{n:03d}", "n": f"p{n}", "m": START + timedelta(minutes=n)} for n in range(1, 4)])
    mapping = """\
entity: person
key: code
fields:
  code: {type: string, length: 20}
  name: {type: string, length: 50}
sources:
  erp:
    table: person_src
    id: employeecode
    cursor: modifiedat
    fields: {code: employeecode, name: name}
target: {table: md_person}
"""
    config = load_project(write_tiny_project(tmp_path / "project", urls, {"person": mapping}))
    assert _sync(config).inserted == 3
    execute_sql(urls["erp"], 'DELETE FROM person_src WHERE "EmployeeCode" = \'E002\'')
    result = _sync(config)
    assert result.status == "success", result.message
    assert result.inactivated == 1


# --------------------------------------------------------------------------- xb F4: the plan's gate


@pytest.mark.sqlite
def test_the_plan_does_not_count_a_record_a_published_run_already_quarantined(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    gated = MAPPING.replace("target:\n", "quality: {max_quarantined_pct: 20}\ntarget:\n")
    urls = urls_for("sqlite", request, tmp_path)
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id VARCHAR(20) NOT NULL, code VARCHAR(20) NOT NULL, "
                             "name VARCHAR(60), qty VARCHAR(20), modified TIMESTAMP NULL)")
    config = load_project(write_tiny_project(tmp_path / "project", urls, {"item": gated}))
    _insert(config, [_row(n, qty="bad" if n == 5 else "1") for n in range(1, 11)])
    first = _sync(config)  # 1 of 10 quarantined: within 20%
    assert first.status == "success" and first.quarantined == 1, first.message
    url = config.connection("erp").sqlalchemy_url()
    execute_sql(url, "UPDATE erp_item SET name = 'x', modified = :m WHERE id = 'I10'",
                {"m": START + timedelta(hours=3)})
    assert _sync(config).status == "success"  # the watermark is past the first rows now
    # the bad record changes again at the source, still bad: an incremental read of 3 rows, 1 of them bad
    execute_sql(url, "UPDATE erp_item SET name = 'x', modified = :m WHERE id IN ('I05', 'I06')",
                {"m": START + timedelta(hours=5)})
    summary, _ = run_sync(config, dry_run=True)
    plan = summary.entities[0]
    assert plan.status == "planned" and plan.exit_code == 0, plan.message
    result = _sync(config)
    assert result.status == "success", result.message
    # a record the plan finds bad anew is still counted: the plan refuses as the sync does
    _insert(config, [_row(11, qty="worse", minutes=400)])
    summary, _ = run_sync(config, dry_run=True)
    plan = summary.entities[0]
    assert plan.exit_code == 4 and "would refuse" in (plan.message or ""), plan.message
    assert "type:integer: 1 record (erp I11;" in (plan.message or ""), plan.message  # I05 not counted
    refused = _sync(config)
    assert refused.exit_code == 4, refused.message


TWO_SOURCES = MAPPING.replace("target:\n", """  oa:
    table: oa_item
    id: id
    cursor: modified
    fields:
      code: code
      name: name
target:
""")


@pytest.mark.postgres
def test_two_sources_swept_in_threads_read_a_restored_record_again(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On PostgreSQL the sweeps of two sources run in threads beside the extractions."""
    urls = urls_for("postgres", request, tmp_path)
    for table in ("erp_item", "oa_item"):
        execute_sql(urls["erp"], f"CREATE TABLE {table} (id VARCHAR(20) NOT NULL, code VARCHAR(20) NOT NULL, "
                                 "name VARCHAR(60), qty VARCHAR(20), modified TIMESTAMP NULL)")
    config = load_project(write_tiny_project(tmp_path / "project", urls, {"item": TWO_SOURCES}))
    _insert(config, [_row(n) for n in range(1, 6)])
    execute_sql(urls["oa"], "INSERT INTO oa_item (id, code, name, modified) VALUES (:id, :code, :name, :m)",
                [_row(n) for n in range(1, 6)])
    assert _sync(config).inserted == 5
    for table in ("erp_item", "oa_item"):
        execute_sql(urls["erp"], f"UPDATE {table} SET modified = :m WHERE id = 'I05'",
                    {"m": START + timedelta(hours=3)})
    _sync(config)
    execute_sql(urls["erp"], "DELETE FROM erp_item WHERE id = 'I01'")
    execute_sql(urls["oa"], "DELETE FROM oa_item WHERE id = 'I01'")
    assert _sync(config).inactivated == 1
    _insert(config, [_row(1)])  # back in the ERP only
    result = _sync(config)
    assert result.status == "success", result.message
    assert _active(config)["C01"]
    presence = _fetch(urls["target"], "SELECT _presence FROM md_item WHERE code = 'C01'")
    assert presence == [("erp",)]
