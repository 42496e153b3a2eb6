"""Each expectation's configuration built once per validation instead of at every lookup.

Great Expectations 1.x rebuilds an expectation's `configuration` (a pydantic `dict()` of the
model and a new `ExpectationConfiguration`) each time it is read, and reads it for every
keyword argument it looks up while building an expectation's metric graph: ~12,000 rebuilds
for the 21 expectations of the purchase suite on one partition, about a third of the gate's
time. Nothing changes an expectation while it is validated, so within one validation the
first configuration built for an expectation object is the one every later lookup gets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from great_expectations.expectations.expectation import Expectation

_installed = threading.Lock()


@contextmanager
def memoized_configurations() -> Iterator[None]:
    """Within the block, `Expectation.configuration` is built once per expectation object (in this thread).

    Other threads keep GX's own behaviour. When GX no longer defines `configuration` as a plain
    property, nothing is changed.
    """
    original = Expectation.__dict__.get("configuration")
    if not isinstance(original, property) or original.fget is None or not _installed.acquire(blocking=False):
        yield  # another thread's validation holds it (or GX changed): GX's own behaviour
        return
    build = original.fget
    owner = threading.get_ident()
    memo: dict[int, tuple[Expectation, Any]] = {}  # keeps each object alive, so its id is not reused meanwhile

    def configuration(self: Expectation) -> Any:
        if threading.get_ident() != owner:
            return build(self)
        hit = memo.get(id(self))
        if hit is None or hit[0] is not self:
            hit = memo[id(self)] = (self, build(self))
        return hit[1]

    Expectation.configuration = property(configuration, doc=original.__doc__)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Expectation.configuration = original  # type: ignore[method-assign,assignment]
        _installed.release()
