"""The console prints data as it is: `[...]` markup-like text and `:name:` emoji codes in values and messages.

Finding 8 (`erpoa quarantine list` crashed on `[/bold]`, showed `[b]x[/b]` as `x`) and finding 9 (`type:date` shown
as `type📅`), through the real CLI on a SQLite demo project.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from etl import logs
from etl.cli import common
from etl.cli.app import app
from etl.cli.render import summary_table
from etl.engine.pipeline import EntityResult, SyncSummary
from tests.helpers.project import replace_in, tiny_sqlite_project

pytestmark = pytest.mark.sqlite

CLOSING = "[/bold] :date: [red]"
BOLD = "[b]王[/b]五"


def _invoke(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, list(args))
    return done.exit_code, done.stdout + done.stderr


def _column(table: str, name: str) -> list[str]:
    """The cells of column `name` of a rich table as printed, each cell's wrapped lines joined."""
    lines = [line.split("│")[1:-1] for line in table.splitlines() if line.startswith("│")]
    header = next(line for line in table.splitlines() if line.startswith("┃")).split("┃")[1:-1]
    at = [h.strip() for h in header].index(name)
    cells: list[str] = []
    for parts in lines:
        if parts[0].strip():  # the first column (id) starts a record
            cells.append("")
        text = parts[at].strip()
        cells[-1] += text if not cells[-1] or cells[-1][-1] == "长" else " " + text  # rich wraps at blanks
    return cells


def test_quarantine_list_and_plan_show_values_literally(tmp_path: Path) -> None:
    project = tiny_sqlite_project(tmp_path)
    replace_in(tmp_path / "mappings" / "employee.yaml", ("max_quarantined_pct: 10", "max_quarantined_pct: 50"))
    with sqlite3.connect(tmp_path / "oa.db") as db:  # names longer than the target's 50 characters: quarantined
        ids = [row[0] for row in db.execute('SELECT id FROM "HrmResource" ORDER BY id LIMIT 3')]
        db.execute('UPDATE "HrmResource" SET lastname = ? WHERE id = ?', (CLOSING + "长" * 60, ids[0]))
        db.execute('UPDATE "HrmResource" SET lastname = ? WHERE id = ?', (BOLD + "长" * 60, ids[1]))
    code, output = _invoke("sync", "--no-flows", "department", "employee", "--config", str(project))
    assert code == 0, output
    code, output = _invoke("quarantine", "list", "--entity", "employee", "--limit", "0", "--config", str(project))
    assert code == 0, output
    values = _column(output, "value")
    assert CLOSING + "长" * 60 in values, output
    assert BOLD + "长" * 60 in values, output
    assert "📅" not in output and "internal error" not in output

    # `erpoa plan` samples a record that would be quarantined (its new name holds both).
    with sqlite3.connect(tmp_path / "oa.db") as db:
        db.execute(
            "UPDATE \"HrmResource\" SET lastname = ?, modified = '2099-01-01 00:00:00' WHERE id = ?",
            ("[b]x[/b]:date:" + "长" * 60, ids[2]),
        )
    code, output = _invoke("plan", "employee", "--config", str(project))
    assert code == 0, output
    assert "[b]x[/b]:date:" in output, output
    assert "📅" not in output


def test_summary_table_and_messages_print_literally() -> None:
    failed = EntityResult(
        entity="contract",
        status="failed",
        read={"erp": 3},
        message="contract: quality gate refused to publish: Quarantined records counted: type:date: 1 record "
        "(erp HT20260003; end_date '[/bold]9999-12-31')",
    )
    summary = SyncSummary(run_id="r1", mode="incremental", mapping_version="[b]v[/b]", status="failed",
                          entities=[failed], seconds=1.0)
    with common.out.capture() as captured:  # the console `erpoa sync` prints its summary on
        summary_table(summary)
    text = captured.get()
    assert "type:date: 1 record" in text and "'[/bold]9999-12-31'" in text, text
    assert "mapping [b]v[/b]" in text and "failed" in text, text
    assert "📅" not in text


def test_console_prints_any_table_literally_and_keeps_the_cli_labels() -> None:
    table = Table(title=":date: [/red]")  # as the commands of etl/cli/app.py build theirs
    table.add_column("[b]col[/b]")
    table.add_row("[/bold] :date:")
    table.add_row(Text("ok", style="green"))
    with common.out.capture() as captured:
        common.out.print(table)
        common.out.print("[bold]label[/]: ", end="")
        common.out.print("[i]data[/i] :date:", markup=False)
    rendered = captured.get()
    assert ":date: [/red]" in rendered and "[b]col[/b]" in rendered and "[/bold] :date:" in rendered, rendered
    assert "label: [i]data[/i] :date:" in rendered and "📅" not in rendered, rendered


def test_messages_with_data_keep_emoji_codes(tmp_path: Path) -> None:
    project = tiny_sqlite_project(tmp_path)
    code, output = _invoke("xref", "employee", "[/b] :date:", "--config", str(project))
    assert code == 1, output
    assert "No cross-reference for employee '[/b] :date:'." in output, output


def test_errors_are_json_log_records_with_log_format_json(tmp_path: Path) -> None:
    config = tmp_path / "erpoa.yaml"
    config.write_text("project: x\nconnections: {erp: {url: 'sqlite:///e.db'}}\n", encoding="utf-8")
    try:
        done = CliRunner().invoke(app, ["--log-format", "json", "status", "--config", str(config)])
        assert done.exit_code == 2, done.stdout + done.stderr
        records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]  # every line is JSON
        error = records[-1]
        assert error["level"] == "ERROR" and error["error"] == "ConfigError" and error["exit_code"] == 2, records
        assert "missing connection(s) oa, target, recon" in error["message"], error
        assert len(error["issues"]) == 1 and "missing connection(s)" in error["issues"][0], error
        assert done.stdout == ""

        # `--json` keeps its one summary on stdout.
        done = CliRunner().invoke(app, ["--log-format", "json", "status", "--config", str(config), "--json"])
        assert done.exit_code == 2
        summary = json.loads(done.stdout)
        assert summary["status"] == "error" and summary["exit_code"] == 2 and summary["error"] == "ConfigError"
        # ... and stderr has the error record too (docs/security.md; it was left out with --json: session 23)
        records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
        assert records[-1]["level"] == "ERROR" and records[-1]["exit_code"] == 2, records

        # Text logs: the error as before.
        done = CliRunner().invoke(app, ["status", "--config", str(config)])
        assert done.exit_code == 2 and done.stderr.startswith("error: 1 problem(s) in the configuration:")
    finally:
        logs.setup("WARNING", "text")


def test_connections_refused_before_the_run_are_problems_of_the_configuration(tmp_path: Path) -> None:
    """They were headed "problem(s) in the command line" (session 23, docs walkthrough F5)."""
    config = tiny_sqlite_project(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(f"sqlite:///{tmp_path}/erp.db", f"sqlite:///{tmp_path}/gone/erp.db")
                      .replace(f"sqlite:///{tmp_path}/oa.db", f"sqlite:///{tmp_path}/gone/oa.db"), encoding="utf-8")
    done = CliRunner().invoke(app, ["plan", "--config", str(config)])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: 2 problem(s) in the configuration:"), done.stderr


@pytest.mark.parametrize(
    "args",
    [["demo", "--seed", "-1", "--no-sync"], ["demo", "--rows", "0", "--no-sync"], ["plan", "--samples", "-1"],
     ["mappings", "suggest", "department", "--limit", "-1"]],
)
def test_negative_counts_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """`demo --seed -1` was an internal error, `--rows 0` built the default size, and negative `--samples` /
    `--limit` acted as Python slices."""
    done = CliRunner().invoke(app, [*args, *(["--dir", str(tmp_path / "d")] if args[0] == "demo" else [])])
    assert done.exit_code == 2, done.output
    assert "Invalid value for" in done.output
