"""The sync engine end to end on SQLite, PostgreSQL, MariaDB and a mix (ERP on MariaDB, OA on PostgreSQL)."""

from __future__ import annotations

import threading
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from etl.engine.pipeline import open_store, run_sync
from etl.engine.replay import retry_quarantine
from tests.helpers.project import BACKENDS, make_project, table_checksums, target_rows, urls_for


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path):
    urls = urls_for(request.param, request, tmp_path)
    config, manifest = make_project(tmp_path / "project", urls)
    return config, manifest


def _sql(url: str, statement: str, **params: object) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def _by_entity(summary):
    return {e.entity: e for e in summary.entities}


def test_full_sync_then_rerun_changes_nothing(project) -> None:
    config, manifest = project
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    result = _by_entity(summary)
    for entity in ("department", "employee", "contract", "purchase"):
        assert result[entity].inserted > 0
    employees = target_rows(config, "md_employee", ["employee_code"])
    codes = {r[0] for r in employees}
    assert set(manifest["employees_only_in_erp"]) <= codes
    assert set(manifest["employees_only_in_oa"]) <= codes
    before = table_checksums(config.connection("target").sqlalchemy_url(), ("md_",))
    again, _ = run_sync(config)
    assert all(e.inserted == 0 and e.updated == 0 for e in again.entities), again.to_dict()
    full_again, _ = run_sync(config, full_refresh=True)
    assert all(e.inserted == 0 and e.updated == 0 and e.inactivated == 0 for e in full_again.entities)
    after = table_checksums(config.connection("target").sqlalchemy_url(), ("md_",))
    assert before == after


def test_duplicates_quarantined_not_merged(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True)
    store = open_store(config)
    q = store.quarantine(entity="employee")
    dups = q[q["rule"] == "duplicate_key"]
    expected = {d["code"] for d in manifest["duplicate_oa_workcodes"]}
    assert set(dups["golden_key"]) == expected
    assert len(dups) == 2 * len(expected)
    rows = dict(target_rows(config, "md_employee", ["employee_code", "_presence"]))
    # The ERP record of a duplicated key still publishes; the OA duplicates do not join it.
    for code in expected:
        assert rows.get(code) in (None, "erp")


def test_incremental_picks_up_late_rows_and_departures(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True)
    erp, oa = config.connection("erp").sqlalchemy_url(), config.connection("oa").sqlalchemy_url()
    store = open_store(config)
    mark = store.watermark("employee", "erp")
    code = sorted(
        {r[0] for r in target_rows(config, "md_employee", ["employee_code"])}
        - set(manifest["employees_only_in_oa"])
        - {d["code"] for d in manifest["duplicate_oa_workcodes"]}
    )[5]
    # A late row: committed now but stamped 5 minutes before the watermark (inside the 10 minute overlap).
    _sql(
        erp,
        'UPDATE hr_hi_person SET "cPsn_Name" = :n, "dModifyDate" = :t WHERE "cPsn_Num" = :c'
        if not erp.startswith("mysql")
        else "UPDATE hr_hi_person SET cPsn_Name = :n, dModifyDate = :t WHERE cPsn_Num = :c",
        n="迟到的名字",
        t=mark - timedelta(minutes=5),
        c=code,
    )
    summary, _ = run_sync(config, entities=["employee"])
    assert _by_entity(summary)["employee"].updated == 1
    names = dict(target_rows(config, "md_employee", ["employee_code", "name"]))
    assert names[code] == "迟到的名字"
    # A departure recorded in OA now: the most recent status wins and the employee is inactivated.
    active = dict(target_rows(config, "md_employee", ["employee_code", "_active"]))
    leaver = next(
        c
        for c, a in sorted(active.items())
        if a
        and c != code
        and c not in manifest["employees_only_in_erp"]
        and c not in {d["code"] for d in manifest["duplicate_oa_workcodes"]}
    )
    later = datetime(2027, 1, 5, 9, 30, 0)
    oa_id = next(int(x["src_id"]) for x in store.xref("employee", leaver) if x["source"] == "oa")
    q = '"' if not oa.startswith("mysql") else ""
    _sql(
        oa,
        f"UPDATE {q}HrmResource{q} SET status = '5', modified = :t, lastmoddate = '2027-01-05', "
        "lastmodtime = '09:30:00' WHERE id = :i",
        t=later,
        i=oa_id,
    )
    summary, _ = run_sync(config, entities=["employee"])
    assert _by_entity(summary)["employee"].inactivated == 1
    state = {r[0]: r[1:] for r in target_rows(config, "md_employee", ["employee_code", "status", "_active"])}
    assert state[leaver][0] == "left" and not state[leaver][1]


def test_a_row_added_without_a_cursor_value_is_read_by_incremental_runs(project) -> None:
    """Some ERPs leave a record's modify date empty until it is first edited: such a row, added after the last run,
    is published by the next incremental run, not only by a full refresh."""
    config, _ = project
    run_sync(config, full_refresh=True)
    erp = config.connection("erp").sqlalchemy_url()
    assert "D0303" not in {r[0] for r in target_rows(config, "md_department", ["department_code"])}
    q = '"' if not erp.startswith("mysql") else ""
    _sql(
        erp,
        f"INSERT INTO {q}Department{q} ({q}cDepCode{q}, {q}cDepName{q}, {q}iDepGrade{q}, {q}bDepEnd{q}, "
        f"{q}dDepBeginDate{q}, {q}dModifyDate{q}) VALUES ('0303', '信息部', 2, 1, :begin, NULL)",
        begin=datetime(2020, 1, 1),
    )
    summary, _ = run_sync(config, entities=["department"])
    assert _by_entity(summary)["department"].inserted == 1, summary.message
    assert "D0303" in {r[0] for r in target_rows(config, "md_department", ["department_code"])}
    summary, _ = run_sync(config, entities=["department"])  # read again, as every run reads it: nothing to change
    department = _by_entity(summary)["department"]
    assert (department.inserted, department.updated, department.inactivated) == (0, 0, 0)


def test_vanished_record_is_inactivated_not_deleted(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True)
    gone = manifest["employees_only_in_erp"][0]
    erp = config.connection("erp").sqlalchemy_url()
    q = '"' if not erp.startswith("mysql") else ""
    _sql(erp, f"DELETE FROM hr_hi_person WHERE {q}cPsn_Num{q} = :c", c=gone)
    unswept, _ = run_sync(config, entities=["employee"], sweep=False)  # a frequent run: deletions wait
    assert _by_entity(unswept)["employee"].inactivated == 0
    summary, _ = run_sync(config, entities=["employee"])
    assert _by_entity(summary)["employee"].inactivated == 1
    rows = {r[0]: r[1] for r in target_rows(config, "md_employee", ["employee_code", "_active"])}
    assert gone in rows and not rows[gone]


def test_quarantine_fix_mapping_retry(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True)
    store = open_store(config)
    unmapped = manifest["unmapped_oa_department"]
    q = store.quarantine(entity="department")
    assert unmapped["code"] in set(q["value"])
    codes = config.resolve(config.mappings) / "codes" / "department.yaml"
    codes.write_text(
        codes.read_text(encoding="utf-8") + f"  - {{code: DSZ01, name: {unmapped['name']}, "
        f"synonyms: [{unmapped['code']}]}}\n",
        encoding="utf-8",
    )
    result, replayed, still = retry_quarantine(config, "department")
    assert replayed >= 1 and still == 0
    assert result.inserted == 1
    assert "DSZ01" in {r[0] for r in target_rows(config, "md_department", ["department_code"])}
    left = store.quarantine(entity="department")
    assert unmapped["code"] not in set(left["value"])


def test_plan_writes_nothing(project) -> None:
    config, _ = project
    run_sync(config, full_refresh=True)
    erp = config.connection("erp").sqlalchemy_url()
    q = '"' if not erp.startswith("mysql") else ""
    _sql(
        erp,
        f"UPDATE {q}Department{q} SET {q}cDepName{q} = 'Changed', {q}dModifyDate{q} = :t WHERE {q}cDepCode{q} = '0101'",
        t=datetime(2027, 2, 1),
    )
    target_url, recon_url = config.connection("target").sqlalchemy_url(), config.connection("recon").sqlalchemy_url()
    before = (table_checksums(target_url), table_checksums(recon_url))
    summary, ctx = run_sync(config, dry_run=True)
    from etl.engine.plan import plan_details

    details = plan_details(ctx, "department")
    ctx.close()
    assert _by_entity(summary)["department"].updated == 1
    assert details["updates"][0]["changes"]["name"]["new"] == "Changed"
    assert (table_checksums(target_url), table_checksums(recon_url)) == before


@pytest.mark.sqlite
def test_plan_before_the_first_sync_predicts_it(tmp_path: Path) -> None:
    from etl.cli.demo_cmd import sqlite_urls

    config, _ = make_project(tmp_path / "p", sqlite_urls(tmp_path / "p"))
    recon = config.connection("recon").sqlalchemy_url()
    before = table_checksums(recon, ("",))
    planned, ctx = run_sync(config, dry_run=True)
    ctx.close()
    assert table_checksums(recon, ("",)) == before  # no store tables created by a plan
    done, _ = run_sync(config)
    assert [(e.entity, e.inserted, e.quarantined) for e in planned.entities] == [
        (e.entity, e.inserted, e.quarantined) for e in done.entities
    ]


def test_changed_business_key_moves_the_record(project) -> None:
    """A source record whose key changes is merged under the new key; the old golden record is inactivated."""
    config, manifest = project
    run_sync(config, full_refresh=True)
    old = manifest["employees_only_in_oa"][0]
    oa = config.connection("oa").sqlalchemy_url()
    q = '"' if not oa.startswith("mysql") else "`"
    engine = create_engine(oa)
    with engine.connect() as conn:
        spelled = {
            r[0]: r[1] for r in conn.execute(text(f"SELECT id, workcode FROM {q}HrmResource{q}")) if r[1] is not None
        }
    engine.dispose()
    (oa_id,) = [
        i for i, w in spelled.items() if unicodedata.normalize("NFKC", w).strip().lstrip("0") == old.lstrip("0")
    ]
    _sql(oa, f"UPDATE {q}HrmResource{q} SET workcode = :new, modified = :t WHERE id = :i",
         new="999990", i=oa_id, t=datetime(2030, 1, 1))
    summary, _ = run_sync(config, entities=["employee"])
    employee = _by_entity(summary)["employee"]
    assert (employee.inserted, employee.inactivated) == (1, 1)
    rows = {r[0]: bool(r[1]) for r in target_rows(config, "md_employee", ["employee_code", "_active"])}
    assert rows[old] is False and rows["999990"] is True
    store = open_store(config)
    assert [(r["source"], bool(r["active"])) for r in store.xref("employee", "999990")] == [("oa", True)]
    assert not any(r["active"] and r["golden_key"] == old for r in store.xref("employee", old))
    again, _ = run_sync(config, entities=["employee"])
    assert (_by_entity(again)["employee"].inserted, _by_entity(again)["employee"].updated) == (0, 0)


def test_duplicate_stays_quarantined_when_one_member_changes_alone(project) -> None:
    config, manifest = project
    run_sync(config, full_refresh=True)
    duplicate = manifest["duplicate_oa_workcodes"][0]
    oa = config.connection("oa").sqlalchemy_url()
    q = '"' if not oa.startswith("mysql") else "`"
    _sql(oa, f"UPDATE {q}HrmResource{q} SET mobile = :m, modified = :t WHERE id = :i",
         m="13912345678", t=datetime(2030, 1, 1), i=duplicate["oa_ids"][-1])
    summary, _ = run_sync(config, entities=["employee"])
    assert (_by_entity(summary)["employee"].inserted, _by_entity(summary)["employee"].updated) == (0, 0)
    presence = dict(target_rows(config, "md_employee", ["employee_code", "_presence"]))
    assert "oa" not in str(presence.get(duplicate["code"], ""))
    open_dups = open_store(config).quarantine(entity="employee", status="open")
    open_dups = open_dups[open_dups["rule"] == "duplicate_key"]
    assert set(open_dups.loc[open_dups["golden_key"] == duplicate["code"], "src_id"]) == {
        str(i) for i in duplicate["oa_ids"]
    }


@pytest.mark.mariadb
def test_mysqlclient_and_pymysql_publish_the_same_rows(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The C driver (`mysql+mysqldb`) as source and target gives what PyMySQL gives, row for row."""
    published = {}
    for driver, fixture in (("pymysql", "mariadb_url"), ("mysqldb", "mariadb_c_url")):
        url = request.getfixturevalue(fixture)
        assert url.startswith(f"mysql+{driver}://")
        config, manifest = make_project(tmp_path / driver, {"erp": url, "oa": url, "target": url, "recon": url})
        summary, _ = run_sync(config, full_refresh=True)
        assert summary.status == "success", summary.message
        _sql(url, "DELETE FROM hr_hi_person WHERE cPsn_Num = :c", c=manifest["employees_only_in_erp"][0])
        swept, _ = run_sync(config, entities=["employee"])  # incremental: the keys-only sweep finds it
        assert _by_entity(swept)["employee"].inactivated == 1
        published[driver] = {t: target_rows(config, t) for t in ("md_department", "md_employee", "md_purchase_line")}
    assert published["pymysql"] == published["mysqldb"]


@pytest.mark.postgres
def test_sources_extracted_at_once_publish_what_one_after_the_other_does(
    tmp_path: Path, pg_url: str, pg_url_b: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run.parallel_sources`: ERP and OA are extracted in two threads at the same time, with the same result."""
    from etl.engine import extract

    real, threads = extract.extract_source, {}
    meet = threading.Barrier(2, timeout=60)  # breaks (and fails the run) unless both purchase sources run at once

    def extract_source(ctx, entity, source, **options):
        threads[(ctx.config.run.parallel_sources, entity, source)] = threading.current_thread().name
        if entity == "purchase" and ctx.config.run.parallel_sources:
            meet.wait()
        return real(ctx, entity, source, **options)

    monkeypatch.setattr(extract, "extract_source", extract_source)
    published = {}
    for parallel, url in ((True, pg_url), (False, pg_url_b)):
        config, _ = make_project(tmp_path / str(parallel), {"erp": url, "oa": url, "target": url, "recon": url})
        config = config.model_copy(update={"run": config.run.model_copy(update={"parallel_sources": parallel})})
        summary, _ = run_sync(config, full_refresh=True)
        assert summary.status == "success", summary.message
        quarantine = open_store(config).quarantine()
        published[parallel] = (
            {t: target_rows(config, t) for t in ("md_department", "md_employee", "md_contract", "md_purchase_line")},
            sorted(quarantine[["entity", "source", "src_id", "rule"]].itertuples(index=False, name=None)),
        )
    assert published[True] == published[False]
    assert published[True][1]  # the demo's planted problems were quarantined in both runs
    assert {threads[(True, "purchase", s)] for s in ("erp", "oa")} == {
        n for n in threads.values() if n.startswith("erpoa-extract-purchase")
    }
    assert len({threads[(True, "purchase", s)] for s in ("erp", "oa")}) == 2
    assert {n for (parallel, _, _), n in threads.items() if not parallel} == {"MainThread"}


def _delete_one_employee_per_source(pg_url: str, config, manifest) -> None:
    store = open_store(config)
    for source, key in (("erp", manifest["employees_only_in_erp"][0]), ("oa", manifest["employees_only_in_oa"][0])):
        links = [r for r in store.xref("employee", key) if r["source"] == source]
        assert len(links) == 1, links
        if source == "erp":
            _sql(pg_url, 'DELETE FROM "hr_hi_person" WHERE "cPsn_Num" = :i', i=links[0]["src_id"])
        else:
            _sql(pg_url, 'DELETE FROM "HrmResource" WHERE id = :i', i=int(links[0]["src_id"]))


@pytest.mark.postgres
def test_deletion_sweeps_of_the_sources_run_at_once_beside_the_extraction(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extracted one after the other, an incremental run sweeps ERP and OA for deletions in two threads at once,
    which start before the last source's extraction and take its staged rows once it has ended."""
    from etl.engine import extract

    config, manifest = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    _delete_one_employee_per_source(pg_url, config, manifest)
    real_sweep, real_extract, threads = extract.sweep_source, extract.extract_source, {}
    # Both sweeps and the OA extraction meet: the barrier breaks (and fails the run) unless the sweeps
    # run at once and start before the last source is extracted.
    meet = threading.Barrier(3, timeout=60)

    def sweep_source(ctx, entity, source, staged=None):
        threads[(entity, source)] = threading.current_thread().name
        if entity == "employee":
            meet.wait()
        return real_sweep(ctx, entity, source, staged)

    def extract_source(ctx, entity, source, **kwargs):
        if entity == "employee" and source == "oa":
            meet.wait()
        return real_extract(ctx, entity, source, **kwargs)

    monkeypatch.setattr(extract, "sweep_source", sweep_source)
    monkeypatch.setattr(extract, "extract_source", extract_source)
    swept, _ = run_sync(config, entities=["employee"])
    assert swept.status == "success", swept.message
    assert _by_entity(swept)["employee"].inactivated == 2
    names = {threads[("employee", s)] for s in ("erp", "oa")}
    assert len(names) == 2 and all(n.startswith("erpoa-sweep-employee") for n in names)
    active = dict(target_rows(config, "md_employee", ["employee_code", "_active"]))
    assert not active[manifest["employees_only_in_erp"][0]] and not active[manifest["employees_only_in_oa"][0]]


@pytest.mark.postgres
def test_a_failed_extraction_stops_the_sweep_beside_it(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a source's extraction fails, its sweep (waiting for the staged rows) stops, the run fails with the
    extraction's error and publishes nothing; the next run sweeps as usual."""
    from etl.engine import extract, sweep
    from etl.errors import DataError

    config, manifest = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    _delete_one_employee_per_source(pg_url, config, manifest)
    before = table_checksums(pg_url, ("md_", "erpoa_src_"))
    real_sweep, real_extract, ended = extract.sweep_source, extract.extract_source, {}

    def sweep_source(ctx, entity, source, staged=None):
        try:
            ended[(entity, source)] = real_sweep(ctx, entity, source, staged)
        except sweep.SweepCancelled as exc:
            ended[(entity, source)] = exc
            raise
        return ended[(entity, source)]

    def extract_source(ctx, entity, source, **kwargs):
        if entity == "employee" and source == "oa":
            raise DataError("OA rows the mapping cannot read")
        return real_extract(ctx, entity, source, **kwargs)

    monkeypatch.setattr(extract, "sweep_source", sweep_source)
    monkeypatch.setattr(extract, "extract_source", extract_source)
    failed, _ = run_sync(config, entities=["employee"])
    assert failed.status == "failed"
    assert "OA rows the mapping cannot read" in failed.message
    assert isinstance(ended[("employee", "oa")], sweep.SweepCancelled)
    assert ended[("employee", "erp")] == 1  # its source was staged: that sweep ended as usual
    assert table_checksums(pg_url, ("md_", "erpoa_src_")) == before
    monkeypatch.setattr(extract, "extract_source", real_extract)
    swept, _ = run_sync(config, entities=["employee"])
    assert swept.status == "success", swept.message
    assert _by_entity(swept)["employee"].inactivated == 2


@pytest.mark.sqlite
def test_rejects_of_many_chunks_are_quarantined_as_with_one(tmp_path: Path) -> None:
    """Rejected rows are written to the quarantine in batches of chunks: small chunks lose none of them."""
    from etl.cli.demo_cmd import sqlite_urls

    found = []
    for name, chunk_size in (("one", 50_000), ("many", 100)):
        config, _ = make_project(tmp_path / name, sqlite_urls(tmp_path / name), chunk_size=chunk_size)
        summary, _ = run_sync(config, full_refresh=True)
        assert summary.status == "success", summary.message
        rows = open_store(config).quarantine()
        found.append(sorted(zip(rows["entity"], rows["source"], rows["src_id"], rows["rule"], rows["value"],
                                strict=True)))
    assert len([r for r in found[0] if r[0] == "purchase"]) > 3
    assert found[1] == found[0]


@pytest.mark.sqlite
def test_a_mirror_that_cannot_be_vacuumed_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The vacuum after a large publish is an optimisation: when it fails the entity is still published."""
    from sqlalchemy.exc import OperationalError

    from etl.cli.demo_cmd import sqlite_urls
    from etl.engine import publish

    analysed: list[str] = []

    def refused(engine: object, *tables: Any, vacuum: bool = False) -> None:
        if vacuum:
            raise OperationalError("VACUUM", {}, Exception("must be owner of table"))
        analysed.extend(t.name for t in tables)

    monkeypatch.setattr(publish, "STATISTICS_MIN_ROWS", 10)
    monkeypatch.setattr(publish, "refresh_statistics", refused)
    config, _ = make_project(tmp_path / "p", sqlite_urls(tmp_path / "p"))
    summary, _ = run_sync(config, entities=["department"], full_refresh=True)
    assert summary.status == "success", summary.message
    assert _by_entity(summary)["department"].inserted > 10
    assert "could not vacuum the mirror" in caplog.text
    assert "erpoa_src_department" in analysed  # its statistics are refreshed all the same
