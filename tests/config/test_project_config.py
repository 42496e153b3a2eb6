"""A broken erpoa.yaml is reported with file:line, key path and the fix; exit code 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project, mask_secrets
from etl.errors import ConfigError

pytestmark = pytest.mark.unit

GOOD = """\
connections:
  erp: {url: "sqlite:///erp.db"}
  oa: {url: "sqlite:///oa.db"}
  target: {url: "sqlite:///target.db"}
  recon: {url: "sqlite:///recon.db"}
"""

CASES = [
    (
        "unknown key",
        GOOD + "run:\n  chunk_sise: 5\n",
        "erpoa.yaml:7:3 run.chunk_sise: unknown key 'chunk_sise'; did you mean 'chunk_size'?",
    ),
    (
        "missing connection",
        GOOD.replace('  recon: {url: "sqlite:///recon.db"}\n', ""),
        "erpoa.yaml:1:1 connections: missing connection(s) recon",
    ),
    (
        "unresolvable variable",
        GOOD.replace("sqlite:///erp.db", "postgresql://u:${ERPOA_TEST_NOPE}@h/db"),
        "erpoa.yaml:2:14 connections.erp.url: environment variable ERPOA_TEST_NOPE is not set",
    ),
    (
        "literal password",
        GOOD.replace("sqlite:///oa.db", "mysql+pymysql://root:hunter2@h/db"),
        "erpoa.yaml:3:13 connections.oa.url: a password is written in the file",
    ),
    (
        "odbc without dialect",
        GOOD.replace('{url: "sqlite:///target.db"}', '{odbc: "DSN=u8"}'),
        "erpoa.yaml:4:11 connections.target: an `odbc` connection needs `dialect:`",
    ),
    (
        "bad timezone",
        GOOD + "run:\n  timezone: Mars/Base\n",
        "erpoa.yaml:7:13 run.timezone: unknown timezone 'Mars/Base'",
    ),
    ("wrong type", GOOD + "run:\n  chunk_size: lots\n", "erpoa.yaml:7:15 run.chunk_size: expected a whole number"),
    ("syntax", GOOD + "run: [\n", "erpoa.yaml:"),
    (
        "notify channel type",
        GOOD + "notify: [{type: slack, url_env: ERPOA_TEST_URL}]\n",
        "erpoa.yaml:6:17 notify[0].type: got 'slack'; Input should be 'wecom', 'dingtalk', 'feishu' or 'email'",
    ),
    (
        "notify secret in yaml",
        GOOD + "notify:\n  channels:\n    - {type: wecom, url_env: 'https://qyapi.example/send?key=hunter2'}\n",
        "erpoa.yaml:8:30 notify.channels[0].url_env: url_env must be the NAME of an environment variable",
    ),
    (
        "notify duplicate channels",
        GOOD + "notify:\n  - {type: wecom, url_env: ERPOA_W}\n  - {type: wecom, url_env: ERPOA_W}\n",
        "erpoa.yaml:6:1 notify: notify channels must have distinct names",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_is_located(name: str, text: str, expected: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("erpoa.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project("erpoa.yaml")
    assert any(str(issue).startswith(expected) for issue in info.value.issues), info.value.render()
    result = CliRunner().invoke(app, ["status", "--config", "erpoa.yaml"])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert "hunter2" not in result.output


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "erpoa.yaml"
    path.write_text(
        GOOD.replace('  recon: {url: "sqlite:///recon.db"}\n', "") + "run:\n  chunk_sise: 5\n  timezone: X/Y\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_project(path)
    paths = {issue.path for issue in info.value.issues}
    assert {"connections", "run.chunk_sise", "run.timezone"} <= paths


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "erpoa.yaml"
    path.write_text("connections: [\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "etl.cli.app", "sync", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "YAML syntax error" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sync", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "config file not found; run `erpoa demo` or pass --config PATH" in result.output


def test_secrets_resolved_from_environment_and_masked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ERPOA_TEST_PW", "s3cr3t")
    path = tmp_path / "erpoa.yaml"
    path.write_text(
        GOOD.replace("sqlite:///erp.db", "postgresql+psycopg://erp:${ERPOA_TEST_PW}@db/erp"), encoding="utf-8"
    )
    config = load_project(path)
    erp = config.connection("erp")
    assert erp.sqlalchemy_url() == "postgresql+psycopg://erp:s3cr3t@db/erp"
    assert "s3cr3t" not in erp.display and "s3cr3t" not in repr(config)
    assert "s3cr3t" in config.secrets()
    assert mask_secrets("DSN=x;UID=a;PWD={p;w}") == "DSN=x;UID=a;PWD=***"
