"""Document numbers and ERP ids, allocated inside the document's ERP transaction under the target locks.

The locks are rows of `erpoa_flow_lock` (ERP database): one per target table
(`table:po_pomain`), shared by every flow that writes that table, plus the
flow's own row (the only one older versions take, so they still serialise with
this one). Updating them is the first statement of every document transaction:
a row lock on PostgreSQL and MariaDB (InnoDB), the database write lock on
SQLite. Flow runs writing the same table therefore allocate one after another,
and `max + 1` (ids) and "the number after today's highest" (numbers, see
`next_number`) read what the previous holder committed. Writers outside the flows (a buyer keying a PO in U8
at the same moment) are caught by the ERP's own primary key / unique
constraints: the transaction fails and is retried with fresh values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from etl.errors import DataError
from etl.flows.model import DocNoRule, FlowSpec

LOCK_TABLE = "erpoa_flow_lock"
_KEY_LENGTH = 60  # the `flow` column: lock keys live in it, so the table needs no migration


def lock_table(metadata: sa.MetaData, schema: str | None = None) -> sa.Table:
    """`erpoa_flow_lock`: one row per lock key (see `lock_keys`), updated first in every document transaction."""
    name = f"{schema}.{LOCK_TABLE}" if schema else LOCK_TABLE
    if name in metadata.tables:
        return metadata.tables[name]
    return sa.Table(
        LOCK_TABLE,
        metadata,
        sa.Column("flow", sa.String(60), primary_key=True),
        sa.Column("run_id", sa.String(40)),
        sa.Column("touched_at", sa.DateTime),
        schema=schema,
    )


def table_key(name: str) -> str:
    """The lock key of an ERP table: its bare name, lower-cased (`dbo.PO_Pomain` -> `table:po_pomain`).

    Over-serialising two tables that only differ in schema or case is harmless; missing one is not.
    """
    key = "table:" + name.rsplit(".", 1)[-1].lower()
    return key if len(key) <= _KEY_LENGTH else "table:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def lock_keys(spec: FlowSpec) -> list[str]:
    """The lock rows a document transaction of `spec` takes, in the order it takes them.

    The flow's own row comes first (it is no other flow's), then the tables it allocates in, sorted:
    every transaction takes shared rows in the same order, so two flows never deadlock.
    """
    tables = [spec.target.header.table, *([spec.target.lines.table] if spec.target.lines else [])]
    return [spec.flow, *sorted({table_key(t) for t in tables})]


def ensure_lock_row(engine: sa.Engine, lock: sa.Table, key: str) -> None:
    """Create the lock row `key` once (outside the document transactions)."""
    with engine.connect() as conn:
        if conn.execute(sa.select(lock.c.flow).where(lock.c.flow == key)).first() is not None:
            return
    try:
        with engine.begin() as conn:
            conn.execute(lock.insert().values(flow=key, touched_at=datetime.now().replace(microsecond=0)))
    except sa.exc.IntegrityError:
        pass  # another run created it first


def take_lock(conn: Connection, lock: sa.Table, key: str, run_id: str) -> None:
    """Hold the lock row `key` until this transaction ends."""
    stamp = datetime.now().replace(microsecond=0)
    done = conn.execute(sa.update(lock).where(lock.c.flow == key).values(run_id=run_id, touched_at=stamp))
    if not done.rowcount:
        raise DataError(f"the lock row '{key}' is missing from {LOCK_TABLE}; rerun to recreate it")


def take_locks(conn: Connection, lock: sa.Table, spec: FlowSpec, run_id: str) -> None:
    """Serialise the document transactions of every flow writing `spec`'s tables until this transaction ends."""
    for key in lock_keys(spec):
        take_lock(conn, lock, key, run_id)


def stem(rule: DocNoRule, day: date) -> str:
    """Prefix and date part of the numbers of `day`, e.g. `PO20261124`."""
    return f"{rule.prefix}{day.strftime(rule.date_format) if rule.date_format else ''}"


def format_number(rule: DocNoRule, day: date, seq: int) -> str:
    """The number with sequence `seq` on `day`; DataError when the sequence outgrows its width."""
    if seq >= 10**rule.width:
        raise DataError(f"document numbers {stem(rule, day)}{'9' * rule.width} exhausted; widen `docno.width`")
    return f"{stem(rule, day)}{seq:0{rule.width}d}"


def sequence_of(rule: DocNoRule, day: date, number: str) -> int | None:
    """The sequence of `number` if it has the shape of a number of `day`, else None."""
    head = stem(rule, day)
    tail = number[len(head):] if number.startswith(head) else ""
    return int(tail) if len(tail) == rule.width and tail.isdigit() else None


def next_number(conn: Connection, column: sa.ColumnElement[str], rule: DocNoRule, day: date,
                reserved: Iterable[str] = ()) -> str:
    """The next free number of `day`: one above the highest number the ERP (whoever created it) or `reserved`
    (e.g. the flow's links, whose document may since have been deleted) already has.

    A number at the top of the day's range (`PO<day>9999`, keyed by hand) cannot be followed: the sequence
    goes on after the highest number that can, so one out-of-sequence number never blocks the day. An
    existing or reserved number is never returned; DataError only when every number of the day is taken.
    """
    # '_' in a prefix is a LIKE wildcard: harmless, `sequence_of` keeps only exact matches
    taken = conn.execute(sa.select(column).where(column.like(stem(rule, day) + "%"))).scalars()
    seqs = {s for s in (sequence_of(rule, day, str(n)) for n in [*taken, *reserved] if n is not None)
            if s is not None}
    top = 10**rule.width
    # the free numbers that follow a taken one (or start the day); the highest of them continues the sequence
    follows = {s + 1 for s in seqs if s + 1 < top and s + 1 not in seqs} | ({1} if 1 not in seqs else set())
    if not follows:
        raise DataError(f"document numbers {stem(rule, day)}{'0' * (rule.width - 1)}1 to "
                        f"{stem(rule, day)}{'9' * rule.width} are all taken; widen `docno.width`")
    return format_number(rule, day, max(follows))


def next_id(conn: Connection, column: sa.ColumnElement[int]) -> int:
    """`max + 1` of a numeric key column (call under the table's lock)."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(column), 0))).scalar() or 0) + 1
