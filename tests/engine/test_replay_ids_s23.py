"""`erpoa quarantine retry` of records whose ids the replay's query could not find (session 23, xc F6 and F16).

* A PostgreSQL CHAR(n) id is read back blank-padded (`'INV01     '`), and the server's text of it drops the padding:
  the replay looked for the padded text, read nothing, and took the live, fixed record for deleted (inactivated).
* A composite id whose first value holds `|` (`A|B` + `1`, written `A|B|1`) was split as `A` + `B|1`: the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.engine.pipeline import run_sync
from tests.helpers.project import target_rows


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()
    dispose_all()


def _project(folder: Path, source_url: str, mapping: str) -> ProjectConfig:
    (folder / "mappings").mkdir(parents=True)
    (folder / "erpoa.yaml").write_text(
        "connections:\n"
        f'  erp: {{url: "{source_url}"}}\n  oa: {{url: "sqlite:///{folder / "oa.db"}"}}\n'
        f'  target: {{url: "sqlite:///{folder / "t.db"}"}}\n  recon: {{url: "sqlite:///{folder / "r.db"}"}}\n'
        "mappings: mappings\n",
        encoding="utf-8",
    )
    (folder / "mappings" / "inv.yaml").write_text(mapping, encoding="utf-8")
    return load_project(folder / "erpoa.yaml")


def _retry(config: ProjectConfig) -> None:
    done = CliRunner().invoke(app, ["quarantine", "retry", "inv", "--config", str(config.config_path)])
    assert done.exit_code == 0, done.output
    assert "no longer exist" not in done.output, done.output


@pytest.mark.unit
def test_every_split_of_an_ambiguous_id_is_asked_for() -> None:
    from etl.db.extract import id_splits

    assert id_splits("A|B|1", 2) == [("A", "B|1"), ("A|B", "1")]
    assert id_splits("X|1", 2) == [("X", "1")]
    assert id_splits("A|B", 1) == [("A|B",)]


@pytest.mark.postgres
def test_a_fixed_record_with_a_char_id_is_published_by_the_replay(tmp_path: Path, pg_url: str) -> None:
    _sql(pg_url, "DROP TABLE IF EXISTS inv_char", 'CREATE TABLE inv_char ("code" CHAR(10) PRIMARY KEY, "qty" TEXT)',
         "INSERT INTO inv_char VALUES ('INV01', '5'), ('INV02', '6')")
    config = _project(tmp_path, pg_url, (
        "entity: inv\nkey: code\nfields: {code: {type: string, length: 20}, qty: {type: integer}}\n"
        "sources:\n  erp:\n    table: inv_char\n    id: code\n"
        "    fields: {code: {from: code, transforms: [trim]}, qty: {from: qty, transforms: [to_integer]}}\n"
        "target: {table: md_inv}\n"
    ))
    run_sync(config)
    _sql(pg_url, "UPDATE inv_char SET qty = 'bad' WHERE code = 'INV01'")
    run_sync(config)
    _sql(pg_url, "UPDATE inv_char SET qty = '9' WHERE code = 'INV01'")
    _retry(config)
    assert sorted(target_rows(config, "md_inv", ["code", "qty", "_active"])) == [("INV01", 9, 1), ("INV02", 6, 1)]


@pytest.mark.sqlite
def test_a_fixed_record_with_a_pipe_in_its_composite_id_is_published_by_the_replay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    _sql(url, 'CREATE TABLE "单据" ("单号" TEXT, "行号" INTEGER, "数量" TEXT)',
         "INSERT INTO \"单据\" VALUES ('A|B', 1, '5'), ('A', 2, '6')")
    config = _project(tmp_path, url, (
        "entity: inv\nkey: [doc, line_no]\n"
        "fields: {doc: {type: string, length: 20}, line_no: {type: integer}, qty: {type: integer}}\n"
        "sources:\n  erp:\n    table: 单据\n    id: [单号, 行号]\n"
        "    fields: {doc: 单号, line_no: 行号, qty: {from: 数量, transforms: [to_integer]}}\n"
        "target: {table: md_inv}\n"
    ))
    run_sync(config)
    _sql(url, "UPDATE \"单据\" SET \"数量\" = 'bad' WHERE \"单号\" = 'A|B'")
    run_sync(config)
    _sql(url, "UPDATE \"单据\" SET \"数量\" = '8' WHERE \"单号\" = 'A|B'")
    _retry(config)
    rows = sorted(target_rows(config, "md_inv", ["doc", "line_no", "qty", "_active"]))
    assert rows == [("A", 2, 6, 1), ("A|B", 1, 8, 1)]
