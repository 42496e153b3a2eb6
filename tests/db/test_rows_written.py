"""INSERT ... SELECT and upserts report the rows they wrote on every database (psycopg's count was -1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from etl.db.write import insert_select, upsert_select


def _url(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    return str(request.getfixturevalue({"postgresql": "pg_url", "mariadb": "mariadb_url"}[kind]))


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_insert_and_upsert_from_a_select_count_the_rows_written(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    engine = create_engine(_url(request, tmp_path, kind))
    md = MetaData()
    source = Table("rw_source", md, Column("k", Integer, primary_key=True, autoincrement=False), Column("v", String(8)))
    target = Table("rw_target", md, Column("k", Integer, primary_key=True, autoincrement=False), Column("v", String(8)))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(source.insert(), [{"k": k, "v": f"v{k}"} for k in range(1, 8)])
        first = select(source.c.k, source.c.v).where(source.c.k <= 3)
        assert insert_select(conn, target, ["k", "v"], first) == 3
        conn.execute(source.update().where(source.c.k == 2).values(v="changed"))
        every = select(source.c.k, source.c.v).where(source.c.k.is_not(None))  # SQLite: a WHERE before ON CONFLICT
        # k=4..7 are new, k=1..3 conflict: PostgreSQL and SQLite count every row the upsert wrote once; MariaDB
        # (found rows) counts a new row 1, an updated one 2 and one found unchanged 1
        touched = upsert_select(conn, target, ["k", "v"], every, key=["k"])
        assert touched == (7 if kind != "mariadb" else 4 + 2 + 2)
        unchanged = upsert_select(conn, target, ["k", "v"], every, key=["k"], update=[])
        assert unchanged == (0 if kind != "mariadb" else 7)
        assert conn.execute(select(target.c.v).where(target.c.k == 2)).scalar_one() == "changed"
    engine.dispose()
