"""`erpoa demo` as the README describes it: reports printed, then `erpoa sync` settles to writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app

pytestmark = pytest.mark.sqlite


def _json(*args: str) -> dict:
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_the_demo_prints_its_reports_and_a_second_sync_writes_nothing(tmp_path: Path) -> None:
    demo = _json("demo", "--dir", str(tmp_path / "demo"))
    assert set(demo["reports"]) >= {"html", "excel", "csv", "datadocs"}
    assert all(Path(path).is_file() for path in demo["reports"].values())
    config = demo["config"]
    # The demo's contract archive flow writes contracts into the ERP: the next sync reads them back.
    first = _json("sync", "--config", config)
    assert first["status"] == "success"
    second = _json("sync", "--config", config)
    written = {
        e["entity"]: (e["inserted"], e["updated"], e["inactivated"], e["quarantined"]) for e in second["entities"]
    }
    assert written == dict.fromkeys(("department", "employee", "contract", "purchase"), (0, 0, 0, 0))
