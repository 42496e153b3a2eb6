"""`indexes_built_after`: a bulk load into an empty PostgreSQL table builds its indexes once, afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Engine, Index, Integer, MetaData, String, Table, create_engine, select, text

from etl.db.write import indexes_built_after, insert_select, upsert_select

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> tuple[Table, Table]:
    md = MetaData()
    source = Table("src", md, Column("id", String(20)), Column("key", String(20)), Column("n", Integer))
    target = Table(
        "tgt",
        md,
        Column("id", String(20), primary_key=True),
        Column("key", String(20), unique=True),
        Column("n", Integer),
        Index("ix_tgt_n", "n"),
        Index("ix_tgt_key_n", "key", "n", postgresql_where=text("n > 0")),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), [{"id": f"i{i}", "key": f"k{i}", "n": i} for i in range(500)])
    return source, target


def _schema(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        indexes = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tgt'")).all()
        constraints = conn.execute(
            text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tgt'::regclass")
        ).all()
    return {tuple(r) for r in indexes} | {tuple(r) for r in constraints}


def test_an_empty_table_is_loaded_without_its_indexes_and_gets_the_same_ones_back(engine: Engine) -> None:
    source, target = _tables(engine)
    before = _schema(engine)
    assert len(before) == 6  # pkey and unique (as index and constraint), two plain indexes
    with engine.begin() as conn, indexes_built_after(conn, target) as first_load:
        assert first_load
        inside = conn.execute(text("SELECT count(*) FROM pg_indexes WHERE tablename = 'tgt'")).scalar()
        assert inside == 0
        assert insert_select(conn, target, ["id", "key", "n"], select(source.c.id, source.c.key, source.c.n)) == 500
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(target.c.n).where(target.c.id == "i42")).scalar() == 42
    with engine.begin() as conn, indexes_built_after(conn, target) as first_load:  # now it has rows: as usual
        assert not first_load
        upsert_select(conn, target, ["id", "key", "n"], select(source.c.id, source.c.key, source.c.n + 1), ["id"])
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(target.c.n).where(target.c.id == "i42")).scalar() == 43


def test_a_failed_load_rolls_the_indexes_back(engine: Engine) -> None:
    source, target = _tables(engine)
    before = _schema(engine)
    with pytest.raises(RuntimeError, match="killed"), engine.begin() as conn, indexes_built_after(conn, target):
        insert_select(conn, target, ["id", "key", "n"], select(source.c.id, source.c.key, source.c.n))
        raise RuntimeError("killed mid-publish")
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(target.c.id)).first() is None


def test_duplicates_in_the_load_still_fail_on_the_rebuilt_key(engine: Engine) -> None:
    source, target = _tables(engine)
    with engine.begin() as conn:
        conn.execute(source.insert().values(id="i1", key="other", n=1))
    before = _schema(engine)
    with pytest.raises(Exception, match="tgt_pkey"), engine.begin() as conn, indexes_built_after(conn, target):
        insert_select(conn, target, ["id", "key", "n"], select(source.c.id, source.c.key, source.c.n))
    assert _schema(engine) == before


def test_a_table_that_foreign_keys_point_to_keeps_its_indexes(engine: Engine) -> None:
    _, target = _tables(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE child (tgt_id VARCHAR(20) REFERENCES tgt (id))"))
    with engine.begin() as conn, indexes_built_after(conn, target) as first_load:
        assert not first_load
        assert conn.execute(text("SELECT count(*) FROM pg_indexes WHERE tablename = 'tgt'")).scalar() == 4
