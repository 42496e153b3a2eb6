"""Bulk writes and upserts, one implementation per dialect.

PostgreSQL loads with `COPY` (CSV written by pyarrow); MariaDB/MySQL and SQLite with
executemany (PyMySQL folds it into multi-row INSERTs); SQL Server with
`fast_executemany`. Upserts: `INSERT .. ON CONFLICT` (PostgreSQL, SQLite),
`INSERT .. ON DUPLICATE KEY UPDATE` (MariaDB/MySQL), `MERGE` (SQL Server).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Date, Engine, Select, Table, literal, select, text
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import Executable

BATCH_ROWS = 10_000
COPY_ROWS = 50_000
log = logging.getLogger("erpoa.write")


def records(frame: pd.DataFrame, columns: Sequence[str], table: Table | None = None,
            dialect: str | None = None) -> list[tuple[Any, ...]]:
    """Rows as tuples of plain Python values, None for every kind of null.

    For SQLite, timestamps are written as text in SQLAlchemy's own format
    (`Date` columns as `YYYY-MM-DD`), so rows written here and by SQLAlchemy agree.
    """
    if frame.empty:
        return []
    data = []
    for name in columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            if dialect == "sqlite":
                is_date = table is not None and name in table.c and isinstance(table.c[name].type, Date)
                text_values = col.dt.strftime("%Y-%m-%d" if is_date else "%Y-%m-%d %H:%M:%S.%f")
                values = text_values.to_numpy(dtype=object, na_value=None)
            else:
                values = np.array(col.dt.to_pydatetime(), dtype=object)
                values[col.isna().to_numpy()] = None
        else:
            values = col.to_numpy(dtype=object, na_value=None, copy=True)
            if col.dtype == object:
                values[pd.isna(values)] = None
        data.append(values)
    return list(zip(*data, strict=True))


def refresh_statistics(engine: Engine, *tables: Table, vacuum: bool = False) -> None:
    """Let PostgreSQL's planner see rows just bulk-loaded into `tables` (`ANALYZE`; other dialects: no-op).

    A table created empty keeps its zero-row estimate until autovacuum gets to it; an
    anti-join against it then runs as a nested loop, quadratic in the rows (11 s for
    16,000 rows, hours for a million). MariaDB refreshes InnoDB statistics itself.
    With `vacuum`, `VACUUM (ANALYZE)`: the rows are also marked visible to every transaction
    at once (the visibility map), so that reads of indexed columns only can answer from the
    index, and no later reader pays for setting each row's hint bits.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if not vacuum:
            analyze(conn, *tables)
            return
        for table in tables:
            conn.execute(text(f"VACUUM (ANALYZE) {conn.dialect.identifier_preparer.format_table(table)}"))


def analyze(conn: Connection, *tables: Table) -> None:
    """`ANALYZE` `tables` on `conn` (PostgreSQL; a no-op elsewhere), inside its transaction if it has one."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.format_table(table)}"))


def insert_frames(engine: Engine, table: Table, *frames: pd.DataFrame) -> None:
    """Append `frames` to `table` in one transaction of their own."""
    with engine.begin() as conn:
        for frame in frames:
            insert_frame(conn, table, frame)


def insert_frame(conn: Connection, table: Table, frame: pd.DataFrame, columns: Sequence[str] | None = None) -> int:
    """Append `frame` to `table` as fast as the dialect allows; returns rows written."""
    columns = list(columns or frame.columns)
    if frame.empty:
        return 0
    dialect = conn.dialect.name
    log.debug("writing %d row(s) of %d column(s) to %s (%s+%s)", len(frame), len(columns), table.fullname, dialect,
              conn.dialect.driver)
    if dialect == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_postgres(conn, table, frame, columns)
    rows = records(frame, columns, table, dialect)
    if dialect in ("sqlite", "mysql", "mariadb") and conn.dialect.driver in ("pysqlite", "pymysql", "mysqldb"):
        # The driver's own executemany: no per-row SQLAlchemy parameter processing (PyMySQL and
        # mysqlclient fold it into multi-row INSERTs); values are already plain Python objects.
        q = conn.dialect.identifier_preparer.quote
        marker = "?" if dialect == "sqlite" else "%s"
        sql = (f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} "  # noqa: S608
               f"({', '.join(q(c) for c in columns)}) VALUES ({', '.join([marker] * len(columns))})")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(rows), BATCH_ROWS):
                began = time.monotonic()
                cursor.executemany(sql, rows[start : start + BATCH_ROWS])
                _batch_written(table, "executemany", start, len(rows), began)
        finally:
            cursor.close()
        return len(rows)
    stmt = table.insert()
    for start in range(0, len(rows), BATCH_ROWS):
        began = time.monotonic()
        batch = [dict(zip(columns, row, strict=True)) for row in rows[start : start + BATCH_ROWS]]
        conn.execute(stmt, batch)
        _batch_written(table, "insert", start, len(rows), began)
    return len(rows)


def _batch_written(table: Table, how: str, start: int, total: int, began: float, size: int = BATCH_ROWS) -> None:
    log.debug("%s: %s batch of rows %d-%d of %d written in %.2fs", table.fullname, how, start + 1,
              min(start + size, total), total, time.monotonic() - began)


def _copy_postgres(conn: Connection, table: Table, frame: pd.DataFrame, columns: list[str]) -> int:
    """COPY FROM STDIN as CSV written by pyarrow (in C++), `COPY_ROWS` rows at a time (bounded memory)."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    name = conn.dialect.identifier_preparer.format_table(table)
    with dbapi.cursor() as cur, cur.copy(f"COPY {name} ({quoted}) FROM STDIN WITH (FORMAT csv)") as copy:
        for start in range(0, len(frame), COPY_ROWS):
            began = time.monotonic()
            copy.write(copy_csv(frame.iloc[start : start + COPY_ROWS], columns))
            _batch_written(table, "COPY", start, len(frame), began, COPY_ROWS)
    return len(frame)


def copy_csv(frame: pd.DataFrame, columns: Sequence[str]) -> Any:
    """`frame[columns]` as headerless CSV for PostgreSQL's `COPY … (FORMAT csv)` (a pyarrow buffer).

    NULL is an unquoted empty field; empty strings are written as NULL too. Time-zone-aware
    timestamps keep their wall time (what PostgreSQL stores of an offset written into a
    `timestamp` column). A column of mixed Python objects, which Arrow cannot type, is written
    as each value's `str()`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    arrays = []
    for name in columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            col = col.dt.tz_localize(None)
        try:
            arr = pa.array(col, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([None if v is None else str(v) for v in col.to_numpy(dtype=object, na_value=None)])
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
        arrays.append(arr)
    out = pa.BufferOutputStream()
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return out.getvalue()


@contextmanager
def indexes_built_after(conn: Connection, table: Table) -> Iterator[bool]:
    """Bulk-load an empty PostgreSQL table without its indexes, then build them, in the caller's transaction.

    Yields whether that happens (the table is empty): the caller then loads with a plain
    INSERT, as there is nothing to conflict with, and the key constraint arbiter is gone until
    the block ends. Building an index with one sort costs far less than inserting every row
    into it (the first publish of a million rows). Constraints and indexes come back with
    their own names and definitions; on an error the transaction's rollback restores them.
    Other dialects, tables with rows and tables that foreign keys point to load as usual
    (yields False).
    """
    prep = conn.dialect.identifier_preparer
    name = prep.format_table(table)
    oid = {"t": name}
    if (
        conn.dialect.name != "postgresql"
        or conn.execute(select(literal(1)).select_from(table).limit(1)).first()
        or conn.execute(text("SELECT 1 FROM pg_constraint WHERE confrelid = to_regclass(:t)"), oid).first()
    ):
        yield False
        return
    constraints = key_constraints(conn, name)
    indexes = plain_indexes(conn, name)
    for conname, _ in constraints:
        conn.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {prep.quote(conname)}"))
    for schema, index, _ in indexes:
        conn.execute(text(f"DROP INDEX {prep.quote(schema)}.{prep.quote(index)}"))
    yield True
    for conname, definition in constraints:
        conn.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {prep.quote(conname)} {definition}"))
    for _, _, definition in indexes:
        conn.execute(text(definition))


def background_session(conn: Connection) -> None:
    """Keep a PostgreSQL transaction that works beside the sync's own to one core: no parallel workers.

    Its index builds and scans would otherwise also take the core that the sync's Python side needs
    when both share a machine; work done beside the merge has time to spare.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 0"))
        conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def key_constraints(conn: Connection, name: str) -> list[tuple[str, str]]:
    """(name, definition) of the PostgreSQL table `name`'s primary key and unique constraints."""
    rows = conn.execute(
        text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
             "WHERE conrelid = to_regclass(:t) AND contype IN ('p', 'u') ORDER BY contype, conname"),
        {"t": name},
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def plain_indexes(conn: Connection, name: str) -> list[tuple[str, str, str]]:
    """(schema, name, definition) of the PostgreSQL table `name`'s indexes that back no constraint."""
    rows = conn.execute(
        text("SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
             "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE i.indrelid = to_regclass(:t) "
             "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY c.relname"),
        {"t": name},
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def insert_select(conn: Connection, target: Table, columns: Sequence[str], source: Select[Any]) -> int:
    """INSERT the rows of `source` (columns in order) into `target`; returns rows inserted."""
    stmt = target.insert().from_select(list(columns), source)
    began = time.monotonic()
    count = rows_written(conn, stmt)
    log.debug("%s: INSERT ... SELECT wrote %d row(s) in %.2fs", target.fullname, count, time.monotonic() - began)
    return count


def upsert_select(
    conn: Connection,
    target: Table,
    columns: Sequence[str],
    source: Select[Any],
    key: Sequence[str],
    update: Sequence[str] | None = None,
) -> int:
    """INSERT the rows of `source` (columns in order) into `target`, updating rows whose `key` exists."""
    began = time.monotonic()
    count = _upsert_select(conn, target, columns, source, key, update)
    # MariaDB counts an updated row twice, PostgreSQL and SQLite once: the driver's count, as it is.
    log.debug("%s: upsert (%s) touched %d row(s) in %.2fs", target.fullname, conn.dialect.name, count,
              time.monotonic() - began)
    return count


def _upsert_select(
    conn: Connection,
    target: Table,
    columns: Sequence[str],
    source: Select[Any],
    key: Sequence[str],
    update: Sequence[str] | None,
) -> int:
    update = [c for c in (update if update is not None else columns) if c not in key]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg_stmt = pg_insert(target).from_select(list(columns), source)
        pg_stmt = (
            pg_stmt.on_conflict_do_update(index_elements=list(key), set_={c: pg_stmt.excluded[c] for c in update})
            if update
            else pg_stmt.on_conflict_do_nothing(index_elements=list(key))
        )
        return rows_written(conn, pg_stmt)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite_stmt = sqlite_insert(target).from_select(list(columns), source)
        lite_stmt = (
            lite_stmt.on_conflict_do_update(index_elements=list(key), set_={c: lite_stmt.excluded[c] for c in update})
            if update
            else lite_stmt.on_conflict_do_nothing(index_elements=list(key))
        )
        return rows_written(conn, lite_stmt)
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as my_insert

        my_stmt = my_insert(target).from_select(list(columns), source)
        refs = {c: my_stmt.inserted[c] for c in (update or key[:1])}
        return rows_written(conn, my_stmt.on_duplicate_key_update(refs))
    if dialect == "mssql":
        return _merge_mssql(conn, target, columns, source, key, update)
    raise NotImplementedError(f"upsert is not implemented for {dialect}")


def rows_written(conn: Connection, stmt: Executable) -> int:
    """Execute a statement that writes rows; returns the rows it wrote.

    Without `preserve_rowcount` SQLAlchemy drops psycopg's count of an INSERT ... SELECT (-1).
    """
    return max(conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount, 0)


def _merge_mssql(
    conn: Connection,
    target: Table,
    columns: Sequence[str],
    source: Select[Any],
    key: Sequence[str],
    update: Sequence[str],
) -> int:
    q = conn.dialect.identifier_preparer.quote
    src_sql = str(source.compile(conn, compile_kwargs={"literal_binds": True}))
    on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in key)
    sets = ", ".join(f"t.{q(c)} = s.{q(c)}" for c in update)
    cols = ", ".join(q(c) for c in columns)
    vals = ", ".join(f"s.{q(c)}" for c in columns)
    name = conn.dialect.identifier_preparer.format_table(target)
    # Every identifier is quoted by the dialect's preparer; values come from the compiled SELECT.
    sql = f"MERGE {name} AS t USING ({src_sql}) AS s ON {on} "
    if sets:
        sql += f"WHEN MATCHED THEN UPDATE SET {sets} "
    sql += f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals});"  # noqa: S608 (quoted identifiers only)
    return rows_written(conn, text(sql))


def upsert_rows(
    conn: Connection,
    target: Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update: Sequence[str] | None = None,
) -> int:
    """Upsert small lists of row dicts (store bookkeeping), portable across dialects."""
    count = 0
    for row in rows:
        where: ColumnElement[bool] = target.c[key[0]] == row[key[0]]
        for k in key[1:]:
            where = where & (target.c[k] == row[k])
        values = {c: v for c, v in row.items() if c not in key and (update is None or c in update)}
        exists = conn.execute(select(target.c[key[0]]).where(where).limit(1)).first()
        if exists is None:
            conn.execute(target.insert().values(**row))
        elif values:
            conn.execute(target.update().where(where).values(**values))
        count += 1
    return count
