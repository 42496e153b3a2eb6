"""Fixes to the purchase-order machinery found in review.

- a second document for a request that is already linked is reported by the audit (and stored);
- the adoption look-up trims the request column as the audit does (no duplicate for ' 100007');
- duplicate approval rows are collapsed; disagreeing ones hold only their request;
- request ids are bound with the column's own type (varchar or integer, PostgreSQL included);
- a column the flow reads that the forms lack is a located ConfigError, before anything is created;
- the document lock is per target table: two flows writing one table allocate one after another.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl import faults
from etl.config.project import ProjectConfig, load_project
from etl.demo.generate import DemoSize
from etl.errors import ConfigError
from etl.flows.approval import read_approvals
from etl.flows.audit import CLASSES, audit_views
from etl.flows.model import FlowSpec, StatusFieldApproval
from etl.flows.purchase_order import Document, ensure_erp_tables, publish_document, read_forms
from etl.flows.run import run_flows
from etl.flows.writeback import pending_writebacks, write_back
from tests.helpers.crash import build_sources, new_project
from tests.helpers.project import make_project, urls_for

PO, FORM = "PO_Pomain", "formtable_main_12"
BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo ERP and OA on SQLite, built once for the module (each test copies them)."""
    return build_sources(tmp_path_factory.mktemp("fxc_sources"))


@pytest.fixture
def sqlite_project(sources: Path, tmp_path: Path) -> ProjectConfig:
    return load_project(new_project(sources, tmp_path / "p"))


def rows(config: ProjectConfig, conn_name: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [dict(r) for r in result.mappings()] if result.returns_rows else []
    finally:
        engine.dispose()


def q(config: ProjectConfig, conn_name: str, name: str) -> str:
    """`name` quoted for the connection's dialect."""
    engine = sa.create_engine(config.connection(conn_name).sqlalchemy_url())
    try:
        return engine.dialect.identifier_preparer.quote(name)
    finally:
        engine.dispose()


def links(config: ProjectConfig) -> dict[str, dict[str, Any]]:
    return {str(r["oa_request_id"]): r for r in rows(config, "erp", "SELECT * FROM erpoa_po_link")}


def pos_for(config: ProjectConfig, rid: str) -> list[str]:
    """Numbers of the POs whose request column holds `rid` (blanks trimmed)."""
    po, ref, no = q(config, "erp", PO), q(config, "erp", "cDefine10"), q(config, "erp", "cPOID")
    found = rows(config, "erp", f"SELECT {no} AS no, {ref} AS ref FROM {po}")
    return sorted(r["no"] for r in found if str(r["ref"] or "").strip() == rid)


def insert_po(config: ProjectConfig, poid: int, number: str, rid: str) -> None:
    t = sa.table(PO, *map(sa.column, ("POID", "cPOID", "dPODate", "cVenCode", "cState", "cMemo", "cDefine10")))
    engine = sa.create_engine(config.connection("erp").sqlalchemy_url())
    try:
        with engine.begin() as conn:
            conn.execute(t.insert().values(POID=poid, cPOID=number, cVenCode="08004", cState="0",
                                           cMemo="keyed by hand", cDefine10=rid))
    finally:
        engine.dispose()


def flow_file(config: ProjectConfig) -> Path:
    return config.resolve(config.mappings) / "flows" / "purchase_order.yaml"


def edit_flow(config: ProjectConfig, old: str | re.Pattern[str], new: str) -> ProjectConfig:
    path = flow_file(config)
    text = path.read_text(encoding="utf-8")
    edited = old.sub(new, text, count=1) if isinstance(old, re.Pattern) else text.replace(old, new, 1)
    assert edited != text, old
    path.write_text(edited, encoding="utf-8")
    assert config.config_path is not None
    return load_project(config.config_path)


# --------------------------------------------------------------------------- 1: duplicate POs are reported


@pytest.mark.sqlite
def test_a_second_po_for_a_linked_request_is_reported_and_stored(sqlite_project: ProjectConfig) -> None:
    config = sqlite_project
    adopted = rows(config, "erp", 'SELECT "cPOID", "cDefine10" FROM "PO_Pomain" WHERE "cDefine10" IS NOT NULL')
    assert adopted, "the demo has POs entered from OA requests"
    before = adopted[0]
    # several POs carried the request id before the flow adopted one: the lowest number is linked
    insert_po(config, 99002, "PO2099990001", str(before["cDefine10"]))

    first = run_flows(config, flows=["purchase_order"])
    assert first.status == "success", first.message
    linked = links(config)
    assert linked[str(before["cDefine10"])]["po_no"] == before["cPOID"]
    keyed_for = next(r for r, v in linked.items() if v["origin"] == "created")
    insert_po(config, 99001, "PO2026129999", keyed_for)  # a buyer keys a second PO for a linked request

    strays = audit_views(config, ["purchase_order"])["po_without_req"].set_index("doc_no")
    assert strays.at["PO2026129999", "reason"] == (
        f"duplicate: OA request {keyed_for} is already linked to {linked[keyed_for]['po_no']}")
    assert strays.at["PO2099990001", "reason"] == (
        f"duplicate: OA request {before['cDefine10']} is already linked to {before['cPOID']}")
    assert strays.at["PO2026129999", "request_ref"] == keyed_for

    again = run_flows(config, flows=["purchase_order"])
    assert (again.status, again.flows[0].created) == ("success", 0)
    stored = {r["golden_key"]: r for r in rows(config, "recon", "SELECT * FROM erpoa_difference "
                                                "WHERE entity = 'purchase_order' AND class = :c",
                                                c=CLASSES["po_without_req"])}
    assert {"PO2026129999", "PO2099990001"} <= set(stored)
    assert "duplicate: OA request" in stored["PO2026129999"]["detail"]
    assert stored["PO2026129999"]["erp_value"] == keyed_for


# --------------------------------------------------------------------------- 2: blanks in the request column


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectConfig:
    urls = urls_for(request.param, request, tmp_path / "p")
    config, _ = make_project(tmp_path / "p", urls, size=DemoSize(departments=8, employees=40, requisitions=24,
                                                                 contracts=5), seed=7)
    return config


@pytest.mark.parametrize("project", BACKENDS, indirect=True)
def test_a_po_whose_request_column_has_blanks_is_adopted_not_duplicated(project: ProjectConfig) -> None:
    config = project
    po, ref, no = q(config, "erp", PO), q(config, "erp", "cDefine10"), q(config, "erp", "cPOID")
    existing = rows(config, "erp", f"SELECT {no} AS no, {ref} AS ref FROM {po} WHERE {ref} IS NOT NULL")
    assert existing
    rid, number = str(existing[0]["ref"]), existing[0]["no"]
    rows(config, "erp", f"UPDATE {po} SET {ref} = :padded WHERE {no} = :no", padded=f"  {rid} ", no=number)

    result = run_flows(config, flows=["purchase_order"]).flows[0]
    assert result.status == "success", result.message
    assert result.adopted == len(existing)
    assert pos_for(config, rid) == [number]
    assert (links(config)[rid]["po_no"], links(config)[rid]["origin"]) == (number, "adopted")
    strays = audit_views(config, ["purchase_order"])["po_without_req"]
    assert number not in set(strays["doc_no"])


# --------------------------------------------------------------------------- 3: duplicate approval rows


def _status_rows(engine: sa.Engine, values: list[tuple[Any, ...]]) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE fxc_status (requestid INTEGER, status TEXT, approver INTEGER, "
                             "approved_on TEXT)")
        conn.exec_driver_sql("INSERT INTO fxc_status VALUES (?, ?, ?, ?)", values)


@pytest.mark.sqlite
def test_duplicate_approval_rows_collapse_and_disagreeing_ones_hold_their_request() -> None:
    engine = sa.create_engine("sqlite://")
    _status_rows(engine, [
        (1, "ok", 5, "2026-01-01"), (1, "ok", 5, "2026-01-03"), (1, "ok", 5, "2026-01-02"),  # same, 3 times
        (2, "ok", 5, "2026-01-01"), (2, "ok", 7, "2026-01-02"),  # two approvers
        (3, "ok", 5, "2026-01-01"), (3, "draft", None, None),  # approved and not
        (4, "draft", None, None), (4, "no", None, None),  # disagree, neither approves
        (5, "ok", 6, "2026-01-05"),
    ])
    spec = StatusFieldApproval(engine="status_field", table="fxc_status", key="requestid", field="status",
                               approved=["ok"], rejected=["no"], approved_at="approved_on", approver="approver")
    with engine.connect() as conn:
        states = read_approvals(conn, spec)
    assert states.index.is_unique and sorted(states.index) == ["1", "2", "3", "4", "5"]
    # 4: without an approving row nothing is held; with no approval time either, the order is by state
    assert states["state"].to_dict() == {"1": "approved", "2": "held", "3": "held", "4": "running",
                                         "5": "approved"}
    assert str(states.at["1", "approved_at"])[:10] == "2026-01-03" and states.at["1", "approver"] == "oa:5"
    assert "2 approval rows in fxc_status disagree" in states.at["2", "note"]
    assert "approved, running" in states.at["3", "note"]
    assert pd.isna(states.at["1", "note"]) and pd.isna(states.at["5", "note"])


@pytest.mark.sqlite
def test_duplicate_approval_rows_hold_one_request_and_publish_the_others(sqlite_project: ProjectConfig) -> None:
    config = sqlite_project
    forms = rows(config, "oa", f"SELECT requestid FROM {FORM} ORDER BY requestid")
    ids = [int(f["requestid"]) for f in forms]
    engine = sa.create_engine(config.connection("oa").sqlalchemy_url())
    twice, conflicting = ids[0], ids[1]
    _status_rows(engine, [(r, "ok", 1, "2026-11-20") for r in ids]
                 + [(twice, "ok", 1, "2026-11-21"), (conflicting, "draft", None, "2026-11-22")])
    engine.dispose()
    config = edit_flow(config, re.compile(r"^approval:\n(?:[ #].*\n|\n)+?(?=\S)", re.M),
                       "approval:\n  engine: status_field\n  table: fxc_status\n  key: requestid\n  field: status\n"
                       "  approved: [ok]\n  approved_at: approved_on\n  approver: approver\n\n")

    summary = run_flows(config, flows=["purchase_order"])
    result = summary.flows[0]
    assert result.status == "success", result.message
    linked = links(config)
    assert str(twice) in linked and len(pos_for(config, str(twice))) == 1
    assert str(conflicting) not in linked and not pos_for(config, str(conflicting))
    assert result.created + result.adopted == len(linked) >= len(ids) // 2
    waiting = audit_views(config, ["purchase_order"])["req_without_po"].set_index("request_id")
    assert waiting.at[str(conflicting), "state"] == "held"
    assert "approval rows in fxc_status disagree" in waiting.at[str(conflicting), "reason"]


# --------------------------------------------------------------------------- 5: ids bound with the column's type


def _spec(**extra: Any) -> FlowSpec:
    data: dict[str, Any] = {
        "flow": "fxc_po",
        "kind": "purchase_order",
        "source": {"header": {"table": "fxc_form", "request_id": "requestid"},
                   "lines": {"table": "fxc_form_dt1", "order_by": "xh"}},
        "approval": {"engine": "status_field", "table": "fxc_form", "key": "requestid", "field": "status",
                     "approved": ["ok"]},
        "target": {"header": {"table": "fxc_head", "number": "doc_no", "request_ref": "req"},
                   "lines": {"table": "fxc_line", "id": "id", "parent": "doc_no"},
                   "link": {"table": "fxc_link"}},
        "docno": {"prefix": "D"},
        "fields": {"header": {"vendor": "gys"}, "lines": {"qty": {"from": "sl", "type": "decimal", "scale": 2}}},
        "writeback": {"table": "fxc_form", "key": "requestid", "field": "erp_no"},
    }
    data.update(extra)
    return FlowSpec.model_validate(data)


def _db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    if backend == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return f"sqlite:///{tmp_path / 'fxc.db'}"


@pytest.mark.parametrize("id_type", ["varchar", "integer"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_request_ids_are_bound_with_the_column_type(backend: str, id_type: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    engine = sa.create_engine(_db_url(backend, request, tmp_path))
    meta = sa.MetaData()
    form = sa.Table("fxc_form", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("requestid", sa.String(30) if id_type == "varchar" else sa.Integer),
                    sa.Column("gys", sa.String(20)), sa.Column("status", sa.String(10)),
                    sa.Column("erp_no", sa.String(30)))
    dt1 = sa.Table("fxc_form_dt1", meta, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("mainid", sa.Integer), sa.Column("xh", sa.Integer), sa.Column("sl", sa.Numeric(18, 2)))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(form.insert(), [{"id": i, "requestid": str(100000 + i) if id_type == "varchar" else 100000 + i,
                                      "gys": f"V{i}", "status": "ok"} for i in (1, 2, 3)])
        conn.execute(dt1.insert(), [{"id": 10 * i + k, "mainid": i, "xh": k, "sl": k} for i in (1, 2, 3)
                                    for k in (1, 2)])
    spec = _spec()
    wanted = ["100001", "100003", "R-9"]  # an id that is no number must not break an integer column either
    try:
        with engine.connect() as conn:
            forms = read_forms(conn, spec, wanted)
            assert sorted(forms.headers.index) == ["100001", "100003"]
            assert len(forms.lines) == 4 and set(forms.lines["_request_id"]) == {"100001", "100003"}
            linked = pd.DataFrame({"oa_request_id": ["100001", "100003"], "doc_no": ["D1", "D3"]}).set_index(
                "oa_request_id", drop=False)
            pending = pending_writebacks(conn, spec, linked)
        assert sorted(pending["request_id"]) == ["100001", "100003"]
        done = write_back(engine, spec, pending)
        assert (done.written, done.error) == (2, None)
        with engine.connect() as conn:
            shown = {str(r.requestid): r.erp_no for r in conn.execute(sa.select(form.c.requestid, form.c.erp_no))}
            assert shown == {"100001": "D1", "100002": None, "100003": "D3"}
            assert pending_writebacks(conn, spec, linked).empty
            approvals = read_approvals(conn, spec.approval)
            assert sorted(approvals.index) == ["100001", "100002", "100003"]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- 7: columns the forms lack


HEADER_QUERY = re.compile(r"query: >-\n(?:      .*\n)+")
MISSING: dict[str, tuple[str | re.Pattern[str], str, str, str, str]] = {
    # edit (old, new), key path, message, text of the line the issue points at
    "hash_lines": ("hash_lines: [wlbm, sl, dj, je]", "hash_lines: [wlbm, sl, dj, jee]", "changes.hash_lines[3]",
                   "formtable_main_12_dt1: column 'jee' not found; did you mean 'je'?", "hash_lines: ["),
    "hash_header": ("hash_header: [sqr, sqbm, gys, bz, hjje]", "hash_header: [sqr, sqbm, gys, bz, hjjee]",
                    "changes.hash_header[4]", "column 'hjjee' not found; did you mean 'hjje'?", "hash_header: ["),
    "order_by": ("order_by: xh", "order_by: xhh", "source.lines.order_by",
                 "formtable_main_12_dt1: column 'xhh' not found; did you mean 'xh'?", "order_by: xhh"),
    "number": ("number: sqdh", "number: sqhd", "source.header.number", "column 'sqhd' not found; did you mean 'sqdh'?",
               "number: sqhd"),
    # a form table instead of the query joining HR: the mapped `from: workcode` is not one of its columns
    "mapped_from": (HEADER_QUERY, "table: formtable_main_12\n", "fields.header.cPersonCode.from",
                    "formtable_main_12: column 'workcode' not found", "from: workcode"),
    # the write-back's column and table: found before any document is created, not on every run after it
    "writeback_field": ("field: erp_po_no", "field: erp_po_num", "writeback.field",
                        "formtable_main_12: column 'erp_po_num' not found; did you mean 'erp_po_no'?",
                        "field: erp_po_num"),
    "writeback_table": ("  table: formtable_main_12\n  key: requestid", "  table: formtable_main_21\n  key: requestid",
                        "writeback.table", "table 'formtable_main_21' cannot be read in the OA",
                        "table: formtable_main_21"),
}


@pytest.mark.sqlite
@pytest.mark.parametrize("case", list(MISSING))
def test_a_column_the_forms_lack_is_a_located_config_error(sqlite_project: ProjectConfig, case: str) -> None:
    old, new, path, message, marker = MISSING[case]
    config = edit_flow(sqlite_project, old, new)
    line = 1 + next(i for i, text in enumerate(flow_file(config).read_text(encoding="utf-8").splitlines())
                    if marker in text)
    located = re.compile(rf"mappings/flows/purchase_order\.yaml:{line}:\d+ {re.escape(path)}: .*{re.escape(message)}")
    before = rows(config, "erp", 'SELECT COUNT(*) AS n FROM "PO_Pomain"')[0]["n"]

    with pytest.raises(ConfigError) as caught:
        audit_views(config, ["purchase_order"])
    assert located.search(str(caught.value)), str(caught.value)
    cli = CliRunner().invoke(_app(), ["flows", "audit", "--config", str(config.config_path)])
    assert cli.exit_code == 2 and located.search(cli.output.replace("\n", " ")), cli.output

    try:
        summary = run_flows(config, flows=["purchase_order"])
        result = summary.flows[0]
        assert result.status == "failed" and result.error == "ConfigError", result
        text = result.message or ""
    except ConfigError as exc:  # a runner may also stop on a configuration error
        text = str(exc)
    assert located.search(text), text
    assert rows(config, "erp", 'SELECT COUNT(*) AS n FROM "PO_Pomain"')[0]["n"] == before
    erp = sa.create_engine(config.connection("erp").sqlalchemy_url())
    linked = sa.inspect(erp).has_table("erpoa_po_link") and rows(config, "erp", "SELECT * FROM erpoa_po_link")
    erp.dispose()
    assert not linked


def _app() -> Any:
    from etl.cli.app import app

    return app


# --------------------------------------------------------------------------- 10: one lock per target table


def _contract_spec(flow: str) -> FlowSpec:
    return FlowSpec.model_validate({
        "flow": flow,
        "kind": "contract_archive",
        "source": {"header": {"table": "fxc_form", "request_id": "requestid"}},
        "approval": {"engine": "status_field", "table": "fxc_form", "key": "requestid", "field": "status",
                     "approved": ["ok"]},
        "target": {"header": {"table": "fxc_head", "number": "doc_no", "request_ref": "req", "id": "doc_id"},
                   "link": {"table": f"fxc_link_{flow}"}},
        "docno": {"prefix": "D", "width": 4},
        "fields": {"header": {"vendor": "gys"}},
    })


@pytest.fixture
def paused_at_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The first document transaction to pass `flow.doc_locked` waits there until the yielded gate exists."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("ERPOA_FAULT_GATE", str(gate))
    faults.configure("flow.doc_locked:1:pause")
    try:
        yield gate
    finally:
        gate.touch()
        faults.configure("")


@pytest.mark.postgres
def test_two_flows_writing_one_table_take_the_same_lock(pg_url: str, paused_at_lock: Path) -> None:
    engine = sa.create_engine(pg_url)
    impatient = sa.create_engine(pg_url + "%20-clock_timeout%3D1500")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE fxc_head (doc_id integer PRIMARY KEY, doc_no varchar(20), "
                             "req varchar(30), vendor varchar(20))")
    a, b = _contract_spec("fxc_flow_a"), _contract_spec("fxc_flow_b")
    for spec in (a, b):
        ensure_erp_tables(engine, spec)

    def doc(rid: str) -> Document:
        return Document(request_id=rid, request_no=None, header={"vendor": "V"}, lines=[], content_hash="h")

    day = pd.Timestamp("2026-12-06").date()
    got: dict[str, Any] = {}
    first = threading.Thread(target=lambda: got.update(a=publish_document(engine, a, doc("1"), run_id="ra", day=day)))
    first.start()
    try:
        deadline = time.monotonic() + 30
        while not paused_at_lock.with_name("gate.paused").exists():
            assert time.monotonic() < deadline and first.is_alive(), "flow A never reached its lock"
            time.sleep(0.05)
        # A holds its locks (paused inside its transaction): B, writing the same table, must wait for it
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            publish_document(impatient, b, doc("2"), run_id="rb", day=day)
    finally:
        paused_at_lock.touch()
        first.join(60)
    got["b"] = publish_document(engine, b, doc("2"), run_id="rb", day=day)
    assert got["a"][:2] == ("created", "D202612060001") and got["b"][:2] == ("created", "D202612060002")
    with engine.connect() as conn:
        keys = set(conn.exec_driver_sql("SELECT flow FROM erpoa_flow_lock").scalars())
    assert keys == {"fxc_flow_a", "fxc_flow_b", "table:fxc_head"}
    engine.dispose()
    impatient.dispose()
