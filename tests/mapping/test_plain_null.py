"""A policy word `null` written without quotes: YAML reads it as no value; the message says so and how to write it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from etl.cli.app import app
from tests.helpers.project import tiny_sqlite_project


def test_an_unquoted_null_policy_says_to_quote_it(tmp_path: Path) -> None:
    config_path = tiny_sqlite_project(tmp_path)
    mapping = tmp_path / "mappings" / "employee.yaml"
    text = mapping.read_text(encoding="utf-8")
    assert 'on_mismatch: "null"' in text
    mapping.write_text(text.replace('on_mismatch: "null"', "on_mismatch: null", 1), encoding="utf-8")
    done = CliRunner().invoke(app, ["mappings", "check", "--config", str(config_path), "--json"])
    assert done.exit_code == 2, done.output
    issues = json.loads(done.stdout)["issues"]
    said = 'on_mismatch: YAML reads null as no value; quote it ("null") for the policy null.'
    assert any(said in issue for issue in issues), issues
    assert not any("got None" in i for i in issues), issues


def test_show_of_an_unknown_quarantine_id_is_a_usage_error(tmp_path: Path) -> None:
    config_path = tiny_sqlite_project(tmp_path)
    done = CliRunner().invoke(app, ["quarantine", "show", "999999", "--config", str(config_path)])
    assert done.exit_code == 2, done.output
    assert "No quarantine row 999999" in done.output
