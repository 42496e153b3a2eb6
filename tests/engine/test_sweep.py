"""The keys-only deletion sweep (`etl.engine.sweep`): its id hash, and the sweep on real databases."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import create_engine, inspect, text

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig, load_project
from etl.engine import idhashes
from etl.engine import sweep as sweep_module
from etl.engine.context import SyncContext
from etl.engine.pipeline import load_project_mappings, open_store, run_sync
from etl.engine.sweep import id_hashes, sweep
from etl.engine.tables import EntityTables, bucket_of
from etl.mapping.apply import source_ids
from etl.mapping.loader import load_mappings
from tests.helpers.project import execute_sql, urls_for
from tests.reliability import write_tiny_project

# Ids that differ only in ways a careless comparison loses: width, case, trailing blanks,
# Unicode normalisation, the `|` of composite ids, quotes, backslashes, 7/8/9-byte boundaries.
TRICKY = [
    "A1", "a1", "A1 ", " A1", "Ａ１", "ＡＢＣ１２３", "ABC123", "中文|竖线", "a|b", "a||b", "|",
    "it's", 'say "x"', "back\\slash", "%_*?", "é", "e\u0301", "😀 emoji", "1234567", "12345678", "123456789",
    "x" * 200, "Ω" * 60, "0", "00", "-1", "1.0",
]
DELETED = ["a1", "A1 ", "Ａ１", "中文|竖线", 'say "x"', "e\u0301", "12345678", "x" * 200, "00"]

MAPPING = """\
entity: item
key: code
fields:
  code: {type: string, length: 20, nullable: false}
  name: {type: string, length: 300}
  updated_at: {type: datetime, compare: false}
sources:
  erp:
    table: erp_item
    id: id
    cursor: modified
    fields:
      code: code
      name: id
      updated_at: modified
target:
  table: md_item
"""

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    pytest.param("mixed", marks=[pytest.mark.postgres, pytest.mark.mariadb]),  # MariaDB via mysqlclient -> PostgreSQL
]

# --------------------------------------------------------------------------- the hash

_M = 2**64 - 1


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _M


def reference_hash(value: str) -> int:
    """The documented hash, one byte string at a time in plain Python."""
    data = value.encode("utf-8")
    h = 0x9E3779B97F4A7C15 ^ ((len(data) * 0x87C37B91114253D5) & _M)
    for at in range(0, len(data), 8):
        k = (int.from_bytes(data[at : at + 8], "little") * 0x87C37B91114253D5) & _M
        k = (_rotl(k, 31) * 0x4CF5AD432745937F) & _M
        h = (_rotl(h ^ k, 27) * 5 + 0x52DCE729) & _M
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * multiplier) & _M
    return h ^ (h >> 33)


@pytest.mark.unit
def test_hash_is_the_documented_function_of_the_utf8_bytes() -> None:
    ids = [*TRICKY, "", *("abcdefghijklmnopq"[:n] for n in range(18))]
    assert id_hashes(pa.array(ids)).tolist() == [reference_hash(i) for i in ids]
    assert id_hashes(pa.array(ids)).dtype == np.uint64


@pytest.mark.unit
def test_hash_does_not_depend_on_how_the_text_is_held() -> None:
    expected = id_hashes(pa.array(TRICKY))
    padded = ["pad", *TRICKY, "tail"]
    forms: list[Any] = [
        pd.Series(TRICKY, dtype="str"),
        pd.Series(TRICKY, dtype=object),
        pa.array(TRICKY, type=pa.large_string()),
        pa.array(TRICKY, type=pa.string_view()),
        pa.array(padded).slice(1, len(TRICKY)),  # an offset into shared buffers
        pa.array(padded, type=pa.large_string()).slice(1, len(TRICKY)),
        pa.chunked_array([TRICKY[:5], TRICKY[5:]]),
    ]
    for form in forms:
        assert id_hashes(form).tolist() == expected.tolist(), type(form)


@pytest.mark.unit
def test_hash_separates_ids_that_differ_in_one_byte_or_in_length() -> None:
    ids = [*TRICKY, "", "ab", "ab\x00", "abcdefgh", "abcdefgh\x00"]
    assert len(set(ids)) == len(ids)
    assert len(set(id_hashes(pa.array(ids)).tolist())) == len(ids)
    assert unicodedata.normalize("NFC", "e\u0301") == "é"  # equal when normalised, two ids here
    many = id_hashes(pd.Series(np.arange(500_000)).astype("str"))
    assert len(np.unique(many)) == len(many)


@pytest.mark.unit
def test_nulls_and_empty_inputs() -> None:
    assert id_hashes(pa.array([None, ""], type=pa.string())).tolist() == [reference_hash("")] * 2
    assert id_hashes(pa.array([], type=pa.string())).tolist() == []
    assert id_hashes(pd.Series([], dtype=object)).tolist() == []


@pytest.mark.unit
def test_source_side_and_mirror_side_hash_the_same_text() -> None:
    """`source_ids` of a driver's values (integers, composite ids) against the text the mirror holds."""
    ints = pd.DataFrame({"AutoID": np.array([1, 42, 1234567890123, -7], dtype=np.int64)})
    assert id_hashes(source_ids(ints, ["AutoID"])).tolist() == id_hashes(
        pa.array(["1", "42", "1234567890123", "-7"])
    ).tolist()
    composite = pd.DataFrame({"doc": ["QG-1", "中文|竖线", "Ａ"], "line": [1, 2, 30]})
    assert id_hashes(source_ids(composite, ["doc", "line"])).tolist() == [
        reference_hash(t) for t in ("QG-1|1", "中文|竖线|2", "Ａ|30")
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    "values",
    [
        [1, 42, 1234567890123, -7, 0],  # integer ids: straight to Arrow
        TRICKY,  # text ids: straight to Arrow
        [1, None, 3],  # a null: through a frame (pandas makes the column float)
        [1, "a", 2.5],  # mixed: through a frame
        [2**70, 1],  # beyond int64
        [b"bytes", b"id"],
        [True, False],
        [1.0, 2.5],
    ],
    ids=["int", "text", "null", "mixed", "huge", "bytes", "bool", "float"],
)
def test_driver_rows_give_the_ids_a_frame_of_them_gives(values: list[Any]) -> None:
    """The sweep reads a source's ids from the driver's rows without building a frame when it can: the same
    text as `source_ids` of a frame of the rows (what extraction writes to the mirror)."""
    rows = [(v,) for v in values]
    framed = source_ids(pd.DataFrame.from_records(rows, columns=["id"], coerce_float=False), ["id"])
    assert id_hashes(sweep_module._id_text(rows, ["id"])).tolist() == id_hashes(framed).tolist()
    pairs = [(v, i) for i, v in enumerate(values)]
    framed = source_ids(pd.DataFrame.from_records(pairs, columns=["a", "b"], coerce_float=False), ["a", "b"])
    assert id_hashes(sweep_module._id_text(pairs, ["a", "b"])).tolist() == id_hashes(framed).tolist()


@pytest.mark.unit
def test_contains_finds_exactly_the_known_hashes() -> None:
    rng = np.random.default_rng(7)
    known = np.sort(rng.integers(0, 2**63, 10_000, dtype=np.int64).astype(np.uint64))
    probe = np.concatenate([known[::3], np.array([0, 2**64 - 1, 12345], dtype=np.uint64)])
    rng.shuffle(probe)
    found = sweep_module._contains(known, probe)
    assert found.tolist() == np.isin(probe, known).tolist()
    assert not sweep_module._contains(np.empty(0, dtype=np.uint64), probe).any()


@pytest.mark.unit
def test_coverage_is_complete_exactly_when_every_live_hash_was_added() -> None:
    rng = np.random.default_rng(8)
    live = np.sort(rng.integers(0, 2**63, 10_000, dtype=np.int64).astype(np.uint64))

    def covered(live: np.ndarray, *chunks: np.ndarray) -> bool:
        coverage = idhashes.Coverage(live.copy(), rows=1)
        for chunk in chunks:
            coverage.add(chunk.copy())
        return coverage.covered

    shuffled = live.copy()
    rng.shuffle(shuffled)
    outsiders = np.array([0, 2**64 - 1, int(live[5]) + 1], dtype=np.uint64)
    empty = np.empty(0, dtype=np.uint64)
    assert covered(live, shuffled[:4000], outsiders, shuffled[4000:])  # in any order and chunking, among others
    assert covered(empty) and covered(empty, outsiders)
    assert not covered(live) and not covered(live, outsiders)
    for left_out in (0, 4321, len(live) - 1):
        assert not covered(live, np.delete(shuffled, np.flatnonzero(shuffled == live[left_out])), outsiders)
    coverage = idhashes.Coverage(live.copy(), rows=1)
    coverage.add(np.concatenate([shuffled[::3], outsiders]))
    assert coverage.missing().tolist() == np.setdiff1d(live, shuffled[::3]).tolist()  # sorted
    repeated = np.repeat(shuffled, 2)  # unsorted, each twice (a hash live in two stored rows)
    assert covered(repeated, shuffled) and not covered(repeated, shuffled[1:])
    coverage = idhashes.Coverage(np.array([9, 5, 7, 5, 7, 9, 7], dtype=np.uint64), rows=2)
    coverage.add(np.array([7, 8], dtype=np.uint64))
    assert coverage.missing().tolist() == [5, 9] and coverage.distinct().tolist() == [5, 7, 9]


# --------------------------------------------------------------------------- the sweep on databases


def _fetch(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(statement), params)]
    finally:
        engine.dispose()


@dataclass
class Synced:
    """A one-entity project whose ERP ids are `ids`, fully synced once (mirror filled)."""

    config: ProjectConfig
    ids: list[str]
    deleted: list[str]


@pytest.fixture(params=BACKENDS)
def synced(request: pytest.FixtureRequest, tmp_path: Path) -> Synced:
    return _synced(request.param, urls_for(request.param, request, tmp_path), tmp_path)


def _synced(backend: str, urls: dict[str, str], tmp_path: Path, before: Callable[[Path], None] | None = None) -> Synced:
    """The `synced` project on `urls`; `before(project folder)` runs just before its first sync."""
    ids = TRICKY
    if backend == "mariadb":
        # The store's cross-reference on MariaDB compares with PAD SPACE: 'A1 ' would be 'A1' there.
        ids = [i for i in TRICKY if not i.endswith(" ")]
    # No primary key on the source: the same PAD SPACE rule would apply to it.
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id VARCHAR(255) NOT NULL, code VARCHAR(20) NOT NULL, "
                          "modified TIMESTAMP NULL)")
    start = datetime(2026, 6, 1, 9, 0, 0)
    execute_sql(urls["erp"], "INSERT INTO erp_item (id, code, modified) VALUES (:id, :code, :m)",
             [{"id": i, "code": _code(i), "m": start + timedelta(minutes=n)} for n, i in enumerate(ids)])
    path = write_tiny_project(tmp_path / "project", urls, {"item": MAPPING})
    if before is not None:
        before(path.parent)
    config = load_project(path)
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    assert summary.entities[0].inserted == len(ids)
    return Synced(config, ids, [i for i in DELETED if i in ids])


def _code(src_id: str) -> str:
    return f"IT{TRICKY.index(src_id):03d}"


def _delete(config: ProjectConfig, ids: list[str]) -> None:
    url = config.connection("erp").sqlalchemy_url()
    exactly = "BINARY :id" if url.startswith("mysql") else ":id"  # else MariaDB's 'A1 ' deletes 'A1' too
    execute_sql(url, f"DELETE FROM erp_item WHERE id = {exactly}", [{"id": i} for i in ids])


def _sweep(config: ProjectConfig, run_id: str) -> int:
    """`sweep` of the ERP source of `item` as run `run_id` would call it."""
    ctx = SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config), run_id=run_id)
    try:
        return sweep(ctx, "item", "erp")
    finally:
        ctx.close()


def _staged(config: ProjectConfig, run_id: str) -> dict[str, tuple[str, str, int]]:
    rows = _fetch(config.connection("target").sqlalchemy_url(),
                  "SELECT _src_id, _status, _key, _bucket FROM erpoa_stage_item WHERE _run = :r", r=run_id)
    assert len({r[0] for r in rows}) == len(rows)
    return {r[0]: (r[1], r[2], int(r[3])) for r in rows}


def _mirror(config: ProjectConfig) -> dict[str, tuple[str, int]]:
    rows = _fetch(config.connection("target").sqlalchemy_url(), "SELECT _src_id, _key, _bucket FROM erpoa_src_item")
    return {r[0]: (r[1], int(r[2])) for r in rows}


def test_mirror_holds_the_ids_exactly(synced: Synced) -> None:
    assert sorted(_mirror(synced.config)) == sorted(synced.ids)


def test_sweep_stages_exactly_the_deleted_ids(synced: Synced) -> None:
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    mirror = _mirror(config)
    assert _sweep(config, "sweep-test-1") == len(deleted)
    staged = _staged(config, "sweep-test-1")
    assert sorted(staged) == sorted(deleted)
    for src_id, (status, key, bucket) in staged.items():
        assert status == "deleted"
        assert (key, bucket) == mirror[src_id]
        assert bucket == bucket_of(pd.Series([key])).iloc[0]


def test_ids_this_run_staged_count_as_present(synced: Synced) -> None:
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    kept = deleted[:3]  # staged by this run already (say, read by its incremental extract)
    execute_sql(config.connection("target").sqlalchemy_url(),
             "INSERT INTO erpoa_stage_item (_run, _source, _src_id, _status, _key, _bucket) "
             "VALUES ('sweep-test-2', 'erp', :id, 'ok', 'k', 0)", [{"id": i} for i in kept])
    assert _sweep(config, "sweep-test-2") == len(deleted) - len(kept)
    staged = _staged(config, "sweep-test-2")
    assert {i for i, v in staged.items() if v[0] == "deleted"} == set(deleted[3:])
    assert {i for i, v in staged.items() if v[0] == "ok"} == set(kept)


def test_nothing_deleted_stages_nothing(synced: Synced) -> None:
    config = synced.config
    assert _sweep(config, "sweep-test-3") == 0
    assert _staged(config, "sweep-test-3") == {}


def test_many_vanished_ids_take_the_rescan_and_batches_give_the_same_rows(
    synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    results = []
    for run_id, lookup_max, batch in (("sweep-test-4a", 2, 900), ("sweep-test-4b", 10_000, 2)):
        monkeypatch.setattr(sweep_module, "LOOKUP_MAX", lookup_max)
        monkeypatch.setattr(sweep_module, "LOOKUP_BATCH", batch)
        assert _sweep(config, run_id) == len(deleted)
        results.append(_staged(config, run_id))
    assert results[0] == results[1]
    assert sorted(results[0]) == sorted(deleted)


def test_a_hash_collision_only_hides_deletions(synced: Synced, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every id hashing alike nothing looks vanished: a present record is never inactivated."""
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    monkeypatch.setattr(sweep_module, "id_hashes", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    assert _sweep(config, "sweep-test-5") == 0
    assert _staged(config, "sweep-test-5") == {}


def test_a_source_failure_propagates_and_stages_nothing(synced: Synced, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("source went away")

    config = synced.config
    monkeypatch.setattr(sweep_module, "iter_rows", broken)
    with pytest.raises(RuntimeError, match="source went away"):
        _sweep(config, "sweep-test-6")
    assert _staged(config, "sweep-test-6") == {}


def test_mirror_read_stops_when_told(synced: Synced) -> None:
    config = synced.config
    ctx = SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config), run_id="r")
    try:
        mirror, engine = ctx.tables(ctx.mapping("item")).mirror, ctx.target_engine(ctx.mapping("item"))
        chunks = sweep_module._mirrored_ids(engine, mirror, "erp", threading.Event())
        assert sorted(pa.chunked_array(chunks, type=pa.string()).to_pylist()) == sorted(synced.ids)
        stopped = threading.Event()
        stopped.set()
        assert sweep_module._mirrored_ids(engine, mirror, "erp", stopped) == []
    finally:
        ctx.close()


def test_incremental_run_inactivates_exactly_the_deleted_records(synced: Synced) -> None:
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    assert summary.entities[0].inactivated == len(deleted)
    active = dict(_fetch(config.connection("target").sqlalchemy_url(), "SELECT code, _active FROM md_item"))
    assert {c for c, a in active.items() if not a} == {_code(i) for i in deleted}
    assert len(active) == len(synced.ids)


def _recorded(config: ProjectConfig) -> tuple[np.ndarray, int] | None:
    """The live id hashes of the ERP source of `item` (distinct) and the number of live rows; None if unknown."""
    ctx = SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config), run_id="r")
    try:
        mapping = ctx.mapping("item")
        table, engine = ctx.tables(mapping).ids, ctx.target_engine(mapping)
        with engine.connect() as conn:
            if not idhashes.is_known(conn, table, "erp"):
                return None
            rows = conn.execute(
                text("SELECT COUNT(*) FROM erpoa_ids_item WHERE _source = 'erp' AND _kind = 'live'")
            ).scalar()
            return idhashes.Coverage.load(conn, table, "erp").distinct(), int(rows or 0)
    finally:
        ctx.close()


def _exact(ids: list[str]) -> np.ndarray:
    return np.unique(id_hashes(pd.Series(ids, dtype=object)))


def _mirror_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sweep read the mirror")

    monkeypatch.setattr(sweep_module, "_mirrored_ids", refuse)


def test_a_publish_records_the_mirror_ids_and_a_sweep_then_leaves_the_mirror_unread(
    synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = synced.config
    recorded = _recorded(config)
    assert recorded is not None
    assert recorded[0].tolist() == _exact(list(_mirror(config))).tolist()
    _mirror_unread(monkeypatch)
    assert _sweep(config, "sweep-test-8") == 0
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    assert summary.entities[0].inactivated == 0


def test_after_deletions_the_recorded_hashes_are_the_mirror_ids_again(
    synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep that finds deletions reads the mirror; its publish leaves exactly the ids still mirrored."""
    config, deleted = synced.config, synced.deleted
    _delete(config, deleted)
    summary, _ = run_sync(config)
    assert summary.entities[0].inactivated == len(deleted)
    remaining = [i for i in synced.ids if i not in deleted]
    assert sorted(_mirror(config)) == sorted(remaining)
    recorded = _recorded(config)
    assert recorded is not None
    assert recorded[0].tolist() == _exact(remaining).tolist()
    _delete(config, remaining[:2])
    summary, _ = run_sync(config)  # these vanished after the hashes were recorded: the mirror is read
    assert summary.entities[0].inactivated == 2
    _mirror_unread(monkeypatch)
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    assert summary.entities[0].inactivated == 0


def test_without_recorded_hashes_the_sweep_reads_the_mirror_and_records_them(synced: Synced) -> None:
    """A target of an earlier version (or whose hashes were deleted) sweeps as before and catches up."""
    config, deleted = synced.config, synced.deleted
    execute_sql(config.connection("target").sqlalchemy_url(), "DELETE FROM erpoa_ids_item")
    assert _recorded(config) is None
    _delete(config, deleted)
    summary, _ = run_sync(config)
    assert summary.entities[0].inactivated == len(deleted)
    recorded = _recorded(config)
    assert recorded is not None
    assert recorded[0].tolist() == _exact([i for i in synced.ids if i not in deleted]).tolist()


def test_an_unpublished_run_changes_no_recorded_hash(synced: Synced) -> None:
    """A sweep's findings and a run's extracted ids count only once its publish commits."""
    config, deleted = synced.config, synced.deleted
    before = _recorded(config)
    _delete(config, deleted)
    assert _sweep(config, "sweep-test-9") == len(deleted)  # writes this run's replacement; nothing publishes it
    after = _recorded(config)
    assert before is not None and after is not None
    assert after[0].tolist() == before[0].tolist()
    summary, _ = run_sync(config)  # a later run drops what the unpublished one left, and finds the same
    assert summary.entities[0].inactivated == len(deleted)
    leftovers = _fetch(config.connection("target").sqlalchemy_url(),
                       "SELECT COUNT(*) FROM erpoa_ids_item WHERE _run = 'sweep-test-9'")
    assert leftovers == [(0,)]


@pytest.mark.parametrize("backend", [pytest.param("sqlite", marks=pytest.mark.sqlite),
                                     pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_recorded_hashes_spread_over_many_rows_are_rewritten_as_one(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _synced(backend, urls_for(backend, request, tmp_path), tmp_path)
    config = synced.config
    monkeypatch.setattr(idhashes, "MAX_ROWS", 1)
    url = config.connection("erp").sqlalchemy_url()
    for minute in (1, 2):  # each run appends the hashes of the rows it read
        execute_sql(url, "UPDATE erp_item SET modified = :m WHERE code = 'IT000'",
                    [{"m": datetime(2026, 7, 1, 9, minute)}])
        assert run_sync(config)[0].status == "success"
    recorded = _recorded(config)
    assert recorded is not None
    assert recorded[1] <= 2  # the rewritten set, and this run's extracted ids
    assert recorded[0].tolist() == _exact(synced.ids).tolist()


@pytest.mark.sqlite
def test_a_full_refresh_repeats_the_recorded_hashes_and_the_next_sweep_compacts_them(tmp_path: Path) -> None:
    synced = _synced("sqlite", sqlite_urls(tmp_path), tmp_path)
    config = synced.config
    total = "SELECT SUM(LENGTH(_hashes)) / 8 FROM erpoa_ids_item WHERE _kind = 'live'"
    url = config.connection("target").sqlalchemy_url()
    assert run_sync(config, full_refresh=True)[0].status == "success"  # appends every id's hash again
    assert _fetch(url, total) == [(2 * len(synced.ids),)]
    summary, _ = run_sync(config)
    assert summary.status == "success"
    # the rewritten set, and the ids this run read again in its overlap window
    assert _fetch(url, total) == [(len(synced.ids) + summary.entities[0].read["erp"],)]
    after = _recorded(config)
    assert after is not None and after[0].tolist() == _exact(synced.ids).tolist()


@pytest.mark.sqlite
def test_coverage_loads_the_live_rows_and_tells_covered_and_compact(tmp_path: Path) -> None:
    project = write_tiny_project(tmp_path / "project", sqlite_urls(tmp_path), {"item": MAPPING})
    table = EntityTables.build(load_mappings(project.parent / "mappings").entity("item")).ids
    engine = create_engine(f"sqlite:///{tmp_path / 'ids.db'}")
    table.metadata.create_all(engine, tables=[table])

    def coverage(present: np.ndarray) -> idhashes.Coverage:
        with engine.connect() as conn:
            loaded = idhashes.Coverage.load(conn, table, "erp")
        loaded.add(present.copy())
        return loaded

    known = np.arange(10, 20, dtype=np.uint64)
    with engine.begin() as conn:
        for part in ([19, 11], [12, 13], [], [13, 11, 12, 19]):  # each id twice
            conn.execute(table.insert().values(_source="erp", _run="r", _kind="live",
                                               _hashes=idhashes.to_bytes(np.array(part, dtype=np.uint64))))
        conn.execute(table.insert().values(_source="erp", _run="r", _kind="extract",
                                           _hashes=idhashes.to_bytes(np.array([5], dtype=np.uint64))))
    assert coverage(known).distinct().tolist() == [11, 12, 13, 19]  # sorted, without repeats, live rows only
    assert coverage(known[:3]).missing().tolist() == [13, 19]
    assert coverage(known).covered and not coverage(known).compact(len(known))
    exact = np.array([11, 12, 13, 19], dtype=np.uint64)  # 8 live hashes for 4 ids: due to be compacted
    assert coverage(exact).covered and coverage(exact).compact(len(exact))
    assert not coverage(exact[1:]).covered
    assert not coverage(known[2:]).covered
    with engine.connect() as conn:
        assert idhashes.Coverage.load(conn, table, "erp").distinct().tolist() == [11, 12, 13, 19]
        assert not idhashes.is_known(conn, table, "oa")
    engine.dispose()


@pytest.mark.unit
def test_distinct_sorted_is_numpys_unique() -> None:
    rng = np.random.default_rng(5)
    for size in (0, 1, 2, 1000):
        values = rng.integers(0, 50, size, dtype=np.int64).astype(np.uint64)
        assert idhashes.distinct_sorted(values.copy()).tolist() == np.unique(values).tolist()


def _mirror_key(config: ProjectConfig) -> list[str]:
    engine = create_engine(config.connection("target").sqlalchemy_url())
    try:
        return list(inspect(engine).get_pk_constraint("erpoa_src_item")["constrained_columns"])
    finally:
        engine.dispose()


def test_the_mirror_key_starts_with_the_id_on_postgresql_only(synced: Synced) -> None:
    postgres = synced.config.connection("target").sqlalchemy_url().startswith("postgresql")
    assert _mirror_key(synced.config) == (["_src_id", "_source"] if postgres else ["_source", "_src_id"])


@pytest.mark.postgres
def test_a_mirror_keyed_source_first_keeps_its_key_and_sweeps_the_same(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A mirror created before the key began with the id (on PostgreSQL) works as it is."""

    def older_tables(folder: Path) -> None:
        mapping = load_mappings(folder / "mappings").entity("item")
        engine = create_engine(request.getfixturevalue("pg_url"))
        EntityTables.build(mapping, dialect=None).create(engine)
        engine.dispose()

    synced = _synced("postgres", urls_for("postgres", request, tmp_path), tmp_path, before=older_tables)
    config, deleted = synced.config, synced.deleted
    assert _mirror_key(config) == ["_source", "_src_id"]  # kept by the first load's index rebuild too
    _delete(config, deleted)
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    assert summary.entities[0].inactivated == len(deleted)
    assert _mirror_key(config) == ["_source", "_src_id"]


@pytest.mark.sqlite
def test_unpublished_entity_sweeps_nothing(tmp_path: Path) -> None:
    urls = sqlite_urls(tmp_path)
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id VARCHAR(255), code VARCHAR(20), modified TIMESTAMP)")
    config = load_project(write_tiny_project(tmp_path / "project", urls, {"item": MAPPING}))
    assert _sweep(config, "sweep-test-7") == 0
