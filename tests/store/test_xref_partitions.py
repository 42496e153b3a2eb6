"""On PostgreSQL the cross-reference is partitioned by entity: created so, converted from schema version 2
with its rows kept, and an entity's first load fills a partition of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, create_engine, text

from etl.engine.pipeline import run_sync
from etl.engine.xref_partition import has_links
from etl.store import schema as s
from tests.helpers.project import make_project

pytestmark = pytest.mark.postgres


def _partitions(conn: Any) -> dict[str, str]:
    """Partition name -> its bound (`DEFAULT` or `FOR VALUES IN ('x')`)."""
    rows = conn.execute(
        text("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
             "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('erpoa_xref')")
    ).all()
    return {r[0]: r[1] for r in rows}


def _index_defs(conn: Any, table: str) -> set[str]:
    rows = conn.execute(
        text("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(:t)"), {"t": table}
    ).scalars()
    return {d.split(" USING ", 1)[1] for d in rows}


def test_a_new_store_has_a_partitioned_cross_reference_with_a_default_partition(pg_url: str) -> None:
    engine = create_engine(pg_url)
    s.migrate(engine)
    s.migrate(engine)  # idempotent
    with engine.connect() as conn:
        assert conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('erpoa_xref')")).scalar() == "p"
        assert _partitions(conn) == {s.XREF_DEFAULT: "DEFAULT"}
    engine.dispose()


def test_a_version_2_cross_reference_becomes_the_default_partition_with_its_rows(pg_url: str) -> None:
    engine = create_engine(pg_url)
    old = Table(s.xref.name, MetaData(), *(c.copy() for c in s.xref.columns))  # as version 2 created it
    for index in s.xref.indexes:
        old.append_constraint(index.__class__(index.name, *[old.c[c.name] for c in index.columns]))
    s.metadata.create_all(engine, tables=[t for t in s.metadata.sorted_tables if t is not s.xref])
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(s.schema_version.insert().values(version=2))
        conn.execute(old.insert(), [
            {"entity": "employee", "source": "erp", "src_id": str(i), "golden_key": f"E{i}", "active": True}
            for i in range(50)
        ])
    s.migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('erpoa_xref')")).scalar() == "p"
        assert _partitions(conn) == {s.XREF_DEFAULT: "DEFAULT"}
        assert conn.execute(text("SELECT count(*) FROM erpoa_xref WHERE entity = 'employee'")).scalar() == 50
        assert conn.execute(text("SELECT version FROM erpoa_schema_version")).scalar() == s.SCHEMA_VERSION
        names = set(conn.execute(
            text("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                 "WHERE i.indrelid = to_regclass('erpoa_xref')")
        ).scalars())
        assert names == {"erpoa_xref_pkey", "ix_erpoa_xref_key"}
    with engine.begin() as conn, pytest.raises(Exception, match="duplicate key"):  # the key holds still
        conn.execute(text("INSERT INTO erpoa_xref (entity, source, src_id, golden_key) "
                          "VALUES ('employee', 'erp', '7', 'X')"))
    engine.dispose()


def test_first_load_fills_an_indexed_partition_per_entity_and_later_runs_update_it(
    tmp_path: Path, pg_url: str
) -> None:
    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        parts = _partitions(conn)
        entities = {"department", "employee", "contract", "purchase"}
        assert set(parts.values()) == {"DEFAULT"} | {f"FOR VALUES IN ('{e}')" for e in entities}
        default_rows = conn.execute(text(f"SELECT count(*) FROM {s.XREF_DEFAULT}")).scalar()
        assert default_rows == 0
        for name, bound in parts.items():
            if bound != "DEFAULT":
                assert _index_defs(conn, name) == {"btree (entity, source, src_id)", "btree (entity, golden_key)"}
        before = conn.execute(text("SELECT count(*) FROM erpoa_xref WHERE entity = 'employee'")).scalar()
        assert before and before > 10
        emp_id = conn.execute(
            text("SELECT src_id FROM erpoa_xref WHERE entity = 'employee' AND source = 'erp' ORDER BY src_id LIMIT 1")
        ).scalar()
        for entity in entities:
            assert has_links(conn, entity)  # read from its partition
        assert not has_links(conn, "nothing")
        conn.execute(text("INSERT INTO erpoa_xref (entity, source, src_id, golden_key) "
                          "VALUES ('legacy', 'erp', '1', 'L')"))
        assert has_links(conn, "legacy")  # in the default partition
        conn.rollback()
    # A later run takes the merge path into the same partitions: no new partition, no duplicate link.
    again, _ = run_sync(config, full_refresh=True)
    assert again.status == "success", again.message
    with engine.connect() as conn:
        assert _partitions(conn) == parts
        assert conn.execute(text("SELECT count(*) FROM erpoa_xref WHERE entity = 'employee'")).scalar() == before
        rows = conn.execute(
            text("SELECT count(*) FROM erpoa_xref WHERE entity = 'employee' AND source = 'erp' AND src_id = :i"),
            {"i": emp_id},
        ).scalar()
        assert rows == 1
    engine.dispose()
