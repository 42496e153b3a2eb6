"""mysqlclient's temporal converters, read through `fromisoformat` where they can be: the same values."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("MySQLdb", reason="mysqlclient is an optional extra (`make setup` builds it)")

from MySQLdb.times import Date_or_None, DateTime_or_None

from etl.db.mysqlclient import converters, date_or_none, datetime_or_none

EDGES = [
    "2026-01-10 20:42:26", "2026-01-10 20:42:26.123456", "2026-01-10 20:42:26.5", "2026-01-10 20:42:26.123",
    "0000-00-00 00:00:00", "0000-00-00", "2026-02-29 00:00:00", "2024-02-29 23:59:59", "2026-01-10 24:00:00",
    "9999-12-31 23:59:59.999999", "0001-01-01 00:00:00", "2026-01-10", "2026-13-01", "", "2026-01-10 20:42",
    "2026-01-10T20:42:26", "2026-01-10 20:42:26+08:00", "2026-01-10 20:42:26.1234567", "２０２６-01-10",
]


@pytest.mark.unit
@pytest.mark.parametrize("text", EDGES)
def test_edge_values_convert_as_mysqlclient_does(text: str) -> None:
    assert datetime_or_none(text) == DateTime_or_None(text)
    assert type(datetime_or_none(text)) is type(DateTime_or_None(text))
    assert date_or_none(text) == Date_or_None(text)
    assert type(date_or_none(text)) is type(Date_or_None(text))


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.datetimes(), st.integers(min_value=0, max_value=6))
def test_server_formatted_values_convert_as_mysqlclient_does(value: datetime, digits: int) -> None:
    """What MariaDB sends for DATETIME(n) and DATE values."""
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if digits:
        text += "." + f"{value.microsecond:06d}"[:digits]
    assert datetime_or_none(text) == DateTime_or_None(text)
    assert date_or_none(text[:10]) == Date_or_None(text[:10]) == value.date()


@pytest.mark.unit
def test_the_conversions_replace_only_the_temporal_types() -> None:
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.converters import conversions

    conv = converters()
    changed = {k for k in conv if conv[k] is not conversions.get(k)}
    assert changed == {FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.DATE}


@pytest.mark.mariadb
def test_engines_of_mysqlclient_connections_read_temporal_values_with_them(mariadb_c_url: str) -> None:
    from sqlalchemy import text

    from etl.config.project import ConnectionConfig
    from etl.db.connect import engine_for

    engine = engine_for(ConnectionConfig(url=mariadb_c_url), read_only=True)
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        row = conn.execute(
            text("SELECT CAST('2026-01-10 20:42:26.5' AS DATETIME(1)), CAST('2026-01-10' AS DATE), "
                 "CAST('2026-01-10 20:42:26' AS DATETIME)")
        ).one()
    from MySQLdb.constants import FIELD_TYPE

    assert dbapi.converter[FIELD_TYPE.DATETIME] is datetime_or_none
    assert tuple(row) == (
        datetime(2026, 1, 10, 20, 42, 26, 500000), datetime(2026, 1, 10).date(), datetime(2026, 1, 10, 20, 42, 26)
    )
