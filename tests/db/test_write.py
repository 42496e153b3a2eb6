"""`insert_frame` on PostgreSQL (COPY of CSV written by pyarrow) stores what psycopg's own row-by-row COPY stores."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    select,
)

from etl.db.write import copy_csv, insert_frame, records

pytestmark = pytest.mark.postgres

TEXTS = [
    "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "tab\there", "back\\slash", "\\N", "中文　全角", " lead ", "", None,
]


def _frame() -> pd.DataFrame:
    n = len(TEXTS)
    return pd.DataFrame({
        "s": pd.Series(TEXTS, dtype="str"),
        "i": pd.array([1, None, -3, 2**62, 0, 5, 6, 7, 8, 9, 10], dtype="Int64"),
        "f": [0.1, np.nan, 1e15, 123456.785, -0.0, 1 / 3, 5e-7, 2.5, 3.0, 12345678901234.56, -7.125],
        "b": pd.array([True, False, None, True, False, True, False, True, False, True, None], dtype="boolean"),
        "t": pd.to_datetime(
            ["2026-01-02 03:04:05.123456", None, "1999-12-31 23:59:59"] + ["2026-01-02 00:00:00"] * 8, format="ISO8601"
        ),
        "tz": pd.to_datetime(["2026-01-02 03:04:05"] * n).tz_localize("Asia/Shanghai"),
        "d": [dt.date(2026, 1, 2), None] + [dt.date(2000, 2, 29)] * (n - 2),
        "n": [Decimal("1.23"), None, Decimal("-0.0001")] + [Decimal("4.5")] * (n - 3),
    })


def _table(md: MetaData, name: str) -> Table:
    return Table(
        name,
        md,
        Column("s", String(40)),
        Column("i", BigInteger),
        Column("f", Numeric(20, 4)),
        Column("b", Boolean),
        Column("t", DateTime),
        Column("tz", DateTime),
        Column("d", Date),
        Column("n", Numeric(20, 4)),
    )


def test_copy_stores_what_the_row_by_row_copy_stored(pg_url: str) -> None:
    frame = _frame()
    engine = create_engine(pg_url)
    md = MetaData()
    copied, reference = _table(md, "copied"), _table(md, "reference")
    md.create_all(engine)
    columns = list(frame.columns)
    with engine.begin() as conn:
        assert insert_frame(conn, copied, frame) == len(frame)
        # The reference: the writer this replaced. Empty strings as None, then psycopg formats each
        # row's Python values (`Copy.write_row`).
        blanked = frame.assign(s=frame["s"].mask(frame["s"] == ""))
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f"COPY reference ({', '.join(columns)}) FROM STDIN") as copy:
            for row in records(blanked, columns, reference, "postgresql"):
                copy.write_row(row)
    with engine.connect() as conn:
        got = conn.execute(select(copied).order_by(copied.c.i.nulls_first(), copied.c.s)).all()
        want = conn.execute(select(reference).order_by(reference.c.i.nulls_first(), reference.c.s)).all()
    engine.dispose()
    assert got == want
    by_int = {r.i: r for r in got}
    assert by_int[1].s == "a,b" and by_int[1].tz == dt.datetime(2026, 1, 2, 3, 4, 5)  # wall time kept
    assert {r.s for r in got} >= {"two\nlines", "cr\r\nlf", "\\N", "中文　全角", " lead "}
    assert sum(r.s is None for r in got) == 2  # '' and None both load as NULL
    assert by_int[2**62].f == Decimal("123456.7850") and by_int[-3].n == Decimal("-0.0001")


def test_a_column_of_mixed_objects_is_written_as_text(pg_url: str) -> None:
    frame = pd.DataFrame({"s": pd.Series(["x", 1, None, 2.5, ""], dtype=object), "n": [1, 2, 3, 4, 5]})
    md = MetaData()
    table = Table("mixed", md, Column("s", String(10)), Column("n", BigInteger))
    engine = create_engine(pg_url)
    md.create_all(engine)
    with engine.begin() as conn:
        insert_frame(conn, table, frame)
    with engine.connect() as conn:
        assert conn.execute(select(table.c.s).order_by(table.c.n)).scalars().all() == ["x", "1", None, "2.5", None]
    engine.dispose()


def test_one_column_of_nulls_loads_as_nulls(pg_url: str) -> None:
    # A lone empty field must stay unquoted (a CSV writer that quotes it would load '' instead of NULL).
    assert bytes(copy_csv(pd.DataFrame({"s": ["", None, "a"]}), ["s"])) == b'\n\n"a"\n'
