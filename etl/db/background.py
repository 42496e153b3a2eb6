"""Bulk writes in a background thread, one at a time, while the caller prepares the next batch.

A chunk's `COPY` keeps the database server busy while the Python side waits; with the
write in a thread, fetching and mapping the next chunk overlaps it (the server and
Python each have a core). At most one write is in flight, so memory grows by one
chunk at the most. Leaving the block always waits for the write in flight, also when
the block failed: a retry that first deletes what was written must not race a
late commit.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any


class BackgroundWrites:
    """Run write functions one after the other in one thread; `sync=True` runs them at once instead.

    An error of a write is raised by the next `submit`, by `wait`, or when the block ends,
    and again by every later call: a caller that retries its own step after such an error
    must not go on as if the failed write had happened (retry inside the write instead).
    """

    def __init__(self, name: str, *, sync: bool = False) -> None:
        self._pool = None if sync else ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future[Any] | None = None
        self._failed: BaseException | None = None

    def __enter__(self) -> BackgroundWrites:
        return self

    def submit(self, write: Callable[[], Any]) -> None:
        """Start `write` once the previous one has finished (raising its error, if it failed)."""
        self.wait()
        if self._pool is None:
            write()
            return
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        """Wait for the write in flight; raise its error (or that of any earlier write)."""
        pending, self._pending = self._pending, None
        if pending is not None and self._failed is None:
            self._failed = pending.exception()
        if self._failed is not None:
            raise self._failed

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # finished, whatever it did; the block's own error goes on
                self._pending = None
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
