"""`stream_rows`: every row of a server-side cursor, in order, as plain tuples, on every driver."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from etl.db.extract import stream_rows

ROWS = [(i, f"id-{i:03d}") for i in range(1, 12)]


@pytest.mark.parametrize(
    "fixture",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("pg_url", marks=pytest.mark.postgres),
        pytest.param("mariadb_url", marks=pytest.mark.mariadb),
        pytest.param("mariadb_c_url", marks=pytest.mark.mariadb),
    ],
)
@pytest.mark.parametrize("chunk", [1, 4, 11, 50])
def test_stream_rows_loses_no_row(fixture: str, chunk: int, request: pytest.FixtureRequest, tmp_path) -> None:
    # SQLAlchemy fetches one row ahead when a server-side cursor opens; that row must come first, once.
    url = f"sqlite:///{tmp_path / 's.db'}" if fixture == "sqlite" else request.getfixturevalue(fixture)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER, code VARCHAR(20))"))
            conn.execute(text("INSERT INTO t VALUES (:n, :code)"), [{"n": n, "code": c} for n, c in ROWS])
        with engine.connect() as conn:
            chunks = list(stream_rows(conn, text("SELECT n, code FROM t ORDER BY n"), chunk))
            assert conn.execute(text("SELECT COUNT(*) FROM t")).scalar() == len(ROWS)  # the cursor was closed
    finally:
        engine.dispose()
    assert [r for part in chunks for r in part] == ROWS
    assert all(type(part) is list and all(type(r) is tuple for r in part) for part in chunks)
    assert all(0 < len(part) <= chunk for part in chunks)
