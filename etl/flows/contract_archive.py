"""Approved OA contracts archived into the ERP contract register (U8 `CM_Contract`), exactly once.

The contract flow is the document machinery of `etl.flows.purchase_order`
without lines: the OA contract number is the ERP key (mapped, not numbered), an
existing `CM_Contract` row carrying the request id (`cOARequestID`) is adopted,
and a number already used by another contract is a conflict for a person. What
is contract-specific lives here: the checks a contract must pass before it is
archived.
"""

from __future__ import annotations

import pandas as pd

from etl.flows.model import FlowSpec
from etl.flows.purchase_order import PROBLEM_COLUMNS, Checks


def period_problems(spec: FlowSpec, values: pd.DataFrame) -> pd.DataFrame:
    """Documents whose `period` end is before its start (e.g. 终止日期早于起始日期)."""
    if not spec.period or values.empty:
        return pd.DataFrame(columns=PROBLEM_COLUMNS)
    start_col, end_col = spec.period
    start = pd.to_datetime(values[start_col], errors="coerce")
    end = pd.to_datetime(values[end_col], errors="coerce")
    bad = (end < start).fillna(False).astype(bool)
    return pd.DataFrame({
        "request_id": values.index[bad.to_numpy()],
        "field": end_col,
        "rule": "period",
        "value": end[bad].dt.strftime("%Y-%m-%d").to_numpy(),
        "reason": [f"{end_col} {e:%Y-%m-%d} is before {start_col} {s:%Y-%m-%d}"
                   for s, e in zip(start[bad], end[bad], strict=True)],
    })


def checks_for(spec: FlowSpec) -> Checks | None:
    """The extra checks of a flow's kind (None when there are none)."""
    if spec.period:
        return period_problems
    return None
