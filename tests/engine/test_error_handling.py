"""Bad input through `erpoa` and `run_sync`: a classified error naming the problem and its fix, nothing lost.

A store that is down (retried by a sync, reported at once by `status`, never "will be retried" in a final
message), a cursor value that is not a timestamp, a bug inside the run (recorded as failed, JSON on
`--json`), wrong driver names (exit 2 before any data is read), a target that cannot be opened (named as
`connections.target`), and NaN in `--json` output.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from etl.cli import app as cli_app
from etl.cli.app import app
from etl.cli.common import emit_json
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.engine import extract, pipeline
from etl.engine.pipeline import open_store
from tests.helpers.project import tiny_sqlite_project

pytestmark = pytest.mark.sqlite


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tiny_sqlite_project(tmp_path)
    mapping = tmp_path / "mappings" / "employee.yaml"  # 30 employees: the demo's few bad rows exceed its 10%
    body = mapping.read_text(encoding="utf-8")
    mapping.write_text(body.replace("max_quarantined_pct: 10", "max_quarantined_pct: 100"), encoding="utf-8")
    yield path
    dispose_all()


def _edit(path: Path, run: dict[str, Any] | None = None, **connections: str) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["run"] = {**data.get("run", {}), **(run or {})}
    for name, url in connections.items():
        data["connections"][name] = {"url": url}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _invoke(*args: str) -> tuple[int, dict[str, Any], str]:
    done = CliRunner().invoke(app, [*args, "--json"])
    return done.exit_code, json.loads(done.stdout), done.stderr


def _runs(project: Path) -> list[dict[str, Any]]:
    return open_store(load_project(project)).runs(10)


def test_status_with_the_store_down_fails_at_once_without_promising_a_retry(project: Path) -> None:
    _edit(project, {"retries": 3, "retry_backoff_seconds": 30}, recon="postgresql+psycopg://root@127.0.0.1:1/test")
    code, payload, _ = _invoke("status", "--config", str(project))  # 3 retries at 30 s would take minutes
    assert code == 6, payload
    message = payload["message"]
    assert message.startswith("opening the reconciliation store: connections.recon (postgresql+psycopg://"), message
    assert "will be retried" not in message and "gave up" not in message
    assert "check that the database server is running" in message


def test_sync_retries_opening_the_store_then_gives_up_clearly(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edit(project, {"retries": 2, "retry_backoff_seconds": 0.01}, recon="postgresql+psycopg://root@127.0.0.1:1/test")
    attempts: list[str] = []
    real = pipeline.with_retries

    def counting(fn: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            attempts.append(kwargs["what"])
            return fn()

        return real(attempt, **kwargs)

    monkeypatch.setattr(pipeline, "with_retries", counting)
    code, payload, _ = _invoke("sync", "department", "--no-flows", "--config", str(project))
    assert code == 6, payload
    assert attempts == ["opening the reconciliation store"] * 3
    assert payload["message"].endswith("(gave up after 2 retries)"), payload
    assert "will be retried" not in payload["message"] and "connections.recon" in payload["message"]


def _set_cursor(project: Path, value: str) -> str:
    """Set dModifyDate of one employee in the demo ERP to `value`; returns its id."""
    engine = create_engine(f"sqlite:///{project.parent / 'erp.db'}")
    with engine.begin() as conn:
        row = conn.execute(text('SELECT "cPsn_Num" FROM hr_hi_person ORDER BY "cPsn_Num" LIMIT 1 OFFSET 3')).one()
        conn.execute(
            text('UPDATE hr_hi_person SET "dModifyDate" = :v WHERE "cPsn_Num" = :id'), {"v": value, "id": row[0]}
        )
    engine.dispose()
    return str(row[0])


@pytest.mark.parametrize("full_refresh", [False, True])
def test_a_cursor_value_that_is_not_a_timestamp_is_a_data_error_and_moves_no_watermark(
    project: Path, full_refresh: bool
) -> None:
    code, _, _ = _invoke("sync", "department", "employee", "--no-flows", "--config", str(project))
    assert code == 0
    config = load_project(project)
    mark = open_store(config).watermark("employee", "erp")
    person = _set_cursor(project, "yesterday")
    args = ["sync", "employee", "--no-flows", "--config", str(project)] + (["--full-refresh"] if full_refresh else [])
    code, summary, _ = _invoke(*args)
    assert code == 3, summary
    (entity,) = summary["entities"]
    assert (entity["status"], entity["error"], entity["exit_code"]) == ("failed", "DataError", 3)
    assert "cursor column dModifyDate of source 'erp'" in entity["message"] and "'yesterday'" in entity["message"]
    assert "Correct these values in the source" in entity["message"]
    assert open_store(config).watermark("employee", "erp") == mark
    assert _runs(project)[0]["status"] == "failed"
    # Corrected at the source: the next incremental sync reads the row and the watermark moves on.
    corrected = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0) - timedelta(minutes=1)
    _set_cursor(project, f"{corrected:%Y-%m-%d %H:%M:%S}.000000")
    code, summary, _ = _invoke("sync", "employee", "--no-flows", "--config", str(project))
    assert code == 0, summary
    assert summary["entities"][0]["read"]["erp"] >= 1
    assert open_store(config).watermark("employee", "erp") == corrected, person


@pytest.mark.unit
def test_cursor_maxima_of_different_kinds_across_chunks_are_a_data_error() -> None:
    from etl.errors import DataError
    from etl.mapping.model import SourceSpec

    spec = SourceSpec.model_validate({"table": "t", "id": "id", "cursor": "m", "fields": {"code": "id"}})
    chunk = pd.DataFrame({"id": ["7"], "m": ["yesterday"]})
    assert extract._chunk_cursor_top(chunk, spec, "e", "erp")[0] == "yesterday"  # a text cursor on its own is fine
    from datetime import datetime

    with pytest.raises(DataError, match=r"not timestamps like the others: 'yesterday' \(rows with id 7\)"):
        extract._greater("yesterday", datetime(2026, 1, 1), chunk, spec, "e", "erp")
    mixed = pd.DataFrame({"id": ["1", "2", "3"], "m": ["2026-01-01 00:00:00", "soon", "2026-01-02 00:00:00"]})
    with pytest.raises(DataError, match=r"'soon' \(rows with id 2\)"):
        extract._chunk_cursor_top(mixed, spec, "e", "erp")


def test_a_bug_inside_the_run_records_it_failed_and_prints_json(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise TypeError("'>' not supported between instances of 'str' and 'datetime.datetime'")

    monkeypatch.setattr(extract, "extract_source", broken)
    monkeypatch.setattr(sys, "argv", ["erpoa", "sync", "department", "--no-flows", "--config", str(project), "--json"])
    with pytest.raises(SystemExit) as done:
        cli_app.main()
    assert done.value.code == 1
    payload = json.loads(capsys.readouterr().out)
    assert (payload["status"], payload["error"], payload["exit_code"]) == ("error", "TypeError", 1)
    (run,) = _runs(project)
    assert run["status"] == "failed" and "internal error: TypeError" in run["message"]
    entities = open_store(load_project(project)).entity_runs(run["run_id"])
    assert [(e["entity"], e["status"]) for e in entities] == [("department", "failed")]


@pytest.mark.parametrize(
    ("role", "url", "says"),
    [
        ("target", "postgresql+psycopg3://root@127.0.0.1/test", "'postgresql+psycopg3' is not a known dialect+driver"),
        ("erp", "postgres://root@127.0.0.1/test", "'postgres' is not a known dialect+driver"),
        ("recon", "mysql+mysqlconnector://root@127.0.0.1/test", "the Python driver of 'mysql+mysqlconnector'"),
    ],
)
def test_a_wrong_driver_name_exits_2_before_any_data_is_read(
    project: Path, monkeypatch: pytest.MonkeyPatch, role: str, url: str, says: str
) -> None:
    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("data was read")

    monkeypatch.setattr(extract, "extract_source", never)
    _edit(project, **{role: url})
    for command in ("sync", "plan"):
        code, payload, _ = _invoke(command, "department", "--config", str(project))
        assert code == 2, payload
        assert payload["error"] == "ConfigError"
        (issue,) = payload["issues"]
        assert issue.startswith(f"connections.{role}: ") and says in issue
        assert "postgresql+psycopg://" in issue  # the supported names


def test_a_target_that_cannot_be_opened_is_a_config_error_before_the_run(project: Path) -> None:
    runs = len(_runs(project))
    _edit(project, target=f"sqlite:///{project.parent / 'no-such-dir' / 'target.db'}")
    for command in (["sync", "--no-flows"], ["plan"]):
        code, payload, _ = _invoke(*command, "department", "--config", str(project))
        assert code == 2, payload
        assert payload["error"] == "ConfigError"
        (issue,) = payload["issues"]
        assert issue.startswith("connections.target: sqlite:///"), issue
        assert "no-such-dir of this SQLite file does not exist; create it or fix the path" in issue
    assert len(_runs(project)) == runs  # found before the run was recorded


@pytest.mark.unit
def test_emit_json_writes_null_for_missing_values(capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame({"golden_key": [np.nan, "K1"], "at": [pd.NaT, pd.Timestamp("2026-01-01")]})
    payload = {
        "rows": frame.to_dict(orient="records"),
        "na": pd.NA,
        "inf": math.inf,
        "n": np.int64(3),
        "x": np.float64("nan"),
        "t": (1.5, None),
    }
    emit_json(payload)
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    parsed = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert parsed["rows"][0] == {"golden_key": None, "at": None}
    assert parsed["rows"][1]["golden_key"] == "K1"
    assert (parsed["na"], parsed["inf"], parsed["n"], parsed["x"], parsed["t"]) == (None, None, 3, None, [1.5, None])


def test_quarantine_json_is_strict_json(project: Path) -> None:
    code, _, _ = _invoke("sync", "department", "employee", "--no-flows", "--config", str(project))
    assert code == 0
    for args in (["quarantine", "list"], ["quarantine", "show", "1"]):
        done = CliRunner().invoke(app, [*args, "--config", str(project), "--json"])
        assert done.exit_code == 0, done.output
        json.loads(done.stdout, parse_constant=lambda c, args=args: pytest.fail(f"{c} in {args} output"))
