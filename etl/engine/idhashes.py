"""The mirror's id hashes, kept beside it so that a deletion sweep seldom needs to read the mirror's ids.

`erpoa_ids_<entity>` (in the target database, next to the mirror) holds 64-bit id hashes
(`etl.engine.sweep.id_hashes`) in rows of `(_source, _run, _kind, _hashes)`, each row an
array of them. Taken together, the `live` rows of a source hold the hash of every id the
mirror holds for that source, and possibly more (ids since deleted, or never accepted).
That superset is all a sweep needs: when each live hash is among the hashes of the ids the
source has now, no mirrored id can have vanished, and the mirror is not read. A collision
can only hide a deletion, as in the sweep itself. A source without live rows is unknown:
its sweep reads the mirror and records what it found.

Nothing becomes live outside the publish that changes the mirror, and in its transaction:
a run writes `extract` rows (the ids of each staged chunk) and, from its sweep, `replace`
rows (the mirror's ids, less those found vanished, which the publish deletes); `publish`
then swaps them in. A crash leaves other runs' rows behind, which `prune` drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Select, Table, and_, delete, exists, insert, literal, select, update

LIVE, EXTRACT, REPLACE = "live", "extract", "replace"
#: Hashes in one row (2 MiB): MariaDB's default `max_allowed_packet` is 16 MiB.
ROW_HASHES = 262_144
#: A source's live rows are rewritten as one sorted set by the next sweep beyond this many rows (a first
#: load leaves one per extracted chunk, each later run one more) ...
MAX_ROWS = 1000
#: ... or when they outnumber the source's ids by this share (each run appends the ids it read).
MAX_REPEATS = 0.25

_DTYPE = np.dtype("<u8")


def to_bytes(hashes: np.ndarray) -> bytes:
    """`hashes` as stored: little-endian 64-bit words."""
    return np.ascontiguousarray(hashes, dtype=_DTYPE).tobytes()


def distinct_sorted(hashes: np.ndarray) -> np.ndarray:
    """`hashes` sorted in place, then without repeats: `hashes` itself when it has none.

    (`np.unique` of numpy 2.4 takes 40 times as long for these, and copies them twice.)
    """
    hashes.sort()
    if len(hashes) < 2:
        return hashes
    keep = np.empty(len(hashes), dtype=bool)
    keep[0] = True
    np.not_equal(hashes[1:], hashes[:-1], out=keep[1:])
    return hashes if keep.all() else hashes[keep]


def found_sorted(known: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Whether each of the sorted `ordered` is in the sorted `known` (a mask, in the order of `ordered`)."""
    if not len(known):
        return np.zeros(len(ordered), dtype=bool)
    at = np.searchsorted(known, ordered).clip(max=len(known) - 1)
    return known[at] == ordered


def covers(known: np.ndarray, ordered: np.ndarray) -> bool:
    """Whether each of the sorted `ordered` is in the sorted `known`."""
    return bool(found_sorted(known, ordered).all())


def add_extracted(conn: Connection, table: Table, run: str, source: str, hashes: np.ndarray) -> None:
    """Record the hashes of ids this run staged (they become live only if its publish commits)."""
    if len(hashes):
        conn.execute(insert(table).values(_source=source, _run=run, _kind=EXTRACT, _hashes=to_bytes(hashes)))


def is_known(conn: Connection, table: Table, source: str) -> bool:
    """Whether `source` has live rows: its mirrored ids' hashes are all recorded."""
    return bool(conn.execute(select(exists().where(table.c._source == source, table.c._kind == LIVE))).scalar())


@dataclass(frozen=True)
class Check:
    """How the live hashes of a source compare with the hashes of the ids it has now."""

    #: every live hash is among them: no mirrored id vanished
    covered: bool
    #: the live rows are due to be rewritten as one set: many rows, or many repeats
    compact: bool


def check(conn: Connection, table: Table, source: str, known: np.ndarray) -> Check:
    """Compare the live hashes of `source` with the sorted `known`, a block of stored rows at a time.

    Streamed, so that memory holds a block of about `ROW_HASHES` of them beside `known`, however
    many ids the mirror has. More live hashes than `known` has, by `MAX_REPEATS`, can only be repeats.
    """
    rows = total = 0
    result = conn.execution_options(stream_results=True, max_row_buffer=4).execute(
        _live_hashes(table, source)
    )
    with result:
        # Searched a block of rows at a time: the more sorted hashes at once, the closer together their
        # searches fall in `known` (0.43 s against 1.08 s row by row for 4,000,000 hashes in 200 rows).
        block: list[np.ndarray] = []
        size = 0
        for (data,) in result:
            part = np.frombuffer(data, dtype=_DTYPE)
            rows += 1
            total += len(part)
            block.append(part)
            size += len(part)
            if size >= ROW_HASHES:
                if not _covered(known, block):
                    return Check(covered=False, compact=False)
                block, size = [], 0
        if block and not _covered(known, block):
            return Check(covered=False, compact=False)
    return Check(covered=True, compact=rows > MAX_ROWS or total > (1 + MAX_REPEATS) * len(known))


def _covered(known: np.ndarray, block: list[np.ndarray]) -> bool:
    ordered = np.concatenate(block)
    ordered.sort()
    return covers(known, ordered)


def _live_hashes(table: Table, source: str) -> Select[Any]:
    return select(table.c._hashes).where(table.c._source == source, table.c._kind == LIVE)


def distinct(conn: Connection, table: Table, source: str) -> np.ndarray:
    """The live hashes of `source`, sorted and without repeats (to rewrite them as one set)."""
    parts = [
        np.frombuffer(data, dtype=_DTYPE)
        for (data,) in conn.execute(_live_hashes(table, source))
    ]
    return distinct_sorted(np.concatenate(parts) if parts else np.empty(0, dtype=_DTYPE))


def set_replacement(engine: Engine, table: Table, run: str, source: str, hashes: np.ndarray) -> None:
    """Have this run's publish replace the live hashes of `source` with `hashes` (sorted, distinct).

    At least one row is written, so that an empty set is known (no ids) rather than unknown.
    """
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c._run == run, table.c._source == source, table.c._kind == REPLACE))
        for at in range(0, max(len(hashes), 1), ROW_HASHES):
            conn.execute(
                insert(table).values(
                    _source=source, _run=run, _kind=REPLACE, _hashes=to_bytes(hashes[at : at + ROW_HASHES])
                )
            )


def publish(conn: Connection, table: Table, run: str, sources: list[str], mirror_was_empty: bool) -> None:
    """In the publish's transaction: make this run's hashes live where they keep the live set complete.

    A source's `replace` rows take the place of its live rows. Its `extract` rows join them
    when the source's live hashes are known (or the mirror was empty: its ids are then exactly
    some of the run's); otherwise they are dropped, and the next sweep reads the mirror.
    """
    for source in sources:
        mine = and_(table.c._run == run, table.c._source == source)
        known = exists().where(table.c._source == source, table.c._kind == LIVE)
        if conn.execute(select(literal(1)).where(mine, table.c._kind == REPLACE).limit(1)).first():
            conn.execute(delete(table).where(table.c._source == source, table.c._kind == LIVE))
            conn.execute(update(table).where(mine, table.c._kind == REPLACE).values(_kind=LIVE))
        elif mirror_was_empty:
            if not conn.execute(select(known)).scalar():
                conn.execute(insert(table).values(_source=source, _run=run, _kind=LIVE, _hashes=b""))
        elif not conn.execute(select(known)).scalar():
            conn.execute(delete(table).where(mine))
            continue
        conn.execute(update(table).where(mine, table.c._kind == EXTRACT).values(_kind=LIVE))


def prune(conn: Connection, table: Table, run: str) -> None:
    """Drop what other runs left unpublished (a run killed before its publish)."""
    conn.execute(delete(table).where(table.c._kind != LIVE, table.c._run != run))
