"""Column DDL for an existing table, one spelling per dialect: what the engine applies to a table whose
mapping changed (`etl.engine.tables.EntityTables.compare`), and what it names for an administrator."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, Date, DateTime, Engine, Float, Integer, Numeric, String, inspect, text
from sqlalchemy.engine import Dialect, Inspector

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ColumnKind:
    """What a column type means to the mapping: a field type (`string`, `integer`, …) with its length or scale.

    `length` None is unbounded text; the family of a type the mapping never creates is its SQL name.
    """

    family: str
    length: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.family == "string":
            return f"string of length {self.length}" if self.length is not None else "unbounded text"
        if self.family == "decimal":
            return f"decimal of scale {self.scale or 0}"
        return self.family


def column_kind(type_: Any, dialect: str) -> ColumnKind:
    """The `ColumnKind` of a column type, as created by the engine or reflected from `dialect`'s catalogue.

    MariaDB/MySQL keep a boolean as TINYINT(1); integer widths are one family (tables of older versions).
    """
    if dialect in ("mysql", "mariadb") and type(type_).__name__ == "TINYINT":
        return ColumnKind("boolean")
    if isinstance(type_, Boolean):
        return ColumnKind("boolean")
    if isinstance(type_, Integer):
        return ColumnKind("integer")
    if isinstance(type_, Float):
        return ColumnKind("float")
    if isinstance(type_, Numeric):
        return ColumnKind("decimal", scale=type_.scale or 0)
    if isinstance(type_, DateTime):
        return ColumnKind("datetime")
    if isinstance(type_, Date):
        return ColumnKind("date")
    if isinstance(type_, String):
        return ColumnKind("string", length=type_.length)
    return ColumnKind(str(type_).lower())


@contextmanager
def catalogue(engine: Engine) -> Iterator[Inspector]:
    """An inspector of `engine`'s database on one connection.

    A read-only MariaDB/MySQL session quotes identifiers the ANSI way (`etl.db.connect`), which the
    dialect, set up before, does not know: it would misread `SHOW CREATE TABLE`. Such a session
    reflects in the server's own mode, restored afterwards.
    """
    with engine.connect() as conn:
        mode = None
        if engine.dialect.name in ("mysql", "mariadb") and not getattr(engine.dialect, "_server_ansiquotes", False):
            mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
            if "ANSI_QUOTES" in str(mode).split(","):
                conn.exec_driver_sql("SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'ANSI_QUOTES', '')")
            else:
                mode = None
        try:
            yield inspect(conn)
        finally:
            if mode is not None:
                conn.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',ANSI_QUOTES')")


def type_sql(type_: Any, dialect: Dialect) -> str:
    """`type_` as `dialect` spells it in DDL."""
    return str(type_.compile(dialect=dialect))


def add_column(dialect: Dialect, table: str, column: str, type_: Any) -> str:
    """ALTER TABLE adding a nullable column (`table` formatted, `column` unquoted)."""
    return f"ALTER TABLE {table} ADD COLUMN {dialect.identifier_preparer.quote(column)} {type_sql(type_, dialect)}"


def widen_string(dialect: Dialect, table: str, column: str, reflected: Any, length: int, nullable: bool) -> str | None:
    """ALTER TABLE giving a text column a greater length, keeping its collation; None where none is needed (SQLite).

    On PostgreSQL a longer varchar is a change of the catalogue only (no rewrite of the rows).
    """
    wider = copy.copy(reflected)
    wider.length = length
    return _retype(dialect, table, column, type_sql(wider, dialect), nullable)


def retype(
    dialect: Dialect, table: str, column: str, type_: Any, nullable: bool, *, was_boolean: bool = False,
    converts: bool = True,
) -> str | None:
    """The ALTER TABLE an administrator runs to change a column's type or length (never run by the engine: it may
    fail or lose values); None where the dialect cannot (SQLite). `converts`: the values change type."""
    return _retype(dialect, table, column, type_sql(type_, dialect), nullable, using=converts, was_boolean=was_boolean)


def _retype(
    dialect: Dialect, table: str, column: str, sql_type: str, nullable: bool, *, using: bool = False,
    was_boolean: bool = False,
) -> str | None:
    name = dialect.identifier_preparer.quote(column)
    if dialect.name == "postgresql":
        # PostgreSQL casts a boolean to integer only, not to bigint: through integer, the assignment widens it.
        cast = "integer" if was_boolean else sql_type
        tail = f" USING {name}::{cast}" if using else ""
        return f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {sql_type}{tail}"
    if dialect.name in ("mysql", "mariadb"):
        return f"ALTER TABLE {table} MODIFY COLUMN {name} {sql_type} {'NULL' if nullable else 'NOT NULL'}"
    if dialect.name == "mssql":
        return f"ALTER TABLE {table} ALTER COLUMN {name} {sql_type} {'NULL' if nullable else 'NOT NULL'}"
    return None


def drop_not_null(dialect: Dialect, table: str, column: str, reflected: Any) -> str | None:
    """ALTER TABLE letting a column take NULL; None where the dialect cannot (SQLite)."""
    name = dialect.identifier_preparer.quote(column)
    if dialect.name == "postgresql":
        return f"ALTER TABLE {table} ALTER COLUMN {name} DROP NOT NULL"
    return _retype(dialect, table, column, type_sql(reflected, dialect), True)


_VIEW_KINDS = {"v": "view", "m": "materialized view"}


def dependent_views(conn: Connection, table: str, column: str) -> list[str]:
    """The views (and materialized views) whose definition uses `column` of `table` (formatted), as "view name"
    or "materialized view name"; PostgreSQL only (elsewhere an empty list).

    PostgreSQL refuses ALTER COLUMN TYPE of such a column, however safe the change; MariaDB/MySQL views
    follow the column. A view's rule depends on each column it reads (pg_depend of its pg_rewrite entry).
    """
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        text(
            "SELECT DISTINCT v.oid::regclass::text, v.relkind FROM pg_depend d "
            "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
            "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND d.refobjid = to_regclass(:table) AND a.attname = :column AND v.oid <> d.refobjid ORDER BY 1"
        ),
        {"table": table, "column": column},
    )
    return [f"{_VIEW_KINDS.get(kind, 'view')} {name}" for name, kind in rows]


def stored_datetimes(values: pd.Series, dialect: Dialect) -> pd.Series:
    """`values` (datetime64) as a target's `DateTime()` column of `dialect` stores them.

    MariaDB's `DATETIME` drops the fraction of a second, MySQL's rounds it; PostgreSQL rounds to microseconds
    and SQLite (ISO text of a Python datetime) truncates to them. SQL Server is left as it is (not modelled).
    """
    if dialect.name == "mysql":
        return values.dt.floor("s") if getattr(dialect, "is_mariadb", False) else values.dt.round("s")
    if dialect.name == "postgresql":
        return values.dt.round("us")
    if dialect.name == "sqlite":
        return values.dt.floor("us")
    return values
