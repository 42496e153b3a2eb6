"""Named fault-injection points for the crash and outage tests.

`ERPOA_FAULT=publish.upserted:1` kills the process with SIGKILL the first time
the point `publish.upserted` is reached (`:N` for the N-th time). With a third
part, `ERPOA_FAULT=extract.prepared:1:pause`, the process instead writes
`<gate>.paused` and blocks until the file `<gate>` exists (`ERPOA_FAULT_GATE`),
so a test can act from outside at that precise moment: drop the process's
database connection, start a competing sync. Unset, a point costs one string
comparison. Production runs never set the variables.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from etl import settings

ACTIONS = ("kill", "pause")
PAUSE_LIMIT_SECONDS = 600.0

_name = ""
_target = 0
_action = "kill"
_seen: dict[str, int] = {}
_count_lock = threading.Lock()  # sources are extracted in threads: every hit counts once

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
    "finalize.xref_loaded",
    "finalize.resolved",
    "entity.reconciled",
    "entity.cleaned",
    "entity.recorded",
    "run.finished",
    # approval flows: see etl.flows.FLOW_POINTS
)


def configure(spec: str) -> None:
    """Select the fault (`point[:n[:kill|pause]]`; empty for none) and reset the hit counts."""
    global _name, _target, _action
    name, _, rest = spec.strip().partition(":")
    count, _, action = rest.partition(":")
    action = action or "kill"
    if action not in ACTIONS:
        raise ValueError(f"ERPOA_FAULT action '{action}' is not one of {', '.join(ACTIONS)}")
    _name, _target, _action = name, (int(count or 1) if name else 0), action
    _seen.clear()


configure(settings.getenv("ERPOA_FAULT") or "")


def point(name: str) -> None:
    """Crash (or pause) here if this point was selected by ERPOA_FAULT."""
    if name != _name:
        return
    with _count_lock:
        _seen[name] = hit = _seen.get(name, 0) + 1
    if hit != _target:
        return
    if _action == "pause":
        _pause()
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _pause() -> None:
    gate = Path(settings.getenv("ERPOA_FAULT_GATE") or f"erpoa-fault-{os.getpid()}")
    gate.with_name(gate.name + ".paused").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
