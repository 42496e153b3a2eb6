"""`erpoa sync` and `erpoa plan` from the command line: exit codes (docs/configuration.md), option values, flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.engine.pipeline import EntityResult, SyncSummary
from tests.helpers.project import tiny_sqlite_project

pytestmark = pytest.mark.sqlite


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_sqlite_project(tmp_path)


def _edit(path: Path, **run: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["run"] = {**data.get("run", {}), **run}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _invoke(*args: str) -> tuple[int, dict]:
    done = CliRunner().invoke(app, [*args, "--json"])
    return done.exit_code, json.loads(done.stdout)


def _failed(summary: dict) -> dict[str, tuple[str, int]]:
    return {e["entity"]: (e["error"], e["exit_code"]) for e in summary["entities"] if e["status"] == "failed"}


def test_schema_drift_exits_3_for_sync_and_plan(project: Path, tmp_path: Path) -> None:
    with create_engine(f"sqlite:///{tmp_path / 'erp.db'}").begin() as conn:
        conn.execute(text('ALTER TABLE "Department" RENAME COLUMN "cDepName" TO "cDepartmentName"'))
    for command in ("plan", "sync"):
        code, summary = _invoke(command, "department", "--config", str(project))
        assert code == 3, summary
        assert _failed(summary) == {"department": ("SchemaDriftError", 3)}


def test_a_misspelt_column_is_named_where_the_mapping_writes_it(project: Path, tmp_path: Path) -> None:
    """`mappings check --against-db` locates it; a sync or plan that meets it says where too, with the closest
    column the source has (also for the `reconcile` and `mappings suggest` reads, which share the check)."""
    mapping = tmp_path / "mappings" / "department.yaml"
    text_before = mapping.read_text(encoding="utf-8")
    mapping.write_text(text_before.replace("from: cDepName,", "from: cDepNam,", 1), encoding="utf-8")
    line = text_before[: text_before.index("from: cDepName,")].count("\n") + 1
    where = f"'cDepNam' at mappings/department.yaml:{line}:"
    for command in ("plan", "sync"):
        code, summary = _invoke(command, "department", "--config", str(project))
        assert code == 3, summary
        (entity,) = [e for e in summary["entities"] if e["entity"] == "department"]
        assert where in entity["message"], entity["message"]
        assert " sources.erp.fields.name.from (did you mean 'cDepName'?)" in entity["message"]
    code, suggested = _invoke("mappings", "suggest", "department", "--config", str(project))
    assert code == 3 and where in suggested["message"], suggested


def test_pct_min_rows_leaves_small_reads_to_the_row_count_threshold(project: Path, tmp_path: Path) -> None:
    """The tiny demo reads 3 contracts (1 bad: 33% > 20%) and 59 employees (8 bad: 13.6% > 10%): refused. With
    `run.pct_min_rows: 100` the percentage judges neither read (plan and sync alike); a mapping's own
    `quality.pct_min_rows` overrides it, and `max_quarantined_rows` still applies to small reads."""
    code, summary = _invoke("sync", "--config", str(project))
    assert code == 4 and _failed(summary) == {"employee": ("QualityGateError", 4), "contract": ("QualityGateError", 4)}
    _edit(project, pct_min_rows=100)
    for command in ("plan", "sync"):
        code, summary = _invoke(command, "--config", str(project))
        assert code == 0 and _failed(summary) == {}, summary
    contract = tmp_path / "mappings" / "contract.yaml"
    contract.write_text(
        contract.read_text(encoding="utf-8").replace("quality:\n", "quality:\n  pct_min_rows: 0\n", 1), encoding="utf-8"
    )
    code, summary = _invoke("sync", "contract", "--full-refresh", "--config", str(project))
    assert code == 4 and "more than max_quarantined_pct=20.0" in summary["entities"][0]["message"], summary
    _edit(project, pct_min_rows=100, max_quarantined_rows=0)
    code, summary = _invoke("sync", "employee", "--full-refresh", "--config", str(project))
    assert code == 4, summary
    message = summary["entities"][0]["message"]
    assert "max_quarantined_pct" not in message and "more than max_quarantined_rows=0" in message, message


def test_an_unreachable_source_exits_6(project: Path) -> None:
    _edit(project, retries=0)
    data = yaml.safe_load(project.read_text(encoding="utf-8"))
    data["connections"]["erp"] = {"url": "postgresql+psycopg://root@127.0.0.1:1/nowhere"}
    project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, summary = _invoke("sync", "department", "--config", str(project))
    assert code == 6, summary
    assert _failed(summary) == {"department": ("SourceUnavailableError", 6)}


def test_a_refused_gate_exits_4_and_a_success_0(project: Path) -> None:
    _edit(project, max_quarantined_rows=0)  # the demo's department source has a row no code table maps
    code, summary = _invoke("sync", "department", "--config", str(project))
    assert code == 4, summary
    assert _failed(summary) == {"department": ("QualityGateError", 4)}
    _edit(project, max_quarantined_rows=100)
    assert _invoke("sync", "department", "--config", str(project))[0] == 0


@pytest.mark.unit
def test_the_first_failed_entity_with_a_known_error_sets_the_code() -> None:
    def summary(*entities: EntityResult) -> SyncSummary:
        status = "success" if all(e.status == "success" for e in entities) else "partial"
        return SyncSummary("r", "full", "v", status, list(entities), 1.0)

    ok = EntityResult("department", status="success")
    gate = EntityResult("employee", status="failed", error="QualityGateError", exit_code=4)
    skipped = EntityResult("purchase", status="skipped")
    internal = EntityResult("contract", status="failed", error="ErpOaError", exit_code=1)
    unavailable = EntityResult("contract", status="failed", error="SourceUnavailableError", exit_code=6)
    assert summary(ok).exit_code == 0
    assert summary(ok, gate, skipped).exit_code == 4
    assert summary(internal, skipped).exit_code == 1
    assert summary(internal, unavailable, gate).exit_code == 6


def test_named_entities_run_the_flows_only_when_asked(project: Path) -> None:
    code, summary = _invoke("sync", "department", "--config", str(project))
    assert (code, summary["flows"]) == (0, None)
    code, summary = _invoke("sync", "department", "--flows", "--config", str(project))
    assert code == 0
    assert {f["flow"] for f in summary["flows"]["flows"]} == {"purchase_order", "contract_archive"}


@pytest.mark.unit
@pytest.mark.parametrize(
    "args",
    [["--log-level", "loud", "status"], ["--log-format", "xml", "status"], ["report", "--lang", "fr"],
     ["report", "--last", "0"]],
)
def test_an_invalid_option_value_is_a_usage_error(args: list[str]) -> None:
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "Invalid value" in done.output and "internal error" not in done.output


@pytest.mark.unit
def test_the_summary_names_a_failed_entity_once() -> None:
    from etl.cli.common import out
    from etl.cli.render import summary_table

    gate = EntityResult("employee", status="failed", message="employee: quality gate refused to publish: 3 rows")
    with out.capture() as captured:
        summary_table(SyncSummary("r", "full", "v", "failed", [gate], 1.0))
    assert "employee: quality gate refused to publish: 3 rows" in captured.get()
    assert "employee: employee:" not in captured.get()
