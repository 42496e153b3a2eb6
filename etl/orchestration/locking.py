"""An entity's sync lock held across Airflow tasks (from `prepare` to the end of the entity).

The same locks as `etl.engine.lock`, so a DAG run and an `erpoa sync` never publish the
same entity at once. Here the holder is the run id and the lock outlives the task that
took it, so no pid is recorded: the lock is stale once its run is finished in the store.
`release` runs at the end of each entity and again, for every lock of the run, in the
`finish_run` task whatever happened.

Only `prepare` takes the lock; every later stage of the entity checks with `require`
that the run still holds it. A stage cleared after `finish_run` released it does not
take it back: another sync may have published the entity and dropped this run's
staging in between, so the entity must start again from `prepare`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, select

from etl.engine import lock
from etl.engine.lock import lock_name, release
from etl.errors import TerminalError
from etl.mapping.model import EntityMapping
from etl.orchestration.errors import last_try
from etl.store import schema as s

__all__ = ["LockLostError", "acquire", "held_by", "lock_name", "release", "require", "target_of"]


class LockLostError(TerminalError):
    """A stage after `prepare` runs while its run does not hold the entity lock (e.g. cleared after finish_run)."""


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
    final = last_try()
    hint = (
        f"it still held it on try {final[0]} of {final[1]}"
        if final
        else "the task is retried with backoff until that sync finishes"
    )
    lock.acquire(
        engine,
        lock_name(entity, target),
        owner,
        what=entity,
        hint=hint,
        wait_seconds=wait_seconds,
        sleep=sleep,
    )


def held_by(engine: Engine, owner: str) -> list[str]:
    """Names of the locks `owner` holds."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(s.locks.c.name).where(s.locks.c.owner == owner))]


def require(engine: Engine, entity: str, target: str, owner: str, *, stage: str) -> None:
    """Raise LockLostError unless `owner` holds the lock of `entity` on `target`."""
    name = lock_name(entity, target)
    with engine.connect() as conn:
        holder = conn.execute(select(s.locks.c.owner).where(s.locks.c.name == name)).scalar()
    if holder == owner:
        return
    now = f"{holder} holds it now" if holder else "nobody holds it now"
    raise LockLostError(
        f"{entity}: {stage} refused: run {owner} no longer holds the entity lock ({now}; finish_run releases it "
        f"when the run ends); to run the entity again, clear {entity}.prepare with its downstream tasks"
    )
