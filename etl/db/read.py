"""Bulk reads of a SELECT into a frame, one implementation per driver.

PostgreSQL (psycopg): `COPY (SELECT …) TO STDOUT` as CSV, parsed by pyarrow in C++,
instead of one Python tuple per row and one Python object per value. Other dialects:
a server-side cursor, a chunk of tuples at a time. Both give the same values; the
column dtypes may differ, and `etl.mapping.types.coerce` settles them for fields.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Boolean, Date, DateTime, Engine, Float, Integer, Numeric, Select

READ_CHUNK = 50_000


def read_frame(engine: Engine, stmt: Select[Any], columns: Sequence[str]) -> pd.DataFrame:
    """The rows of `stmt` as a frame with `columns` (one name per selected column, in order)."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return _copy_out(engine, stmt, list(columns))
    return _fetch(engine, stmt, list(columns))


def records_frame(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
    """`pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)`, except that a column of integers and
    NULLs holding one of 2^53 or more stays integer (nullable Int64): pandas makes such a column float64, which
    changes the last digits of those integers (a 19-digit id)."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=False)
    for i, dtype in enumerate(frame.dtypes):
        if dtype.kind == "f" and frame.iloc[:, i].abs().max() >= 2.0**53:
            try:
                values = pa.array([row[i] for row in rows], from_pandas=True)
            except (pa.ArrowException, OverflowError, TypeError, ValueError):  # e.g. an integer beyond int64
                continue
            if pa.types.is_integer(values.type):
                frame.isetitem(i, values.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    return frame


def _fetch(engine: Engine, stmt: Select[Any], names: list[str]) -> pd.DataFrame:
    """Through a server-side cursor: only one chunk of rows exists as Python tuples at any moment."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=READ_CHUNK).execute(stmt)
        parts = [records_frame(list(map(tuple, rows)), names) for rows in result.partitions(READ_CHUNK)]
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame.from_records([], columns=names)


def _copy_out(engine: Engine, stmt: Select[Any], names: list[str]) -> pd.DataFrame:
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv)"
    buffer = io.BytesIO()
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        with dbapi.cursor() as cur, cur.copy(sql, dict(compiled.params)) as copy:
            for block in copy:
                buffer.write(block)
    if not buffer.getbuffer().nbytes:
        return pd.DataFrame.from_records([], columns=names)
    types = [_arrow_type(col.type) for col in stmt.selected_columns]
    table = pa_csv.read_csv(
        pa.py_buffer(buffer.getbuffer()),
        read_options=pa_csv.ReadOptions(column_names=[f"c{i}" for i in range(len(names))], use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={f"c{i}": t for i, t in enumerate(types)},
            null_values=[""],  # not pyarrow's default list: 'NA' and 'null' are text here
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # NULL is unquoted and empty; '' comes as ""
            true_values=["t"],
            false_values=["f"],
        ),
    )
    del buffer
    return table.rename_columns(names).to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get, split_blocks=True, self_destruct=True
    )


def _arrow_type(sql_type: Any) -> pa.DataType:
    """How to parse PostgreSQL's CSV text of a column of `sql_type`; text where in doubt."""
    if isinstance(sql_type, Boolean):
        return pa.bool_()
    if isinstance(sql_type, Integer):
        return pa.int64()
    if isinstance(sql_type, Float | Numeric):
        return pa.float64()
    if (isinstance(sql_type, DateTime) and not sql_type.timezone) or isinstance(sql_type, Date):
        return pa.timestamp("us")
    return pa.string()
