"""Extraction through unixODBC (Debian's odbc-postgresql and odbc-mariadb drivers) equals SQLAlchemy's."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.demo.generate import build_demo
from etl.engine.pipeline import run_sync
from tests.helpers.project import SMALL, target_rows

pytestmark = [pytest.mark.odbc, pytest.mark.postgres, pytest.mark.mariadb]
TABLES = ("md_department", "md_employee", "md_contract", "md_purchase_line")


def _driver(name: str) -> None:
    pyodbc = pytest.importorskip("pyodbc")
    if name not in pyodbc.drivers():
        pytest.fail(
            f"ODBC driver '{name}' is not registered; run `make system-deps` (unixodbc, odbc-postgresql, odbc-mariadb)"
        )


def _pg_odbc(pg_url: str) -> str:
    schema = parse_qs(urlparse(pg_url).query)["options"][0].split("=", 1)[1]
    return (
        f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database=test;Uid=postgres;"
        f"ConnSettings=SET search_path TO {schema}"
    )


def _maria_odbc(mariadb_url: str) -> str:
    database = urlparse(mariadb_url).path.lstrip("/")
    return f"Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=3306;Database={database};Uid=root;Pwd=;CharSet=utf8mb4"


def test_odbc_sources_sync_like_sqlalchemy(pg_url: str, mariadb_url: str, tmp_path: Path) -> None:
    _driver("PostgreSQL Unicode")
    _driver("MariaDB Unicode")
    build_demo(pg_url, mariadb_url, SMALL, seed=11)
    via_sqlalchemy = write_project(tmp_path / "sa", {"erp": pg_url, "oa": mariadb_url})
    via_odbc_dir = tmp_path / "odbc"
    via_odbc = write_project(via_odbc_dir)
    text = via_odbc.read_text(encoding="utf-8")
    text = text.replace(
        f'{{url: "sqlite:///{via_odbc_dir.resolve().as_posix()}/erp.db"}}',
        f'{{odbc: "{_pg_odbc(pg_url)}", dialect: postgresql}}',
    )
    text = text.replace(
        f'{{url: "sqlite:///{via_odbc_dir.resolve().as_posix()}/oa.db"}}',
        f'{{odbc: "{_maria_odbc(mariadb_url)}", dialect: mysql}}',
    )
    via_odbc.write_text(text, encoding="utf-8")
    a, _ = run_sync(load_project(via_sqlalchemy), full_refresh=True)
    b, _ = run_sync(load_project(via_odbc), full_refresh=True)
    assert a.status == b.status == "success", (a.message, b.message)
    assert [e.read for e in a.entities] == [e.read for e in b.entities]
    for table in TABLES:
        assert target_rows(load_project(via_odbc), table) == target_rows(load_project(via_sqlalchemy), table), table
    shutil.rmtree(tmp_path, ignore_errors=True)
