"""A field removed from a mapping and mapped again later: its columns kept the values of when it was removed, so the
sync that finds it mapped again reads the entity completely to fill it (`extract.prepare`), as for a new field.

The store records the fields each publish of an entity wrote (`erpoa_published_fields`, schema version 6); a store
without that record (an older one) detects nothing, as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import run_sync
from etl.engine.plan import REHASHED
from etl.store import schema as s
from etl.store.repo import PublishedFields, Store
from tests.helpers.project import TINY, make_project, replace_in, source_sql, table_checksums, target_rows, urls_for

FIELD = "  updated_at: {type: datetime, compare: false}\n"
LEADER = "  leader: {type: string, length: 20}\n"
SOURCE = "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"
LEADER_SOURCE = "      leader: {from: cDepLeader, transforms: [trim]}\n"
NEW_LEADER = "NEWLEADER"


@pytest.fixture
def project(department_synced: ProjectConfig) -> ProjectConfig:
    return department_synced


def _mapping(config: ProjectConfig) -> Path:
    return config.resolve(config.mappings) / "department.yaml"


def _with_leader(config: ProjectConfig) -> ProjectConfig:
    """The department's leader (the demo ERP's `cDepLeader`) mapped."""
    replace_in(_mapping(config), (FIELD, FIELD + LEADER), (SOURCE, SOURCE + LEADER_SOURCE))
    return load_project(config.config_path)


def _without_leader(config: ProjectConfig) -> ProjectConfig:
    replace_in(_mapping(config), (FIELD + LEADER, FIELD), (SOURCE + LEADER_SOURCE, SOURCE))
    return load_project(config.config_path)


def _synced(config: ProjectConfig, **options: object) -> tuple[int, int, str | None]:
    summary, _ = run_sync(config, entities=["department"], **options)  # type: ignore[arg-type]
    assert summary.status == "success", summary.message
    result = summary.entities[0]
    return result.inserted, result.updated, result.message


def _leaders(config: ProjectConfig) -> dict[str, str | None]:
    return {str(code): leader for code, leader in target_rows(config, "md_department", ["department_code", "leader"])}


def _written(config: ProjectConfig) -> dict[str, str]:
    """Checksums of every table a sync writes: target (with mirror and work tables) and store."""
    urls = {config.connection(name).sqlalchemy_url() for name in ("target", "recon")}
    return {f"{url}/{name}": digest for url in sorted(urls) for name, digest in table_checksums(url).items()}


def _erp(config: ProjectConfig, statement: str, **params: object) -> list[tuple[object, ...]]:
    return source_sql(config, "erp", statement, **params)


def _later(config: ProjectConfig, days: int) -> str:
    """SQL for the current time plus `days`, in the ERP's dialect."""
    dialect = make_url(config.connection("erp").sqlalchemy_url()).get_backend_name()
    return {
        "postgresql": f"CURRENT_TIMESTAMP + INTERVAL '{days} day'",
        "mysql": f"NOW() + INTERVAL {days} DAY",
    }.get(dialect, f"datetime('now', '+{days} day')")


def _one_leader(config: ProjectConfig) -> tuple[str, str, str]:
    """(department_code, its leader, the ERP's cDepCode) of a published department whose leader no other has."""
    leaders = _leaders(config)
    erp = [(str(code), str(leader).strip()) for code, leader in _erp(
        config, 'SELECT "cDepCode", "cDepLeader" FROM "Department" WHERE "cDepLeader" IS NOT NULL'
    )]
    for code, leader in sorted(leaders.items()):
        if leader and list(leaders.values()).count(leader) == 1:
            rows = [erp_code for erp_code, erp_leader in erp if erp_leader == leader]
            if len(rows) == 1:
                return code, leader, rows[0]
    raise AssertionError(f"no department with a leader of its own: {leaders}")


def _mirrored_leader(config: ProjectConfig, erp_code: str) -> object:
    engine = create_engine(config.connection("target").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            q = engine.dialect.identifier_preparer.quote
            return conn.execute(
                text(f"SELECT {q('leader')} FROM erpoa_src_department WHERE _source = 'erp' AND _src_id = :id"),
                {"id": erp_code},
            ).scalar()
    finally:
        engine.dispose()


def test_a_field_mapped_again_is_filled_by_a_complete_read(project: ProjectConfig) -> None:
    config = _with_leader(project)
    _, updated, message = _synced(config)
    assert updated > 0 and "added column md_department.leader" in (message or "")
    code, leader, erp_code = _one_leader(config)
    others = 'SELECT "cDepCode" FROM "Department" WHERE "cDepCode" <> :code ORDER BY "cDepCode"'
    other = str(_erp(config, others, code=erp_code)[0][0])

    config = _without_leader(config)
    assert _synced(config)[::2] == (0, None)  # the column stays, no longer written
    assert _leaders(config)[code] == leader
    # The leader changes at the source while the field is not mapped: the run reads the record (its modify date
    # moved), and leaves the column as it was. A later change elsewhere moves the watermark past the overlap.
    _erp(config, f'UPDATE "Department" SET "cDepLeader" = :leader, "dModifyDate" = {_later(config, 0)} '
                 'WHERE "cDepCode" = :code', leader=NEW_LEADER, code=erp_code)
    _erp(config, f'UPDATE "Department" SET "dModifyDate" = {_later(config, 1)} WHERE "cDepCode" = :code',
         code=other)
    _synced(config)
    assert _leaders(config)[code] == leader

    config = _with_leader(config)
    # The plan says a complete read follows, plans it (the changed leader is an update), and writes nothing.
    before = _written(config)
    done = CliRunner().invoke(app, ["plan", "department", "--config", str(config.config_path), "--json"])
    assert done.exit_code == 0, done.stdout
    planned = json.loads(done.stdout)["entities"][0]
    assert planned["message"] == "field leader is mapped again: a complete read follows"
    assert planned["updated"] >= 1
    assert _written(config) == before
    # A record rewritten while the field was not mapped has a row hash without it: an update with the same values,
    # which the sample says instead of listing no change.
    samples = json.loads(done.stdout)["details"]["department"]["updates"]
    assert all(("note" in sample) == (not sample["changes"]) for sample in samples), samples
    assert any(sample.get("note") == REHASHED for sample in samples), samples

    inserted, updated, message = _synced(config)  # incremental, no source change since the last run
    assert message == "field leader is mapped again: department is read completely to fill it"
    assert (inserted, updated) == (0, planned["updated"])
    assert _leaders(config)[code] == NEW_LEADER
    assert _mirrored_leader(config, erp_code) == NEW_LEADER
    rows = target_rows(config, "md_department")
    assert _synced(config) == (0, 0, None)  # filled: the next run changes nothing
    # Every record holds what a complete read gives.
    assert _synced(config, full_refresh=True)[:2] == (0, 0)
    assert target_rows(config, "md_department") == rows


def test_a_renamed_field_is_filled_although_no_value_changed(project: ProjectConfig) -> None:
    """`is_leaf` renamed `leaf`: the same values in the same place give every record the same row hash, yet the new
    column must be filled (it stayed NULL everywhere, even after `--full-refresh`). Until a publish has written the
    new field, the merge rewrites every record it reads."""
    config = project
    before = {str(code): leaf for code, leaf in target_rows(config, "md_department", ["department_code", "is_leaf"])}
    replace_in(_mapping(config), ("is_leaf:", "leaf:"))
    suite = config.resolve(config.expectations) / "department.json"
    if "is_leaf" in suite.read_text(encoding="utf-8"):
        replace_in(suite, ('"is_leaf"', '"leaf"'))
    config = load_project(config.config_path)
    summary, _ = run_sync(config, entities=["department"], dry_run=True)
    planned = summary.entities[0]
    assert planned.updated == len(before), planned
    inserted, updated, message = _synced(config)
    assert message == "added column md_department.leaf; department is read completely to fill them"
    assert (inserted, updated) == (0, len(before))
    after = {str(code): leaf for code, leaf in target_rows(config, "md_department", ["department_code", "leaf"])}
    assert after == before and any(value is not None for value in after.values())
    assert _synced(config) == (0, 0, None)
    assert _synced(config, full_refresh=True)[:2] == (0, 0)


UNFILLED = "field leader is not filled yet (its column was added by a run that did not fill every record)"


def test_a_rerun_after_a_crash_that_added_the_column_fills_it_and_says_why(project: ProjectConfig) -> None:
    """Killed after its prepare added the leader's columns: the rerun finds the column there but never filled, says
    so (not "mapped again": no publish ever wrote it), and reads completely to fill it."""
    config = _with_leader(project)
    env = {**os.environ, "ERPOA_FAULT": "extract.prepared:1"}
    command = [sys.executable, "-m", "etl.cli.app", "sync", "department", "--no-flows", "--config",
               str(config.config_path), "--json"]
    assert subprocess.run(command, env=env, capture_output=True, check=False).returncode == -signal.SIGKILL
    _, updated, message = _synced(config)
    assert message == f"{UNFILLED}: department is read completely to fill it"
    assert updated > 0
    _one_leader(config)  # the leaders are the ERP's
    assert _synced(config) == (0, 0, None)


def _retried(config: ProjectConfig) -> str:
    done = CliRunner().invoke(app, ["quarantine", "retry", "department", "--config", str(config.config_path),
                                    "--json"])
    assert done.exit_code == 0, done.output
    return "; ".join(json.loads(done.stdout)["table_changes"])


def test_a_replay_fills_its_records_only_and_the_next_sync_says_why_it_reads_completely(
    project: ProjectConfig,
) -> None:
    """A replay after a mapping change fills the new (or mapped again) field for the records it replays only: the
    next sync still names the field as it reads the entity completely to fill it."""
    config = _with_leader(project)
    assert _retried(config) == (
        "added column md_department.leader; the next `erpoa sync` reads department completely to fill them"
    )
    _, updated, message = _synced(config)
    assert message == f"{UNFILLED}: department is read completely to fill it"
    assert updated > 0
    code, leader, _ = _one_leader(config)

    config = _without_leader(config)
    _synced(config)
    config = _with_leader(config)
    assert _retried(config) == (
        "field leader is mapped again: the next `erpoa sync` reads department completely to fill it"
    )
    _, _, message = _synced(config)
    assert message == "field leader is mapped again: department is read completely to fill it"
    assert _leaders(config)[code] == leader
    assert _synced(config) == (0, 0, None)


@pytest.mark.sqlite
def test_a_store_of_schema_5_is_migrated_and_detects_from_its_next_publish(tmp_path: Path) -> None:
    """A store of schema version 5 has no record of the published fields: a field mapped again is not detected
    (the behaviour before), until a publish has recorded them."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    assert _synced(config, full_refresh=True)[0] > 0
    config = _with_leader(config)
    _synced(config)
    code, leader, erp_code = _one_leader(config)
    config = _without_leader(config)
    _synced(config)
    _erp(config, f'UPDATE "Department" SET "cDepLeader" = :leader, "dModifyDate" = {_later(config, 0)} '
                 'WHERE "cDepCode" = :code', leader=NEW_LEADER, code=erp_code)
    _erp(config, f'UPDATE "Department" SET "dModifyDate" = {_later(config, 1)} WHERE "cDepCode" <> :code',
         code=erp_code)
    _synced(config)
    recon = create_engine(config.connection("recon").sqlalchemy_url())
    with recon.connect() as conn:
        recorded = json.loads(conn.execute(select(s.published_fields.c.field_names)).scalar_one())
    assert recorded == {
        "fields": ["department_code", "name", "status", "is_leaf", "updated_at"],
        "ever": sorted(["department_code", "name", "status", "is_leaf", "updated_at", "leader"]),
    }
    with recon.begin() as conn:  # the store of schema version 5
        conn.execute(text("DROP TABLE erpoa_published_fields"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 5"))
    config = _with_leader(config)
    _, _, message = _synced(config)  # migrates the store; nothing recorded: read incrementally
    assert "mapped again" not in (message or "")
    assert _leaders(config)[code] == leader  # stale, as before the record (`--full-refresh` fills it)
    with recon.connect() as conn:
        assert conn.execute(select(s.schema_version.c.version)).scalar() == s.SCHEMA_VERSION
        recorded = json.loads(conn.execute(select(s.published_fields.c.field_names)).scalar_one())
    assert "leader" in recorded["fields"]  # from now on a field mapped again is detected
    recon.dispose()
    config = _without_leader(config)
    _synced(config)
    summary, _ = run_sync(_with_leader(config), entities=["department"], dry_run=True)
    assert summary.entities[0].message == "field leader is mapped again: a complete read follows"


def _migrates_from_schema_5(url: str) -> None:
    engine = create_engine(url)
    s.migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE erpoa_published_fields"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 5"))
    store = Store(engine)
    assert store.published_fields("department") is None  # a plan reads a store it does not migrate
    store.migrate()
    assert inspect(engine).has_table("erpoa_published_fields")
    with engine.connect() as conn:
        assert conn.execute(select(s.schema_version.c.version)).scalar() == s.SCHEMA_VERSION == 7
    assert store.published_fields("department") is None
    store.commit_watermarks("r0", "department", fields=["名称"], some_records=True)  # a replay: nothing to keep
    assert store.published_fields("department") is None
    store.commit_watermarks("r1", "department", fields={"department_code": 1, "名称": 2})
    assert store.published_fields("department") == PublishedFields(
        frozenset({"department_code", "名称"}), frozenset({"department_code", "名称"})
    )
    store.commit_watermarks("r2", "department", fields=["department_code"])
    store.commit_watermarks("r3", "department")  # without fields: the record stays
    assert store.published_fields("department") == PublishedFields(
        frozenset({"department_code"}), frozenset({"department_code", "名称"})
    )
    # A replay fills its records only: a field it wrote that the last publish did not stays unfilled.
    store.commit_watermarks("r4", "department", fields=["department_code", "leader"], some_records=True)
    assert store.published_fields("department") == PublishedFields(
        frozenset({"department_code"}), frozenset({"department_code", "名称"})
    )
    # A record of the first version of schema 6 is a list: what earlier publishes wrote is not known.
    with engine.begin() as conn:
        conn.execute(s.published_fields.update().values(field_names=json.dumps(["department_code", "名称"])))
    assert store.published_fields("department") == PublishedFields(frozenset({"department_code", "名称"}), None)
    store.commit_watermarks("r5", "department", fields=["department_code"])
    assert store.published_fields("department") == PublishedFields(
        frozenset({"department_code"}), frozenset({"department_code", "名称"})
    )
    store.migrate()  # idempotent
    engine.dispose()


@pytest.mark.sqlite
def test_a_store_of_schema_5_migrates_on_sqlite(tmp_path: Path) -> None:
    _migrates_from_schema_5(f"sqlite:///{tmp_path / 'recon.db'}")


@pytest.mark.postgres
def test_a_store_of_schema_5_migrates_on_postgres(pg_url: str) -> None:
    _migrates_from_schema_5(pg_url)


@pytest.mark.mariadb
def test_a_store_of_schema_5_migrates_on_mariadb(mariadb_url: str) -> None:
    _migrates_from_schema_5(mariadb_url)
