"""Database connections dropped mid-extract and mid-publish, on PostgreSQL and MariaDB.

The drop comes from another session, as a DBA or a failover would do it:
`pg_terminate_backend(pid)` for the backend found in `pg_stat_activity` by the
`application_name` each connection URL carries, `KILL <id>` for the MariaDB
thread found in `information_schema.processlist` (the running extract query) or
`information_schema.innodb_trx` (the open publish transaction). A test-only hook
on the engine's fault points fires the kill at a precise moment: after the first
chunk of the extract (the source query is still producing rows) or right after
the upsert inside the publish transaction.

Expected: the stage is retried with exponential backoff up to `run.retries`; a
single drop ends in success with the target equal to the source, a drop on every
attempt ends with "gave up after N retries" and the target exactly as before:
never a partial publish.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, text

from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.engine import pipeline
from etl.engine.pipeline import open_store, run_sync
from etl.engine.retry import with_retries
from etl.errors import SourceUnavailableError
from tests.conftest import MARIADB_ADMIN, PG_ADMIN
from tests.helpers.project import execute_sql, table_checksums
from tests.reliability import on_fault_point, write_tiny_project
from tests.reliability.figures import record

pytestmark = [
    pytest.mark.reliability,
    # PyMySQL's unbuffered cursor complains from __del__ when its connection was killed under it.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

RETRIES = 2
BACKOFF = 0.05
ROWS = 300
# The filter costs the server a few ms per row and every row carries a 300 character note, so the source
# query is still producing rows when the kill arrives after the first chunk: MariaDB sends a result in
# 16 KB packets and a small result would already sit complete in the client's socket buffer.
SLOW_FILTER = {"postgres": "pg_sleep(0.004) IS NOT NULL", "mariadb": "SLEEP(0.004) = 0"}
NOTE = "备注-" * 75

MAPPING = """\
entity: item
key: code
fields:
  code: {{type: string, length: 20, nullable: false}}
  name: {{type: string, length: 100}}
  price: {{type: decimal, scale: 2}}
  note: {{type: string, length: 400}}
  updated_at: {{type: datetime, compare: false}}
sources:
  erp:
    table: erp_item
    id: id
    cursor: modified
    filter: "{filter}"
    fields:
      code: code
      name: name
      price: price
      note: note
      updated_at: modified
target:
  table: md_item
"""

BACKENDS = [pytest.param("postgres", marks=pytest.mark.postgres),
            pytest.param("mariadb", marks=pytest.mark.mariadb)]


@dataclass
class Outage:
    """A project on one server, a way to drop its source or target connection, and what the drops did."""

    backend: str
    config: ProjectConfig
    source_url: str
    target_url: str
    kill_source: Callable[[], int]
    kill_target: Callable[[], int]
    killed: int = 0
    drops: int = 0  # fault-point hits at which connections were dropped (one per attempt)
    sleeps: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def _pg_killer(app: str) -> Callable[[], int]:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")

    def kill() -> int:
        with admin.connect() as conn:
            return int(conn.execute(
                text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                     "WHERE application_name = :app AND pid <> pg_backend_pid()"), {"app": app}).scalar() or 0)

    return kill


def _maria_killer(db: str, *, running_query: bool) -> Callable[[], int]:
    admin = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    find = (
        "SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID() "
        "AND info LIKE 'SELECT%erp_item%'"
        if running_query
        else "SELECT t.trx_mysql_thread_id FROM information_schema.innodb_trx t "
        "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = :db"
    )

    def kill() -> int:
        with admin.connect() as conn:
            ids: list[int] = []
            deadline = time.monotonic() + 2
            # INNODB_TRX is a cache refreshed at most every 0.1 s: ask again until the open transaction shows.
            while not ids and time.monotonic() < deadline:
                ids = [r[0] for r in conn.execute(text(find), {"db": db})]
                if not ids:
                    time.sleep(0.11)
            for thread in ids:
                conn.execute(text(f"KILL {int(thread)}"))
            deadline = time.monotonic() + 5
            while ids and time.monotonic() < deadline and conn.execute(
                text("SELECT COUNT(*) FROM information_schema.processlist WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)), {"ids": ids}).scalar():
                time.sleep(0.02)
        return len(ids)

    return kill


@pytest.fixture(params=BACKENDS)
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    backend = request.param
    if backend == "postgres":
        base = request.getfixturevalue("pg_url")
        tag = base.rsplit("%3D", 1)[1]
        urls = {role: f"{base}&application_name=erpoa_{role}_{tag}" for role in ("erp", "oa", "target", "recon")}
        kill_source, kill_target = _pg_killer(f"erpoa_erp_{tag}"), _pg_killer(f"erpoa_target_{tag}")
    else:
        base = request.getfixturevalue("mariadb_url")
        db = base.rsplit("/", 1)[1].split("?")[0]
        urls = dict.fromkeys(("erp", "oa", "target", "recon"), base)
        kill_source = _maria_killer(db, running_query=True)
        kill_target = _maria_killer(db, running_query=False)
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, "
                             "name VARCHAR(100), price NUMERIC(12, 2), note VARCHAR(400), modified TIMESTAMP NULL)")
    start = datetime(2026, 6, 1, 9, 0, 0)
    execute_sql(urls["erp"], "INSERT INTO erp_item VALUES (:id, :code, :name, :price, :note, :modified)",
                [{"id": i, "code": f"IT{i:05d}", "name": f"物料 {i}", "price": Decimal(i) / 4, "note": f"{NOTE}{i}",
                  "modified": start + timedelta(minutes=i)} for i in range(1, ROWS + 1)])
    path = write_tiny_project(tmp_path / "project", urls, {"item": MAPPING.format(filter=SLOW_FILTER[backend])},
                              retries=RETRIES, backoff=BACKOFF)
    config = load_project(path)
    summary, _ = run_sync(config)
    assert summary.status == "success", summary.message
    # Changes for the sync under test: 20 updates, 10 inserts, 5 deletes.
    later = datetime(2026, 7, 1, 9, 0, 0)
    execute_sql(urls["erp"], "UPDATE erp_item SET name = :name, price = price + 1, modified = :m WHERE id = :id",
                [{"id": i, "name": f"改名 {i}", "m": later + timedelta(minutes=i)} for i in range(10, 210, 10)])
    execute_sql(urls["erp"], "INSERT INTO erp_item VALUES (:id, :code, :name, :price, :note, :modified)",
                [{"id": i, "code": f"IT{i:05d}", "name": f"新物料 {i}", "price": Decimal("9.99"), "note": NOTE,
                  "modified": later + timedelta(hours=5, minutes=i)} for i in range(ROWS + 1, ROWS + 11)])
    execute_sql(urls["erp"], "DELETE FROM erp_item WHERE id IN (3, 33, 133, 233, 299)")
    dispose_all()
    yield Outage(backend, config, urls["erp"], urls["target"], kill_source, kill_target)
    dispose_all()


def expected_rows(outage: Outage) -> list[tuple[str, str, Decimal, bool]]:
    """The target after a successful sync: every source row active, the five deleted ones inactive."""
    engine = create_engine(outage.source_url)
    with engine.connect() as conn:
        rows = {r[0]: (r[1], Decimal(r[2])) for r in conn.execute(text("SELECT code, name, price FROM erp_item"))}
    engine.dispose()
    out = [(code, name, price, True) for code, (name, price) in rows.items()]
    out += [(f"IT{i:05d}", f"物料 {i}", Decimal(i) / 4, False) for i in (3, 33, 133, 233, 299)]
    return sorted(out)


def target_state(outage: Outage) -> list[tuple[str, str, Decimal, bool]]:
    engine = create_engine(outage.target_url)
    with engine.connect() as conn:
        rows = [(r[0], r[1], Decimal(r[2]).quantize(Decimal("0.01")), bool(r[3]))
                for r in conn.execute(text("SELECT code, name, price, _active FROM md_item"))]
    engine.dispose()
    return sorted(rows)


def sync_under_outage(outage: Outage, monkeypatch: pytest.MonkeyPatch, point: str, kill: Callable[[], int],
                      every: bool) -> pipeline.SyncSummary:
    """Full sync; at `point` (every hit, or only the first) drop the connection. Records backoff sleeps and errors."""

    def recording_retries(fn: Callable[[], Any], **kwargs: Any) -> Any:
        return with_retries(fn, sleep=lambda s: (outage.sleeps.append(s), time.sleep(s)), **kwargs)

    real_sync_entity = pipeline.sync_entity

    def recording_sync_entity(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_sync_entity(*args, **kwargs)
        except BaseException as exc:
            outage.errors.append(exc)
            raise

    def drop(name: str, hit: int) -> None:
        if name == point and (every or hit == 1):
            killed = kill()
            outage.killed += killed
            outage.drops += killed > 0

    monkeypatch.setattr(pipeline, "with_retries", recording_retries)
    monkeypatch.setattr(pipeline, "sync_entity", recording_sync_entity)
    with on_fault_point(drop):
        summary, _ = run_sync(outage.config, full_refresh=True)
    return summary


CASES = {
    "source dropped once mid-extract": ("extract.chunk_staged", "source", False),
    "source dropped on every attempt": ("extract.chunk_staged", "source", True),
    "target dropped once mid-publish": ("publish.upserted", "target", False),
    "target dropped on every attempt": ("publish.upserted", "target", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dropped_connection_is_retried_then_succeeds_or_gives_up_cleanly(
    outage: Outage, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    point, side, every = CASES[case]
    before = table_checksums(outage.target_url, ("md_item", "erpoa_src_item"))
    store = open_store(outage.config)
    mark_before = store.watermark("item", "erp")
    kill = outage.kill_source if side == "source" else outage.kill_target
    started = time.monotonic()
    summary = sync_under_outage(outage, monkeypatch, point, kill, every)
    seconds = time.monotonic() - started
    gc.collect()  # the killed connections' cursors complain when collected: here, under this module's filter
    assert outage.killed >= 1, f"no {side} connection was found to drop at {point}"
    if every:
        assert summary.status == "failed"
        message = summary.entities[0].message or ""
        assert f"gave up after {RETRIES} retries" in message, message
        assert "database unavailable" in message and "will be retried" not in message, message
        assert [type(e) for e in outage.errors] == [SourceUnavailableError]
        assert outage.sleeps == [BACKOFF * 2**i for i in range(RETRIES)]
        # Every attempt was cut: one drop per attempt (at publish, the cross-reference load's read of the
        # gold rows is a second target session of the same attempt, so more connections than attempts).
        assert outage.drops == RETRIES + 1
        assert outage.killed >= outage.drops
        # Nothing half-published: target and mirror byte-identical to before, watermark unmoved.
        assert table_checksums(outage.target_url, ("md_item", "erpoa_src_item")) == before
        assert store.watermark("item", "erp") == mark_before
        outcome = "gave up, target unchanged"
    else:
        assert summary.status == "success", summary.message
        assert outage.sleeps == [BACKOFF]
        assert target_state(outage) == expected_rows(outage)
        again, _ = run_sync(outage.config, full_refresh=True)
        assert (again.entities[0].inserted, again.entities[0].updated, again.entities[0].inactivated) == (0, 0, 0)
        outcome = "retried, target equals source"
    record(
        f"test_outages::{outage.backend}::{case}",
        f"{outage.backend}: {case}",
        f"{side.capitalize()} connection dropped at `{point}` "
        + ("on every attempt: the sync retries with backoff, then gives up with a clear message and the target "
           "exactly as before." if every else "once: the stage is retried and the target ends equal to the source."),
        faults_injected=outage.killed,
        retries=len(outage.sleeps),
        backoff_seconds=outage.sleeps,
        rows_checked=len(expected_rows(outage)),
        rows_lost=0,
        duplicates=0,
        outcome=outcome,
        seconds=round(seconds, 1),
    )


@pytest.mark.parametrize(
    "recon",
    [pytest.param("postgresql+psycopg://root@127.0.0.1:1/test", marks=pytest.mark.postgres, id="postgres"),
     pytest.param("mysql+pymysql://root@127.0.0.1:1/test", marks=pytest.mark.mariadb, id="mariadb")],
)
def test_an_unreachable_store_is_retried_with_backoff_then_gives_up_cleanly(
    recon: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is database work like any other: a sync retries opening it with the run's backoff, and the
    final message names the connection and never promises a retry that will not come."""
    urls = {"erp": f"sqlite:///{tmp_path / 'erp.db'}", "oa": f"sqlite:///{tmp_path / 'oa.db'}",
            "target": f"sqlite:///{tmp_path / 'target.db'}", "recon": recon}
    execute_sql(urls["erp"], "CREATE TABLE erp_item (id INTEGER PRIMARY KEY, code VARCHAR(20), name VARCHAR(100), "
                             "price NUMERIC(12, 2), note VARCHAR(400), modified TIMESTAMP)")
    config = load_project(write_tiny_project(tmp_path / "project", urls, {"item": MAPPING.format(filter="1=1")},
                                             retries=RETRIES, backoff=BACKOFF))
    sleeps: list[float] = []

    def recording_retries(fn: Callable[[], Any], **kwargs: Any) -> Any:
        return with_retries(fn, sleep=sleeps.append, **kwargs)

    monkeypatch.setattr(pipeline, "with_retries", recording_retries)
    with pytest.raises(SourceUnavailableError) as caught:
        run_sync(config)
    message = str(caught.value)
    assert sleeps == [BACKOFF * 2**i for i in range(RETRIES)]
    assert message.startswith("opening the reconciliation store: connections.recon ("), message
    assert message.endswith(f"(gave up after {RETRIES} retries)") and "will be retried" not in message
    sleeps.clear()
    with pytest.raises(SourceUnavailableError) as caught:
        open_store(config)  # read-only commands (`status`): the first failure, no retry claimed
    assert sleeps == [] and "will be retried" not in str(caught.value) and "gave up" not in str(caught.value)
    dispose_all()
