"""Watermark and cursor fixes of session 23 (exploratory findings xa F1, F4-F8, xc F1).

* A cursor value in the future (a mistyped date) does not become the watermark: the greatest value that is not in the
  future is, and the run notes the rows; a watermark left in the future by an earlier version makes the source be
  read completely. A source whose clock is behind `run.timezone` (UTC stamps) loses nothing to it.
* A complete read (`--full-refresh`) replaces the watermark instead of keeping the greater one.
* A text cursor of timestamps that are not ISO (`2026/01/09 10:00:00`) is a text cursor, not a "mixed" column.
* A cursor column changed between `timestamptz` and `timestamp` no longer fails every run after its publish.
* An `overlap` set on a numeric cursor is named in the run's message: it does not apply.
* A PostgreSQL varchar cursor of ISO timestamps is read incrementally (the lower bound is text like its values).
* A changed `cursor:` column forgets the source's watermark: the source is read completely, with a note.
* A `cursor:` spelled in another letter case than the column works incrementally too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.db.extract import lower_bound
from etl.engine.context import SyncContext
from etl.engine.pipeline import SyncSummary, open_store, run_sync
from tests.helpers.project import target_rows

ZONE = ZoneInfo("Asia/Shanghai")


def _sql(url: str, *statements: str, **params: Any) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)
    engine.dispose()
    dispose_all()


def _project(
    folder: Path, erp_url: str, *, cursor: str = "modified", overlap: str | None = "10m", table: str = "items"
) -> ProjectConfig:
    """One entity `item` read from one source `erp` (`table` with id, code, name, modified); target and store SQLite."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "expectations").mkdir(exist_ok=True)
    (folder / "erpoa.yaml").write_text(
        "project: fw\n"
        "connections:\n"
        f'  erp: {{url: "{erp_url}"}}\n'
        f'  oa: {{url: "sqlite:///{folder / "oa.db"}"}}\n'
        f'  target: {{url: "sqlite:///{folder / "target.db"}"}}\n'
        f'  recon: {{url: "sqlite:///{folder / "recon.db"}"}}\n'
        "mappings: mappings\nexpectations: expectations\nreports: reports\n"
        "run:\n  chunk_size: 100\n  timezone: Asia/Shanghai\n",
        encoding="utf-8",
    )
    _mapping(folder, cursor=cursor, overlap=overlap, table=table)
    return load_project(folder / "erpoa.yaml")


def _mapping(folder: Path, *, cursor: str, overlap: str | None = "10m", table: str = "items") -> None:
    (folder / "mappings" / "item.yaml").write_text(
        "entity: item\nkey: code\n"
        "fields:\n  code: {type: string, length: 20}\n  name: {type: string, length: 50}\n"
        "sources:\n  erp:\n"
        f"    table: {table}\n    id: id\n    cursor: {cursor}\n"
        + (f"    overlap: {overlap}\n" if overlap is not None else "")
        + "    fields:\n      code: code\n      name: name\n"
        "target:\n  table: md_item\n",
        encoding="utf-8",
    )


def _sqlite_items(folder: Path, column_type: str = "TIMESTAMP", stamps: list[str] | None = None) -> str:
    """An SQLite ERP database with 7 items stamped `stamps` (default 2026-01-01 10:01 .. 10:07); its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'erp.db'}"
    stamps = stamps or [f"2026-01-01 10:0{i}:00" for i in range(1, 8)]
    _sql(url, f"CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT, name TEXT, modified {column_type}, rowver INT)")
    for i, stamp in enumerate(stamps, start=1):
        _sql(url, "INSERT INTO items VALUES (:i, :c, :n, :m, :v)", i=i, c=f"C{i:03d}", n=f"erp{i}", m=stamp, v=i * 10)
    return url


def _mark(config: ProjectConfig) -> Any:
    return open_store(config).watermark("item", "erp")


def _sync(config: ProjectConfig, **kwargs: Any) -> tuple[SyncSummary, SyncContext, Any]:
    summary, ctx = run_sync(config, entities=["item"], **kwargs)
    (entity,) = summary.entities
    assert entity.status == "success", entity.message
    return summary, ctx, entity


def _names(config: ProjectConfig) -> dict[str, str]:
    return {str(code): str(name) for code, name in target_rows(config, "md_item", ["code", "name"])}


def _local_now() -> datetime:
    return datetime.now(ZONE).replace(tzinfo=None, microsecond=0)


def _set_watermark(config: ProjectConfig, value: str, kind: str = "datetime") -> None:
    store = open_store(config)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE erpoa_watermark SET value = :v, value_type = :k WHERE entity = 'item'"),
                     {"v": value, "k": kind})


# --------------------------------------------------------------------------- xa F1: future cursor values


@pytest.mark.sqlite
def test_a_future_cursor_value_does_not_freeze_the_watermark(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url)
    _sync(config)
    _sql(url, "UPDATE items SET name = 'typo', modified = '2099-01-01 00:00:00' WHERE id = 1")
    _, ctx, _ = _sync(config)
    assert _mark(config) == datetime(2026, 1, 1, 10, 7)  # the greatest cursor value that is not in the future
    (note,) = ctx.extract_notes["item"]
    assert "1 row(s) of source erp have a cursor modified later than a day from now in Asia/Shanghai" in note
    assert "up to 2099-01-01 00:00:00 (rows with id 1): the watermark is the greatest that is not" in note
    assert "correct these values at the source" in note
    # Rows changed after that run are read by the next one (before, the read started at 2098-12-31 23:50).
    now = _local_now().isoformat(sep=" ")
    _sql(url, "UPDATE items SET name = 'erp2-new', modified = :m WHERE id = 2", m=now)
    _sql(url, "INSERT INTO items VALUES (20, 'C020', 'new20', :m, 200)", m=now)
    _sync(config)
    names = _names(config)
    assert (names["C002"], names["C020"], names["C001"]) == ("erp2-new", "new20", "typo")


@pytest.mark.sqlite
def test_a_future_cursor_value_loses_nothing_of_a_source_behind_the_run_timezone(tmp_path: Path) -> None:
    """A UTC-stamping ERP in an Asia/Shanghai project: keeping the watermark at the read's start in Shanghai time put
    it 8 hours ahead of the source's own stamps, and every change of those hours was never read."""
    utc_now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # the source's clock, without a zone
    stamps = [(utc_now - timedelta(hours=1, minutes=10 - i)).isoformat(sep=" ") for i in range(1, 8)]
    url = _sqlite_items(tmp_path, stamps=stamps)
    config = _project(tmp_path, url)
    _sync(config)
    _sql(url, "UPDATE items SET name = 'typo', modified = '2099-01-01 00:00:00' WHERE id = 1")
    _sync(config)
    _sql(url, "UPDATE items SET name = 'erp2-changed', modified = :m WHERE id = 2",
         m=(utc_now + timedelta(seconds=5)).isoformat(sep=" "))
    _sync(config)
    _sql(url, "UPDATE items SET name = 'fixed1', modified = :m WHERE id = 1",
         m=(utc_now + timedelta(seconds=10)).isoformat(sep=" "))
    _sync(config)
    names = _names(config)
    assert (names["C001"], names["C002"]) == ("fixed1", "erp2-changed")


@pytest.mark.sqlite
def test_a_full_refresh_replaces_the_watermark_it_read(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url)
    _sync(config)
    _set_watermark(config, "2026-06-01 00:00:00")  # greater than anything the source holds now
    _sync(config, full_refresh=True)
    assert open_store(config).watermark("item", "erp") == datetime(2026, 1, 1, 10, 7)
    _sql(url, "UPDATE items SET name = 'erp3-new', modified = '2026-01-02 10:00:00' WHERE id = 3")
    _sync(config)
    assert _names(config)["C003"] == "erp3-new"
    assert open_store(config).watermark("item", "erp") == datetime(2026, 1, 2, 10, 0)


@pytest.mark.sqlite
def test_a_watermark_left_in_the_future_is_read_past_completely(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url)
    _sync(config)
    _set_watermark(config, "2099-01-01 00:00:00")  # what an earlier version recorded from a mistyped date
    _sql(url, "UPDATE items SET name = 'erp3-new', modified = '2026-01-02 10:00:00' WHERE id = 3")
    _, _, entity = _sync(config)
    assert "the watermark of source erp (2099-01-01 00:00:00) is later than a day from now" in entity.message
    assert "erp is read completely" in entity.message
    assert entity.read == {"erp": 7} and _names(config)["C003"] == "erp3-new"
    assert open_store(config).watermark("item", "erp") == datetime(2026, 1, 2, 10, 0)


# --------------------------------------------------------------------------- xa F4: text cursors that are not ISO


@pytest.mark.sqlite
def test_a_consistent_text_cursor_that_is_not_iso_syncs_incrementally(tmp_path: Path) -> None:
    stamps = [f"2026/01/0{i} 10:00:00" for i in range(1, 8)]
    url = _sqlite_items(tmp_path, "VARCHAR(30)", stamps)
    config = _project(tmp_path, url)
    _sync(config)
    assert open_store(config).watermark("item", "erp") == "2026/01/07 10:00:00"
    # A late row stamped 5 minutes before the watermark: inside the overlap, read as text of the same form.
    _sql(url, "UPDATE items SET name = 'late', modified = '2026/01/07 09:55:00' WHERE id = 2")
    _, _, entity = _sync(config)
    assert entity.read == {"erp": 2} and _names(config)["C002"] == "late"


@pytest.mark.unit
def test_the_lower_bound_of_a_text_cursor_is_text_of_its_form() -> None:
    ten = timedelta(minutes=10)
    assert lower_bound("2026/01/09 10:00:00", ten) == "2026/01/09 09:50:00"
    assert lower_bound(datetime(2026, 1, 9, 10), ten, "2026-01-09T10:00") == "2026-01-09T09:50"
    assert lower_bound(datetime(2026, 1, 9, 10), ten, "2026-01-09 10:00:00.000000") == "2026-01-09 09:50:00.000000"
    assert lower_bound("2026.01.09", ten) == "2026.01.08"
    assert lower_bound("v12", ten) == "v12" and lower_bound(12, ten) == 12
    assert lower_bound(datetime(2026, 1, 9, 10), ten) == datetime(2026, 1, 9, 9, 50)


# --------------------------------------------------------------------------- xa F5, F7: PostgreSQL cursor types


@pytest.mark.postgres
def test_a_cursor_column_changed_between_timestamptz_and_timestamp_keeps_syncing(tmp_path: Path, pg_url: str) -> None:
    _sql(pg_url, "CREATE TABLE items (id int PRIMARY KEY, code text, name text, modified timestamptz)",
         "INSERT INTO items SELECT i, 'C' || lpad(i::text, 3, '0'), 'erp' || i, "
         "timestamptz '2026-01-01 10:00+08' + (i || ' min')::interval FROM generate_series(1, 7) i")
    config = _project(tmp_path, pg_url)
    _sync(config)
    assert _mark(config).tzinfo is not None
    _sql(pg_url, "ALTER TABLE items ALTER COLUMN modified TYPE timestamp USING modified AT TIME ZONE 'Asia/Shanghai'",
         "UPDATE items SET name = 'erp3x', modified = '2026-01-02 10:00:00' WHERE id = 3")
    _sync(config)
    assert _names(config)["C003"] == "erp3x"
    assert open_store(config).watermark("item", "erp") == datetime(2026, 1, 2, 10, 0)
    _sql(pg_url, "ALTER TABLE items ALTER COLUMN modified TYPE timestamptz USING modified AT TIME ZONE 'Asia/Shanghai'",
         "UPDATE items SET name = 'erp4x', modified = '2026-01-03 10:00:00+08' WHERE id = 4")
    _sync(config, full_refresh=True)
    assert _names(config)["C004"] == "erp4x"
    assert _mark(config).tzinfo is not None


@pytest.mark.postgres
def test_a_postgresql_varchar_cursor_of_iso_timestamps_is_read_incrementally(tmp_path: Path, pg_url: str) -> None:
    _sql(pg_url, "CREATE TABLE items_txt (id int PRIMARY KEY, code text, name text, modified varchar(30))",
         "INSERT INTO items_txt SELECT i, 'C' || lpad(i::text, 3, '0'), 'erp' || i, '2026-01-01 10:0' || i || '\\:00' "
         "FROM generate_series(1, 7) i")
    config = _project(tmp_path, pg_url, table="items_txt")
    _sync(config)
    _sql(pg_url, "UPDATE items_txt SET name = 'erp2b', modified = '2026-01-02 10:00:00' WHERE id = 2")
    _sync(config)
    assert _names(config)["C002"] == "erp2b"
    _sql(pg_url, "UPDATE items_txt SET name = 'late', modified = '2026-01-02 09:55:00' WHERE id = 5")
    _, _, entity = _sync(config)  # inside the overlap: '2026-01-02 09:50:00' is the text it is compared with
    assert entity.read == {"erp": 2} and _names(config)["C005"] == "late"


@pytest.mark.postgres
@pytest.mark.parametrize("column", ["bytea", "numeric(18,0)"])
def test_rowversion_and_numeric_cursors_round_trip(tmp_path: Path, pg_url: str, column: str) -> None:
    """xa F9: a binary (rowversion) or numeric cursor was recorded as the text of its Python repr (`b'\\x00...'`,
    kind str): every incremental read compared the column with text and failed."""
    value = "int8send(i::bigint)" if column == "bytea" else "i * 10"
    _sql(pg_url, f"CREATE TABLE items (id int PRIMARY KEY, code text, name text, rv {column})",
         f"INSERT INTO items SELECT i, 'C' || lpad(i::text, 3, '0'), 'erp' || i, {value} FROM generate_series(1, 7) i")
    config = _project(tmp_path, pg_url, cursor="rv", overlap=None)
    _sync(config)
    new = "int8send(100::bigint)" if column == "bytea" else "1000"
    _sql(pg_url, f"UPDATE items SET name = 'erp2b', rv = {new} WHERE id = 2")
    _, _, entity = _sync(config)
    assert entity.read == {"erp": 2} and _names(config)["C002"] == "erp2b"  # rv >= that of id 7, and id 2
    assert open_store(config).watermark("item", "erp") == (
        (100).to_bytes(8, "big") if column == "bytea" else 1000
    )


# --------------------------------------------------------------------------- xa F6: overlap on a numeric cursor


@pytest.mark.sqlite
def test_an_overlap_set_on_a_numeric_cursor_is_named_in_the_run_message(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url, cursor="id")
    _sync(config)
    _, _, entity = _sync(config)
    assert "the overlap of source erp (0:10:00) is a time window and does not apply to its numeric cursor id" in (
        entity.message or ""
    )
    _mapping(tmp_path, cursor="id", overlap="0")
    _, _, entity = _sync(load_project(tmp_path / "erpoa.yaml"))
    assert "overlap" not in (entity.message or "")
    _mapping(tmp_path, cursor="id", overlap=None)  # the default applies to time cursors only: not named
    _, _, entity = _sync(load_project(tmp_path / "erpoa.yaml"))
    assert "overlap" not in (entity.message or "")


# --------------------------------------------------------------------------- xa F8: the cursor column changed


@pytest.mark.sqlite
def test_a_changed_cursor_column_forgets_the_watermark(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url)
    _sync(config)
    _mapping(tmp_path, cursor="rowver")
    config = load_project(tmp_path / "erpoa.yaml")
    _sql(url, "UPDATE items SET name = 'erp2b', rowver = 100 WHERE id = 2",
         "INSERT INTO items VALUES (30, 'C030', 'erp30', '2026-01-03 00:00:00', 110)")
    _, _, entity = _sync(config)
    assert "the cursor of source erp changed (modified -> rowver)" in entity.message
    assert "erp is read completely" in entity.message
    assert entity.read == {"erp": 8}
    assert (_names(config)["C002"], _names(config)["C030"]) == ("erp2b", "erp30")
    assert open_store(config).watermark("item", "erp") == 110
    _sql(url, "UPDATE items SET name = 'erp3b', rowver = 120 WHERE id = 3")
    _, _, entity = _sync(config)
    assert entity.read == {"erp": 2} and "changed" not in (entity.message or "")  # rowver >= 110
    _sync(config, full_refresh=True)
    assert open_store(config).watermark("item", "erp") == 120


# --------------------------------------------------------------------------- xc F1: the cursor's letter case


@pytest.mark.sqlite
def test_a_cursor_spelled_in_another_case_reads_incrementally(tmp_path: Path) -> None:
    url = _sqlite_items(tmp_path)
    config = _project(tmp_path, url, cursor="MODIFIED")
    _sync(config)
    _sql(url, "UPDATE items SET name = 'erp2b', modified = '2026-01-02 10:00:00' WHERE id = 2")
    _sync(config)
    assert _names(config)["C002"] == "erp2b"


@pytest.mark.postgres
def test_a_cursor_spelled_in_another_case_reads_a_mixed_case_postgresql_column(tmp_path: Path, pg_url: str) -> None:
    _sql(pg_url, 'CREATE TABLE items (id int PRIMARY KEY, code text, name text, "ModifiedAt" timestamp)',
         "INSERT INTO items SELECT i, 'C' || lpad(i::text, 3, '0'), 'erp' || i, "
         "timestamp '2026-01-01 10:00' + (i || ' min')::interval FROM generate_series(1, 7) i")
    config = _project(tmp_path, pg_url, cursor="modifiedat")
    _sync(config)
    _sql(pg_url, """UPDATE items SET name = 'erp2b', "ModifiedAt" = '2026-01-02 10:00:00' WHERE id = 2""")
    _sync(config)
    assert _names(config)["C002"] == "erp2b"
