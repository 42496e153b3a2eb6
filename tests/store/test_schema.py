"""The reconciliation store's schema: created once, brought up to date from older versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

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
