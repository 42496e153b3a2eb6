"""Store fixes of session 23: watermarks (schema version 7) and the quarantine count (xa F1, F5, F8; xb F5).

* A store of schema version 6 gains `erpoa_watermark(_pending).cursor_column` and `read_complete`, rows kept; before
  it is migrated (a plan reads it as it is) its watermarks are read and written without them.
* A complete read's watermark replaces the one before; one of another kind or cursor column replaces it too instead
  of failing the run after its publish (`TypeError` comparing a naive and an aware timestamp, a timestamp and an int).
* `count_quarantine` counts records by (source, source id): ERP record 19 and OA record 19 are two.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text

from etl.store import schema as s
from etl.store.repo import Store


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'recon.db'}"
    else:
        yield request.getfixturevalue("pg_url" if request.param == "postgres" else "mariadb_url")


def _version_6(url: str) -> Store:
    """A store as version 6 left it: the watermark tables without the columns of version 7, one watermark held."""
    engine = create_engine(url)
    s.migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE erpoa_watermark DROP COLUMN cursor_column"))
        conn.execute(text("ALTER TABLE erpoa_watermark_pending DROP COLUMN cursor_column"))
        conn.execute(text("ALTER TABLE erpoa_watermark_pending DROP COLUMN read_complete"))
        conn.execute(text("UPDATE erpoa_schema_version SET version = 6"))
        conn.execute(text("INSERT INTO erpoa_watermark (entity, source, value, value_type) "
                          "VALUES ('item', 'erp', '2026-01-01 10:07:00', 'datetime')"))
    return Store(engine)


def test_a_store_of_version_6_is_read_as_it_is_and_migrated_with_its_watermarks(store_url: str) -> None:
    store = _version_6(store_url)
    assert store.watermark("item", "erp") == datetime(2026, 1, 1, 10, 7)  # a plan reads it before any migration
    assert [w["value"] for w in store.watermarks()] == ["2026-01-01 10:07:00"]
    row = store.watermark_row("item", "erp")
    assert row is not None and row.cursor is None
    store.set_pending_watermark("r1", "item", "erp", datetime(2026, 1, 2), cursor="modified", complete=False)
    store.commit_watermarks("r1", "item")
    assert store.watermark("item", "erp") == datetime(2026, 1, 2)
    store.migrate()
    names = {c["name"] for c in inspect(store.engine).get_columns("erpoa_watermark_pending")}
    assert {"cursor_column", "read_complete"} <= names
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM erpoa_schema_version")).scalar() == s.SCHEMA_VERSION == 7
    row = store.watermark_row("item", "erp")
    assert row is not None and (row.value, row.cursor) == (datetime(2026, 1, 2), None)
    store.set_pending_watermark("r2", "item", "erp", datetime(2026, 1, 3), cursor="modified")
    store.commit_watermarks("r2", "item")
    row = store.watermark_row("item", "erp")
    assert row is not None and (row.value, row.cursor) == (datetime(2026, 1, 3), "modified")
    store.migrate()  # idempotent
    store.engine.dispose()


def test_a_complete_read_replaces_the_watermark_and_other_kinds_replace_it(store_url: str) -> None:
    store = Store(create_engine(store_url))
    store.migrate()

    def commit(run: str, value: object, *, cursor: str = "modified", complete: bool = False) -> object:
        store.set_pending_watermark(run, "item", "erp", value, cursor=cursor, complete=complete)
        store.commit_watermarks(run, "item")
        return store.watermark("item", "erp")

    assert commit("r1", datetime(2099, 1, 1)) == datetime(2099, 1, 1)
    assert commit("r2", datetime(2026, 1, 2)) == datetime(2099, 1, 1)  # an incremental read keeps the greater one
    assert commit("r3", datetime(2026, 1, 2), complete=True) == datetime(2026, 1, 2)
    aware = datetime(2026, 1, 1, 2, 7, tzinfo=UTC)
    assert commit("r4", aware) == aware  # timestamptz after timestamp: does not compare, replaces
    assert commit("r5", datetime(2026, 1, 2, 10)) == datetime(2026, 1, 2, 10)
    assert commit("r6", 5, cursor="rowver") == 5  # another cursor column
    assert commit("r7", 3, cursor="rowver") == 5
    assert commit("r8", None, complete=True) is None  # read completely, no cursor value: forgotten
    store.engine.dispose()


def test_count_quarantine_counts_records_of_different_sources_apart(store_url: str) -> None:
    store = Store(create_engine(store_url))
    store.migrate()
    rows = pd.DataFrame({
        "source": ["erp", "oa", "oa", "erp"],
        "src_id": ["19", "19", "19", "20"],
        "field": ["dept", "dept", "parent", "dept"],
        "rule": ["lookup:department"] * 4,
        "value": ["x"] * 4,
        "reason": ["unmapped"] * 4,
        "raw": [None] * 4,
    })
    store.add_quarantine("r1", "department", rows, stage="map")
    assert store.count_quarantine("r1", "department") == 3
    assert store.count_quarantine("r1", "department", excluding={("erp", "20")}) == 2
    assert store.count_quarantine("r1", "department", excluding={("oa", "19")}) == 2
    store.engine.dispose()
