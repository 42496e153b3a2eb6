"""The keys-only deletion sweep of an incremental run: which mirrored records did a source lose?

An incremental read only sees changed rows, so deletions are found by comparing every id
the source has now with the mirror's ids of that source, or with the hashes of them that
the publishes record (`etl.engine.idhashes`), which spares reading the mirror while nothing
vanished. Both sides are reduced to 64-bit hashes of the id's UTF-8 text (`id_hashes`),
computed from Arrow buffers in numpy: no Python string is kept per id, and a present id
costs 8 bytes however long it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, Table, exists, func, select

from etl.db.extract import ExtractRequest, iter_chunks, iter_rows, stream_rows
from etl.db.write import insert_frame
from etl.engine import idhashes
from etl.engine.build import release_memory
from etl.engine.context import SyncContext
from etl.engine.quality import threshold
from etl.engine.tables import stageable, table_exists
from etl.errors import QualityGateError
from etl.mapping.apply import source_ids
from etl.store.repo import source_records

log = logging.getLogger("erpoa.sync")

MIRROR_COLUMNS = ["_src_id", "_key", "_bucket"]
#: Mirrored ids checked against the source's at a time: the more, the closer together their (sorted)
#: hashes fall in the source's, and the fewer cache misses (at four million ids 0.9 s at 50,000, 0.45 s at 500,000).
PROBE_BATCH = 200_000
#: Vanished ids looked up a batch at a time by primary key. Small: without planner statistics (a mirror
#: never analysed) PostgreSQL scans every row of the source instead from about a hundred ids on.
LOOKUP_BATCH = 50
#: Beyond this many vanished ids (a mass deletion) one more pass over the mirror beats the lookups.
LOOKUP_MAX = 20_000
#: Ids read at a time from either side. With the trims after each chunk, the peak at four million ids
#: is ~30 MB lower than with chunks of 100,000 and no trims: the rows and text of a chunk are transient.
SWEEP_CHUNK = 50_000
#: Ids the source has and the mirror does not (see `_Unknown`) read again by id when there are at most this many,
#: a batch at a time (a statement names each); more are read in one more pass over the source, keeping theirs.
READ_BY_ID_MAX = 2_000
READ_BY_ID_BATCH = 500

_SEED = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)
_ROUND = np.uint64(0x52DCE729)
# The bits of a little-endian word that belong to a text with 0..8 bytes left.
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)


class SweepCancelled(Exception):
    """The extraction a sweep waited for failed: the sweep stops without staging anything."""


class Staged:
    """Tells a sweep started beside its source's extraction that the source's rows are staged.

    The sweep reads the source's ids meanwhile, and the ids this run staged only once `open`
    is called; after `cancel` (the extraction failed) it stops at its next chunk or wait.
    """

    def __init__(self, *, done: bool = False) -> None:
        self._event = threading.Event()
        self._cancelled = False
        if done:
            self._event.set()

    def open(self) -> None:
        self._event.set()

    def cancel(self) -> None:
        """Stop a sweep still waiting (does nothing once `open` was called)."""
        if not self._event.is_set():
            self._cancelled = True
            self._event.set()

    def check(self) -> None:
        if self._cancelled:
            raise SweepCancelled("the source's extraction failed")

    def wait(self) -> None:
        self._event.wait()
        self.check()


def sweep(ctx: SyncContext, entity: str, source: str, staged: Staged | None = None) -> int:
    """Keys-only pass of an incremental run: stage a `deleted` row for every mirrored record the source lost, and
    read again the records the source has that the mirror does not.

    The ids present at the source now (its id columns only, read in chunks) and the ids this
    run already staged are reduced to 64-bit hashes. When hashes of the mirror's ids are
    recorded (`etl.engine.idhashes`), a second thread loads them as the source's read starts
    (8 bytes a mirrored id, about 40 MB for five million), and each chunk's hashes mark the
    recorded ones they match as the chunk comes (`idhashes.Coverage`). With all marked,
    nothing vanished and the mirror is not read: the answer is there with the last chunk.
    Otherwise the mirror's ids of the source are read as Arrow text (about 4 bytes an id plus
    its text) and hashed the same way; those whose hash was left unmarked vanished. When none
    are recorded, the present hashes are kept (8 bytes an id) while a second thread reads the
    mirror's ids, so that each side waits on its own database at the same time; those whose
    hash is absent vanished. Vanished ids are looked up again for their key and bucket (by
    primary key, or in one more pass over the mirror after a mass deletion) and staged, and
    the hashes of the others are recorded for this run's publish to keep. Nothing is staged
    per present id. A hash collision can only hide a deletion (odds of about 1 in 10^13 per
    run at a million ids), never inactivate a record that is still there. Nothing is written
    while a read of the target is open (on SQLite it would block the write). With `staged`,
    the sweep may start while the source is still being extracted: it reads this run's
    staged ids once `staged` is open. Returns the number of `deleted` rows staged.

    A source that has no id left while the mirror holds records of it is refused (`QualityGateError`):
    an emptied table or view, a `filter:` that matches nothing, would otherwise inactivate them all
    (a full refresh, under the suite's row-count expectation, is how an empty source is accepted).

    The ids the source has whose hash is not recorded, that this run did not stage and that no open
    quarantine finding names, are not mirrored: records restored at the source after a sweep found them
    gone, back inside a `filter:`, or committed late with an old cursor value, which an incremental read
    never reaches. They are read again and staged like the extraction's rows (`_Unknown`, `_read_unknown`).
    Their text is kept as the chunks pass (they are few: mostly this run's own staged ids); without
    recorded hashes they are known by hash only once the mirror was read, and one more keys-only pass over
    the source finds their text (`_collect`), only when there are any.
    """
    staged = staged or Staged(done=True)
    mapping = ctx.mapping(entity)
    tables = ctx.tables(mapping)
    mirror, stage = tables.mirror, ctx.work_tables(mapping).stage
    target_engine = ctx.target_engine(mapping)
    if not table_exists(target_engine, mirror):
        return 0  # never published: nothing can have vanished
    from etl.engine.extract import source_columns  # it imports this module

    columns = source_columns(ctx, entity, source)
    vanished_of: Callable[[np.ndarray], np.ndarray]  # which of some mirrored ids' hashes are of vanished ids
    watch = _Findings(ctx, entity, source)
    unknown = _Unknown()
    known: np.ndarray | None = None  # without recorded hashes: the present ones, sorted
    if _known(target_engine, tables.ids, source):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="erpoa-sweep") as pool:
            loading = pool.submit(_coverage, target_engine, tables.ids, source)
            coverage = _Marking(loading, unknown)
            found, mine = _read_present(ctx, entity, source, staged, columns, watch.also(coverage.add))
            coverage.flush()
        watch.record()
        loaded = loading.result()
        if loaded.covered:
            if loaded.compact(found + len(mine)) and not ctx.dry_run:
                idhashes.set_replacement(target_engine, tables.ids, ctx.run_id, source, loaded.distinct())
            _read_unknown(ctx, entity, source, columns, unknown.ids(mine, watch.hashes))
            return 0
        # The live hashes are a superset of the mirrored ids': a mirrored id vanished exactly when its hash was
        # not found among the source's.
        missing = loaded.missing()
        del loaded, coverage, loading
        vanished_of = partial(_contains, missing)
        chunks = _mirrored_ids(target_engine, mirror, source, threading.Event())
    else:
        stop = threading.Event()
        hashes: list[np.ndarray] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="erpoa-sweep") as pool:
            mirrored = pool.submit(_mirrored_ids, target_engine, mirror, source, stop)
            try:
                found, mine = _read_present(
                    ctx, entity, source, staged, columns, watch.also(lambda h, _text: hashes.append(h))
                )
            except BaseException:
                stop.set()
                raise
            chunks = mirrored.result()
        watch.record()
        present = idhashes.drain(hashes)
        present.sort()  # in place; duplicates are harmless to the binary search of `_contains`
        known = present

        def vanished_of(mirrored: np.ndarray) -> np.ndarray:
            return ~_contains(present, mirrored)

    gone, kept = _compare(chunks, vanished_of)
    del chunks
    if gone is None:
        vanished = _rescan(target_engine, mirror, source, vanished_of)
    else:
        vanished = _lookup(target_engine, mirror, source, gone)
    if not found and not vanished.empty:
        raise _empty_source(ctx, entity, source, len(vanished))
    if not ctx.dry_run:
        idhashes.set_replacement(target_engine, tables.ids, ctx.run_id, source, kept)
    if known is not None:  # no hashes were recorded: the present ids the mirror lacks, by hash, then their text
        outside = known[~idhashes.found_sorted(kept, known)]
        outside = outside[~np.isin(outside, mine) & ~np.isin(outside, watch.hashes)]
        if len(outside):
            unknown = _collect(ctx, entity, source, columns, idhashes.distinct_sorted(outside))
    # The mirror was read: of the ids whose hashes were not recorded, those it holds (now recorded) are no news.
    # Before the `deleted` rows: a retry of the sweep after a failure here finds what it staged among this run's.
    _read_unknown(ctx, entity, source, columns, unknown.ids(mine, watch.hashes, kept))
    if not vanished.empty:
        with ctx.work_engine(mapping).begin() as conn:
            insert_frame(
                conn,
                stage,
                vanished.assign(_run=ctx.run_id, _source=source, _status="deleted"),
                ["_run", "_source", "_status", *MIRROR_COLUMNS],
            )
    return len(vanished)


def _collect(ctx: SyncContext, entity: str, source: str, columns: dict[str, str], wanted: np.ndarray) -> _Unknown:
    """The ids of the source whose hashes are among `wanted` (sorted), in one more keys-only pass over it."""
    mapping = ctx.mapping(entity)
    spec = mapping.sources[source]
    found = _Unknown()
    request = ExtractRequest(source, spec, [columns[c] for c in spec.id], chunk_size=SWEEP_CHUNK)
    for rows in iter_rows(ctx.source_conn(mapping, source), request):
        text = _arrow_text(_id_text(rows, list(spec.id)))
        found.offer(id_hashes(text), text, wanted)
        del rows, text
        release_memory()
    return found


def _refusal(ctx: SyncContext) -> tuple[str, str]:
    """How a refusal of the deletion checks begins, and what it says was done (a plan wrote nothing)."""
    if ctx.dry_run:
        return "the quality gate would refuse to publish", "(a plan: nothing was written)"
    return "quality gate refused to publish", "Nothing of this entity was published and its watermark did not move."


def _empty_source(ctx: SyncContext, entity: str, source: str, mirrored: int) -> QualityGateError:
    """The refusal of a sweep that found no id at a source whose records the mirror holds."""
    refused, done = _refusal(ctx)
    return QualityGateError(
        f"{entity}: {refused}: source '{source}' returned no rows (0 ids read by the deletion sweep), while the "
        f"target holds {mirrored} record(s) from it; this incremental run would have inactivated all {mirrored}. "
        f"{done} Check the source (an emptied or wrong table or view, a `filter:` that matches nothing, a "
        f"connection to another database); if it is really empty now, run `erpoa sync {entity} --full-refresh` "
        "to accept that (a full refresh is judged by the suite's row-count expectation)."
    )


def check_vanished(ctx: SyncContext, entity: str, source: str, vanished: int) -> None:
    """Refuse (`QualityGateError`) a run whose staged `deleted` rows of `source` (`vanished` of them) would take
    more than `max_vanished_pct` of the records the target holds from it.

    A source cut short (a view whose join broke, a `filter:` that now matches less, a table half
    reloaded) would otherwise inactivate the records it no longer returns. A record whose id vanished
    while the run staged its golden key again from the same source (new ids for the same records) is
    not lost and not counted. A full refresh is how such a loss is accepted;
    `quality.max_vanished_pct` (`run.max_vanished_pct` for every entity; none: no limit) sets the
    share, judged for sources of at least `pct_min_rows` records.
    """
    if not vanished or ctx.full_refresh:
        return
    mapping = ctx.mapping(entity)
    pct, least = threshold(ctx, mapping, "max_vanished_pct"), threshold(ctx, mapping, "pct_min_rows")
    if pct is None:
        return
    total = _mirrored_count(ctx, entity, source)
    if total < max(least, 1) or vanished * 100.0 <= pct * total:
        return
    lost = _lost_count(ctx, entity, source)
    if lost * 100.0 <= pct * total:
        return
    refused, done = _refusal(ctx)
    raise QualityGateError(
        f"{entity}: {refused}: source '{source}' no longer has {lost} of the {total} record(s) the target "
        f"holds from it ({lost * 100.0 / total:.1f}%), more than max_vanished_pct={pct:g}; this run would have "
        f"inactivated them. {done} Check the source (a table or view cut short, a join or `filter:` that now "
        f"matches less, a connection to another database); if they were really deleted, run `erpoa sync {entity} "
        "--full-refresh` to accept it, or raise quality.max_vanished_pct in the entity's mapping "
        "(run.max_vanished_pct in erpoa.yaml for every entity)."
    )


def _mirrored_count(ctx: SyncContext, entity: str, source: str) -> int:
    """How many records of `source` the target's mirror holds."""
    mapping = ctx.mapping(entity)
    mirror = ctx.tables(mapping).mirror
    with ctx.target_engine(mapping).connect() as conn:
        count = select(func.count()).select_from(mirror).where(mirror.c._source == source)
        return int(conn.execute(count).scalar_one())


def _lost_count(ctx: SyncContext, entity: str, source: str) -> int:
    """The `deleted` rows this run staged for `source` whose golden key it does not stage again from it."""
    mapping = ctx.mapping(entity)
    stage = ctx.work_tables(mapping).stage
    gone, kept = stage.alias("gone"), stage.alias("kept")
    again = exists().where(
        kept.c._run == ctx.run_id,
        kept.c._source == source,
        kept.c._status.in_(["ok", "duplicate"]),
        kept.c._key == gone.c._key,
    )
    count = select(func.count()).select_from(gone).where(
        gone.c._run == ctx.run_id, gone.c._source == source, gone.c._status == "deleted", ~again
    )
    with ctx.work_engine(mapping).connect() as conn:
        return int(conn.execute(count).scalar_one())


def _known(engine: Engine, ids: Table, source: str) -> bool:
    """`idhashes.is_known`; False where the table is missing too (a dry run against an older target)."""
    if not table_exists(engine, ids):
        return False
    with engine.connect() as conn:
        return idhashes.is_known(conn, ids, source)


def id_hashes(ids: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash (`uint64`) of each id's UTF-8 text, in order; nulls hash like ''.

    Equal texts give equal hashes whichever side they come from (a source chunk's
    `source_ids`, the stage or the mirror) and whatever their Arrow string type. The hash
    mixes the text's length and its 8-byte words MurmurHash3-style, in numpy over all
    ids one word at a time.
    """
    arrow = _arrow_text(ids)
    chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
    parts = [_hash_chunk(c) for c in chunks if len(c)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)


def _read_present(
    ctx: SyncContext,
    entity: str,
    source: str,
    staged: Staged,
    columns: dict[str, str],
    take: Callable[[np.ndarray, pa.Array | pa.ChunkedArray | None], None],
) -> tuple[int, np.ndarray]:
    """Hand `take` the hashes of the ids the source has now, a chunk at a time with their text, then those of the
    ids this run staged (present too; read once `staged` is open), without text. Returns how many ids the source
    has, and the hashes of the staged ones."""
    mapping = ctx.mapping(entity)
    spec = mapping.sources[source]
    stage = ctx.work_tables(mapping).stage
    request = ExtractRequest(source, spec, [columns[c] for c in spec.id], chunk_size=SWEEP_CHUNK)
    taken = 0
    for rows in iter_rows(ctx.source_conn(mapping, source), request):
        staged.check()
        text = _arrow_text(_id_text(rows, list(spec.id)))
        take(id_hashes(text), text)
        taken += len(rows)
        ctx.tick(entity, f"sweep {source}", len(rows))
        del rows, text
        # Hand the chunk's rows and text back: left to the allocator they stay resident between the hashes kept.
        release_memory()
    staged.wait()
    ids = select(stage.c._src_id).where(stage.c._run == ctx.run_id, stage.c._source == source)
    with ctx.work_engine(mapping).connect() as conn:
        mine = id_hashes(pa.array(conn.execute(ids).scalars().all(), type=pa.string()))
    take(mine, None)
    return taken, mine


class _Unknown:
    """The ids the source has whose hashes are not recorded (`idhashes.Coverage.add`): the mirror does not hold them.

    Most are this run's own staged rows (new or changed since the watermark) or records an open quarantine
    finding names (never accepted); `ids` drops those. Kept as Arrow text and hashes: a few bytes an id, for the
    few ids that are not recorded.
    """

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.texts: list[pa.Array] = []

    def offer(self, hashes: np.ndarray, text: pa.Array | pa.ChunkedArray, unknown: np.ndarray) -> None:
        """Keep the ids of a chunk (`hashes`, in the order of `text`) whose hashes are among `unknown`."""
        keep = np.isin(hashes, unknown)
        self.hashes.append(hashes[keep])
        chosen = text.filter(pa.array(keep))
        if isinstance(chosen, pa.ChunkedArray):
            chosen = chosen.combine_chunks()
        self.texts.append(chosen.cast(pa.large_string()))

    def ids(self, *known: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """The distinct ids kept whose hashes are in none of `known`, and their hashes (sorted)."""
        if not self.hashes:
            return pa.array([], type=pa.large_string()), np.empty(0, dtype=np.uint64)
        hashes = np.concatenate(self.hashes)
        texts = pa.concat_arrays(self.texts)
        keep = np.ones(len(hashes), dtype=bool)
        for other in known:
            if len(other):
                keep &= ~np.isin(hashes, other)
        ids = pc.unique(texts.filter(pa.array(keep)))
        return ids, idhashes.distinct_sorted(hashes[keep])


def _read_unknown(ctx: SyncContext, entity: str, source: str, columns: dict[str, str],
                  unknown: tuple[pa.Array, np.ndarray]) -> int:
    """Read the rows of the `unknown` ids (text, sorted hashes) again and stage them as the extraction stages its
    own (`etl.engine.extract`); returns how many rows were read.

    By id, a batch at a time, up to `READ_BY_ID_MAX` ids; more (a backup restored after a mass deletion) in one
    more pass over the source. Either way only the rows of those ids are kept (matched by hash: a server that
    compares case-insensitively returns more).
    """
    from etl.engine import extract  # it imports this module

    ids, hashes = unknown
    if not len(ids):
        return 0
    mapping = ctx.mapping(entity)
    spec = mapping.sources[source]
    actual = [columns[c] for c in spec.columns]
    log.warning(
        "%s: source '%s' has %d record(s) the target's mirror does not hold and this incremental read did not "
        "reach (restored at the source, back inside the filter, or committed late): reading them again (%s%s)",
        entity, source, len(ids), ", ".join(ids.slice(0, 5).to_pylist()), ", ..." if len(ids) > 5 else "",
    )
    if len(ids) <= READ_BY_ID_MAX:
        wanted = ids.to_pylist()
        batches = [wanted[at : at + READ_BY_ID_BATCH] for at in range(0, len(wanted), READ_BY_ID_BATCH)]
        requests = [ExtractRequest(source, spec, actual, chunk_size=ctx.chunk_size, where_ids=b) for b in batches]
    else:
        requests = [ExtractRequest(source, spec, actual, chunk_size=ctx.chunk_size)]
    del ids
    counts = {"read": 0, "staged": 0, "rejected": 0}
    fatal: list[pd.DataFrame] = []
    gaps: list[pd.DataFrame] = []
    rejects: list[pd.DataFrame] = []
    with ctx.background_writes(mapping, f"erpoa-sweep-{entity}-{source}") as writes:
        for request in requests:
            for read in iter_chunks(ctx.source_conn(mapping, source), request):
                read.columns = list(spec.columns)
                chunk = read[_contains(hashes, id_hashes(source_ids(read, list(spec.id))))].reset_index(drop=True)
                if not chunk.empty:
                    extract._extract_chunk(ctx, entity, source, chunk, writes, counts, fatal, gaps, rejects)
                del read, chunk
                release_memory()
    extract.settle_chunks(ctx, entity, source, rejects, gaps, fatal)
    ctx.read_again[(entity, source)] = counts["read"]  # an attempt of the sweep that is retried counts once
    ctx.note(entity, f"{counts['read']} row(s) of source {source} that the target's mirror did not hold (restored at "
                     "the source, back inside the filter, or committed late) were read again by the deletion sweep")
    return counts["read"]


#: `_status` of the staged rows naming records with open quarantine findings that a sweep did not find at the
#: source: the publish closes those findings `vanished` (`etl.engine.publish._settle`), in this process or, in
#: the Airflow DAG, in the publish task. The merge never reads them (no key, no bucket).
GONE = "gone"


class _Findings:
    """Which source records with open quarantine findings the sweep's read of the source's ids did not find.

    Those records were never accepted, so the mirror the sweep compares with does not hold them; their ids'
    hashes are checked against each chunk's as it passes (no query of their own). The records are those of the
    source's own findings and the source's among those an integrity or gate finding names (`source_records`).
    The answer is staged (`GONE` rows) once the read has ended, after the source's extraction (which starts by
    deleting the source's staged rows of the run), for the publish to close their findings.
    """

    def __init__(self, ctx: SyncContext, entity: str, source: str) -> None:
        self.ctx, self.entity, self.source = ctx, entity, source
        # Read in a plan too: their records are not mirrored, and not to be read again (`_Unknown`).
        open_rows = ctx.store.quarantine(entity=entity, status="open")
        named = open_rows[open_rows["src_id"].notna()]
        ids = sorted(
            {
                src_id
                for row_source, row_id in zip(named["source"].astype(str), named["src_id"].astype(str), strict=True)
                for name, src_id in source_records(row_source, row_id)
                if name == source
            }
        )
        self.ids = ids
        self.hashes = id_hashes(pa.array(ids, type=pa.string())) if ids else np.empty(0, dtype=np.uint64)
        self.seen = np.zeros(len(ids), dtype=bool)

    def also(self, take: Callable[[np.ndarray, Any], None]) -> Callable[[np.ndarray, Any], None]:
        """`take`, marking on the way the watched ids among each chunk's hashes."""
        if not self.ids:
            return take

        def both(hashes: np.ndarray, text: Any) -> None:
            self.seen |= np.isin(self.hashes, hashes)
            take(hashes, text)

        return both

    def record(self) -> None:
        """Stage the watched ids the read did not find (an id longer than the stage holds cannot have been
        staged, so it is not among them: it stays open). Not in a plan, which closes no finding."""
        if self.ctx.dry_run:
            return
        absent = [i for i, seen in zip(self.ids, self.seen, strict=True) if not seen and stageable(i)]
        if not absent:
            return
        mapping = self.ctx.mapping(self.entity)
        rows = pd.DataFrame({"_run": self.ctx.run_id, "_source": self.source, "_src_id": absent, "_status": GONE})
        with self.ctx.work_engine(mapping).begin() as conn:
            insert_frame(conn, self.ctx.work_tables(mapping).stage, rows, list(rows.columns))


class _Marking:
    """Adds hashes to an `idhashes.Coverage` that is still loading: held until it has loaded, then at once.

    The ids of a source chunk (hashes with their text) that the coverage does not hold go to `unknown`.
    """

    def __init__(self, loading: Future[idhashes.Coverage], unknown: _Unknown) -> None:
        self._loading = loading
        self._unknown = unknown
        self._held: list[tuple[np.ndarray, Any]] = []

    def add(self, hashes: np.ndarray, text: Any = None) -> None:
        self._held.append((hashes, text))
        if self._loading.done():
            self.flush()

    def flush(self) -> None:
        """Add what is held, once the coverage has loaded (waiting for it)."""
        loaded = self._loading.result()
        while self._held:
            hashes, text = self._held.pop()
            if text is None:
                loaded.add(hashes)
                continue
            ordered = hashes.copy()  # `add` sorts its argument; the text is in this order
            outside = loaded.add(hashes)
            if len(outside):
                self._unknown.offer(ordered, text, outside)


def _coverage(engine: Engine, ids: Table, source: str) -> idhashes.Coverage:
    with engine.connect() as conn:
        loaded = idhashes.Coverage.load(conn, ids, source)
    release_memory()  # the stored rows' bytes, copied into one array
    return loaded


def _id_text(rows: list[tuple[Any, ...]], id_columns: list[str]) -> pd.Series | pa.Array:
    """The text of each row's source id, as `source_ids` gives it to a frame of the rows.

    A single id column of integers, or of text, without nulls (the usual case) goes from the
    driver's values to Arrow without a frame; `source_ids` makes the same text of them.
    """
    if len(id_columns) == 1:
        try:
            values = pa.array([row[0] for row in rows], from_pandas=True)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            values = None
        if values is not None and not values.null_count:
            if pa.types.is_integer(values.type):
                return pc.cast(values, pa.large_string())
            if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
                return values
    return source_ids(pd.DataFrame.from_records(rows, columns=id_columns, coerce_float=False), id_columns)


def _mirrored_ids(engine: Engine, mirror: Table, source: str, stop: threading.Event) -> list[pa.Array]:
    """The mirror's ids of `source` as Arrow text, a chunk at a time (stops early once `stop` is set)."""
    chunks = []
    # In the key's order, the server reads the ids from the primary key alone, whichever of `_source` and
    # `_src_id` it starts with (`etl.engine.tables.mirror_key`), instead of the mirror's rows.
    ids = _mirrored(mirror, source, "_src_id").order_by(mirror.c._src_id)
    with engine.connect() as conn:
        for rows in stream_rows(conn, ids, SWEEP_CHUNK):
            if stop.is_set():
                break
            chunks.append(pa.array([row[0] for row in rows], type=pa.string()))
            del rows
            release_memory()  # as for the source's chunks
    return chunks


def _compare(
    chunks: list[pa.Array], vanished_of: Callable[[np.ndarray], np.ndarray]
) -> tuple[list[str] | None, np.ndarray]:
    """The mirrored ids that `vanished_of` finds vanished by their hash (None when there are more than
    LOOKUP_MAX of them), and the sorted distinct hashes of the others."""
    ids = pa.chunked_array(chunks, type=pa.string())
    gone: list[str] | None = []
    kept = np.empty(len(ids), dtype=np.uint64)
    end = 0
    for at in range(0, len(ids), PROBE_BATCH):
        batch = ids.slice(at, PROBE_BATCH)
        hashes = id_hashes(batch)
        vanished = vanished_of(hashes)
        found = hashes[~vanished]
        kept[end : end + len(found)] = found
        end += len(found)
        if gone is not None:
            missing = batch.filter(pa.array(vanished))
            if len(gone) + len(missing) > LOOKUP_MAX:
                gone = None
            else:
                gone.extend(missing.to_pylist())
    return gone, idhashes.distinct_sorted(kept[:end])


def _contains(known: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Whether each of `hashes` is in the sorted array `known`."""
    # Searched in ascending order, consecutive searches touch nearby parts of `known`: at millions
    # of ids random searches spend most of their time waiting on memory.
    order = np.argsort(hashes)
    found = np.empty(len(hashes), dtype=bool)
    found[order] = idhashes.found_sorted(known, hashes[order])
    return found


def _mirrored(mirror: Table, source: str, *columns: str) -> Any:
    return select(*[mirror.c[c] for c in columns]).where(mirror.c._source == source)


def _lookup(engine: Engine, mirror: Table, source: str, ids: list[str]) -> pd.DataFrame:
    """Id, key and bucket of the mirrored `ids` of `source`, by primary key."""
    rows: list[tuple[Any, ...]] = []
    with engine.connect() as conn:
        for at in range(0, len(ids), LOOKUP_BATCH):
            wanted = _mirrored(mirror, source, *MIRROR_COLUMNS).where(
                mirror.c._src_id.in_(ids[at : at + LOOKUP_BATCH])
            )
            rows.extend(tuple(row) for row in conn.execute(wanted))
    return pd.DataFrame.from_records(rows, columns=MIRROR_COLUMNS)


def _rescan(
    engine: Engine, mirror: Table, source: str, vanished_of: Callable[[np.ndarray], np.ndarray]
) -> pd.DataFrame:
    """Id, key and bucket of the mirrored rows of `source` that `vanished_of` finds vanished, in one more pass."""
    gone = []
    with engine.connect() as conn:
        for rows in stream_rows(conn, _mirrored(mirror, source, *MIRROR_COLUMNS), SWEEP_CHUNK):
            frame = pd.DataFrame.from_records(rows, columns=MIRROR_COLUMNS)
            gone.append(frame[vanished_of(id_hashes(frame["_src_id"]))])
    return pd.concat(gone, ignore_index=True) if gone else pd.DataFrame(columns=MIRROR_COLUMNS)


def _arrow_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`values` as Arrow text: zero-copy for pandas' Arrow-backed `str` columns."""
    if not isinstance(values, pd.Series):
        return values
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pa.array(values.array)
    # An object column: a driver's text (or None), or an empty frame's.
    return pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)


def _hash_chunk(text: pa.Array) -> np.ndarray:
    if pa.types.is_string(text.type):
        offset_type: type[np.integer[Any]] = np.int32
    else:
        text = text if pa.types.is_large_string(text.type) else text.cast(pa.large_string())
        offset_type = np.int64
    offsets_buffer, data_buffer = text.buffers()[1:3]
    assert offsets_buffer is not None
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[text.offset : text.offset + len(text) + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    if text.null_count:
        lengths[np.asarray(text.is_null())] = 0
    first, end = int(offsets[0]), int(offsets[-1])
    padded = np.zeros(end - first + 8, dtype=np.uint8)  # a whole word can be read at every text's start
    if data_buffer is not None:
        padded[: end - first] = np.frombuffer(data_buffer, dtype=np.uint8)[first:end]
    return _mix(padded, offsets[:-1] - first, lengths)


def _mix(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Hash each text `data[start:start + length]`: its length, then its 8-byte words (the last one masked)."""
    # The little-endian word starting at each byte (unaligned reads of `data`, 8 bytes longer than the texts).
    words = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    h = _SEED ^ (lengths.astype(np.uint64) * _C1)
    shortest, last = int(lengths.min()), len(words) - 1
    for at in range(0, int(lengths.max()), 8):
        whole = at + 8 <= shortest  # every text has 8 bytes more here: no mask, no text ended
        word = words[starts + at] if whole else words[np.minimum(starts + at, last)]
        if not whole:
            word &= _MASKS[np.clip(lengths - at, 0, 8)]
        word *= _C1
        word = _rotl(word, 31)
        word *= _C2
        word ^= h
        mixed = _rotl(word, 27)
        mixed *= np.uint64(5)
        mixed += _ROUND
        h = mixed if whole else np.where(lengths > at, mixed, h)
    return _finalize(h)


def _rotl(x: np.ndarray, bits: int) -> np.ndarray:
    return (x << np.uint64(bits)) | (x >> np.uint64(64 - bits))


def _finalize(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(33)
    h *= _F1
    h ^= h >> np.uint64(33)
    h *= _F2
    h ^= h >> np.uint64(33)
    return h
