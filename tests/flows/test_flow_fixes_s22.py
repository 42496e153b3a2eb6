"""Fixes of exploratory report C (findings 2, 3, 4, 6 and 16) in the flows engine, on real SQLite databases.

- a hand-keyed `PO<day>9999` does not block the day's numbering, a number the flow linked is never reused, and
  only a day whose numbers are all taken says "widen docno.width";
- a document the ERP refuses is counted as `refused` (not `unmapped`) and makes the run partial (exit 1);
- a second approved request carrying a request number that already has a PO is held, naming both;
- the PO's `dModifyDate` and the link's `created_at` are in the project timezone;
- a dry run's audit and differences are those the run would leave;
- the flow's entity row records the approvals read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import ProjectConfig
from etl.db.connect import dispose_all
from etl.demo.generate import DemoSize
from etl.errors import DataError
from etl.flows import docno
from etl.flows.audit import audit_views
from etl.flows.model import DocNoRule
from etl.flows.run import FlowResult, run_flows
from etl.store.repo import Store
from tests.helpers.project import make_project, source_sql

SIZE = DemoSize(departments=12, employees=60, requisitions=36, contracts=10)
RULE = DocNoRule(prefix="PO", date_format="%Y%m%d", width=4)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[ProjectConfig, dict[str, Any]]]:
    folder = tmp_path / "p"
    config, manifest = make_project(folder, sqlite_urls(folder), size=SIZE, seed=11)
    yield config, manifest
    dispose_all()


def _po(config: ProjectConfig) -> FlowResult:
    return run_flows(config, flows=["purchase_order"]).flows[0]


def _today(config: ProjectConfig) -> date:
    return datetime.now(ZoneInfo(config.run.timezone)).date()


def _links(config: ProjectConfig) -> dict[str, tuple[str, str | None]]:
    return {str(r): (n, q) for r, n, q in source_sql(config, "erp", "SELECT oa_request_id, po_no, request_no "
                                                               "FROM erpoa_po_link")}


def _copy_request(config: ProjectConfig, like: str, rid: int, number: str) -> None:
    """Act as the OA: a new archived request `rid` numbered `number`, a copy of request `like` (form, lines, logs)."""
    engine = sa.create_engine(config.connection("oa").sqlalchemy_url())
    try:
        with engine.begin() as conn:
            def copy(table: str, where: str, changes: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
                rows = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"),
                                                               params)]
                fresh = [{**r, **{k: (v(r) if callable(v) else v) for k, v in changes.items()}} for r in rows]
                cols = list(rows[0])
                conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                     f"({', '.join(':' + c for c in cols)})"), fresh)
                return rows

            copy("workflow_requestbase", "requestid = :r", {"requestid": rid, "requestmark": number}, r=int(like))
            form_id = int(conn.execute(sa.text("SELECT max(id) + 1 FROM formtable_main_12")).scalar_one())
            (old_form,) = copy("formtable_main_12", "requestid = :r",
                               {"id": form_id, "requestid": rid, "sqdh": number, "erp_po_no": None}, r=int(like))
            line_id = int(conn.execute(sa.text("SELECT max(id) FROM formtable_main_12_dt1")).scalar_one())
            ids = iter(range(line_id + 1, line_id + 1000))
            copy("formtable_main_12_dt1", "mainid = :m", {"id": lambda _: next(ids), "mainid": form_id},
                 m=old_form["id"])
            log_id = int(conn.execute(sa.text("SELECT max(logid) FROM workflow_requestlog")).scalar_one())
            logs = iter(range(log_id + 1, log_id + 1000))
            copy("workflow_requestlog", "requestid = :r", {"logid": lambda _: next(logs), "requestid": rid},
                 r=int(like))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- finding 2: numbering


def _numbers_table(taken: list[str]) -> tuple[sa.Engine, sa.Table]:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("po", sa.MetaData(), sa.Column("no", sa.String(30)))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        if taken:
            conn.execute(table.insert(), [{"no": n} for n in taken])
    return engine, table


@pytest.mark.sqlite
def test_next_number_goes_on_below_an_out_of_sequence_number_and_only_exhaustion_says_widen() -> None:
    day = date(2026, 12, 7)
    cases = [
        (["PO202612070001", "PO202612070002", "PO202612079999"], [], "PO202612070003"),
        (["PO202612079999"], [], "PO202612070001"),
        (["PO202612070001", "PO202612079998", "PO202612079999"], [], "PO202612070002"),
        # a number the flow linked (its PO since deleted in the ERP) is not given again
        (["PO202612070001", "PO202612079999"], ["PO202612070002"], "PO202612070003"),
        (["PO202612070001", "PO202612070005"], [], "PO202612070006"),  # in range: one above the highest
        (["PO202612060007", "PO20261207X", "XPO202612079999"], [], "PO202612070001"),  # other days, other shapes
    ]
    for taken, reserved, expected in cases:
        engine, table = _numbers_table(taken)
        with engine.connect() as conn:
            assert docno.next_number(conn, table.c.no, RULE, day, reserved=reserved) == expected, (taken, reserved)
    narrow = DocNoRule(prefix="PO", date_format="%Y%m%d", width=1)
    engine, table = _numbers_table([f"PO20261207{i}" for i in (1, 2, 3, 4, 5, 6, 7, 9)])
    with engine.connect() as conn:
        assert docno.next_number(conn, table.c.no, narrow, day) == "PO202612078"
    engine, table = _numbers_table([f"PO20261207{i}" for i in range(1, 10)])
    with engine.connect() as conn, pytest.raises(DataError, match=re.escape("all taken; widen `docno.width`")):
        docno.next_number(conn, table.c.no, narrow, day)


@pytest.mark.sqlite
def test_a_hand_keyed_last_number_of_the_day_does_not_block_the_flow(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    stem = f"PO{_today(config):%Y%m%d}"
    first = _po(config)
    assert first.status == "success" and first.created > 2
    # a buyer keys PO<today>9999 by hand; a new requisition is approved
    source_sql(config, "erp", 'INSERT INTO "PO_Pomain" ("POID", "cPOID", "dPODate", "cVenCode", "cMemo") '
                        "VALUES (990001, :no, :day, '01002', '手工录入')", no=f"{stem}9999", day=_today(config))
    like = sorted(_links(config))[0]
    _copy_request(config, like, 990010, "QG-S22-900010")
    second = _po(config)
    assert (second.status, second.created, second.refused) == ("success", 1, 0)
    number = _links(config)["990010"][0]
    highest = max(int(n[len(stem):]) for n, _ in _links(config).values() if n.startswith(stem) and n != number)
    assert number == f"{stem}{highest + 1:04d}"
    # the last PO the flow made is deleted in the ERP: its number stays with its link, the next request gets a new one
    source_sql(config, "erp", 'DELETE FROM "PO_Pomain" WHERE "cPOID" = :no', no=number)
    _copy_request(config, like, 990011, "QG-S22-900011")
    third = _po(config)
    assert third.created == 1 and _links(config)["990011"][0] == f"{stem}{highest + 2:04d}"


@pytest.mark.sqlite
def test_a_refused_document_is_counted_as_refused_and_makes_the_run_partial(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    first = _po(config)
    assert first.status == "success"
    like = sorted(_links(config))[0]
    _copy_request(config, like, 990020, "QG-S22-900020")
    _copy_request(config, like, 990021, "QG-S22-900021")
    source_sql(config, "erp", "CREATE TRIGGER refuse BEFORE INSERT ON PO_Pomain WHEN NEW.cDefine10 = '990020' "
                        "BEGIN SELECT RAISE(ABORT, 'vendor blocked'); END")
    summary = run_flows(config, flows=["purchase_order"])
    po = summary.flows[0]
    assert (po.status, po.created, po.refused, po.unmapped) == ("partial", 1, 1, first.unmapped)
    assert "1 document(s) refused by the ERP" in (po.message or "")
    assert summary.status == "partial" and summary.exit_code == 1
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    row = store.entity_run(summary.run_id, "purchase_order")
    assert row is not None and row["quarantined"] == first.unmapped + 1
    store.engine.dispose()
    source_sql(config, "erp", "DROP TRIGGER refuse")
    again = _po(config)
    assert (again.status, again.created, again.refused) == ("success", 1, 0)


# --------------------------------------------------------------------------- finding 3: same request number


@pytest.mark.sqlite
def test_a_second_request_with_a_linked_request_number_is_held_until_the_oa_corrects_it(
        project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    _po(config)
    links = _links(config)
    original = next(r for r, (_, q) in sorted(links.items()) if q)
    po_no, number = links[original]
    assert number is not None
    _copy_request(config, original, 990013, number)
    result = _po(config)
    assert (result.status, result.created, result.duplicates) == ("success", 0, 1)
    assert "990013" not in _links(config)
    assert not source_sql(config, "erp", 'SELECT 1 FROM "PO_Pomain" WHERE "cDefine10" = \'990013\'')
    reason = f"request number {number} already has PO {po_no} (OA request {original})"
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    held = store.quarantine(entity="purchase_order", status="open").set_index("src_id")
    assert held.at["990013", "rule"] == "duplicate_request_no" and held.at["990013", "reason"] == reason
    waiting = audit_views(config, ["purchase_order"])["req_without_po"].set_index("request_id")
    assert reason in waiting.at["990013", "reason"]
    # a rerun holds it again without a second quarantine row; the dry run plans the same
    assert _po(config).duplicates == 1
    assert len(store.quarantine(entity="purchase_order", status="open").query("src_id == '990013'")) == 1
    assert run_flows(config, flows=["purchase_order"], dry_run=True).flows[0].duplicates == 1
    # the OA corrects the number: the next run creates its PO and resolves the quarantine row
    source_sql(config, "oa", "UPDATE formtable_main_12 SET sqdh = 'QG-S22-900013' WHERE requestid = 990013")
    fixed = _po(config)
    assert (fixed.created, fixed.duplicates) == (1, 0) and _links(config)["990013"][1] == "QG-S22-900013"
    assert store.quarantine(entity="purchase_order", status="open").query("src_id == '990013'").empty
    store.engine.dispose()


@pytest.mark.sqlite
def test_two_new_requests_with_one_number_get_one_po(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    _po(config)
    like = sorted(_links(config))[0]
    _copy_request(config, like, 990031, "QG-S22-SAME")
    _copy_request(config, like, 990032, " QG-S22-SAME ")
    result = _po(config)
    assert (result.created, result.duplicates) == (1, 1)
    assert "990031" in _links(config) and "990032" not in _links(config)


# --------------------------------------------------------------------------- finding 4: timestamps


@pytest.mark.sqlite
def test_timestamps_written_are_in_the_project_timezone(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    zone = ZoneInfo(config.run.timezone)
    assert datetime.now(zone).utcoffset() != datetime.now().astimezone().utcoffset(), "needs a zone unlike the server's"
    before = datetime.now(zone).replace(tzinfo=None, microsecond=0)
    _po(config)
    after = datetime.now(zone).replace(tzinfo=None)
    link_id, po_no, created_at = source_sql(config, "erp", "SELECT oa_request_id, po_no, created_at FROM erpoa_po_link "
                                                     "WHERE origin = 'created' ORDER BY po_no LIMIT 1")[0]
    (modified,) = source_sql(config, "erp", 'SELECT "dModifyDate" FROM "PO_Pomain" WHERE "cPOID" = :no', no=po_no)[0]
    for stamp in (created_at, modified):
        assert before <= datetime.fromisoformat(str(stamp)) <= after + timedelta(seconds=1), (link_id, stamp)


# --------------------------------------------------------------------------- finding 16: dry run


@pytest.mark.sqlite
def test_a_dry_run_reports_what_the_run_would_leave(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    _po(config)
    like = sorted(_links(config))[0]
    _copy_request(config, like, 990040, "QG-S22-900040")
    plan = run_flows(config, flows=["purchase_order"], dry_run=True)
    dry = plan.flows[0]
    assert plan.status == "planned" and (dry.created, dry.created_numbers) == (1, [])
    assert "would create 1" in (dry.message or "")
    real = _po(config)
    assert real.created == 1
    assert dry.audit == real.audit and dry.differences == real.differences


# --------------------------------------------------------------------------- finding 6: what a flow read


@pytest.mark.sqlite
def test_the_flow_records_the_approvals_it_read(project: tuple[ProjectConfig, dict[str, Any]]) -> None:
    config, _ = project
    summary = run_flows(config, flows=["purchase_order"])
    (approvals,) = source_sql(config, "oa", "SELECT count(*) FROM workflow_requestbase WHERE workflowid = 12")[0]
    po = summary.flows[0]
    assert 0 < po.read_oa <= approvals
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    row = store.entity_run(summary.run_id, "purchase_order")
    store.engine.dispose()
    assert row is not None and (row["read_oa"], row["read_total"], row["inserted"]) == (po.read_oa, po.read_oa,
                                                                                          po.created)
