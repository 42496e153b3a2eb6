"""Command-line options that misbehaved (exploratory testing, 2026-12-06): `flows audit --limit` took a negative
value (hiding each view's last row) and 0 showed nothing; a view of another kind of flow printed an empty
one-column table; `report --out` naming a file crashed with an internal error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from tests.helpers.project import replace_in, synced_sqlite_project, tiny_sqlite_project

pytestmark = pytest.mark.sqlite


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> str:
    return synced_sqlite_project(tmp_path_factory.mktemp("cli"))


def _audit(project: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["flows", "audit", "--config", project, *args], terminal_width=300)
    return done.exit_code, done.output


def test_flows_audit_limit_0_shows_all_and_a_negative_limit_is_refused(project: str) -> None:
    code, output = _audit(project, "--flow", "purchase_order", "--json")
    views = json.loads(output)
    name, rows = next((n, r) for n, r in views.items() if len(r) > 1)
    code, text = _audit(project, "--flow", "purchase_order", "--limit", "1")
    assert code == 0 and f"{name}: {len(rows)} row(s), showing 1" in text, text
    code, text = _audit(project, "--flow", "purchase_order", "--limit", "0")
    assert code == 0 and f"{name}: {len(rows)} row(s)\n" in text and "showing" not in text, text
    assert all(str(r["request_id"] or r.get("doc_no")) in text for r in rows if r.get("request_id")), text
    code, text = _audit(project, "--limit", "-1")
    assert code == 2 and "--limit" in text, text


def test_a_view_with_no_rows_prints_one_line_not_an_empty_table(project: str) -> None:
    code, text = _audit(project, "--flow", "purchase_order")
    assert code == 0 and "contract_without_approval: 0 rows" in text, text
    assert "contract_without_approval: 0 row(s)" not in text


def test_report_out_naming_a_file_is_refused(project: str, tmp_path: Path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("", encoding="utf-8")
    done = CliRunner().invoke(app, ["report", "--out", str(a_file), "--config", project])
    assert done.exit_code == 2, done.output
    assert f"--out: {a_file} is a file; give a folder" in " ".join(done.output.split())
    assert "internal error" not in done.output
    written = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "new"), "--config", project, "--json"])
    assert written.exit_code == 0 and Path(json.loads(written.stdout)["paths"]["html"]).exists(), written.output


def test_status_names_store_state_of_an_entity_no_mapping_names(tmp_path: Path) -> None:
    """A renamed entity starts afresh under its new name; its quarantine rows and watermarks stay under the old
    one, where nothing showed them: `status` now names them and says what to do."""
    config = tiny_sqlite_project(tmp_path)
    done = CliRunner().invoke(app, ["sync", "department", "--config", str(config), "--json"])
    assert done.exit_code == 0, done.output
    folder = tmp_path / "mappings"
    replace_in(folder / "department.yaml", ("entity: department\n", "entity: dept\n"))
    for name in ("employee", "contract", "purchase"):
        replace_in(folder / f"{name}.yaml", ("references: department.", "references: dept."))
    shown = CliRunner().invoke(app, ["status", "--config", str(config), "--json"])
    assert shown.exit_code == 0, shown.output
    (unnamed,) = json.loads(shown.stdout)["unnamed_entities"]
    assert unnamed["entity"] == "department" and unnamed["watermarks"] == 2 and unnamed["open_quarantine"] >= 1
    text = CliRunner().invoke(app, ["status", "--config", str(config)], terminal_width=400)
    assert "department: no mapping names this entity (" in text.output
    assert "name it department again to replay them" in text.output


def test_a_project_folder_with_brackets_is_printed_as_it_is(tmp_path: Path) -> None:
    """Rich read `[x]` in a path as markup and dropped it from `demo`, `mappings check` and `expectations check`."""
    folder = tmp_path / "[x]" / "demo"
    done = CliRunner().invoke(app, ["demo", "--dir", str(folder), "--no-sync"], terminal_width=400)
    assert done.exit_code == 0 and f"Wrote {folder / 'erpoa.yaml'}" in done.output, done.output
    config = str(folder / "erpoa.yaml")
    for command in (["mappings", "check"], ["expectations", "check"]):
        checked = CliRunner().invoke(app, [*command, "--config", config], terminal_width=400)
        assert checked.exit_code == 0 and f"ok {folder}/" in checked.output, checked.output


def test_a_sync_whose_flows_failed_is_recorded_partial_and_ends_after_them(tmp_path: Path) -> None:
    """`erpoa sync` said `partial` (exit 2) when a flow failed, but the store kept the run `success`, finished
    before the flows ran: `erpoa status` and the report disagreed with the command."""
    from etl.config.project import load_project
    from etl.engine.pipeline import open_store

    config_path = tiny_sqlite_project(tmp_path)
    replace_in(tmp_path / "mappings" / "flows" / "contract_archive.yaml", ("engine: ecology", "engine: ecologyy"))
    done = CliRunner().invoke(app, ["sync", "department", "--flows", "--config", str(config_path), "--json"])
    summary = json.loads(done.stdout)
    assert done.exit_code == 2 and summary["status"] == "partial", done.output
    store = open_store(load_project(config_path), read_only=True)
    (run,) = store.runs(1)
    assert (run["run_id"], run["status"]) == (summary["run_id"], "partial")
    assert "flows: contract_archive: not run" in (run["message"] or ""), run["message"]
    flow_rows = [store.entity_run(run["run_id"], f) for f in ("purchase_order", "contract_archive")]
    assert all(r is not None for r in flow_rows)
    assert str(run["finished_at"]) >= max(str(r["updated_at"]) for r in flow_rows if r is not None)
