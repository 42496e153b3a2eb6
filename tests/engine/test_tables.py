"""The entity's tables on PostgreSQL: run-scoped work tables are UNLOGGED, target and mirror are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from etl.engine.tables import EntityTables
from etl.mapping.loader import load_mappings

pytestmark = pytest.mark.postgres

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _persistence(engine: Engine, names: list[str]) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(:n) AND relkind = 'r'"),
            {"n": names},
        ).all()
    return {r[0]: r[1] for r in rows}


def test_stage_and_gold_are_unlogged_target_and_mirror_are_logged(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.create(engine)
    names = [tables.target.name, tables.mirror.name, tables.stage.name, tables.gold.name]
    assert _persistence(engine, names) == {
        tables.target.name: "p",
        tables.mirror.name: "p",
        tables.stage.name: "u",
        tables.gold.name: "u",
    }
    engine.dispose()


def test_work_tables_created_logged_by_an_older_version_become_unlogged_and_keep_their_rows(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.metadata.create_all(engine, tables=[tables.stage, tables.gold])  # as before: logged
    with engine.begin() as conn:
        conn.execute(tables.stage.insert().values(_run="r1", _source="erp", _src_id="1", _status="ok"))
    assert set(_persistence(engine, [tables.stage.name, tables.gold.name]).values()) == {"p"}
    tables.create(engine, work_only=True)
    assert set(_persistence(engine, [tables.stage.name, tables.gold.name]).values()) == {"u"}
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT _src_id FROM {tables.stage.name}")).scalars().all() == ["1"]
    tables.create(engine, work_only=True)  # again: nothing to change, no error
    engine.dispose()
