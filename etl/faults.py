"""Named fault-injection points for the crash and outage tests.

`ERPOA_FAULT=publish.upserted:1` kills the process with SIGKILL the first time
the point `publish.upserted` is reached (`:N` for the N-th time). Unset, a point
costs one dictionary lookup. Production runs never set the variable.
"""

from __future__ import annotations

import os
import signal

from etl import settings

_spec = settings.getenv("ERPOA_FAULT") or ""
_name, _, _count = _spec.partition(":")
_target = int(_count or 1) if _name else 0
_seen: dict[str, int] = {}

POINTS = (
    "sync.start",
    "extract.prepared",
    "extract.chunk_staged",
    "extract.source_done",
    "extract.vanished_marked",
    "extract.watermark_pending",
    "merge.start",
    "merge.gold_written",
    "gate.decided",
    "publish.begin",
    "publish.upserted",
    "publish.inactivated",
    "publish.mirror_deleted",
    "publish.mirror_upserted",
    "publish.committed",
    "finalize.watermarks",
    "finalize.xref_chunk",
    "finalize.resolved",
    "entity.reconciled",
    "entity.cleaned",
    "entity.recorded",
    "run.finished",
    # approval flows: see etl.flows.FLOW_POINTS
)


def point(name: str) -> None:
    """Crash here if this point was selected by ERPOA_FAULT."""
    if name != _name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == _target:
        os.kill(os.getpid(), signal.SIGKILL)
