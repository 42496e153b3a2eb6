"""Source ids and business keys longer than the engine's bookkeeping columns hold (`KEY_LEN`, 255 characters).

The stage, the mirror, the target's `_key` and the cross-reference keep them in columns of 255 characters: a
longer one was an internal error of the whole sync on PostgreSQL and MariaDB (and passed on SQLite). Such a
record is quarantined with the limit and its length, on every target; the other records are published.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import open_store, run_sync
from etl.engine.tables import KEY_LEN
from tests.helpers.project import (
    THREE,
    TINY,
    execute_sql,
    make_project,
    replace_in,
    target_rows,
    urls_for,
    widen_department_names,
)


@pytest.fixture(params=THREE)
def project(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectConfig:
    """A TINY demo project, not synced yet, whose ERP department names may be 600 characters long."""
    config, _ = make_project(tmp_path / "project", urls_for(request.param, request, tmp_path), size=TINY)
    widen_department_names(config, 600)
    return config


def _edit(config: ProjectConfig, *replacements: tuple[str, str]) -> ProjectConfig:
    replace_in(config.resolve(config.mappings) / "department.yaml", *replacements)
    return load_project(config.config_path)


def _suite_allows_long_names(config: ProjectConfig) -> None:
    """Drop the suite's checks of the mapping's old shape: names of at most 100, one record per code."""
    path = config.resolve(config.expectations) / "department.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    old = {
        ("expect_column_value_lengths_to_be_between", "name"),
        ("expect_column_values_to_be_unique", "department_code"),
    }
    suite["expectations"] = [e for e in suite["expectations"] if (e["type"], e["kwargs"].get("column")) not in old]
    path.write_text(json.dumps(suite), encoding="utf-8")


def _name_departments(config: ProjectConfig, names: dict[str, str]) -> None:
    """Give ERP departments (by code) new names."""
    erp = config.connection("erp").sqlalchemy_url()
    q = '"' if create_engine(erp).dialect.name != "mysql" else "`"
    execute_sql(
        erp,
        f"UPDATE {q}Department{q} SET {q}cDepName{q} = :name WHERE {q}cDepCode{q} = :code",
        [{"code": code, "name": name} for code, name in names.items()],
    )


def _erp_codes(config: ProjectConfig) -> list[str]:
    engine = create_engine(config.connection("erp").sqlalchemy_url())
    try:
        q = engine.dialect.identifier_preparer.quote
        with engine.connect() as conn:
            return sorted(str(r[0]) for r in conn.exec_driver_sql(f"SELECT {q('cDepCode')} FROM {q('Department')}"))
    finally:
        engine.dispose()


def _quarantined(config: ProjectConfig) -> pd.DataFrame:
    rows = open_store(config).quarantine(entity="department", status=None)
    return rows[rows["source"] == "erp"]


def test_a_source_id_longer_than_the_limit_is_quarantined(project: ProjectConfig) -> None:
    # The ERP's id becomes code and name: a long name makes a long source id.
    config = _edit(
        project,
        ("    table: Department\n    id: cDepCode\n", "    table: Department\n    id: [cDepCode, cDepName]\n"),
        ("name: {type: string, length: 100,", "name: {type: string, length: 500,"),
    )
    _suite_allows_long_names(config)
    long_ok, long_bad = _erp_codes(config)[:2]
    # One otherwise valid row, one whose name (over 500) is rejected too: neither may be staged.
    _name_departments(config, {long_ok: "长" * 300, long_bad: "N" * 560})
    planned, _ = run_sync(config, full_refresh=True, entities=["department"], dry_run=True)
    assert planned.status == "planned", planned.message
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    rows = _quarantined(config)
    too_long = rows[rows["rule"] == "id_too_long"]
    assert sorted(too_long["src_id"].str.split("|").str[0]) == sorted([long_ok, long_bad])
    reasons = dict(zip(too_long["src_id"].str.split("|").str[0], too_long["reason"], strict=True))
    assert f"{len(long_ok) + 1 + 300} characters" in reasons[long_ok], reasons[long_ok]
    assert f"at most {KEY_LEN}" in reasons[long_ok], reasons[long_ok]
    assert "cDepCode, cDepName" in reasons[long_ok], reasons[long_ok]
    assert set(rows[rows["src_id"].str.startswith(long_bad + "|")]["rule"]) == {"id_too_long", "type:string"}
    # The other ERP records are published with their ERP names; the long ones only through the OA.
    names = dict(target_rows(config, "md_department", ["department_code", "name"]))
    assert "长" * 300 not in names.values()
    assert len(names) >= len(_erp_codes(config)) - 2
    again, _ = run_sync(config, entities=["department"])
    assert again.status == "success", again.message
    assert (again.entities[0].inserted, again.entities[0].updated, again.entities[0].inactivated) == (0, 0, 0)
    # A complete read finds them again, still too long: quarantined anew, the earlier findings superseded.
    full, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert full.status == "success", full.message
    rows = _quarantined(config)
    current = rows[rows["status"] == "open"]
    assert set(current["run_id"]) == {full.run_id}
    assert sorted(current["rule"]) == ["id_too_long", "id_too_long", "type:string"]


def _long_id_project(config: ProjectConfig) -> tuple[ProjectConfig, str]:
    """The ERP's id made of code and name, one department named 300 characters long; returns it (ERP code)."""
    config = _edit(
        config,
        ("    table: Department\n    id: cDepCode\n", "    table: Department\n    id: [cDepCode, cDepName]\n"),
        ("name: {type: string, length: 100,", "name: {type: string, length: 500,"),
    )
    _suite_allows_long_names(config)
    code = _erp_codes(config)[0]
    _name_departments(config, {code: "长" * 300})
    return config, code


@pytest.mark.sqlite
def test_a_retry_keeps_a_long_source_id_quarantined(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)  # type: ignore[arg-type]
    config, code = _long_id_project(config)
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    done = CliRunner().invoke(app, ["quarantine", "retry", "department", "--config", str(config.config_path), "--json"])
    assert done.exit_code == 0, done.output
    rows = _quarantined(config)
    # Still at the source, still too long: its finding stays open (not closed as vanished).
    mine = rows[rows["src_id"].str.startswith(code + "|")]
    assert set(mine.loc[mine["status"] == "open", "rule"]) == {"id_too_long"}, mine[["rule", "status"]]
    assert "vanished" not in set(mine["status"])


def test_a_business_key_longer_than_the_limit_is_quarantined(project: ProjectConfig) -> None:
    # The key becomes code and name; a name of 300 characters fits its field but not the key's 255.
    config = _edit(
        project,
        ("key: department_code\n", "key: [department_code, name]\n"),
        ("name: {type: string, length: 100,", "name: {type: string, length: 300,"),
    )
    _suite_allows_long_names(config)
    long_code, fits_code = _erp_codes(config)[:2]
    fits = "F" * (KEY_LEN - len("D" + fits_code) - 1)  # exactly 255 with its unified code (D + ERP code) and `|`
    _name_departments(config, {long_code: "K" * 300, fits_code: fits})
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    rows = _quarantined(config)
    too_long = rows[rows["rule"] == "key_too_long"]
    assert list(too_long["src_id"]) == [long_code]
    reason = too_long["reason"].iloc[0]
    assert f"{len('D' + long_code) + 1 + 300} characters" in reason and f"at most {KEY_LEN}" in reason, reason
    assert "department_code, name" in reason, reason
    published = set(target_rows(config, "md_department", ["department_code", "name"]))
    assert ("D" + fits_code, fits) in published
    assert not any(name == "K" * 300 for _, name in published)
