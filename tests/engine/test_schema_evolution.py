"""A mapping changed on a running project: its existing tables follow safe changes and refuse the others.

A new field becomes a column of target and mirror, filled for the existing rows by a complete read; a longer
`length:` widens the column; a type change stops before anything is written, with a located ConfigError
(exit 2). A plan says what a sync would change and changes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from etl import faults
from etl.cli.app import app
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import run_sync
from tests.helpers.project import (
    TINY,
    execute_sql,
    make_project,
    replace_in,
    table_checksums,
    target_rows,
    urls_for,
    widen_department_names,
)


@pytest.fixture
def project(department_synced: ProjectConfig) -> ProjectConfig:
    return department_synced


def _mapping(config: ProjectConfig) -> Path:
    return config.resolve(config.mappings) / "department.yaml"


def _edit(config: ProjectConfig, *replacements: tuple[str, str]) -> ProjectConfig:
    replace_in(_mapping(config), *replacements)
    return load_project(config.config_path)


def _add_leader(config: ProjectConfig) -> ProjectConfig:
    """The department's leader (the demo ERP's `cDepLeader`), a field its tables do not have."""
    field = "  updated_at: {type: datetime, compare: false}\n"
    source = "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"
    return _edit(
        config,
        (field, field + "  leader: {type: string, length: 20}\n"),
        (source, source + "      leader: {from: cDepLeader, transforms: [trim]}\n"),
    )


def _written(config: ProjectConfig) -> dict[str, str]:
    """Checksums of every table the sync writes: target (with mirror and work tables) and store."""
    urls = {config.connection(name).sqlalchemy_url() for name in ("target", "recon")}
    return {f"{url}/{name}": digest for url in sorted(urls) for name, digest in table_checksums(url).items()}


def _erp_leaders(config: ProjectConfig) -> set[str]:
    rows = target_rows_of(config.connection("erp").sqlalchemy_url(), "Department", ["cDepLeader"])
    return {str(r[0]).strip() for r in rows if r[0] is not None and str(r[0]).strip()}


def target_rows_of(url: str, table: str, columns: list[str]) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        q = engine.dialect.identifier_preparer.quote
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(map(q, columns))} FROM {q(table)}")]
    finally:
        engine.dispose()


def test_a_new_field_fills_existing_rows_and_a_rerun_changes_nothing(project: ProjectConfig) -> None:
    config = _add_leader(project)
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    result = summary.entities[0]
    assert "added column md_department.leader" in (result.message or "")
    assert result.updated > 0
    leaders = {r[0] for r in target_rows(config, "md_department", ["leader"]) if r[0] is not None}
    assert leaders and leaders <= _erp_leaders(config)
    before = target_rows(config, "md_department")
    again, _ = run_sync(config, entities=["department"])
    assert (again.entities[0].inserted, again.entities[0].updated, again.entities[0].message) == (0, 0, None)
    # A complete read finds every record as the evolved run left it: the new column holds what the sources say.
    full, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert (full.entities[0].inserted, full.entities[0].updated, full.entities[0].inactivated) == (0, 0, 0)
    assert target_rows(config, "md_department") == before


@pytest.mark.sqlite
def test_a_crash_after_the_new_column_still_fills_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    run_sync(config, full_refresh=True, entities=["department"])
    config = _add_leader(config)

    class Killed(BaseException):
        pass

    real = faults.point

    def crash(name: str) -> None:
        if name == "extract.prepared":
            raise Killed(name)
        real(name)

    monkeypatch.setattr(faults, "point", crash)
    with pytest.raises(Killed):
        run_sync(config, entities=["department"])
    monkeypatch.setattr(faults, "point", real)
    columns = {c["name"] for c in inspect(create_engine(config.connection("target").sqlalchemy_url())).get_columns(
        "md_department")}
    assert "leader" in columns  # added before the crash: the rerun finds nothing to add
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    assert {r[0] for r in target_rows(config, "md_department", ["leader"]) if r[0] is not None}
    full, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert (full.entities[0].inserted, full.entities[0].updated) == (0, 0)


def test_plan_after_a_new_field_writes_nothing(project: ProjectConfig) -> None:
    config = _add_leader(project)
    before = _written(config)
    summary, _ = run_sync(config, entities=["department"], dry_run=True)
    assert summary.status == "planned", summary.message
    assert summary.message == "would add column md_department.leader; a complete read follows"
    assert summary.entities[0].updated > 0  # every existing record gets its leader
    assert _written(config) == before


def test_a_longer_length_widens_the_column(project: ProjectConfig) -> None:
    erp = project.connection("erp").sqlalchemy_url()
    dialect = create_engine(erp).dialect.name
    widen_department_names(project, 200)
    code = sorted(r[0] for r in target_rows_of(erp, "Department", ["cDepCode"]))[0]
    long_name = "部" * 3 + "N" * 150
    execute_sql(
        erp,
        'UPDATE "Department" SET "cDepName" = :name, "dModifyDate" = CURRENT_TIMESTAMP WHERE "cDepCode" = :code'
        if dialect != "mysql"
        else "UPDATE Department SET cDepName = :name, dModifyDate = CURRENT_TIMESTAMP WHERE cDepCode = :code",
        {"name": long_name, "code": code},
    )
    config = _edit(project, ("name: {type: string, length: 100,", "name: {type: string, length: 200,"))
    suite = config.resolve(config.expectations) / "department.json"
    rules = json.loads(suite.read_text(encoding="utf-8"))
    for rule in rules["expectations"]:
        if rule["kwargs"].get("column") == "name" and "max_value" in rule["kwargs"]:
            rule["kwargs"]["max_value"] = 200  # the suite's own length check, written by `expectations init`
    suite.write_text(json.dumps(rules), encoding="utf-8")
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    assert long_name in {r[0] for r in target_rows(config, "md_department", ["name"])}
    if dialect != "sqlite":
        assert "widened column md_department.name to VARCHAR(200)" in (summary.message or "")
        target = create_engine(config.connection("target").sqlalchemy_url())
        lengths = {c["name"]: getattr(c["type"], "length", None) for c in inspect(target).get_columns("md_department")}
        assert lengths["name"] == 200
    again, _ = run_sync(config, entities=["department"])
    assert (again.entities[0].updated, again.entities[0].message) == (0, None)


def test_a_type_change_is_refused_where_it_is_written(project: ProjectConfig) -> None:
    config = _edit(
        project,
        ("is_leaf: {type: boolean,", "is_leaf: {type: integer,"),
        ("transforms: [to_boolean]}", "transforms: [to_integer]}"),
    )
    line = next(
        i for i, text in enumerate(_mapping(config).read_text(encoding="utf-8").splitlines(), 1) if "is_leaf: {" in text
    )
    before = _written(config)
    for command, extra in (("plan", []), ("sync", []), ("sync", ["--full-refresh"])):
        done = CliRunner().invoke(app, [command, "department", "--config", str(config.config_path), "--json", *extra])
        assert done.exit_code == 2, done.stdout
        message = json.loads(done.stdout)["entities"][0]["message"]
        assert re.match(
            rf"mappings/department.yaml:{line}:\d+ fields\.is_leaf\.type: the target column md_department\.is_leaf is ",
            message,
        ), message
        assert "the field's type is now integer; nothing was written" in message
        assert "ALTER TABLE" in message or "CREATE TABLE md_department_old AS SELECT" in message
    kept = ("/md_", "/erpoa_src_", "/erpoa_ids_", "/erpoa_watermark")
    after = _written(config)
    assert {k: v for k, v in after.items() if any(p in k for p in kept)} == {
        k: v for k, v in before.items() if any(p in k for p in kept)
    }
    # The message's way to start anew works on every database (a renamed table kept its index names).
    rows = target_rows(config, "md_department", ["department_code"])
    for statement in ("CREATE TABLE md_department_old AS SELECT * FROM md_department", "DROP TABLE md_department",
                      "DROP TABLE erpoa_src_department", "DROP TABLE erpoa_ids_department"):
        execute_sql(config.connection("target").sqlalchemy_url(), statement)
    anew, _ = run_sync(config, entities=["department"], full_refresh=True)
    assert anew.status == "success", anew.message
    assert sorted(target_rows(config, "md_department", ["department_code"])) == sorted(rows)
    assert len(target_rows(config, "md_department_old", ["department_code"])) == len(rows)


@pytest.mark.sqlite
def test_a_shorter_length_and_a_key_change_are_refused(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    run_sync(config, full_refresh=True, entities=["department"])
    shorter = _edit(config, ("name: {type: string, length: 100,", "name: {type: string, length: 50,"))
    summary, _ = run_sync(shorter, entities=["department"])
    assert summary.exit_code == 2
    assert "fields.name.length: the target column md_department.name is VARCHAR(100)" in (summary.message or "")
    table = "target:\n  table: md_department\n"
    rekeyed = _edit(shorter, ("length: 50,", "length: 100,"), (table, table + "  key: [department_code, name]\n"))
    summary, _ = run_sync(rekeyed, entities=["department"])
    assert summary.exit_code == 2
    assert "target.key: the primary key of the target table md_department is (department_code)" in (
        summary.message or ""
    )


@pytest.mark.sqlite
def test_a_new_target_table_is_filled_completely(tmp_path: Path) -> None:
    """A new `target.table` (or a dropped target): an incremental read would publish the changes only."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    first, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert first.status == "success", first.message
    before = sorted(target_rows(config, "md_department", ["department_code"]))
    moved = _edit(config, ("target:\n  table: md_department\n", "target:\n  table: md_dept\n"))
    summary, _ = run_sync(moved, entities=["department"])
    assert summary.status == "success", summary.message
    assert "the target md_dept does not exist yet: department is read completely" in (summary.message or "")
    assert sorted(target_rows(moved, "md_dept", ["department_code"])) == before
    again, _ = run_sync(moved, entities=["department"])
    assert (again.entities[0].inserted, again.entities[0].updated, again.entities[0].message) == (0, 0, None)


@pytest.mark.sqlite
def test_reconcile_waits_for_the_sync_that_applies_a_mapping_change(tmp_path: Path) -> None:
    from etl.reconcile.run import reconcile_fresh

    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    run_sync(config, full_refresh=True, entities=["department"])
    changed = _add_leader(config)
    early = reconcile_fresh(changed, "department")
    assert early["entities"]["department"]["status"] == "failed"
    message = early["entities"]["department"]["message"]
    assert "md_department.leader" in message and "do not exist yet" in message, message
    assert "run `erpoa sync department` first" in message
    run_sync(changed, entities=["department"])
    assert reconcile_fresh(changed, "department")["status"] == "success"


@pytest.mark.postgres
def test_a_longer_length_of_a_column_a_view_uses_is_refused_before_anything_changes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL cannot change the type of a column a view uses: plan and sync say so where the length is written."""
    config, _ = make_project(tmp_path / "project", urls_for("postgres", request, tmp_path), size=TINY)
    first, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert first.status == "success", first.message
    target = config.connection("target").sqlalchemy_url()
    execute_sql(target, "CREATE VIEW v_department_names AS SELECT department_code, name FROM md_department")
    config = _add_leader(_edit(config, ("name: {type: string, length: 100,", "name: {type: string, length: 200,")))
    line = next(
        i for i, text in enumerate(_mapping(config).read_text(encoding="utf-8").splitlines(), 1) if "  name: {" in text
    )
    before = _written(config)
    for command in ("plan", "sync"):
        done = CliRunner().invoke(app, [command, "department", "--config", str(config.config_path), "--json"])
        assert done.exit_code == 2, done.stdout
        message = json.loads(done.stdout)["entities"][0]["message"]
        assert re.match(
            rf"mappings/department.yaml:{line}:\d+ fields\.name\.length: the target column md_department\.name is "
            r"VARCHAR\(100\), the field's length is now 200, but PostgreSQL cannot widen a column that a view uses",
            message,
        ), message
        assert "view v_department_names" in message and "drop the view(s), run `erpoa sync department`" in message
    # Nothing changed: neither the width, nor the new field's column (checked before anything is applied).
    kept = ("/md_", "/erpoa_src_", "/erpoa_ids_", "/erpoa_watermark")
    assert {k: v for k, v in _written(config).items() if any(p in k for p in kept)} == {
        k: v for k, v in before.items() if any(p in k for p in kept)
    }
    columns = {c["name"]: c for c in inspect(create_engine(target)).get_columns("md_department")}
    assert columns["name"]["type"].length == 100 and "leader" not in columns
    # The fix the message gives: drop the view, sync, create it again.
    execute_sql(target, "DROP VIEW v_department_names")
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    execute_sql(target, "CREATE VIEW v_department_names AS SELECT department_code, name FROM md_department")
    columns = {c["name"]: c for c in inspect(create_engine(target)).get_columns("md_department")}
    assert columns["name"]["type"].length == 200


def test_a_key_change_beside_a_separate_target_key_is_refused(project: ProjectConfig) -> None:
    """With `target.key:` written apart, a new `key:` leaves the primary key as it was: the business keys the
    tables hold tell. Unrefused, every record moved to a key in the new form (its old golden record inactivated,
    the same primary key written anew), and an incremental run built two golden records of one primary key."""
    table = "target:\n  table: md_department\n"
    config = _edit(project, (table, "target:\n  table: md_department_b\n  key: [department_code, status]\n"))
    first, _ = run_sync(config, entities=["department"])  # a new target table, read completely
    assert first.status == "success", first.message
    rekeyed = _edit(config, ("key: department_code\n", "key: [department_code, status]\n"))
    line = next(
        i for i, text in enumerate(_mapping(rekeyed).read_text(encoding="utf-8").splitlines(), 1)
        if text.startswith("key:")
    )
    before = _written(rekeyed)
    for command, extra in (("plan", []), ("sync", []), ("sync", ["--full-refresh"])):
        done = CliRunner().invoke(app, [command, "department", "--config", str(rekeyed.config_path), "--json", *extra])
        assert done.exit_code == 2, done.stdout
        message = json.loads(done.stdout)["entities"][0]["message"]
        assert re.match(
            rf"mappings/department.yaml:{line}:\d+ key: the business keys that md_department_b holds were built from "
            r"other fields than the mapping's key \(department_code, status\) \(e\.g\. 'D\w+', where the key gives "
            r"'D\w+\|\w+'\); nothing was written",
            message,
        ), message
        assert "CREATE TABLE md_department_b_old AS SELECT * FROM md_department_b" in message
    kept = ("/md_", "/erpoa_src_", "/erpoa_ids_", "/erpoa_watermark")
    assert {k: v for k, v in _written(rekeyed).items() if any(p in k for p in kept)} == {
        k: v for k, v in before.items() if any(p in k for p in kept)
    }
    # Set back, it syncs again.
    back = _edit(rekeyed, ("\nkey: [department_code, status]\n", "\nkey: department_code\n"))
    summary, _ = run_sync(back, entities=["department"])
    assert summary.status == "success", summary.message
