"""An entity's sync lock held across Airflow tasks (from `prepare` to the end of the entity).

Same table (`erpoa_lock`) and names as `etl.engine.lock`, so a DAG run and an
`erpoa sync` never publish the same entity at once. The CLI holds its lock inside
one process; here the holder is the run id and the lock outlives the task that
took it, so no pid is recorded. A lock whose run is finished in the store, or
whose CLI process on this host is gone, is stale and taken over. `release` runs
at the end of each entity and again, for every lock of the run, in the
`finish_run` task whatever happened.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, Engine, RowMapping, delete, select
from sqlalchemy.exc import IntegrityError

from etl.errors import LockedError
from etl.mapping.model import EntityMapping
from etl.store import schema as s
from etl.store.repo import now


def lock_name(entity: str, target: str) -> str:
    """The lock row's name, as `etl.engine.lock.entity_lock` spells it."""
    return f"sync:{entity}@{target}"[:200]


def target_of(mapping: EntityMapping) -> str:
    """`<connection>:<table>` of the entity's target, the second half of the lock name."""
    return mapping.target.connection + ":" + mapping.target.table


def acquire(
    engine: Engine,
    entity: str,
    target: str,
    owner: str,
    *,
    wait_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take the lock for `owner`; taking it again for the same owner (a retried task) succeeds.

    Raises LockedError naming the holder when another live sync keeps it longer than `wait_seconds`.
    """
    name = lock_name(entity, target)
    deadline = time.monotonic() + wait_seconds
    while True:
        holder = _try_acquire(engine, name, owner)
        if holder is None:
            return
        if holder == "retry":
            continue
        if time.monotonic() >= deadline:
            raise LockedError(
                f"{entity}: another sync holds the lock ({holder}); the task is retried with backoff "
                f"until that sync finishes"
            )
        sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def release(engine: Engine, owner: str, names: Iterable[str] | None = None) -> int:
    """Drop the locks `owner` holds (all of them unless `names` is given); returns how many."""
    cond = s.locks.c.owner == owner
    if names is not None:
        cond = cond & s.locks.c.name.in_(list(names))
    with engine.begin() as conn:
        return conn.execute(delete(s.locks).where(cond)).rowcount or 0


def held_by(engine: Engine, owner: str) -> list[str]:
    """Names of the locks `owner` holds."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(s.locks.c.name).where(s.locks.c.owner == owner))]


def _try_acquire(engine: Engine, name: str, owner: str) -> str | None:
    try:
        with engine.begin() as conn:
            conn.execute(
                s.locks.insert().values(
                    name=name, owner=owner, host=socket.gethostname()[:100], pid=None, acquired_at=now()
                )
            )
        return None
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(select(s.locks).where(s.locks.c.name == name)).mappings().first()
        if row is None:
            return "retry"
        if row["owner"] == owner:
            return None
        if _stale(conn, row):
            conn.execute(delete(s.locks).where(s.locks.c.name == name, s.locks.c.owner == row["owner"]))
            return "retry"
        return f"{row['owner']} on {row['host']} since {row['acquired_at']}"


def _stale(conn: Connection, row: RowMapping) -> bool:
    if row["pid"] and row["host"] == socket.gethostname()[:100] and not _alive(int(row["pid"])):
        return True
    finished = conn.execute(select(s.runs.c.finished_at).where(s.runs.c.run_id == row["owner"])).first()
    return finished is not None and finished[0] is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
