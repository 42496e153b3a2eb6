"""`read_frame` on PostgreSQL (COPY TO STDOUT parsed by pyarrow) reads what a cursor fetch reads."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    cast,
    create_engine,
    select,
)

from etl.db.read import _fetch, read_frame
from etl.mapping.model import CanonicalField
from etl.mapping.types import coerce

pytestmark = pytest.mark.postgres

TEXTS = ["a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "tab\there", "back\\slash", "\\N", "中文　全角", " lead ",
         "", None, "NA", "NULL", "null", "nan", "t"]
N = len(TEXTS)

FIELDS = {
    "s": CanonicalField(type="string"),
    "i": CanonicalField(type="integer"),
    "n": CanonicalField(type="decimal", scale=4),
    "b": CanonicalField(type="boolean"),
    "t": CanonicalField(type="datetime"),
    "d": CanonicalField(type="date"),
}


def _rows() -> list[dict[str, object]]:
    return [
        {
            "k": f"k{j:02d}",
            "s": text,
            "i": None if j == 1 else j * 1000,
            "h": [2**62 + 1, -(2**63), 2**53 + 1][j % 3],
            "n": None if j == 2 else Decimal("12345678901234.5678") / (j + 1),
            "b": None if j == 3 else j % 2 == 0,
            "t": None if j == 4 else dt.datetime(2026, 1, 2, 3, 4, 5, 123456) + dt.timedelta(days=j),
            "d": None if j == 5 else [dt.date(2000, 2, 29), dt.date(9999, 12, 31)][j % 2],
            "x": f"100% {j}",
        }
        for j, text in enumerate(TEXTS)
    ]


@pytest.fixture
def table(pg_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(pg_url)
    table = Table(
        "read_check",
        MetaData(),
        Column("k", String(10), primary_key=True),
        Column("s", Text),
        Column("i", Integer),
        Column("h", BigInteger),
        Column("n", Numeric(24, 4)),
        Column("b", Boolean),
        Column("t", DateTime),
        Column("d", Date),
        Column("x", String(20)),
    )
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), _rows())
    yield engine, table
    engine.dispose()


def _both(engine, stmt, names):  # type: ignore[no-untyped-def]
    return read_frame(engine, stmt, names), _fetch(engine, stmt, names)


def test_copy_reads_what_a_fetch_reads(table) -> None:  # type: ignore[no-untyped-def]
    engine, t = table
    names = ["k", "s", "i", "h", "n", "b", "t", "d", "x"]
    copied, fetched = _both(engine, select(*t.c).order_by(t.c.k), names)
    assert len(copied) == N
    assert copied["s"].tolist() == fetched["s"].tolist()
    assert copied["s"].isna().tolist() == [v is None for v in TEXTS]
    assert copied.loc[9, "s"] == ""  # '' stays text, NULL stays null, 'NA'/'NULL' stay text
    assert copied["h"].tolist() == fetched["h"].tolist()  # 64-bit hashes exact, not through float64
    assert copied["x"].tolist() == fetched["x"].tolist()
    fields = list(FIELDS)
    pd.testing.assert_frame_equal(coerce(copied, FIELDS)[fields], coerce(fetched, FIELDS)[fields], check_dtype=True)


def test_engine_casts_and_in_lists_and_percent_signs(table) -> None:  # type: ignore[no-untyped-def]
    engine, t = table
    stmt = (
        select(t.c.k, cast(t.c.n, Float).label("n"), cast(t.c.d, DateTime).label("d"), t.c.b)
        .where(t.c.k.in_(["k00", "k01", "k02", "k03", "zz"]), t.c.x.like("100%%"), t.c.s.is_not(None))
        .order_by(t.c.k)
    )
    copied, fetched = _both(engine, stmt, ["k", "n", "d", "b"])
    assert copied["k"].tolist() == ["k00", "k01", "k02", "k03"]
    assert copied["n"].dtype == "float64"
    pd.testing.assert_frame_equal(coerce(copied, FIELDS), coerce(fetched, FIELDS), check_dtype=True)
    assert copied["b"].tolist()[:3] == [True, False, True]


def test_no_rows_gives_the_columns(table) -> None:  # type: ignore[no-untyped-def]
    engine, t = table
    copied = read_frame(engine, select(t.c.k, t.c.s).where(t.c.k == "none"), ["k", "s"])
    assert copied.empty and list(copied.columns) == ["k", "s"]


def test_a_result_of_many_blocks_and_multiline_values(pg_url: str) -> None:
    engine = create_engine(pg_url)
    t = Table("read_many", MetaData(), Column("k", Integer, primary_key=True), Column("s", Text))
    t.create(engine)
    rows = [{"k": j, "s": None if j % 97 == 0 else f"行{j}\n,\"q\"{'x' * (j % 300)}"} for j in range(40_000)]
    with engine.begin() as conn:
        conn.execute(t.insert(), rows)
    copied, fetched = _both(engine, select(t.c.k, t.c.s).order_by(t.c.k), ["k", "s"])
    assert len(copied) == 40_000  # several MB: many COPY blocks and pyarrow blocks, cut inside quoted values
    assert copied["s"].tolist() == fetched["s"].tolist()
    assert copied["k"].tolist() == list(range(40_000))
    engine.dispose()
