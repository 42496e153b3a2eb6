"""The cross-reference's partition of an entity (PostgreSQL store), and a first load's links built beside the merge.

The first load of an entity writes its links into a table of their own without indexes,
builds the key and index with one sort each and attaches the table as the entity's
partition, in the store transaction that commits after the publish (`etl.engine.publish`).
When the store is the target's database and the mirror holds no earlier run's rows, a
first load's links are the run's accepted staged rows (`ok`), so that table can be filled,
indexed and vacuumed beside the merge instead (`build`, from the staged rows the merge may
accept: `ok`, `duplicate`, `held`), under the name `<partition>_next`. The publish's store
transaction then removes the links of rows the merge set aside, renames the table and
attaches it (`adopt`). A table left by a crash or built for another run is dropped instead
(and by the next run's `prepare`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, delete, literal, select, text, true

from etl import faults
from etl.db.write import background_session, insert_select
from etl.engine.context import SyncContext
from etl.engine.tables import SET_ASIDE, finish_prebuilt, prebuilt_rows
from etl.store import schema as store_schema

XREF_COLUMNS = ["entity", "source", "src_id", "golden_key", "first_run_id", "last_run_id", "active", "updated_at"]
#: `_status` of the staged rows whose links a first load's prebuilt partition takes (see `adopt`).
BUILT_STATUSES = ("ok", *SET_ASIDE)


def store_is_target(ctx: SyncContext, entity: str) -> bool:
    """Whether the store is the target's PostgreSQL database (the same URL), read through psycopg."""
    store, target = ctx.store.engine, ctx.target_engine(ctx.mapping(entity))
    return (
        store.dialect.name == "postgresql"
        and store.dialect.driver == "psycopg"
        and target.dialect.name == "postgresql"
        and target.url == store.url
    )


def can_build(ctx: SyncContext, entity: str) -> bool:
    """Whether `build` may fill the entity's links beside the merge: the store is the target's database,
    its cross-reference is partitioned and holds no link of the entity, and the mirror is empty."""
    if ctx.dry_run or not store_is_target(ctx, entity):
        return False
    mirror = ctx.tables(ctx.mapping(entity)).mirror
    with ctx.store.engine.connect() as conn:
        if store_schema.xref_kind(conn) != "p" or has_partition(conn, entity) or has_links(conn, entity):
            return False
        return conn.execute(select(literal(1)).select_from(mirror).limit(1)).first() is None


def build(ctx: SyncContext, entity: str) -> int | None:
    """Fill, index and vacuum `<partition>_next` with the links of the run's staged rows; returns its rows."""
    from etl.store.repo import now

    stage = ctx.tables(ctx.mapping(entity)).stage
    engine = ctx.store.engine
    final = partition_name(entity)
    with engine.begin() as conn:
        background_session(conn)
        discard(conn, entity)
        table = new_partition(conn, entity, name=f"{final}_next")
        if table is None:
            return None
        run = literal(ctx.run_id, String)
        rows = select(
            literal(entity, String), stage.c._source, stage.c._src_id, stage.c._key, run, run, true(),
            literal(now(), DateTime),
        ).where(stage.c._run == ctx.run_id, stage.c._status.in_(BUILT_STATUSES))
        count = insert_select(conn, table, XREF_COLUMNS, rows)
        index(conn, table, final)
    finish_prebuilt(engine, table, ctx.run_id, count)
    faults.point("xref.next_built")
    return count


def adopt(conn: Any, ctx: SyncContext, entity: str) -> Table | None:
    """In the store transaction: make the links built beside the merge the entity's partition (not yet
    attached); returns it, with `info["rows"]`, or None (the table, if any, is dropped).

    The caller has found no link of the entity and the mirror holding no earlier run's rows.
    """
    final = partition_name(entity)
    prep = conn.dialect.identifier_preparer
    table = _xref_table(f"{final}_next")
    built = prebuilt_rows(conn, table, ctx.run_id)
    if built is None or store_schema.xref_kind(conn) != "p" or has_partition(conn, entity):
        discard(conn, entity)
        return None
    stage = ctx.tables(ctx.mapping(entity)).stage
    removed = conn.execute(
        delete(table)
        .where(
            stage.c._run == ctx.run_id,
            stage.c._status.in_(SET_ASIDE),
            table.c.source == stage.c._source,
            table.c.src_id == stage.c._src_id,
        )
        .execution_options(preserve_rowcount=True)
    ).rowcount
    conn.execute(text(f"ALTER TABLE {prep.quote(table.name)} RENAME TO {prep.quote(final)}"))
    conn.execute(text(f"ALTER TABLE {prep.quote(final)} RENAME CONSTRAINT {prep.quote(final + '_next_entity_check')} "
                      f"TO {prep.quote(final + '_entity_check')}"))
    conn.execute(text(f"COMMENT ON TABLE {prep.quote(final)} IS NULL"))
    partition = _xref_table(final)
    partition.info["rows"] = built - int(removed or 0)
    return partition


def discard(conn: Any, entity: str) -> None:
    """Drop the links of `entity` built beside a merge, if there are any (a PostgreSQL store)."""
    if conn.dialect.name == "postgresql":
        name = conn.dialect.identifier_preparer.quote(partition_name(entity) + "_next")
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def partition_name(entity: str) -> str:
    """The name of `entity`'s cross-reference partition (PostgreSQL)."""
    return f"erpoa_xref_{hashlib.sha1(entity.encode()).hexdigest()[:12]}"


def has_partition(conn: Any, entity: str) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:t)"), {"t": partition_name(entity)}).scalar())


def has_links(conn: Any, entity: str) -> bool:
    """Whether the cross-reference holds a row of `entity`.

    Where the entity has a partition of its own, all its rows are there (the default partition
    cannot hold any: the partition could not have been attached), and the partition is read
    without a condition. With `entity = ...` instead, a partition never analysed (loaded and
    attached in one transaction) let the planner scan all of its `(entity, golden_key)` index
    for the first row: 84 ms at 1.6M links, in every incremental run.
    """
    xref = store_schema.xref
    if conn.dialect.name == "postgresql" and store_schema.xref_kind(conn) == "p" and has_partition(conn, entity):
        name = conn.dialect.identifier_preparer.quote(partition_name(entity))
        return conn.execute(text(f"SELECT 1 FROM {name} LIMIT 1")).first() is not None  # noqa: S608
    return conn.execute(select(xref.c.entity).where(xref.c.entity == entity).limit(1)).first() is not None


def new_partition(conn: Any, entity: str, name: str | None = None) -> Table | None:
    """A table to become the cross-reference partition of `entity`, created without indexes; None where
    the store's cross-reference is not partitioned (a store of schema version 2 not yet migrated)
    or the entity has a partition already (it had links once). `name` (default: the partition's)
    is that of a table built beside the merge (`build`)."""
    xref = store_schema.xref
    name = name or partition_name(entity)
    if store_schema.xref_kind(conn) != "p" or has_partition(conn, entity):
        return None
    prep = conn.dialect.identifier_preparer
    conn.execute(
        text(f"CREATE TABLE {prep.quote(name)} (LIKE {prep.quote(xref.name)} INCLUDING DEFAULTS, "
             f"CHECK (entity = {sql_text(conn, entity)}))")
    )
    return _xref_table(name)


def _xref_table(name: str) -> Table:
    """A table of the cross-reference's columns named `name` (a partition, or one being built), for statements."""
    return Table(name, MetaData(), *(Column(c.name, c.type) for c in store_schema.xref.columns))


def attach(conn: Any, partition: Table, entity: str, *, indexed: bool = False) -> None:
    """Index the loaded partition the way the cross-reference is indexed (unless `indexed`), then attach it.

    One sort per index over the entity's links instead of an insertion per link; the CHECK
    constraint spares the attach its scan of the rows.
    """
    prep = conn.dialect.identifier_preparer
    if not indexed:
        index(conn, partition, partition.name)
    conn.execute(
        text(f"ALTER TABLE {prep.quote(store_schema.xref.name)} ATTACH PARTITION {prep.quote(partition.name)} "
             f"FOR VALUES IN ({sql_text(conn, entity)})")
    )


def index(conn: Any, table: Table, partition: str) -> None:
    """Give `table` the cross-reference's key and indexes, named as PostgreSQL names them on `partition`."""
    prep = conn.dialect.identifier_preparer
    xref = store_schema.xref

    def columns(cols: Any) -> str:
        return ", ".join(prep.quote(c.name) for c in cols)

    conn.execute(text(f"ALTER TABLE {prep.quote(table.name)} ADD CONSTRAINT {prep.quote(partition + '_pkey')} "
                      f"PRIMARY KEY ({columns(xref.primary_key.columns)})"))
    for idx in xref.indexes:
        name = "_".join([partition, *(c.name for c in idx.columns), "idx"])
        conn.execute(text(f"CREATE INDEX {prep.quote(name)} ON {prep.quote(table.name)} ({columns(idx.columns)})"))


def sql_text(conn: Any, value: str) -> str:
    """`value` as a string literal of the connection's dialect, for DDL, which takes no bind parameters."""
    return str(literal(value, String).compile(conn, compile_kwargs={"literal_binds": True}))


