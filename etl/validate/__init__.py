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
earlier 1.x releases read this variable when great_expectations is imported).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
_gx_logger = logging.getLogger("great_expectations")
if _gx_logger.level == logging.NOTSET:
    _gx_logger.setLevel(logging.WARNING)

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
