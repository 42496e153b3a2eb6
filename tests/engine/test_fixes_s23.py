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


@pytest.mark.sqlite
def test_identifiers_may_start_with_a_digit_and_hold_rarer_han_characters(tmp_path: Path) -> None:
    """`table: 2024_单据`, a column `𠮷名` (CJK extension B) and `〇号` were refused as "not a plain identifier"."""
    import sqlite3

    from etl.config.project import load_project
    from tests.helpers.project import target_rows

    with sqlite3.connect(tmp_path / "src.db") as db:
        db.execute('CREATE TABLE "2024_单据" ("单号" TEXT, "𠮷名" TEXT, "〇号" TEXT)')
        db.executemany('INSERT INTO "2024_单据" VALUES (?, ?, ?)', [("A", "吉", "1"), ("B", "𠮷", "2")])
    (tmp_path / "erpoa.yaml").write_text(
        "connections:\n"
        + "".join(f'  {n}: {{url: "sqlite:///{f}.db"}}\n' for n, f in [("erp", "src"), ("oa", "src"), ("target", "t"),
                                                                       ("recon", "r")])
        + "mappings: mappings\n",
        encoding="utf-8",
    )
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "doc.yaml").write_text(
        "entity: doc\nkey: no_\nfields: {no_: {type: string}, name: {type: string}, n: {type: string}}\n"
        "sources:\n  erp:\n    table: 2024_单据\n    id: 单号\n    fields: {no_: 单号, name: 𠮷名, n: 〇号}\n"
        "target: {table: 2024_md_doc}\n",
        encoding="utf-8",
    )
    config = load_project(tmp_path / "erpoa.yaml")
    for _ in range(2):
        summary, _ = run_sync(config)
        assert summary.status == "success", summary.message
    assert sorted(target_rows(config, "2024_md_doc", ["no_", "name", "n"])) == [("A", "吉", "1"), ("B", "𠮷", "2")]


@pytest.mark.sqlite
@pytest.mark.parametrize("command", [["mappings", "check"], ["expectations", "check"], ["plan"], ["sync"]])
def test_a_broken_mapping_file_does_not_hide_a_missing_suite_file(tmp_path: Path, command: list[str]) -> None:
    """With a typo in employee.yaml, department's `quality.suite: dept.json` (no such file) was reported only once
    the typo was fixed."""
    from typer.testing import CliRunner

    from etl.cli.app import app
    from tests.helpers.project import replace_in, tiny_sqlite_project

    config = tiny_sqlite_project(tmp_path)
    replace_in(config.parent / "mappings" / "department.yaml",
               ("\n  max_quarantined_pct:", "\n  suite: dept.json\n  max_quarantined_pct:"))
    replace_in(config.parent / "mappings" / "employee.yaml", ("nfkc, trim]", "nfkc, trimm]"))
    done = CliRunner().invoke(app, [*command, "--config", str(config)])
    assert done.exit_code == 2, done.output
    assert "quality.suite: suite file 'dept.json' not found in expectations/; did you mean 'department.json'?" in (
        done.output
    ), done.output
    assert "transform 'trimm' not found" in done.output
