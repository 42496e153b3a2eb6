"""A lock per (entity, target) in the reconciliation store, so two syncs never publish the same entity at once.

A lock left behind by a killed process on this host is detected (its pid is gone)
and taken over; a live holder makes the second sync wait up to `wait_seconds`,
then exit with a message naming the holder.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from etl.errors import LockedError
from etl.store import schema as s
from etl.store.repo import now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_acquire(engine: Engine, name: str, owner: str) -> str | None:
    host = socket.gethostname()[:100]
    try:
        with engine.begin() as conn:
            conn.execute(s.locks.insert().values(name=name, owner=owner, host=host, pid=os.getpid(), acquired_at=now()))
        return None
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(select(s.locks).where(s.locks.c.name == name)).mappings().first()
        if row is None:
            return "retry"
        if row["host"] == host and row["pid"] and not _alive(int(row["pid"])):
            conn.execute(delete(s.locks).where(s.locks.c.name == name, s.locks.c.owner == row["owner"]))
            return "retry"
        return f"{row['owner']} on {row['host']} (pid {row['pid']}) since {row['acquired_at']}"


@contextmanager
def entity_lock(engine: Engine, entity: str, target: str, owner: str, *, wait_seconds: float = 0) -> Iterator[None]:
    """Hold the lock for `entity` on `target` for the duration of the block."""
    name = f"sync:{entity}@{target}"[:200]
    deadline = time.monotonic() + wait_seconds
    while True:
        holder = _try_acquire(engine, name, owner)
        if holder is None:
            break
        if holder == "retry":
            continue
        if time.monotonic() >= deadline:
            raise LockedError(
                f"{entity}: another sync holds the lock ({holder}); wait for it to finish, "
                f"or pass --wait SECONDS to queue behind it"
            )
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(delete(s.locks).where(s.locks.c.name == name, s.locks.c.owner == owner))
