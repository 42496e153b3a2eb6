"""The entity's tables on PostgreSQL: run-scoped work tables are UNLOGGED, target and mirror are not."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from etl.db.write import plain_indexes
from etl.engine.tables import EntityTables, build_indexes, start_bulk_load
from etl.mapping.loader import load_mappings

pytestmark = pytest.mark.postgres

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _persistence(engine: Engine, names: list[str]) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(:n) AND relkind = 'r'"),
            {"n": names},
        ).all()
    return {r[0]: r[1] for r in rows}


def test_stage_and_gold_are_unlogged_target_and_mirror_are_logged(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.create(engine)
    names = [tables.target.name, tables.mirror.name, tables.stage.name, tables.gold.name]
    assert _persistence(engine, names) == {
        tables.target.name: "p",
        tables.mirror.name: "p",
        tables.stage.name: "u",
        tables.gold.name: "u",
    }
    engine.dispose()


def test_work_tables_created_logged_by_an_older_version_become_unlogged_and_keep_their_rows(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.metadata.create_all(engine, tables=[tables.stage, tables.gold])  # as before: logged
    with engine.begin() as conn:
        conn.execute(tables.stage.insert().values(_run="r1", _source="erp", _src_id="1", _status="ok"))
    assert set(_persistence(engine, [tables.stage.name, tables.gold.name]).values()) == {"p"}
    tables.create(engine, work_only=True)
    assert set(_persistence(engine, [tables.stage.name, tables.gold.name]).values()) == {"u"}
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT _src_id FROM {tables.stage.name}")).scalars().all() == ["1"]
    tables.create(engine, work_only=True)  # again: nothing to change, no error
    engine.dispose()


def _index_defs(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(
            text("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(:t)"), {"t": table}
        ).scalars())


def test_a_bulk_load_empties_the_stage_and_drops_its_indexes_until_they_are_built_again(pg_url: str) -> None:
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.create(engine)
    indexed = _index_defs(engine, tables.stage.name)
    assert len(indexed) == 3
    assert any("WHERE" in d and "'held'" in d and "'duplicate'" in d for d in indexed)  # set-aside rows only
    with engine.begin() as conn:
        conn.execute(tables.stage.insert().values(_run="old", _source="erp", _src_id="1", _status="ok"))
        start_bulk_load(conn, tables.stage)
    assert _index_defs(engine, tables.stage.name) == set()
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {tables.stage.name}")).scalar() == 0
    build_indexes(engine, tables.stage)
    assert _index_defs(engine, tables.stage.name) == indexed
    build_indexes(engine, tables.stage)  # again: nothing missing, no error
    engine.dispose()


@pytest.mark.parametrize("backend", [pytest.param("sqlite", marks=pytest.mark.sqlite),
                                     pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_build_indexes_makes_only_the_missing_ones_on_sqlite_and_mariadb_too(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'work.db'}" if backend == "sqlite" else request.getfixturevalue("mariadb_url")
    tables = EntityTables.build(load_mappings(MAPPINGS).entity("purchase"))
    engine = create_engine(url)
    tables.create(engine)

    def names() -> set[str]:
        return {i["name"] for i in inspect(engine).get_indexes(tables.stage.name)}

    built = names()
    assert len(built) >= 2
    dropped = sorted(built)[0]
    with engine.begin() as conn:
        on = "" if backend == "sqlite" else f" ON {tables.stage.name}"
        conn.execute(text(f"DROP INDEX {dropped}{on}"))
    assert names() == built - {dropped}
    build_indexes(engine, tables.stage)
    assert names() == built
    build_indexes(engine, tables.stage)  # again: nothing missing, no error
    engine.dispose()


def test_prepare_keeps_the_rows_a_retried_run_staged_and_bulk_loads_a_new_run(tmp_path: Path, pg_url: str) -> None:
    from etl.engine import extract
    from etl.engine.context import SyncContext
    from etl.engine.pipeline import load_project_mappings, open_store
    from tests.helpers.project import make_project

    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    engine = create_engine(pg_url)

    def context(run_id: str) -> SyncContext:
        return SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config),
                           run_id=run_id)

    def staged() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT DISTINCT _run FROM erpoa_stage_department")).scalars())

    first = context("run-1")
    extract.prepare(first, "department")
    stage = first.tables(first.mapping("department")).stage.name
    assert _index_defs(engine, stage) == set()
    extract.extract_source(first, "department", "erp")
    extract.prepare(first, "department")  # a retry of the same run: its staged rows stay
    assert staged() == ["run-1"]
    assert extract.partitions(first, "department") >= 1
    assert len(_index_defs(engine, stage)) == 3
    second = context("run-2")
    extract.prepare(second, "department")  # a new run: the old rows go, the indexes wait for its load
    assert staged() == []
    assert _index_defs(engine, stage) == set()
    engine.dispose()


def test_a_partitions_first_merge_deletes_no_gold_rows_only_when_the_run_had_none(tmp_path: Path, pg_url: str) -> None:
    from etl.engine import build, extract
    from etl.engine.context import SyncContext
    from etl.engine.pipeline import load_project_mappings, open_store
    from tests.helpers.project import make_project

    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    engine = create_engine(pg_url)

    def staged_run(run_id: str) -> tuple[SyncContext, int]:
        ctx = SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config),
                          run_id=run_id)
        extract.prepare(ctx, "department")
        for source in ctx.mapping("department").sources:
            extract.extract_source(ctx, "department", source)
        return ctx, extract.partitions(ctx, "department")

    def gold(run_id: str) -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT _key FROM erpoa_gold_department WHERE _run = :r ORDER BY _key"),
                                     {"r": run_id}).scalars())

    first, parts = staged_run("run-1")
    with engine.begin() as conn:  # as an earlier attempt of this run would have left it
        conn.execute(text("INSERT INTO erpoa_gold_department (_run, _key, _bucket, _action) "
                          "VALUES ('run-1', 'planted', 0, 'insert')"))
    build.expect_fresh_gold(first, "department", parts)
    assert first.fresh_gold == set()
    for p in range(parts):
        build.build_partition(first, "department", p, parts)
    keys = gold("run-1")
    assert "planted" not in keys and len(keys) == len(set(keys)) > 0

    second, parts = staged_run("run-2")  # a new run: prepare emptied the gold table
    build.expect_fresh_gold(second, "department", parts)
    assert second.fresh_gold == {("department", p) for p in range(parts)}
    for p in range(parts):
        build.build_partition(second, "department", p, parts)
    assert second.fresh_gold == set()  # used once: a retry of a partition deletes what it wrote
    assert gold("run-2") == keys
    with engine.begin() as conn:  # a row the merge set aside comes back when the partition is merged again
        conn.execute(text("UPDATE erpoa_stage_department SET _status = 'held' WHERE _run = 'run-2' AND _key = :k"),
                     {"k": keys[0]})
    for p in range(parts):
        build.build_partition(second, "department", p, parts)
    assert gold("run-2") == keys
    with engine.connect() as conn:  # written without the gold table's indexes (the key lookups build them)
        assert plain_indexes(conn, "erpoa_gold_department") == []
    extract.prepare(second, "department")  # a retry of run-2: its gold rows, read from one row, stay
    assert gold("run-2") == keys
    extract.prepare(SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config),
                                run_id="run-3"), "department")
    assert gold("run-2") == [] and gold("run-3") == []
    engine.dispose()


def test_each_staged_chunk_is_written_in_bucket_order(tmp_path: Path, pg_url: str) -> None:
    """A merge partition is a bucket range: staged in bucket order, its rows fill a few neighbouring pages
    of each chunk instead of a few rows of every page of the stage."""
    from etl.engine import extract
    from etl.engine.context import SyncContext
    from etl.engine.pipeline import load_project_mappings, open_store
    from etl.engine.tables import BUCKETS
    from tests.helpers.project import make_project

    config, _ = make_project(
        tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url}, chunk_size=100
    )
    ctx = SyncContext(config=config, mappings=load_project_mappings(config), store=open_store(config), run_id="r")
    extract.prepare(ctx, "employee")
    counts = extract.extract_source(ctx, "employee", "erp")
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        buckets = list(
            conn.execute(text("SELECT _bucket FROM erpoa_stage_employee WHERE _status = 'ok' ORDER BY ctid")).scalars()
        )
    engine.dispose()
    chunks = -(-counts["read"] // 100) + 1  # the driver's first row may come alone
    descents = sum(b < a for a, b in itertools.pairwise(buckets))
    assert len(buckets) >= 100 and len(set(buckets)) > 50 and max(buckets) > BUCKETS // 2
    assert descents < chunks  # one sorted run per chunk; in extraction order about every other row descends


def test_bookkeeping_text_sorts_bytewise_and_still_joins_tables_of_the_default_collation(pg_url: str) -> None:
    """Keys, source ids, runs and statuses are in the "C" collation (the byte order of MariaDB's binary
    collation and SQLite); the mapping's own fields keep the database's. A mirror created before, in the
    default collation, still joins a new stage on source ids."""
    mapping = load_mappings(MAPPINGS).entity("purchase")
    tables = EntityTables.build(mapping)
    engine = create_engine(pg_url)
    tables.create(engine)
    with engine.begin() as conn:
        collations = dict(
            conn.execute(
                text("SELECT a.attrelid::regclass::text || '.' || a.attname, c.collname FROM pg_attribute a "
                     "JOIN pg_collation c ON c.oid = a.attcollation WHERE a.attrelid = ANY(CAST(:t AS regclass[])) "
                     "AND a.attnum > 0"),
                {"t": [tables.target.name, tables.mirror.name, tables.stage.name, tables.gold.name]},
            ).all()
        )
        conn.execute(text(f"DROP TABLE {tables.mirror.name}"))
        conn.execute(text(f"CREATE TABLE {tables.mirror.name} (_source varchar(40), _src_id varchar(255))"))
        conn.execute(text(f"INSERT INTO {tables.mirror.name} VALUES ('erp', 'a1'), ('erp', 'A1')"))
        conn.execute(text(f"INSERT INTO {tables.stage.name} (_run, _source, _src_id, _status) VALUES "
                          "('r', 'erp', 'a1', 'ok'), ('r', 'erp', 'b', 'ok')"))
        joined = conn.execute(
            text(f"SELECT m._src_id FROM {tables.mirror.name} m JOIN {tables.stage.name} s "
                 "ON s._source = m._source AND s._src_id = m._src_id")
        ).scalars().all()
        ordered = conn.execute(text(f"SELECT _src_id FROM {tables.stage.name} ORDER BY _src_id")).scalars().all()
    engine.dispose()
    for column in ("_source", "_src_id", "_key", "_run"):
        assert collations[f"{tables.mirror.name}.{column}"] == "C"
    for column in ("_run", "_source", "_src_id", "_status", "_key"):
        assert collations[f"{tables.stage.name}.{column}"] == "C"
    assert collations[f"{tables.gold.name}._action"] == collations[f"{tables.target.name}._key"] == "C"
    assert collations[f"{tables.target.name}.request_no"] == "default"
    assert joined == ["a1"]
    assert ordered == ["a1", "b"]


def test_a_published_run_leaves_an_empty_stage_not_dead_rows(tmp_path: Path, pg_url: str) -> None:
    """The stage is truncated once the run is published: its space comes back at once, and the next run's
    first look at the stage reads no dead rows."""
    from etl.engine.pipeline import run_sync
    from tests.helpers.project import make_project

    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    summary, _ = run_sync(config, entities=["department", "employee"], full_refresh=True)
    assert summary.status == "success", summary.message
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        sizes = {
            name: conn.execute(text(f"SELECT count(*), pg_relation_size('{name}') FROM {name}")).one()
            for name in ("erpoa_stage_department", "erpoa_stage_employee", "erpoa_gold_employee")
        }
    engine.dispose()
    assert sizes["erpoa_stage_department"] == (0, 0)
    assert sizes["erpoa_stage_employee"] == (0, 0)
    assert sizes["erpoa_gold_employee"][0] > 100  # gold rows stay for the run's report


def _vacuums_during_sync(config: Any, app: str, watch_url: str, **options: Any) -> dict[str, list[str]]:
    """Run a sync; for every VACUUM it sends, the transactions the sync's own connections (named `app`) held open."""
    from sqlalchemy import event

    from etl.engine.pipeline import run_sync

    watcher = create_engine(watch_url, isolation_level="AUTOCOMMIT")
    held: dict[str, list[str]] = {}

    def look(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("VACUUM"):
            with watcher.connect() as w:
                held[statement] = w.execute(
                    text(
                        "SELECT query FROM pg_stat_activity WHERE application_name = :app"
                        " AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL"
                        " OR state LIKE 'idle in transaction%')"
                    ),
                    {"app": app},
                ).scalars().all()

    event.listen(Engine, "before_cursor_execute", look)
    try:
        summary, _ = run_sync(config, entities=["department", "employee"], **options)
    finally:
        event.remove(Engine, "before_cursor_execute", look)
        watcher.dispose()
    assert summary.status == "success", summary.message
    return held


def test_a_large_publish_leaves_the_mirror_vacuumed(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a publish of many rows the mirror is vacuumed, so that the deletion sweep can read a source's ids
    from the primary key alone: a first load's mirror when it is built, a later one once no transaction of the
    sync is open (any would keep its rows from being marked visible to all).

    Whether the pages then are all-visible also depends on every other transaction in the database (a test
    beside it, autovacuum's ANALYZE), so the test looks at the sync's own connections when the VACUUM is sent."""
    from etl.engine import publish
    from tests.helpers.project import execute_sql, make_project

    app = f"erpoa_vacuum_{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&application_name={app}"
    monkeypatch.setattr(publish, "STATISTICS_MIN_ROWS", 10)  # the demo is small
    config, _ = make_project(tmp_path / "p", {"erp": url, "oa": url, "target": url, "recon": url})

    first = _vacuums_during_sync(config, app, pg_url, full_refresh=True)
    # the first load's mirror is built beside the merge and vacuumed there (`etl.engine.mirror_swap`)
    assert [s for s in first if "erpoa_src_employee" in s] == ["VACUUM (ANALYZE) erpoa_src_employee_next"]

    execute_sql(url, 'UPDATE hr_hi_person SET "cPsn_Name" = "cPsn_Name" || \'·\', "dModifyDate" = :m',
                {"m": datetime.now().replace(microsecond=0)})
    second = _vacuums_during_sync(config, app, pg_url)
    vacuums = {s: held for s, held in second.items() if "erpoa_src_employee" in s}
    assert list(vacuums) == ["VACUUM (ANALYZE) erpoa_src_employee"]
    assert list(vacuums.values()) == [[]]  # no transaction of the sync open to hold its rows back


def test_the_heap_is_frozen_once_per_process() -> None:
    """`build.freeze_heap` at an entity's start: later collections skip what the process had loaded."""
    import subprocess
    import sys

    code = (
        "import gc; from etl.engine import build; build.freeze_heap(); n = gc.get_freeze_count(); "
        "build.freeze_heap(); assert gc.get_freeze_count() == n > 10000, n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
