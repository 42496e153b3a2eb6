"""The reconciliation store's schema: created once, brought up to date from older versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from etl.store import schema as s

pytestmark = pytest.mark.sqlite


def test_migrate_adds_the_indexes_of_a_newer_version_to_an_older_store(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'recon.db'}")
    s.migrate(engine)
    with engine.begin() as conn:  # a store left by version 1: without the quarantine lookup indexes
        conn.execute(text("DROP INDEX ix_erpoa_quarantine_key"))
        conn.execute(text("DROP INDEX ix_erpoa_quarantine_src"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 1"))
    s.migrate(engine)
    names = {i["name"] for i in inspect(engine).get_indexes("erpoa_quarantine")}
    assert {"ix_erpoa_quarantine_key", "ix_erpoa_quarantine_src"} <= names
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM erpoa_schema_version")).scalar() == s.SCHEMA_VERSION
    s.migrate(engine)  # idempotent at the current version
    engine.dispose()


@pytest.mark.mariadb
def test_mariadb_store_tells_apart_source_ids_that_differ_in_case_or_trailing_blanks(mariadb_url: str) -> None:
    engine = create_engine(mariadb_url)
    s.migrate(engine)
    with engine.begin() as conn:  # a store created before: the server's default, case- and blank-blind
        conn.execute(text("ALTER TABLE erpoa_xref CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
        conn.execute(s.xref.insert().values(entity="employee", source="oa", src_id="A1", golden_key="E1"))
    s.migrate(engine)
    with engine.begin() as conn:
        for src_id, key in (("a1", "E2"), ("A1 ", "E3")):
            conn.execute(s.xref.insert().values(entity="employee", source="oa", src_id=src_id, golden_key=key))
        rows = conn.execute(select(s.xref.c.src_id, s.xref.c.golden_key).order_by(s.xref.c.golden_key)).all()
        found = conn.execute(select(s.xref.c.golden_key).where(s.xref.c.src_id == "A1")).scalars().all()
        collations = set(conn.execute(text(
            "SELECT table_collation FROM information_schema.tables WHERE table_schema = DATABASE()"
        )).scalars())
    assert [tuple(r) for r in rows] == [("A1", "E1"), ("a1", "E2"), ("A1 ", "E3")]
    assert found == ["E1"]
    assert collations == {"utf8mb4_nopad_bin"}
    engine.dispose()


@pytest.mark.mariadb
def test_a_store_user_without_alter_keeps_the_old_collation_and_is_told_how_to_convert(
    mariadb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.engine import make_url

    admin = create_engine(mariadb_url)
    s.migrate(admin)
    database = make_url(mariadb_url).database
    user = f"noalter_{database}"[:32]
    with admin.begin() as conn:
        conn.execute(text("ALTER TABLE erpoa_xref CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
        conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        conn.execute(text(f"CREATE USER '{user}'@'%'"))
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX ON `{database}`.* TO '{user}'@'%'"))
    limited = create_engine(make_url(mariadb_url).set(username=user, password=None))
    try:
        with caplog.at_level("WARNING", logger="erpoa.store"):
            s.migrate(limited)  # the store still opens
        assert "ALTER TABLE `erpoa_xref` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin" in caplog.text
        assert s.is_initialised(limited)
    finally:
        limited.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


@pytest.mark.postgres
def test_commands_that_only_read_do_not_create_the_store(pg_url: str, tmp_path: Path) -> None:
    """`status`, `xref` and the lists pointed at an empty database (e.g. by mistake) leave it empty."""
    from typer.testing import CliRunner

    from etl.cli.app import app
    from etl.cli.demo_cmd import write_project

    config = write_project(tmp_path / "p", {"recon": pg_url})
    engine = create_engine(pg_url)
    commands = {("status",): 0, ("xref", "purchase", "QG1|1"): 1, ("quarantine", "list"): 0, ("reconcile", "list"): 0}
    for command, code in commands.items():  # xref: 1, nothing found
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == code, (command, result.output)
        assert inspect(engine).get_table_names() == [], command
    assert "No runs yet" in CliRunner().invoke(app, ["status", "--config", str(config)]).output
    s.migrate(engine)
    with engine.begin() as conn:  # a store of an older version: a reading command brings it up to date
        conn.execute(text("DROP INDEX ix_erpoa_quarantine_key"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 1"))
    assert CliRunner().invoke(app, ["status", "--config", str(config)]).exit_code == 0
    assert "ix_erpoa_quarantine_key" in {i["name"] for i in inspect(engine).get_indexes("erpoa_quarantine")}
    engine.dispose()


def test_the_row_count_band_compares_with_the_last_complete_read(tmp_path: Path) -> None:
    """An incremental run reads the changed rows only: it is no base for a full refresh's row-count band."""
    from etl.store.repo import Store

    store = Store(create_engine(f"sqlite:///{tmp_path / 'recon.db'}"))
    store.migrate()

    def run(run_id: str, mode: str, read: int, status: str = "success") -> None:
        store.start_run(run_id, trigger="cli", mode=mode, mapping_version="v", entities=["contract"])
        store.record_entity(run_id, "contract", status=status, read_total=read)
        store.finish_run(run_id, status)

    run("r1", "incremental", 80)  # the first run: no watermark, it read everything
    run("r2", "incremental", 5)
    assert store.previous_read_total("contract", "r9") == 80
    run("r3", "full", 85)
    run("r4", "incremental", 3)
    run("r5", "full", 900, status="failed")
    assert store.previous_read_total("contract", "r9") == 85
    assert store.previous_read_total("contract", "r3") == 80
    assert store.previous_read_total("other", "r9") is None
    store.engine.dispose()
