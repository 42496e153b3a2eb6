"""What a first load builds beside the merge, in a thread of its own, for the publish to swap in.

While the partitions are merged, the server has a core to spare: the merge is Python's work,
and only the gold rows' writes keep the server busy. On the first load of an entity into
PostgreSQL that core builds the new mirror (`etl.engine.mirror_swap`) and, when the store is
the target's database, the entity's cross-reference partition (`etl.engine.xref_partition`),
which the publish would otherwise copy and index while everything else waits for it. `run_sync`
builds them in a thread during its merge loop (`building`); the Airflow DAG in a task of its own
beside the mapped merge tasks (`build_now`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from etl.engine import mirror_swap, xref_partition
from etl.engine.context import SyncContext

log = logging.getLogger("erpoa.publish")


@contextmanager
def building(ctx: SyncContext, entity: str) -> Iterator[None]:
    """Build what the entity's first load can use while the block runs (the merge); wait for it when it ends.

    A build that fails only costs the publish its shortcut: it is logged, never raised.
    """
    jobs = _jobs(ctx, entity)
    if not jobs:
        yield
        return
    thread = threading.Thread(target=_run, args=(ctx, entity, jobs), name=f"erpoa-prebuild-{entity}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def build_now(ctx: SyncContext, entity: str) -> list[str]:
    """Build them here and now (the Airflow task beside the merge tasks); returns what was built."""
    return _run(ctx, entity, _jobs(ctx, entity))


Job = tuple[str, Callable[[SyncContext, str], Any]]


def _jobs(ctx: SyncContext, entity: str) -> list[Job]:
    jobs: list[Job] = []
    if mirror_swap.can_build(ctx, entity):
        jobs.append(("mirror", mirror_swap.build))
    if xref_partition.can_build(ctx, entity):
        jobs.append(("cross-reference partition", xref_partition.build))
    return jobs


def _run(ctx: SyncContext, entity: str, jobs: list[Job]) -> list[str]:
    built = []
    for what, job in jobs:
        try:
            if job(ctx, entity) is not None:
                built.append(what)
        except Exception as exc:  # an optimisation: the publish copies the rows instead
            log.warning("%s: could not build the new %s beside the merge (the publish copies the rows): %s",
                        entity, what, exc)
    return built
