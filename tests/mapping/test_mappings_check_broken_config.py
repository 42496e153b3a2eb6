"""`erpoa mappings check` with an erpoa.yaml that does not load: the mapping folder its own `mappings:` key names
is checked, as `erpoa sync` and `plan` find it (`etl.engine.preflight.layout`), not `mappings/` beside the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import write_project

pytestmark = pytest.mark.unit


def _break(path: Path, old: str, new: str) -> int:
    """Replace the first `old` of the file by `new`; returns the line of the change."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def _project_elsewhere(folder: Path) -> tuple[Path, str, str]:
    """A project whose erpoa.yaml has an unknown `run:` setting and says `mappings: elsewhere`, with a mistake in
    `elsewhere/department.yaml`; returns the config and the start of the config's and the mapping's issue."""
    config = write_project(folder)
    shutil.move(folder / "mappings", folder / "elsewhere")
    _break(config, "mappings: mappings\n", "mappings: elsewhere\n")
    line = _break(config, "  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  chunk_sise: 10\n") + 1
    mapping_line = _break(folder / "elsewhere" / "department.yaml", "[nfkc, trim]", "[nfkc, trimm]")
    return config, f"{config}:{line}:3 run.chunk_sise: ", f"elsewhere/department.yaml:{mapping_line}:"


def test_a_broken_config_still_has_its_own_mapping_folder_checked(tmp_path: Path) -> None:
    config, config_issue, mapping_issue = _project_elsewhere(tmp_path)

    done = CliRunner().invoke(app, ["mappings", "check", "--config", str(config), "--json"])

    assert done.exit_code == 2, done.output
    issues = json.loads(done.stdout)["issues"]
    assert [i for i in issues if i.startswith(config_issue)], (config_issue, issues)
    assert [i for i in issues if i.startswith(mapping_issue) and "trimm" in i], (mapping_issue, issues)
    assert not [i for i in issues if "mapping folder not found" in i], issues  # not `mappings/` beside it


def test_the_text_report_lists_both(tmp_path: Path) -> None:
    config, config_issue, mapping_issue = _project_elsewhere(tmp_path)

    done = CliRunner().invoke(app, ["mappings", "check", "--config", str(config)])

    assert done.exit_code == 2, done.output
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {len(lines) - 1} problem(s) in the configuration:", lines
    for start in (config_issue, mapping_issue):
        assert any(line.strip().startswith(start) for line in lines[1:]), (start, lines)


def test_a_broken_config_that_names_no_folder_that_exists_reports_itself(tmp_path: Path) -> None:
    """`mappings:` names a folder that is not there: the config's issue, not one of a folder it may not mean."""
    config, config_issue, _ = _project_elsewhere(tmp_path)
    shutil.rmtree(tmp_path / "elsewhere")

    done = CliRunner().invoke(app, ["mappings", "check", "--config", str(config), "--json"])

    assert done.exit_code == 2, done.output
    issues = json.loads(done.stdout)["issues"]
    assert len(issues) == 1 and issues[0].startswith(config_issue), issues
