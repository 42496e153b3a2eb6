"""Great Expectations quality gate for staged entity batches (write-audit-publish).

* :mod:`etl.validate.suites` loads and checks ``expectations/<entity>.json`` suite files,
  generates starter suites and injects run-time code tables and reference keys.
* :mod:`etl.validate.custom` registers the project's custom expectations.
* :mod:`etl.validate.gate` validates a DataFrame and splits failures into quarantinable
  rows and batch failures; :func:`gate_decision` says whether to publish.
* :mod:`etl.validate.datadocs` renders GX Data Docs for validation results.

Importing great_expectations takes several seconds, so this package imports it only
when one of the names below is first used. Importing the package also keeps GX quiet:
its loggers are raised to WARNING unless the application configured them, and
``GX_ANALYTICS_ENABLED`` defaults to ``false`` (GX 1.24 no longer ships analytics, but
earlier 1.x releases read this variable when great_expectations is imported). ``scipy.stats``
is imported lazily: it executes on its first use (see ``_defer_import``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
_gx_logger = logging.getLogger("great_expectations")
if _gx_logger.level == logging.NOTSET:
    _gx_logger.setLevel(logging.WARNING)


def _defer_import(name: str) -> None:
    """Let `import name` give a module that executes on its first attribute access (`importlib.util.LazyLoader`).

    Great Expectations imports ``scipy.stats`` at its own import, for three distribution
    expectations (KL divergence, KS tests) that the gate runs only when a suite asks for
    them. Executed, ``scipy.stats`` holds ~56 MB of every syncing process's memory and ~0.6
    s of its start; deferred, a suite that uses those expectations loads it when their
    metric first calls it, and one that does not never does. Left alone when it is already
    imported or not installed.
    """
    if name in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        return
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


_defer_import("scipy.stats")

_EXPORTS = {
    "load_suite": "suites",
    "check_suites": "suites",
    "init_suite": "suites",
    "resolve_code_tables": "suites",
    "resolve_references": "suites",
    "validate_batch": "gate",
    "gate_decision": "gate",
    "GateResult": "gate",
    "BatchFailure": "gate",
    "Decision": "gate",
    "build_data_docs": "datadocs",
}

__all__ = [
    "BatchFailure",
    "Decision",
    "GateResult",
    "build_data_docs",
    "check_suites",
    "gate_decision",
    "init_suite",
    "load_suite",
    "resolve_code_tables",
    "resolve_references",
    "validate_batch",
]

if TYPE_CHECKING:
    from etl.validate.datadocs import build_data_docs
    from etl.validate.gate import BatchFailure, Decision, GateResult, gate_decision, validate_batch
    from etl.validate.suites import (
        check_suites,
        init_suite,
        load_suite,
        resolve_code_tables,
        resolve_references,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
