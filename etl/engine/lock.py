"""A lock per (entity, target) in the reconciliation store, so two syncs never publish the same entity at once.

One row per lock in `erpoa_lock`, owned by a run id. The CLI holds a lock inside one
process (`entity_lock`, which records the pid); an Airflow run holds it across tasks
(`etl.orchestration.locking`, no pid). A lock is stale, and taken over, when its
process on this host is gone or its run is finished in the store; a run whose process
is gone, still `running` in the store, is then marked failed (it can never finish it).
A live holder makes the second sync wait up to `wait_seconds`, then fail with a message naming it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, RowMapping, delete, select, update
from sqlalchemy.exc import IntegrityError

from etl.errors import LockedError
from etl.store import schema as s
from etl.store.repo import now

#: How `acquire` names a holder that is an Airflow DAG run, and what it tells the one waiting.
AIRFLOW_HOLDER = "an Airflow DAG run holds the lock"
AIRFLOW_HINT = (
    "it releases it when its finish_run task ends. If that DAG run is no longer running (e.g. its worker was "
    "killed), clear its finish_run task in Airflow to release the lock; waiting does not help then"
)
#: The store's trigger of the runs of the Airflow DAGs (`etl.orchestration`).
AIRFLOW_TRIGGER = "airflow"


def lock_name(entity: str, target: str) -> str:
    """The lock row's name for `entity` published to `target`."""
    return f"sync:{entity}@{target}"[:200]


def acquire(
    engine: Engine,
    name: str,
    owner: str,
    *,
    what: str,
    hint: str,
    pid: int | None = None,
    wait_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take lock `name` for `owner`; taking it again for the same owner (a retried task) succeeds.

    Raises LockedError (`<what>: another sync holds the lock (<holder>); <hint>`) when another
    live sync keeps it longer than `wait_seconds`. When the holder is an Airflow DAG run (no
    process to wait for), the hint says so and how to release a lock its killed run left.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        holder = _try_acquire(engine, name, owner, pid)
        if holder is None:
            return
        if holder == "retry":
            continue
        if time.monotonic() >= deadline:
            if holder.startswith(AIRFLOW_HOLDER):
                raise LockedError(f"{what}: {holder}; {AIRFLOW_HINT}")
            raise LockedError(f"{what}: another sync holds the lock ({holder}); {hint}")
        sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def release(engine: Engine, owner: str, names: Iterable[str] | None = None) -> int:
    """Drop the locks `owner` holds (all of them unless `names` is given); returns how many."""
    cond = s.locks.c.owner == owner
    if names is not None:
        cond = cond & s.locks.c.name.in_(list(names))
    with engine.begin() as conn:
        return conn.execute(delete(s.locks).where(cond)).rowcount or 0


@contextmanager
def entity_lock(engine: Engine, entity: str, target: str, owner: str, *, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the lock for `entity` on `target` for the duration of the block (this process)."""
    name = lock_name(entity, target)
    acquire(
        engine,
        name,
        owner,
        what=entity,
        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
        pid=os.getpid(),
        wait_seconds=wait_seconds,
    )
    try:
        yield
    finally:
        release(engine, owner, [name])


def _try_acquire(engine: Engine, name: str, owner: str, pid: int | None) -> str | None:
    """None when `owner` holds the lock now; "retry" after removing a stale one; else who holds it."""
    try:
        with engine.begin() as conn:
            conn.execute(s.locks.insert().values(name=name, owner=owner, host=_host(), pid=pid, acquired_at=now()))
        return None
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(select(s.locks).where(s.locks.c.name == name)).mappings().first()
        if row is None:
            return "retry"
        if row["owner"] == owner:
            return None
        stale = _stale(conn, row)
        if stale:
            conn.execute(delete(s.locks).where(s.locks.c.name == name, s.locks.c.owner == row["owner"]))
            if stale == "process gone":
                _fail_orphaned_run(conn, row, owner)
            return "retry"
        process = f" (pid {row['pid']})" if row["pid"] else ""
        if not row["pid"] and _trigger(conn, row["owner"]) == AIRFLOW_TRIGGER:  # held across tasks, no process
            return f"{AIRFLOW_HOLDER} (run {row['owner']}, taken on {row['host']} at {row['acquired_at']})"
        return f"{row['owner']} on {row['host']}{process} since {row['acquired_at']}"


def _trigger(conn: Connection, run_id: str) -> str | None:
    """The trigger the store recorded for run `run_id` (`airflow` for a DAG run), None when unknown."""
    found = conn.execute(select(s.runs.c.trigger).where(s.runs.c.run_id == run_id)).first()
    return str(found[0]) if found is not None else None


def _stale(conn: Connection, row: RowMapping) -> str | None:
    """Why the lock `row` is stale ("process gone" or "run finished"), or None while its holder may live."""
    if row["pid"] and row["host"] == _host() and not _alive(int(row["pid"])):
        return "process gone"
    finished = conn.execute(select(s.runs.c.finished_at).where(s.runs.c.run_id == row["owner"])).first()
    return "run finished" if finished is not None and finished[0] is not None else None


def _fail_orphaned_run(conn: Connection, row: RowMapping, taker: str) -> None:
    """Mark the run that held the lock `row` failed, when the store still shows it running: its process is gone,
    so nothing else would ever finish it (`erpoa status` would show it running forever)."""
    message = (
        f"its process (pid {row['pid']} on {row['host']}) ended without finishing "
        f"(the lock {row['name']} was taken over by run {taker})"
    )
    conn.execute(
        update(s.runs)
        .where(s.runs.c.run_id == row["owner"], s.runs.c.status == "running")
        .values(status="failed", finished_at=now(), message=message)
    )
    conn.execute(  # the entity it was syncing, which `erpoa status` lists under the run
        update(s.entity_runs)
        .where(s.entity_runs.c.run_id == row["owner"], s.entity_runs.c.status == "running")
        .values(status="failed", message=message)
    )


def _host() -> str:
    return socket.gethostname()[:100]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
