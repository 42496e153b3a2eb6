"""A password with a raw '@' followed by a ':' (`p@ss:Secr3t`) makes SQLAlchemy read a bad port and fail to parse the
URL: the refusal still names the raw '@' and how to encode it, never the generic "not a valid SQLAlchemy URL", and
never shows the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project, url_problem
from etl.errors import ConfigError

pytestmark = pytest.mark.unit

CONFIG = """\
connections:
  erp: {url: "sqlite:///erp.db"}
  oa: {url: "sqlite:///oa.db"}
  recon: {url: "sqlite:///recon.db"}
  target: {url: "postgresql://u:${ERPOA_TESTPW}@127.0.0.1:1/db"}
"""
# Each breaks SQLAlchemy's parse of the URL (after the '@', the text up to the next '/' is host:port).
PASSWORDS = ["p@ss:Secr3t", "Qx7v@Wk2:9r", "Qx7v@Wk2:Zp9r/x", "Qx7v@Wk2:Zp:9r", "Qx7v/Wk@2:Zp9r"]
RAW_AT = "the user:password part contains a raw '@'"


def _secret_parts(password: str) -> list[str]:
    return [part for part in re.split(r"[@/?:]", password) if len(part) > 2]


@pytest.mark.parametrize("password", PASSWORDS)
def test_raw_at_then_colon_gets_the_raw_at_hint_at_load(password: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ERPOA_TESTPW", password)
    path = tmp_path / "erpoa.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    [issue] = [str(i) for i in info.value.issues]
    assert issue.startswith(f"{path}:5:17 connections.target.url: {RAW_AT}"), issue
    assert "percent-encode the password" in issue and "${TARGET_URL}" in issue
    assert "not a valid SQLAlchemy URL" not in issue
    assert not any(part in issue for part in _secret_parts(password))


def test_the_cli_shows_the_hint_and_exits_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ERPOA_TESTPW", "p@ss:Secr3t")
    path = tmp_path / "erpoa.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    result = CliRunner().invoke(app, ["status", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert RAW_AT in result.output and "percent-encode" in result.output
    assert "Secr3t" not in result.output and "p@ss" not in result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p%40ss%3ASecr3t@127.0.0.1:1/db", None),  # encoded: fine
        ("postgresql://u:pass@127.0.0.1:1/db", None),
        ("postgresql://u:pass@127.0.0.1:port/db", "not a valid SQLAlchemy URL"),  # no raw '@': the generic message
        ("not a url", "not a valid SQLAlchemy URL"),
    ],
)
def test_other_urls_keep_their_answer(url: str, expected: str | None) -> None:
    problem = url_problem(url, "target")
    assert problem is None if expected is None else (problem or "").startswith(expected)
