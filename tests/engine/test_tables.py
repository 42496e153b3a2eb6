"""The entity's tables on PostgreSQL: run-scoped work tables are UNLOGGED, target and mirror are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from etl.engine.tables import EntityTables, build_indexes, start_bulk_load
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


def _index_defs(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(
            text("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(:t)"), {"t": table}
        ).scalars())


def test_a_bulk_load_empties_the_stage_and_drops_its_indexes_until_they_are_built_again(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.create(engine)
    indexed = _index_defs(engine, tables.stage.name)
    assert len(indexed) == 2
    with engine.begin() as conn:
        conn.execute(tables.stage.insert().values(_run="old", _source="erp", _src_id="1", _status="ok"))
        start_bulk_load(conn, tables.stage)
    assert _index_defs(engine, tables.stage.name) == set()
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {tables.stage.name}")).scalar() == 0
    build_indexes(engine, tables.stage)
    assert _index_defs(engine, tables.stage.name) == indexed
    build_indexes(engine, tables.stage)  # again: nothing missing, no error
    engine.dispose()


def test_prepare_keeps_the_rows_a_retried_run_staged_and_bulk_loads_a_new_run(tmp_path: Path, pg_url: str) -> None:
    from etl.engine import extract
    from etl.engine.context import SyncContext
    from etl.engine.pipeline import load_project_mappings, open_store
    from tests.helpers.project import make_project

    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    engine = create_engine(pg_url)

    def context(run_id: str) -> SyncContext:
        return SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config),
                           run_id=run_id)

    def staged() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT DISTINCT _run FROM erpoa_stage_department")).scalars())

    first = context("run-1")
    extract.prepare(first, "department")
    stage = first.tables(first.mapping("department")).stage.name
    assert _index_defs(engine, stage) == set()
    extract.extract_source(first, "department", "erp")
    extract.prepare(first, "department")  # a retry of the same run: its staged rows stay
    assert staged() == ["run-1"]
    assert extract.partitions(first, "department") >= 1
    assert len(_index_defs(engine, stage)) == 2
    second = context("run-2")
    extract.prepare(second, "department")  # a new run: the old rows go, the indexes wait for its load
    assert staged() == []
    assert _index_defs(engine, stage) == set()
    engine.dispose()
