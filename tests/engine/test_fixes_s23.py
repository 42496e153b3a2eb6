"""Engine fixes of session 23.

* A sync in which no source has a watermark yet (a first sync) reads everything and is recorded as `full`, not
  `incremental`; the next one, which reads from the watermarks, is `incremental`.
* `multiply` quarantines a value of 16+ significant digits that float64 would change (`decimal_digits`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.engine.pipeline import open_store, run_sync
from etl.mapping.registry import TransformContext
from etl.mapping.transforms import MultiplyArgs, multiply
from tests.helpers.project import TINY, make_project


@pytest.mark.sqlite
def test_a_first_sync_is_recorded_full_and_the_next_incremental(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"), size=TINY)
    first, _ = run_sync(config, entities=["department", "employee"])
    second, _ = run_sync(config, entities=["department", "employee"])
    assert (first.mode, second.mode) == ("full", "incremental")
    recorded = {r["run_id"]: r["mode"] for r in open_store(config).runs(10)}
    assert recorded == {first.run_id: "full", second.run_id: "incremental"}


@pytest.mark.parametrize("kind", ["text", "Decimal", "int"])
def test_multiply_quarantines_a_value_float64_would_change(kind: str) -> None:
    """Cents of 17+ digits were parsed to float64 before `multiply`, and the `decimal` after it saw only the float:
    the amount was published changed. Values float64 holds exactly pass, multiplied."""
    source = {"12345678901234567": False, "9007199254740993": False, "9007199254740992": True, "1234567": True}
    values: list[Any] = {
        "text": list(source),
        "Decimal": [Decimal(v) for v in source],
        "int": [int(v) for v in source],
    }[kind]
    ctx = TransformContext(field="amount", source="erp", frame=pd.DataFrame(), code_tables={}, as_of=None,
                           timezone="Asia/Shanghai", pii=False)
    series = pd.Series(values, dtype="int64") if kind == "int" else pd.Series([*values], dtype=object)
    out = multiply(series, MultiplyArgs(factor=0.01), ctx)
    rejected = np.zeros(len(source), dtype=bool)
    for rejection in ctx.rejections:
        assert rejection.rule == "decimal_digits", rejection
        assert "significant digits; at most 15 are kept exactly" in rejection.reason
        rejected |= rejection.mask.to_numpy()
    assert rejected.tolist() == [not kept for kept in source.values()]
    kept = out[~rejected]
    assert kept.tolist() == [int(v) * 0.01 for v, ok in source.items() if ok]
    assert out[rejected].isna().all()
