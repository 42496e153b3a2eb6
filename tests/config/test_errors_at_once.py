"""Every error at once: `erpoa sync`, `erpoa plan` and `erpoa expectations check` list the problems of
erpoa.yaml, of the mapping files and of the Great Expectations suites in one report (exit 2), each located,
as `erpoa mappings check` does for config and mappings; no layer hides the next one's errors. The checks
come before anything is connected to: no database file is created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import write_project

pytestmark = pytest.mark.unit

COMMANDS = [["sync", "--no-flows"], ["plan"], ["expectations", "check"]]


def _break(path: Path, old: str, new: str) -> int:
    """Replace the first `old` of the file by `new`; returns the line of the change."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def _broken_project(folder: Path, layers: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """A project (its databases never built) with one mistake in each of `layers`; returns its erpoa.yaml and
    the start of the issue expected per layer."""
    config = write_project(folder)
    expected = {}
    if "config" in layers:
        line = _break(config, "  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  chunk_sise: 10\n") + 1
        expected["config"] = f"{config}:{line}:3 run.chunk_sise: "
    if "mapping" in layers:
        line = _break(folder / "mappings" / "department.yaml", "[nfkc, trim]", "[nfkc, trimm]")
        expected["mapping"] = f"mappings/department.yaml:{line}:"
    if "suite" in layers:
        suite = folder / "expectations" / "employee.json"
        line = _break(suite, '"column": "employee_code"', '"column": "employe_code"')
        expected["suite"] = f"{suite}:{line} expectations[1].kwargs.column: "
    return config, expected


@pytest.mark.parametrize("layers", [("config", "mapping", "suite"), ("mapping", "suite"), ("config", "suite")])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_one_report_lists_the_problems_of_every_layer(
    tmp_path: Path, command: list[str], layers: tuple[str, ...]
) -> None:
    config, expected = _broken_project(tmp_path, layers)

    done = CliRunner().invoke(app, [*command, "--config", str(config), "--json"])

    assert done.exit_code == 2, done.output
    payload = json.loads(done.stdout)
    assert payload["error"] == "ConfigError", payload
    for layer, start in expected.items():
        assert [i for i in payload["issues"] if i.startswith(start)], (layer, start, payload["issues"])
    if "mapping" in layers:
        assert any("trimm" in i for i in payload["issues"]), payload["issues"]
    suite_issue = next(i for i in payload["issues"] if i.startswith(expected["suite"]))
    assert "employe_code" in suite_issue and "employee_code" in suite_issue, suite_issue  # the fix: the close name
    assert not [p.name for p in tmp_path.glob("*.db")]  # nothing was connected to


def test_the_text_report_counts_every_problem(tmp_path: Path) -> None:
    config, expected = _broken_project(tmp_path, ("config", "mapping", "suite"))

    done = CliRunner().invoke(app, ["sync", "--config", str(config)])

    assert done.exit_code == 2, done.output
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: ") and lines[0].endswith(" problem(s) in the configuration:"), lines
    assert int(lines[0].split()[1]) == len(lines) - 1 >= 3, lines
    for start in expected.values():
        assert any(line.strip().startswith(start) for line in lines[1:]), (start, lines)


def test_a_config_that_does_not_parse_still_lets_the_mappings_and_suites_be_checked(tmp_path: Path) -> None:
    config, expected = _broken_project(tmp_path, ("mapping", "suite"))
    config.write_text(config.read_text(encoding="utf-8") + "notify: [\n", encoding="utf-8")  # a YAML syntax error

    done = CliRunner().invoke(app, ["plan", "--config", str(config), "--json"])

    assert done.exit_code == 2, done.output
    issues = json.loads(done.stdout)["issues"]
    assert any(i.startswith(str(config)) and "YAML syntax error" in i for i in issues), issues
    for start in expected.values():  # found in mappings/ and expectations/ beside the config
        assert any(i.startswith(start) for i in issues), (start, issues)
    assert not [p.name for p in tmp_path.glob("*.db")]
