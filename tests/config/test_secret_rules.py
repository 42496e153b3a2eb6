"""Passwords in erpoa.yaml come whole from `${VAR}`; what is registered for redaction is the whole secret;
redaction never corrupts unrelated text or `--json` output.

Every refused config is reported as `file:line key.path: message` with the fix, and no message shows the value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl import logs
from etl.cli.app import app
from etl.config.project import ConnectionConfig, ProjectConfig, load_project, mask_secrets
from etl.errors import ConfigError

pytestmark = pytest.mark.unit

REST = """\
connections:
  erp: {url: "sqlite:///erp.db"}
  oa: {url: "sqlite:///oa.db"}
  recon: {url: "sqlite:///recon.db"}
"""
LITERAL = "Zq7#Kx9!mPw2"
ENCODED_LITERAL = "Zq7%23Kx9!mPw2"


def write(tmp_path: Path, target: str, extra: str = "") -> Path:
    path = tmp_path / "erpoa.yaml"
    path.write_text(REST + f"  target: {target}\n" + extra, encoding="utf-8")
    return path


def redact_with(text: str, secrets: list[str]) -> str:
    return logs.RedactingFilter(secrets).redact(text)


def refused(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_project(path)
    return [str(issue) for issue in info.value.issues]


@pytest.fixture
def clean_redactor():
    saved = logs._FILTER.secrets
    yield
    logs._FILTER.secrets = saved


@pytest.mark.parametrize("password", ["Qx7v/Wk2@Zp9r", "Qx7v@Wk2/Zp9r", "Qx7v?Wk2@Zp9r", "Qx7v:Wk2@Zp9r"])
def test_raw_at_in_password_is_refused_at_load(password: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FIXSEC_TGT_PW", password)
    path = write(tmp_path, '{url: "mysql+pymysql://u:${FIXSEC_TGT_PW}@127.0.0.1:3306/db"}')
    [issue] = refused(path)
    assert issue.startswith(f"{path}:5:17 connections.target.url: the user:password part contains a raw '@'")
    assert "percent-encode the password" in issue and "${TARGET_URL}" in issue
    assert not any(part in issue for part in re.split(r"[@/?:]", password))


def test_encoded_password_loads_and_the_whole_password_is_registered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FIXSEC_TGT_PW", "ab%2Fcd%40efgh")
    config = load_project(write(tmp_path, '{url: "mysql+pymysql://u:${FIXSEC_TGT_PW}@127.0.0.1:3306/db"}'))
    assert {"ab/cd@efgh", "ab%2Fcd%40efgh"} <= set(config.secrets())


def test_connection_built_in_memory_registers_and_masks_the_whole_password() -> None:
    conn = ConnectionConfig(url="mysql+pymysql://u:ab/cd@efgh@127.0.0.1:3306/db")
    assert "ab/cd@efgh" in conn.secrets
    assert conn.display == "mysql+pymysql://u:***@127.0.0.1:3306/db"
    line = logs.RedactingFilter().redact("connect to mysql+pymysql://u:ab/cd@efgh@127.0.0.1:3306/db failed")
    assert "efgh" not in line and "ab/cd" not in line


LITERAL_CASES = {
    "default in the url": ('{url: "mysql+pymysql://u:${FIXSEC_UNSET_PW:-' + ENCODED_LITERAL + '}@h:3306/db"}',
                           "connections.target.url: a password must not have a default"),
    "text around a variable": ('{url: "mysql+pymysql://u:' + ENCODED_LITERAL + '${FIXSEC_EMPTY:-}@h:3306/db"}',
                               "connections.target.url: a password is written in the file"),
    "connect_args password": ('{url: "mysql+pymysql://u@h:3306/db", connect_args: {password: "' + LITERAL + '"}}',
                              "connections.target.connect_args.password: a password is written in the file"),
    "connect_args passwd with a default": (
        '{url: "mysql+pymysql://u@h:3306/db", connect_args: {passwd: "${FIXSEC_UNSET_PW:-' + LITERAL + '}"}}',
        "connections.target.connect_args.passwd: a password must not have a default"),
    "connect_args nested, not text": ('{url: "postgresql+psycopg://u@h/db", connect_args: {ssl: {sslpassword: 42}}}',
                                      "connections.target.connect_args.ssl.sslpassword: a password is written"),
    "password in the query": ('{url: "postgresql+psycopg://u@h/db?password=' + ENCODED_LITERAL + '"}',
                              "connections.target.url: a password is written in the file"),
    "odbc default": ('{odbc: "DSN=u8;UID=sa;PWD={${FIXSEC_UNSET_PW:-' + ENCODED_LITERAL + '}}", dialect: mssql}',
                     "connections.target.odbc: a password must not have a default"),
    "odbc literal": ('{odbc: "DSN=u8;UID=sa;PWD={' + ENCODED_LITERAL + '}", dialect: mssql}',
                     "connections.target.odbc: a password is written in the file"),
    "url from a variable whose default holds a password": (
        '{url: "${FIXSEC_UNSET_URL:-mysql+pymysql://u:' + ENCODED_LITERAL + '@h/db}"}',
        "connections.target.url: a password is written in the file"),
}


@pytest.mark.parametrize(("target", "expected"), LITERAL_CASES.values(), ids=LITERAL_CASES.keys())
def test_password_not_wholly_from_a_variable_is_refused(target: str, expected: str, tmp_path: Path,
                                                        monkeypatch) -> None:
    monkeypatch.delenv("FIXSEC_UNSET_PW", raising=False)
    monkeypatch.delenv("FIXSEC_UNSET_URL", raising=False)
    path = write(tmp_path, target)
    issues = refused(path)
    assert any(re.match(rf"{re.escape(str(path))}:5:\d+ {re.escape(expected)}", i) for i in issues), issues
    assert any("${" in i for i in issues), "the message names the fix"
    assert not any(LITERAL in i or ENCODED_LITERAL in i or "Kx9" in i for i in issues), issues
    result = CliRunner().invoke(app, ["--log-format", "json", "status", "--config", str(path), "--json"])
    assert result.exit_code == 2
    assert "Kx9" not in result.stdout + result.stderr


def test_password_variable_with_an_empty_default_is_accepted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FIXSEC_UNSET_PW", raising=False)
    config = load_project(write(tmp_path, '{url: "postgresql+psycopg://u:${FIXSEC_UNSET_PW:-}@h/db"}'))
    assert config.connection("target").sqlalchemy_url() == "postgresql+psycopg://u:@h/db"


def test_connect_args_secrets_from_the_environment_are_registered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FIXSEC_PW", LITERAL)
    path = write(tmp_path, '{url: "mysql+pymysql://u@h:3306/db", '
                           'connect_args: {password: "${FIXSEC_PW}", ssl: {key: /etc/k.pem}, connect_timeout: 5}}')
    config = load_project(path)
    assert LITERAL in config.secrets()
    assert "/etc/k.pem" not in config.secrets()
    assert config.connection("target").connect_args["password"] == LITERAL


def test_missing_password_variable_suggests_no_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOPE_PW", raising=False)
    monkeypatch.delenv("FIXSEC_NOPE_HOST", raising=False)
    path = write(tmp_path, '{url: "mysql+pymysql://u:${NOPE_PW}@${FIXSEC_NOPE_HOST}:3306/db"}')
    issues = refused(path)
    assert any("environment variable NOPE_PW is not set; export it" in i for i in issues), issues
    assert not any(":-default" in i for i in issues), issues
    path = write(tmp_path, '{url: "mysql+pymysql://u@${FIXSEC_NOPE_HOST}:3306/db"}')
    assert any("or write ${FIXSEC_NOPE_HOST:-default}" in i for i in refused(path))


def test_url_or_odbc_example_survives_redaction(tmp_path: Path) -> None:
    path = write(tmp_path, '{odbc: "DSN=u8;UID=sa", dialect: mssql, url: "sqlite://"}')
    [issue] = refused(path)
    assert issue.endswith("'DSN=u8;UID=sa;PWD=${ERP_PASSWORD}')")
    assert logs.redact(issue) == issue
    assert mask_secrets(issue) == issue
    assert mask_secrets("DSN=u8;UID=sa;PWD=secret;X=1") == "DSN=u8;UID=sa;PWD=***;X=1"


def test_allowed_keys_do_not_list_config_path(tmp_path: Path) -> None:
    path = write(tmp_path, '{url: "sqlite:///t.db"}', "config_pth: x\n")
    [issue] = refused(path)
    assert "unknown key 'config_pth'" in issue and "config_path" not in issue
    assert "allowed keys: project, connections, mappings, expectations, reports, run, notify" in issue
    assert "config_path" in " ".join(refused(write(tmp_path, '{url: "sqlite:///t.db"}', "config_path: /x\n")))
    config = load_project(write(tmp_path, '{url: "sqlite:///t.db"}'))
    assert config.config_path == (tmp_path / "erpoa.yaml").resolve()
    moved = config.model_copy(update={"connections": dict(config.connections)})
    assert moved.config_path == config.config_path
    assert ProjectConfig(connections={}).config_path is None


@pytest.mark.parametrize(("setting", "expected"), [
    ("retries: -1", "run.retries: expected a whole number from 0 to 20, got -1"),
    ("max_quarantined_pct: 150", "run.max_quarantined_pct: expected a number from 0 to 100, got 150"),
    ("max_quarantined_rows: -5", "run.max_quarantined_rows: expected a whole number of at least 0, got -5"),
])
def test_range_errors_say_the_allowed_range(setting: str, expected: str, tmp_path: Path) -> None:
    issues = refused(write(tmp_path, '{url: "sqlite:///t.db"}', f"run:\n  {setting}\n"))
    assert any(expected in i for i in issues), issues
    assert not any("Input should be" in i for i in issues), issues


def test_config_folder_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    [issue] = refused(Path("."))
    assert issue.startswith(".: is a folder, not a config file; pass the file: --config erpoa.yaml")
    result = CliRunner().invoke(app, ["sync", "--config", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and f"--config {tmp_path / 'erpoa.yaml'}" in result.output


@pytest.mark.parametrize("secret", ["1", "20", "abc", "true", "2026", "12345678"])
def test_short_secrets_keep_json_valid_and_text_intact(secret: str) -> None:
    payload = {"run_id": "20261206T031449-0a1b2c", "erp": 1, "exit_code": 20, "ok": True, "n": 2026.5,
               "entities": [{"rows": 12345678, "message": "retry 1/2 in 0.5s on 2026-12-06"}],
               "url": f"mysql+pymysql://u:{secret}@127.0.0.1:3306/db",
               "odbc": f"DSN=u8;UID=sa;PWD={secret};X=1", "note": f"password={secret}"}
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    redacted = json.loads(redact_with(text, [secret]))
    assert redacted["run_id"] == payload["run_id"]
    assert redacted["entities"] == payload["entities"]
    assert (redacted["erp"], redacted["exit_code"], redacted["ok"], redacted["n"]) == (1, 20, True, 2026.5)
    assert redacted["url"] == "mysql+pymysql://u:***@127.0.0.1:3306/db"
    assert redacted["odbc"] == "DSN=u8;UID=sa;PWD=***;X=1"
    assert redacted["note"] == "password=***"
    line = "retry 1/2 in 0.5s; run 20261206T031449-0a1b2c, exit code 20, 2026-12-06, 12345678 rows"
    assert redact_with(line, [secret]) == line.replace("12345678 rows", "*** rows" if secret == "12345678" else
                                                           "12345678 rows")
    assert secret not in redact_with(f"connect failed: 'password': '{secret}'", [secret])


def test_long_and_quoted_secrets_are_masked_everywhere() -> None:
    secret = 'Zq7"Kx9\\mPw2'
    text = json.dumps({"message": f"failed for {secret}; also x{secret}y", "n": 3})
    redacted = redact_with(text, [secret])
    assert json.loads(redacted) == {"message": "failed for ***; also x***y", "n": 3}
    assert redact_with(f"plain {LITERAL}!", [LITERAL]) == "plain ***!"
    assert redact_with("word pass1 in text, not in mypass1x", ["pass1"]) == "word *** in text, not in mypass1x"


def test_registered_short_password_does_not_corrupt_cli_json(tmp_path: Path, clean_redactor) -> None:
    logs.add_secrets(["1", "0"])
    result = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "nope.yaml"), "--json"])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 2 and "***" not in result.stdout
