"""Chunked extraction: server-side cursors through SQLAlchemy, or pyodbc for ODBC sources.

Memory is bounded by the chunk size, not the table size. Identifiers from the
mapping are quoted by SQLAlchemy's compiler, never spliced into SQL text; only a
steward's `filter:` / `query:` is SQL by design, run on a read-only connection.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Select, String, and_, cast, column, or_, select, table, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.cursor import BufferedRowCursorFetchStrategy, CursorFetchStrategy

from etl.config.project import ConnectionConfig
from etl.db.connect import describe, dialect_of, engine_for, log_label
from etl.db.read import records_frame
from etl.errors import SchemaDriftError, classify_db_error
from etl.mapping.model import SourceSpec
from etl.yamlio import SourceMap, dotted

log = logging.getLogger("erpoa.extract")
#: the longest SQL text a DEBUG line shows (a read of many ids lists them all)
_LOGGED_SQL = 2_000


@dataclass(frozen=True)
class ExtractRequest:
    """What to read from one source: columns, optional cursor lower bound."""

    source_name: str
    spec: SourceSpec
    columns: Sequence[str]
    since: Any | None = None
    chunk_size: int = 50_000
    where_ids: Sequence[str] | None = None


def _from_clause(spec: SourceSpec, columns: Sequence[str]) -> Any:
    if spec.table is not None:
        name, schema = spec.table, spec.schema_
        if "." in name and schema is None:
            schema, name = name.split(".", 1)
        return table(name, *[column(c) for c in columns], schema=schema)
    assert spec.query is not None
    return text(spec.query).columns(*[column(c) for c in columns]).subquery("src")


def build_select(
    spec: SourceSpec, columns: Sequence[str], since: Any | None = None, ids: Sequence[str] | None = None
) -> Select[Any]:
    """SELECT the given columns from the source, filtered, bounded by the cursor, optionally limited to ids."""
    src = _from_clause(spec, columns)
    stmt = select(*[src.c[c] for c in columns])
    if spec.filter:
        stmt = stmt.where(text(f"({spec.filter})"))
    if since is not None and spec.cursor:
        # A NULL cursor (a record some ERPs never stamp until it is first edited) compares with no watermark:
        # such rows are read by every run, or a row added without one would never be read after the first run.
        cursor = src.c[_named(columns, spec.cursor, spec)]
        stmt = stmt.where(or_(cursor >= since, cursor.is_(None)))
    if ids is not None:
        id_cols = [src.c[c] for c in columns[: len(spec.id)]]
        conds = [
            and_(*[_id_equals(col, part) for col, part in zip(id_cols, parts, strict=False)])
            for value in ids
            for parts in id_splits(value, len(id_cols))
        ]
        stmt = stmt.where(or_(*conds) if conds else text("1=0"))
    return stmt


def id_splits(value: str, count: int) -> list[tuple[str, ...]]:
    """The ways a source id of `count` columns, written `a|b|...`, can be split into its columns' values.

    A `|` inside a value makes the split ambiguous (`A|B|1` of two columns is `A|B` + `1` or `A` + `B|1`): every
    split is asked for, and the rows read are matched with the id as written (an extra record read is read again,
    which changes nothing). At most 64 splits: beyond, the first that puts the extra `|` in the last value.
    """
    if count == 1:
        return [(value,)]
    pipes = [i for i, ch in enumerate(value) if ch == "|"]
    splits = []
    for cut in itertools.combinations(pipes, count - 1):
        bounds = [-1, *cut, len(value)]
        splits.append(tuple(value[bounds[i] + 1 : bounds[i + 1]] for i in range(count)))
        if len(splits) == 64:
            break
    return splits or [tuple(value.split("|", count - 1))]


def _id_equals(col: Any, part: str) -> Any:
    """`col`, as text, equals `part`. A blank-padded CHAR(n) value read back padded (PostgreSQL) is also found by its
    text without the padding: the server's text of a CHAR value drops it."""
    text_col = cast(col, String)
    stripped = part.rstrip(" ")
    return text_col == part if stripped == part else or_(text_col == part, text_col == stripped)


def _named(columns: Sequence[str], name: str, spec: SourceSpec) -> str:
    """The one of `columns` (the source's own spelling, `check_columns`) that the mapping calls `name`."""
    if name in columns:
        return name
    same = [c for c in columns if c.lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    return columns[list(spec.columns).index(name)]


def probe_columns(conn: ConnectionConfig, spec: SourceSpec, source_name: str) -> list[str]:
    """The column names the source returns today (no rows read)."""
    if spec.table is not None:
        name, schema = spec.table, spec.schema_
        if "." in name and schema is None:
            schema, name = name.split(".", 1)
        stmt: Any = select(text("*")).select_from(table(name, schema=schema)).where(text("1=0"))
    else:
        stmt = select(text("*")).select_from(text(f"({spec.query}) src0")).where(text("1=0"))
    try:
        if conn.kind == "odbc":
            sql, params = compile_for(stmt, conn)
            with _odbc_connect(conn) as odbc:
                cur = odbc.cursor()
                cur.execute(sql, params)
                columns = [d[0] for d in cur.description]
        else:
            with engine_for(conn, read_only=True).connect() as c:
                columns = list(c.execute(stmt).keys())
        log.debug("%s %s of %s has columns %s", source_name, spec.table or "query", log_label(conn), ", ".join(columns))
        return columns
    except Exception as exc:
        raise classify_db_error(
            exc, what=f"reading the columns of {source_name} {spec.table or 'query'}", connection=describe(conn)
        ) from None


def check_columns(
    conn: ConnectionConfig, spec: SourceSpec, source_name: str, entity: str, *, smap: SourceMap | None = None
) -> dict[str, str]:
    """Stop before anything is written if a mapped column disappeared; returns mapping name -> actual name.

    With the mapping file's `smap`, the error says where each missing column is written, with the closest column
    the source has.
    """
    actual = probe_columns(conn, spec, source_name)
    by_lower = {c.lower(): c for c in actual}
    resolved: dict[str, str] = {}
    missing = []
    for col in spec.columns:
        if col in actual:
            resolved[col] = col
        elif col.lower() in by_lower:
            resolved[col] = by_lower[col.lower()]
        else:
            missing.append(col)
    if missing:
        raise SchemaDriftError(
            f"{entity}: source '{source_name}' ({spec.table or 'query'}) has no column(s) {', '.join(missing)}; "
            f"the mapping reads them. Columns there now: {', '.join(actual)}. "
            + (_written_at(missing, spec, source_name, actual, smap) if smap is not None else "")
            + "Fix the mapping (or the source) and rerun; nothing was written."
        )
    return resolved


def _written_at(missing: list[str], spec: SourceSpec, source_name: str, actual: list[str], smap: SourceMap) -> str:
    """`Written at file:line:col key.path (did you mean 'x'?); ...` for each missing column."""
    places = []
    for col in missing:
        locs: list[tuple[str | int, ...]] = [
            ("sources", source_name, "fields", name, "from") for name, f in spec.fields.items() if col in f.columns
        ]
        if col in spec.id:
            locs.append(("sources", source_name, "id"))
        if col == spec.cursor:
            locs.append(("sources", source_name, "cursor"))
        close = difflib.get_close_matches(col, actual, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        for loc in locs:
            line, column = smap.locate(loc)
            at = f"{smap.file}:{line}:{column}" if line is not None else smap.file
            places.append(f"'{col}' at {at} {dotted(loc)}{hint}")
    return f"Written in the mapping: {'; '.join(places)}. " if places else ""


def compile_for(stmt: Any, conn: ConnectionConfig) -> tuple[str, list[Any]]:
    """Compile a statement for an ODBC connection (qmark parameters)."""
    dialect = _dialect(dialect_of(conn))
    compiled = stmt.compile(dialect=dialect)
    names = compiled.positiontup or []
    return str(compiled), [compiled.params[n] for n in names]


def _dialect(name: str) -> Dialect:
    from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite

    module = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite, "mssql": mssql}[name]
    dialect: Dialect = module.dialect(paramstyle="qmark")
    return dialect


def _odbc_connect(conn: ConnectionConfig) -> Any:
    import pyodbc

    assert conn.odbc is not None
    log.debug("opening ODBC connection %s (read-only, %s dialect)", log_label(conn), conn.dialect)
    odbc = pyodbc.connect(conn.odbc.get_secret_value(), readonly=True, autocommit=True)
    if conn.dialect == "mysql":
        # The MariaDB and MySQL drivers hand pyodbc UTF-8 where it expects UTF-16 (SQL_WCHAR): with pyodbc's
        # defaults, text whose UTF-8 is longer than its UTF-16 loses its last characters (高芳怡 -> 高芳) and
        # Chinese parameters match nothing. The settings SQLAlchemy's mysql+pyodbc dialect makes.
        odbc.setdecoding(pyodbc.SQL_CHAR, encoding="utf-8")
        odbc.setdecoding(pyodbc.SQL_WCHAR, encoding="utf-8")
        odbc.setencoding(encoding="utf-8")
        odbc.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
    return odbc


def iter_chunks(conn: ConnectionConfig, request: ExtractRequest) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of at most `chunk_size` rows; memory does not grow with the table."""
    keys = list(request.columns)
    for rows in iter_rows(conn, request):
        yield records_frame(rows, keys)


def iter_rows(conn: ConnectionConfig, request: ExtractRequest) -> Iterator[list[tuple[Any, ...]]]:
    """The rows `iter_chunks` frames, as the driver's tuples, at most `chunk_size` at a time."""
    stmt = build_select(request.spec, request.columns, request.since, request.where_ids)
    what = f"extracting from {request.source_name}"
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s: reading %s in chunks of %d row(s)%s%s: %s", what, log_label(conn), request.chunk_size,
                  f", cursor {request.spec.cursor} >= {request.since}" if request.since is not None else "",
                  f", {len(request.where_ids)} id(s)" if request.where_ids is not None else "", _sql(stmt, conn))
    try:
        if conn.kind == "odbc":
            yield from _logged(_odbc_rows(conn, stmt, request), what)
            return
        engine = engine_for(conn, read_only=True)
        with engine.connect() as c:
            yield from _logged(stream_rows(c, stmt, request.chunk_size), what)
    except GeneratorExit:
        raise
    except Exception as exc:
        raise classify_db_error(exc, what=what, connection=describe(conn)) from None


def _logged(chunks: Iterator[list[tuple[Any, ...]]], what: str) -> Iterator[list[tuple[Any, ...]]]:
    """`chunks`, with a DEBUG line for each and one for the whole read."""
    started, count, total = time.monotonic(), 0, 0
    for rows in chunks:
        count, total = count + 1, total + len(rows)
        log.debug("%s: chunk %d: %d row(s), %d so far", what, count, len(rows), total)
        yield rows
    log.debug("%s: %d row(s) in %d chunk(s), %.2fs", what, total, count, time.monotonic() - started)


def _sql(stmt: Any, conn: ConnectionConfig) -> str:
    """The SQL text of `stmt` as the connection's dialect words it (parameters as placeholders), for DEBUG lines."""
    try:
        sql = compile_for(stmt, conn)[0] if conn.kind == "odbc" else str(
            stmt.compile(dialect=engine_for(conn, read_only=True).dialect)
        )
    except Exception as exc:  # a DEBUG line never fails a read: the read reports its own error
        return f"(not compiled: {type(exc).__name__})"
    sql = " ".join(sql.split())
    return sql if len(sql) <= _LOGGED_SQL else f"{sql[:_LOGGED_SQL]} ... ({len(sql)} characters)"


def stream_rows(conn: Connection, stmt: Any, chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `stmt` through a server-side cursor, `chunk_size` at a time, as the driver's tuples.

    Fetched from the DB-API cursor itself: building a SQLAlchemy `Row` per row (and a tuple of
    it again for pandas) costs more than PyMySQL's or mysqlclient's own parsing. Only for
    statements whose columns need no result processing (untyped source columns, text and
    integers): the values are then exactly what the `Row`s would hold.
    """
    result = conn.execution_options(stream_results=True, max_row_buffer=chunk_size).execute(stmt)
    try:
        strategy = result.cursor_strategy
        if type(strategy) is BufferedRowCursorFetchStrategy and isinstance(strategy._rowbuffer, deque):
            head = list(strategy._rowbuffer)  # the row SQLAlchemy fetched ahead when the cursor opened
            strategy._rowbuffer.clear()
        elif type(strategy) is CursorFetchStrategy:
            head = []
        else:  # a strategy this was not checked against: take SQLAlchemy's rows
            for part in result.partitions(chunk_size):
                yield list(map(tuple, part))
            return
        cursor = result.cursor
        while rows := head or cursor.fetchmany(chunk_size):
            head = []
            yield rows if type(rows) is list and type(rows[0]) is tuple else list(map(tuple, rows))
    finally:
        result.close()


def _odbc_rows(conn: ConnectionConfig, stmt: Any, request: ExtractRequest) -> Iterator[list[tuple[Any, ...]]]:
    sql, params = compile_for(stmt, conn)
    with _odbc_connect(conn) as odbc:
        cur = odbc.cursor()
        cur.arraysize = request.chunk_size
        cur.execute(sql, params)
        while True:
            rows = cur.fetchmany(request.chunk_size)
            if not rows:
                break
            yield [tuple(r) for r in rows]


def lower_bound(watermark: Any | None, overlap: timedelta, text: str | None = None) -> Any | None:
    """The cursor value to read from: the watermark minus the overlap window (for time cursors).

    `text`: the watermark as the source's text cursor column held it (timestamps kept as text): the bound is then
    text of the same form, compared as text on every database. Other text (`2026/01/09 10:00`) keeps its form too;
    text that holds no timestamp and numbers are the bound as they are (the overlap is a time window).
    """
    if watermark is None:
        return None
    if isinstance(watermark, datetime):
        if text is not None:
            return like_text(text, watermark - overlap)
        return watermark - overlap
    if isinstance(watermark, str):
        try:
            return datetime.fromisoformat(watermark) - overlap  # a date, or a version before text cursors were kept
        except ValueError:
            pass
        stamp = text_timestamp(watermark)
        return watermark if stamp is None else like_text(watermark, stamp - overlap)
    return watermark


#: A timestamp written as text with zero-padded fields: date (any one separator or none), then optionally the time.
_TEXT_TIME = re.compile(
    r"(?P<y>\d{4})(?P<ds>[-/.]?)(?P<m>\d{2})(?P=ds)(?P<d>\d{2})"
    r"(?:(?P<ts>[ T])(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,6})?)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?"
)


def text_timestamp(value: str) -> datetime | None:
    """The timestamp a text cursor value writes (`2026/01/09 10:00:00`, `2026-01-09T10:00`), None when it is not
    one; a zone suffix is kept as written (`like_text`), not applied."""
    match = _TEXT_TIME.fullmatch(value.strip())
    if match is None:
        return None
    g = match.groupdict()
    fraction = (g["f"] or ".")[1:].ljust(6, "0")
    try:
        return datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0), int(fraction)
        )
    except ValueError:
        return None


def like_text(sample: str, value: datetime) -> str:
    """`value` written in the form of the text cursor value `sample` (fields it leaves out are cut off, so the text
    sorts at or before `value`); `sample` itself when its form is not one `text_timestamp` reads."""
    match = _TEXT_TIME.fullmatch(sample.strip())
    if match is None:
        return sample
    g = match.groupdict()
    ds = g["ds"]
    out = f"{value.year:04d}{ds}{value.month:02d}{ds}{value.day:02d}"
    if g["H"] is not None:
        out += f"{g['ts']}{value.hour:02d}:{value.minute:02d}"
        if g["S"] is not None:
            out += f":{value.second:02d}"
            if g["f"]:
                out += f".{value.microsecond:06d}"[: len(g["f"])]
    return out + (g["zone"] or "")
