"""Passwords a URL cannot be masked by pattern alone (session 23, exploratory finding xc F5 and F8).

* A URL password holding a blank or a double quote (`a b`, `123 456`, `x"y`) was printed in clear: the URL pattern
  stops at blanks and quotes. `display` now masks the password as SQLAlchemy's URL holds it, and a known secret
  between a URL's ':' and '@' is masked whatever its length.
* The password of an ODBC string inside a URL (`?odbc_connect=...PWD%3D<pw>`) was masked only when it was 8
  characters or more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl import logs
from etl.config.project import ConnectionConfig, load_project, mask_secrets
from etl.errors import ConfigError

ODBC = "mysql+pyodbc:///?odbc_connect=Driver%3D%7BMariaDB+Unicode%7D%3BServer%3D127.0.0.1%3BUID%3Dxc_u3%3BPWD%3D"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("mysql+pymysql://xc_u3:a b@127.0.0.1:3306/oa?charset=utf8mb4", "a b"),
        ("postgresql+psycopg://u:123 456@127.0.0.1:5432/db", "123 456"),
        ('postgresql+psycopg://u:x"y@127.0.0.1:5432/db', 'x"y'),
        ("postgresql+psycopg://u:9 8 7 6@127.0.0.1:5432/db", "9 8 7 6"),
        (ODBC + "Pw1234", "Pw1234"),
        (ODBC + "a%20b", "a%20b"),
        (ODBC + "%7Bx%3By%7D%3BDatabase%3Doa", "%7Bx%3By%7D"),
    ],
)
def test_a_password_is_masked_whatever_it_holds(url: str, password: str) -> None:
    connection = ConnectionConfig(url=url)
    assert password not in connection.display, connection.display
    assert "***" in connection.display
    said = logs.RedactingFilter(connection.secrets).redact(f"connections.erp ({url}): connection failed")
    assert password not in said, said
    assert password not in mask_secrets(connection.display)
    assert said.startswith("connections.erp (") and said.endswith("): connection failed")


@pytest.mark.postgres
def test_a_failing_connection_never_prints_its_blank_holding_password(tmp_path: Path) -> None:
    """End to end: PostgreSQL (trust auth) refuses the missing database; every output names the connection
    masked."""
    (tmp_path / "erpoa.yaml").write_text(
        "connections:\n"
        '  erp: {url: "postgresql+psycopg://postgres:${SPW}@127.0.0.1:5432/xs23_missing_db"}\n'
        '  oa: {url: "sqlite:///oa.db"}\n  target: {url: "sqlite:///target.db"}\n  recon: {url: "sqlite:///recon.db"}\n'
        "mappings: mappings\n",
        encoding="utf-8",
    )
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "item.yaml").write_text(
        "entity: item\nkey: code\nfields: {code: {type: string}}\n"
        "sources: {erp: {table: items, id: id, fields: {code: code}}}\ntarget: {table: md_item}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "SPW": "123 456"}
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "etl.cli.app", "--log-format", "json", "sync", "--config", "erpoa.yaml", *extra],
            check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "123 456" not in done.stdout + done.stderr, done.stdout + done.stderr
        assert "postgres:***@127.0.0.1" in done.stdout + done.stderr


@pytest.mark.unit
@pytest.mark.parametrize("charset", ["utf8", "utf8mb3", "latin1", "UTF8"])
def test_a_mariadb_charset_other_than_utf8mb4_is_refused_located(tmp_path: Path, charset: str) -> None:
    """`?charset=utf8` (utf8mb3) read an emoji as '?' and published it; as a target it failed writing one."""
    path = tmp_path / "erpoa.yaml"
    path.write_text(
        "connections:\n"
        "  erp: {url: \"sqlite:///erp.db\"}\n"
        f"  oa: {{url: \"mysql+pymysql://root@127.0.0.1:3306/oa?charset={charset}&use_unicode=1\"}}\n"
        "  target: {url: \"sqlite:///target.db\"}\n  recon: {url: \"sqlite:///recon.db\"}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (3, "connections.oa.url")
    assert f"charset={charset} cannot hold 4-byte characters" in issue.message
    assert "use charset=utf8mb4" in issue.message
    path.write_text(path.read_text(encoding="utf-8").replace(f"charset={charset}", "charset=utf8mb4"), encoding="utf-8")
    assert load_project(path).connection("oa").kind == "url"


@pytest.mark.unit
def test_a_literal_password_inside_an_odbc_connect_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A literal `PWD%3D<pw>` inside `?odbc_connect=` loaded, while every other literal password is refused."""
    path = tmp_path / "erpoa.yaml"
    rest = '  oa: {url: "sqlite:///oa.db"}\n  target: {url: "sqlite:///t.db"}\n  recon: {url: "sqlite:///r.db"}\n'
    path.write_text(f'connections:\n  erp: {{url: "{ODBC}a+b"}}\n' + rest, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (2, "connections.erp.url")
    assert issue.message.startswith("a password is written in the file; put it in the environment"), issue.message
    assert "a+b" not in str(caught.value)
    monkeypatch.setenv("ERP_PASSWORD", "a b")
    path.write_text(f'connections:\n  erp: {{url: "{ODBC}${{ERP_PASSWORD}}"}}\n' + rest, encoding="utf-8")
    assert "a b" in load_project(path).connection("erp").secrets
