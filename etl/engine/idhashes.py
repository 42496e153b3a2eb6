"""The mirror's id hashes, kept beside it so that a deletion sweep seldom needs to read the mirror's ids.

`erpoa_ids_<entity>` (in the target database, next to the mirror) holds 64-bit id hashes
(`etl.engine.sweep.id_hashes`) in rows of `(_source, _run, _kind, _hashes)`, each row an
array of them. Taken together, the `live` rows of a source hold the hash of every id the
mirror holds for that source, and possibly more (ids since deleted, or never accepted).
That superset is all a sweep needs: when each live hash is among the hashes of the ids the
source has now, no mirrored id can have vanished, and the mirror is not read. A collision
can only hide a deletion, as in the sweep itself. The other way round, an id the source has
whose hash is not live is not mirrored (restored at the source after the mirror forgot it,
back inside a `filter:`, committed late): the sweep reads its row again. That needs the live
hashes to lose a removed id's: a publish that removes mirrored ids keeps them live only when
a sweep rewrote them. A source without live rows is unknown: its sweep reads the mirror and
records what it found.

Nothing becomes live outside the publish that changes the mirror, and in its transaction:
a run writes `extract` rows (the ids of each staged chunk) and, from its sweep, `replace`
rows (the mirror's ids, less those found vanished, which the publish deletes); `publish`
then swaps them in. A crash leaves other runs' rows behind, which `prune` drops.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from sqlalchemy import Connection, Engine, Table, and_, delete, exists, insert, literal, select, update

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


def drain(parts: list[np.ndarray]) -> np.ndarray:
    """The hashes of `parts` in one array, emptying `parts`: each part is freed once copied
    (`np.concatenate` would hold them all twice)."""
    out = np.empty(sum(len(p) for p in parts), dtype=_DTYPE)
    end = len(out)
    while parts:
        part = parts.pop()
        out[end - len(part) : end] = part
        end -= len(part)
    return out


def found_sorted(known: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Whether each of the sorted `ordered` is in the sorted `known` (a mask, in the order of `ordered`)."""
    if not len(known):
        return np.zeros(len(ordered), dtype=bool)
    at = np.searchsorted(known, ordered).clip(max=len(known) - 1)
    return known[at] == ordered


def add_extracted(conn: Connection, table: Table, run: str, source: str, hashes: np.ndarray) -> None:
    """Record the hashes of ids this run staged (they become live only if its publish commits)."""
    if len(hashes):
        conn.execute(insert(table).values(_source=source, _run=run, _kind=EXTRACT, _hashes=to_bytes(hashes)))


def is_known(conn: Connection, table: Table, source: str) -> bool:
    """Whether `source` has live rows: its mirrored ids' hashes are all recorded."""
    return bool(conn.execute(select(exists().where(table.c._source == source, table.c._kind == LIVE))).scalar())


class Coverage:
    """Which live hashes of a source the hashes of the ids it has now account for, marked as they are read.

    Loaded before or while the source's ids are read (`load`), so that a sweep knows whether
    a mirrored id vanished once it has read the last of them: each chunk's hashes are marked
    as it comes (`add`), and nothing is left to read, sort or search at the end. Holds the
    live hashes sorted (8 bytes each) and a flag each; repeats stay, their flags set from the
    start, so that no second array of them is made.
    """

    def __init__(self, live: np.ndarray, rows: int) -> None:
        """`live`: all live hashes of the source, from `rows` stored rows; sorted in place."""
        live.sort()
        self._live, self._rows = live, rows
        self._found = np.zeros(len(live), dtype=bool)
        np.equal(live[1:], live[:-1], out=self._found[1:])  # a repeat: the first of its run stands for it

    @classmethod
    def load(cls, conn: Connection, table: Table, source: str) -> Coverage:
        """The live hashes of `source`, none of them marked yet."""
        parts = _live_parts(conn, table, source)
        rows = len(parts)
        return cls(drain(parts), rows)

    def add(self, hashes: np.ndarray) -> np.ndarray:
        """Mark the live hashes that are among `hashes` (which are sorted in place); returns those of `hashes`
        that are not live (sorted): of ids the mirror does not hold."""
        live = self._live
        if not len(live) or not len(hashes):
            return hashes
        # Searched in ascending order, consecutive searches touch nearby parts of `live` (fewer cache misses).
        hashes.sort()
        at = np.searchsorted(live, hashes).clip(max=len(live) - 1)  # the first of a run of repeats
        hit = live[at] == hashes
        self._found[at[hit]] = True
        return hashes[~hit]

    @property
    def covered(self) -> bool:
        """Every live hash was among those added: no mirrored id vanished."""
        return bool(self._found.all())

    def missing(self) -> np.ndarray:
        """The live hashes not added, sorted and distinct: of the mirrored ids that vanished, or of ids the
        mirror no longer has."""
        return self._live[~self._found]

    def distinct(self) -> np.ndarray:
        """The live hashes, sorted and without repeats."""
        return distinct_sorted(self._live)  # already sorted: the sort leaves them as they are

    def compact(self, present: int) -> bool:
        """The live rows are due to be rewritten as one set (`distinct`): more than `MAX_ROWS` rows, or more
        live hashes than the `present` ids by `MAX_REPEATS` (those can only be repeats)."""
        return self._rows > MAX_ROWS or len(self._live) > (1 + MAX_REPEATS) * present


def _live_parts(conn: Connection, table: Table, source: str) -> list[np.ndarray]:
    live = select(table.c._hashes).where(table.c._source == source, table.c._kind == LIVE)
    # Streamed: a driver's buffer of the whole result (PostgreSQL sends a row's bytes as twice as many hex digits)
    # would hold them three times over.
    with conn.execution_options(stream_results=True, max_row_buffer=4).execute(live) as result:
        return [np.frombuffer(data, dtype=_DTYPE) for (data,) in result]


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


def publish(
    conn: Connection,
    table: Table,
    run: str,
    sources: list[str],
    mirror_was_empty: bool,
    deleted: Collection[str] = (),
) -> None:
    """In the publish's transaction: make this run's hashes live where they keep the live set complete.

    A source's `replace` rows take the place of its live rows. Its `extract` rows join them
    when the source's live hashes are known (or the mirror was empty: its ids are then exactly
    some of the run's); otherwise they are dropped, and the next sweep reads the mirror.
    A source of `deleted` (the publish removed mirrored ids of it) without `replace` rows (no
    sweep found them: a complete read, a replay) becomes unknown too: its live hashes would
    keep the removed ids', and a sweep reads an id the source has again only when its hash is
    not live (`etl.engine.sweep`), so a record restored at the source would never be read.
    """
    for source in sources:
        mine = and_(table.c._run == run, table.c._source == source)
        known = exists().where(table.c._source == source, table.c._kind == LIVE)
        if conn.execute(select(literal(1)).where(mine, table.c._kind == REPLACE).limit(1)).first():
            conn.execute(delete(table).where(table.c._source == source, table.c._kind == LIVE))
            conn.execute(update(table).where(mine, table.c._kind == REPLACE).values(_kind=LIVE))
        elif source in deleted:
            conn.execute(delete(table).where(table.c._source == source))
            continue
        elif mirror_was_empty:
            if not conn.execute(select(known)).scalar():
                conn.execute(insert(table).values(_source=source, _run=run, _kind=LIVE, _hashes=b""))
        elif not conn.execute(select(known)).scalar():
            conn.execute(delete(table).where(mine))
            continue
        conn.execute(update(table).where(mine, table.c._kind == EXTRACT).values(_kind=LIVE))
    # A source the mapping no longer has: its mirrored rows went with this publish (`publish.stage_unmapped`).
    conn.execute(delete(table).where(table.c._source.not_in(sources)))


def prune(conn: Connection, table: Table, run: str) -> None:
    """Drop what other runs left unpublished (a run killed before its publish)."""
    conn.execute(delete(table).where(table.c._kind != LIVE, table.c._run != run))
