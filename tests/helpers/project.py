"""Build demo projects on any mix of databases for tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.config.project import ProjectConfig, load_project
from etl.demo.generate import DemoSize, build_demo

SMALL = DemoSize(departments=12, employees=120, requisitions=80, contracts=30)
TINY = DemoSize(departments=8, employees=30, requisitions=10, contracts=5)

#: A code-table entry that maps the demo's unknown OA department code SZ01 (a steward's fix).
NEW_UNIT = "  - {code: D0304, name: 数字化转型办公室, synonyms: [SZ01]}\n"


def replace_in(path: Path, *replacements: tuple[str, str]) -> None:
    """Edit a project file (a mapping, a suite): each (old, new) in turn; `old` must be there."""
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{path.name}: {old!r} not found"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def tiny_sqlite_project(folder: Path) -> Path:
    """A demo project of `TINY` size on SQLite in `folder` (seed 5); returns its erpoa.yaml."""
    build_demo(f"sqlite:///{folder / 'erp.db'}", f"sqlite:///{folder / 'oa.db'}", TINY, seed=5)
    return write_project(folder)

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
    pytest.param("mixed", marks=[pytest.mark.postgres, pytest.mark.mariadb]),
]
#: Each database alone (sources, target and store on it).
THREE = BACKENDS[:3]


def synced_sqlite_project(folder: Path) -> str:
    """A demo project on SQLite in `folder` after a full sync with its approval flows; returns its erpoa.yaml."""
    from typer.testing import CliRunner

    from etl.cli.app import app
    from etl.db.connect import dispose_all

    config, _ = make_project(folder, sqlite_urls(folder))
    path = str(config.config_path)
    done = CliRunner().invoke(app, ["sync", "--full-refresh", "--flows", "--config", path, "--json"])
    assert done.exit_code == 0, done.output
    dispose_all()
    return path


def urls_for(backend: str, request: pytest.FixtureRequest, folder: Path) -> dict[str, str]:
    """Connection URLs: all on one server, or ERP on MariaDB and OA/target on PostgreSQL ("mixed").

    The MariaDB backend reads and writes through PyMySQL, the mixed one reads the ERP through
    mysqlclient (the C driver), so both MySQL drivers are exercised.
    """
    urls = sqlite_urls(folder)
    if backend == "postgres":
        pg = request.getfixturevalue("pg_url")
        urls = {"erp": pg, "oa": pg, "target": pg, "recon": pg}
    elif backend == "mariadb":
        my = request.getfixturevalue("mariadb_url")
        urls = {"erp": my, "oa": my, "target": my, "recon": my}
    elif backend == "mixed":
        urls = {
            **urls,
            "erp": request.getfixturevalue("mariadb_c_url"),
            "oa": request.getfixturevalue("pg_url"),
            "target": request.getfixturevalue("pg_url"),
        }
    return urls


def make_project(
    folder: Path, urls: dict[str, str], size: DemoSize = SMALL, seed: int = 42, chunk_size: int = 5_000
) -> tuple[ProjectConfig, dict[str, Any]]:
    """Demo sources on `urls`, a project folder with config, mappings and suites; returns (config, manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = build_demo(urls["erp"], urls["oa"], size, seed)
    path = write_project(folder, urls, chunk_size=chunk_size)
    return load_project(path), manifest.to_dict()


def table_checksums(url: str, prefixes: tuple[str, ...] = ("md_", "erpoa_")) -> dict[str, str]:
    """Row count and content hash of every table whose name starts with one of `prefixes`."""
    engine = create_engine(url)
    out = {}
    try:
        names = [n for n in inspect(engine).get_table_names() if n.lower().startswith(prefixes)]
        with engine.connect() as conn:
            for name in sorted(names):
                quoted = engine.dialect.identifier_preparer.quote(name)
                rows = conn.execute(text(f"SELECT * FROM {quoted}")).all()
                digest = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
                out[name] = f"{len(rows)}:{digest[:16]}"
    finally:
        engine.dispose()
    return out


def target_rows(config: ProjectConfig, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a target table (canonical columns, sorted), for comparing two runs."""
    engine = create_engine(config.connection("target").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            cols = columns or [
                c["name"]
                for c in inspect(engine).get_columns(table)
                if not c["name"].startswith(("_run_id", "_updated_at", "_mapping_version"))
            ]
            q = engine.dialect.identifier_preparer.quote
            rows = conn.execute(text(f"SELECT {', '.join(q(c) for c in cols)} FROM {q(table)}")).all()
    finally:
        engine.dispose()
    return sorted((tuple(r) for r in rows), key=repr)


def execute_sql(url: str, statement: str, rows: list[dict[str, Any]] | dict[str, Any] | None = None) -> None:
    """Run one statement (once per row of `rows` if a list) on `url` in its own transaction."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), rows or {})
    finally:
        engine.dispose()


def source_sql(config: ProjectConfig, source: str, statement: str, **params: object) -> list[tuple[Any, ...]]:
    """Run one statement on a source of `config` in its own transaction; its rows, if any. Identifiers are written
    quoted with `"` (as on PostgreSQL and SQLite) and backquoted on MariaDB."""
    engine = create_engine(config.connection(source).sqlalchemy_url())
    try:
        if engine.dialect.name == "mysql":
            statement = statement.replace('"', "`")
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def widen_department_names(config: ProjectConfig, length: int) -> None:
    """Let the demo ERP's department names (`Department.cDepName`) be `length` characters long (SQLite does not
    enforce a length)."""
    erp = config.connection("erp").sqlalchemy_url()
    dialect = create_engine(erp).dialect.name
    if dialect == "postgresql":
        execute_sql(erp, f'ALTER TABLE "Department" ALTER COLUMN "cDepName" TYPE varchar({length})')
    elif dialect == "mysql":
        execute_sql(erp, f"ALTER TABLE Department MODIFY cDepName VARCHAR({length}) NOT NULL")
