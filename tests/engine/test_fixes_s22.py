"""Store and engine fixes of session 22 (helper F3).

* Quarantine a published run accepted stays out of the gate's count after runs that were refused or killed
  (`Store.accepted_findings` follows the chain of superseded findings back to the published run).
* The reconciliation after a publish is retried on a transient error; one that still fails leaves the entity
  published (success, with a warning), its dependants synced.
* A date outside 1677-09-22..2262-04-11 (an ERP's 9999-12-31) is rejected with a reason naming the range and the fix
  (`null_if`), by `parse_date` and by the type of a date field (`types.out_of_range_dates`).
* `schema:` of the `recon` connection is refused, located, with the way to put the store in that schema (the
  store's statements, some raw SQL, go to the login's default schema); that way works.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig, load_project
from etl.db.connect import dispose_all
from etl.engine.context import SyncContext
from etl.engine.hooks import reconcile_hook
from etl.engine.pipeline import EntityResult, open_store, run_sync, store_connection
from etl.errors import ConfigError, SourceUnavailableError
from etl.mapping.model import CanonicalField
from etl.mapping.registry import TransformContext
from etl.mapping.transforms import DateArgs, NullIfArgs, null_if, parse_date
from etl.mapping.types import RANGE_REASON, coerce_series, out_of_range_dates
from etl.store.repo import source_records
from tests.conftest import PG_ADMIN
from tests.helpers.project import TINY, execute_sql, make_project, replace_in, urls_for

NEW_BAD = [f"99920{i}" for i in range(1, 6)]


def _accepted_records(config: ProjectConfig) -> dict[str, list[str]]:
    """source -> ids of the employee records the first (published) run quarantined."""
    found = open_store(config).quarantine(entity="employee")
    out: dict[str, list[str]] = {}
    for source, src_id in zip(found["source"], found["src_id"], strict=True):
        for name, record in source_records(str(source), str(src_id)):
            out.setdefault(name, []).append(record)
    return out


def _touch(config: ProjectConfig, records: dict[str, list[str]], stamp: str) -> None:
    """A source edit of these records that changes nothing they are quarantined for: an incremental run re-reads
    them and quarantines them again."""
    for record in records.get("erp", []):
        execute_sql(config.connection("erp").sqlalchemy_url(),
                    "UPDATE hr_hi_person SET dModifyDate = :t WHERE cPsn_Num = :id", {"t": stamp, "id": record})
    for record in records.get("oa", []):
        execute_sql(config.connection("oa").sqlalchemy_url(),
                    'UPDATE "HrmResource" SET modified = :t WHERE id = :id', {"t": stamp, "id": int(record)})


def _published_with_quarantine(tmp_path: Path) -> tuple[ProjectConfig, dict[str, list[str]]]:
    config, _ = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    first, _ = run_sync(config, full_refresh=True, entities=["department", "employee"])
    assert first.status == "success", first.message
    accepted = _accepted_records(config)
    assert sum(map(len, accepted.values())) >= 1, accepted
    return config, accepted


def _employee(summary: Any) -> Any:
    return next(e for e in summary.entities if e.entity == "employee")


@pytest.mark.sqlite
def test_accepted_quarantine_is_not_counted_again_after_a_refused_run(tmp_path: Path) -> None:
    config, accepted = _published_with_quarantine(tmp_path)
    erp = config.connection("erp").sqlalchemy_url()
    # Run 2: the accepted records again, and five new employees in a department no code table knows: refused.
    _touch(config, accepted, "2027-01-01 10:00:00")
    execute_sql(erp, "INSERT INTO hr_hi_person (cPsn_Num, cPsn_Name, cDept_num, rSex, rPersonType, dEnterDate, "
                "dModifyDate) VALUES (:id, '坏', '9998', '1', '10', '2026-12-01', '2027-01-01 10:00:00')",
                [{"id": record} for record in NEW_BAD])
    refused, _ = run_sync(config, entities=["employee"])
    assert _employee(refused).status == "failed" and "quality gate refused" in refused.message, refused.message
    assert "(5 of the" in refused.message, refused.message  # the new records only
    # The steward fixes the five: run 3 must publish them, the accepted records not counted again.
    execute_sql(erp, "UPDATE hr_hi_person SET cDept_num = (SELECT cDept_num FROM hr_hi_person WHERE cDept_num "
                "<> '9998' LIMIT 1), dModifyDate = '2027-01-01 10:05:00' WHERE cDept_num = '9998'")
    for attempt in range(2):  # and so on: a second run after it as well
        again, _ = run_sync(config, entities=["employee"])
        assert again.status == "success", (attempt, again.message)
    codes = {row["golden_key"] for row in open_store(config).quarantine(entity="employee").to_dict("records")}
    assert not codes & set(NEW_BAD)


@pytest.mark.sqlite
def test_accepted_quarantine_is_not_counted_again_after_a_killed_run(tmp_path: Path) -> None:
    config, accepted = _published_with_quarantine(tmp_path)
    _touch(config, accepted, "2027-01-01 10:00:00")
    # A plain sync of employee, killed after its gate let the records through (their findings superseded by it).
    env = {**os.environ, "ERPOA_FAULT": "publish.begin:1"}
    proc = subprocess.run(
        [sys.executable, "-m", "etl.cli.app", "sync", "--no-flows", "--config", str(config.config_path), "employee"],
        env=env, capture_output=True, timeout=300, check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    dispose_all()
    config = load_project(config.config_path)
    for attempt in range(2):  # the rerun, and the one after it
        rerun, _ = run_sync(config, entities=["employee"])
        assert rerun.status == "success", (attempt, rerun.message)


class _DroppedOnce:
    """The reconciliation hook, its database dropping the connection the first `drops` times it runs."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.calls: list[str] = []

    def __call__(self, ctx: SyncContext, entity: str, result: EntityResult) -> None:
        self.calls.append(entity)
        if self.drops:
            self.drops -= 1
            raise SourceUnavailableError(f"{entity}: reconciling: connections.target: database unavailable (dropped)")
        reconcile_hook(ctx, entity, result)


def _sqlite_project(tmp_path: Path) -> ProjectConfig:
    config, _ = make_project(tmp_path / "project", sqlite_urls(tmp_path / "project"))
    config.run.retry_backoff_seconds = 0.0
    return config


@pytest.mark.sqlite
def test_a_transient_reconciliation_error_is_retried(tmp_path: Path) -> None:
    config = _sqlite_project(tmp_path)
    hook = _DroppedOnce(drops=1)
    summary, _ = run_sync(config, full_refresh=True, entities=["department"], hooks=[hook])
    assert summary.status == "success", summary.message
    assert hook.calls == ["department", "department"]
    department = summary.entities[0]
    assert department.message is None and department.differences >= 0, department
    with open_store(config).engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM erpoa_difference WHERE entity = 'department'")).scalar() > 0


@pytest.mark.sqlite
def test_a_reconciliation_that_keeps_failing_leaves_the_entity_published(tmp_path: Path) -> None:
    config = _sqlite_project(tmp_path)
    hook = _DroppedOnce(drops=1 + config.run.retries)  # every try of department's fails
    summary, _ = run_sync(config, full_refresh=True, entities=["department", "employee"], hooks=[hook])
    department, employee = summary.entities
    assert hook.calls.count("department") == 1 + config.run.retries
    assert department.status == "success" and summary.status == "success", summary.message
    assert "published, but the reconciliation failed" in (department.message or ""), department.message
    assert "gave up after" in (department.message or ""), department.message
    assert employee.status == "success", employee.message  # its dependant is not skipped
    assert open_store(config).entity_run(summary.run_id, "department")["status"] == "success"


def _date_ctx() -> TransformContext:
    return TransformContext(field="end_date", source="erp", frame=pd.DataFrame(), code_tables={}, as_of=None,
                            timezone="Asia/Shanghai", pii=False)


def test_parse_date_names_the_range_and_the_fix() -> None:
    ctx = _date_ctx()
    out = parse_date(pd.Series(["9999-12-31", "2026-01-02"], dtype=object), DateArgs(format=["%Y-%m-%d"]), ctx)
    assert out.isna().tolist() == [True, False]
    (rejection,) = ctx.rejections
    assert rejection.rule == "parse_date"
    assert rejection.reason.startswith("'9999-12-31' is outside the supported range 1677-09-22..2262-04-11")
    assert "null_if" in rejection.reason and "docs/mapping.md" in rejection.reason


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_a_date_field_tells_a_sentinel_from_an_invalid_value(kind: str) -> None:
    spec = CanonicalField(type=kind)
    values = pd.Series([dt.date(9999, 12, 31), "9999-12-31 00:00:00", dt.datetime(1600, 1, 1), "2026-02-30",
                        "2026-01-02", None], dtype=object)
    _, bad = coerce_series(values, spec)
    assert bad.tolist() == [True, True, True, True, False, False]
    assert out_of_range_dates(values, spec, bad).tolist() == [True, True, True, False, False, False]
    assert "1677-09-22..2262-04-11" in RANGE_REASON and "null_if" in RANGE_REASON
    # the fix the reason gives works: null_if before the type
    fixed = null_if(values, NullIfArgs(values=["9999-12-31", "9999-12-31 00:00:00"]), _date_ctx())
    assert coerce_series(fixed, spec)[1].tolist() == [False, False, True, True, False, False]


def _tables_in(url: str, schema: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
                                         "AND table_name LIKE 'erpoa%'"), {"s": schema}).scalars())
    finally:
        engine.dispose()


def _schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


@pytest.mark.postgres
def test_a_schema_on_the_store_connection_is_refused_where_it_is_written(request: pytest.FixtureRequest,
                                                                         tmp_path: Path) -> None:
    urls = urls_for("postgres", request, tmp_path)
    store_schema = _schema_of(request.getfixturevalue("pg_url_b"))
    config, _ = make_project(tmp_path / "project", urls, size=TINY)
    path = config.config_path
    assert path is not None
    recon = urls["recon"]
    replace_in(path, (f'recon:  {{url: "{recon}"}}', f'recon:  {{url: "{recon}", schema: {store_schema}}}'))
    config = load_project(path)
    with pytest.raises(ConfigError) as refused:
        run_sync(config, entities=["department"])
    (issue,) = refused.value.issues
    assert (issue.file, issue.path) == (str(path), "connections.recon.schema") and issue.line, issue
    assert f"?options=-csearch_path%3D{store_schema}" in issue.message and "ALTER ROLE" in issue.message
    with pytest.raises(ConfigError):
        store_connection(config)
    # nothing was created anywhere: not in the login's default schema (the target's), not in the one named
    assert _tables_in(PG_ADMIN, _schema_of(recon)) == set()
    assert _tables_in(PG_ADMIN, store_schema) == set()

    # the way the message gives: the schema as the store login's search_path, in the URL
    fixed = PG_ADMIN + f"?options=-csearch_path%3D{store_schema}"
    replace_in(path, (f'recon:  {{url: "{recon}", schema: {store_schema}}}', f'recon:  {{url: "{fixed}"}}'))
    config = load_project(path)
    summary, _ = run_sync(config, full_refresh=True, entities=["department"])
    assert summary.status == "success", summary.message
    assert {"erpoa_run", "erpoa_quarantine", "erpoa_watermark"} <= _tables_in(PG_ADMIN, store_schema)
    assert not {"erpoa_run", "erpoa_quarantine"} & _tables_in(PG_ADMIN, _schema_of(recon))  # the target's schema
