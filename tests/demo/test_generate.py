"""Tests of the demo ERP/OA generator: determinism, planted anomalies, scaling, all three databases."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from etl.demo import erp_schema, oa_schema
from etl.demo.anomalies import canonical_workcode, erp_requisition_no, to_fullwidth
from etl.demo.generate import (
    DemoManifest,
    DemoSize,
    build_demo,
    create_erp,
    create_oa,
    generate_demo,
    size_for_rows,
)

SMALL = DemoSize(departments=8, employees=120, requisitions=80, contracts=20)

pytestmark = pytest.mark.filterwarnings("ignore:Dialect sqlite\\+pysqlite does \\*not\\* support Decimal")


# ----------------------------------------------------------------------------- fixtures
# pg_url / mariadb_url (private schema / database, dropped afterwards) come from tests/conftest.py


@pytest.fixture(scope="module", params=[DemoSize(), size_for_rows(20_000)], ids=["default", "rows20k"])
def default_build(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[sa.Engine, sa.Engine, DemoManifest]]:
    """A demo on SQLite, built once per size for the anomaly tests."""
    root = tmp_path_factory.mktemp("demo")
    erp_url, oa_url = f"sqlite:///{root}/erp.db", f"sqlite:///{root}/oa.db"
    manifest = build_demo(erp_url, oa_url, request.param, seed=42)
    erp, oa = sa.create_engine(erp_url), sa.create_engine(oa_url)
    yield erp, oa, manifest
    erp.dispose()
    oa.dispose()


# ----------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0)
    return value


def _snapshot(url: str, metadata: sa.MetaData) -> dict[str, list[tuple[Any, ...]]]:
    """Every demo table's rows, ordered by primary key, with driver-neutral values."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [
                    tuple(_plain(v) for v in row) for row in conn.execute(sa.select(t).order_by(*t.primary_key.columns))
                ]
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _rows(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def _sqlite_pair(tmp_path: Any, tag: str) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/{tag}_erp.db", f"sqlite:///{tmp_path}/{tag}_oa.db"


# ----------------------------------------------------------------------------- unit


@pytest.mark.unit
def test_size_for_rows_scales_the_purchase_lines() -> None:
    size = size_for_rows(5000)
    data = generate_demo(size, seed=1)
    lines = len(data.oa["formtable_main_12_dt1"]["id"])
    assert 4500 <= lines <= 5500
    assert size.employees == 200
    assert 0.75 * lines <= len(data.erp["PU_AppVouchs"]["AutoID"]) < lines
    big = size_for_rows(1_000_000)
    assert big.employees == 20_000 and big.requisitions == 333_333
    assert size_for_rows(900) == DemoSize()


@pytest.mark.unit
def test_generation_is_deterministic_per_seed() -> None:
    def flat(seed: int) -> dict[str, list[Any]]:
        data = generate_demo(SMALL, seed)
        out: dict[str, list[Any]] = {}
        for side in (data.erp, data.oa):
            for table, cols in side.items():
                for col, values in cols.items():
                    out[f"{table}.{col}"] = np.asarray(values).tolist()
        return out

    assert flat(7) == flat(7)
    assert generate_demo(SMALL, 7).manifest.to_dict() == generate_demo(SMALL, 7).manifest.to_dict()
    a, b = flat(7), flat(8)
    assert a["HrmResource.lastname"] != b["HrmResource.lastname"]
    assert a["formtable_main_12_dt1.sl"] != b["formtable_main_12_dt1.sl"]


@pytest.mark.unit
def test_manifest_is_json_serialisable_and_complete() -> None:
    manifest = generate_demo(DemoSize(), 42).manifest
    text = json.dumps(manifest.to_dict(), ensure_ascii=False)
    assert json.loads(text)["seed"] == 42
    for status in ("approved", "rejected", "withdrawn", "running", "deleted"):
        assert manifest.requisition_requests[status], status
        assert manifest.contract_requests[status], status
    assert 2 <= len(manifest.duplicate_oa_workcodes) <= 3
    assert manifest.employees_only_in_erp and manifest.employees_only_in_oa
    assert manifest.negative_quantity_lines and manifest.over_precise_price_lines
    assert manifest.requisitions_missing_in_erp and manifest.contracts_missing_in_erp
    assert len(manifest.purchase_orders_without_oa_request) in (1, 2)
    assert len(manifest.departed_in_erp_active_in_oa) == 1


@pytest.mark.unit
def test_text_helpers() -> None:
    assert to_fullwidth("00123") == "００１２３"
    for raw in ("123", "0000123", "００１２３", " 123", "123 ", "000123\u3000", "\u3000123"):
        assert canonical_workcode(raw) == "000123", raw
    assert erp_requisition_no("QG-2026-000123") == "QG2026000123"


# ----------------------------------------------------------------------------- SQLite


@pytest.mark.sqlite
def test_sqlite_build_is_deterministic_and_rebuildable(tmp_path: Any) -> None:
    a_erp, a_oa = _sqlite_pair(tmp_path, "a")
    b_erp, b_oa = _sqlite_pair(tmp_path, "b")
    c_erp, c_oa = _sqlite_pair(tmp_path, "c")
    first = build_demo(a_erp, a_oa, SMALL, seed=3)
    build_demo(b_erp, b_oa, SMALL, seed=3)
    build_demo(c_erp, c_oa, SMALL, seed=4)
    snap_a = _snapshot(a_erp, erp_schema.metadata) | _snapshot(a_oa, oa_schema.metadata)
    snap_b = _snapshot(b_erp, erp_schema.metadata) | _snapshot(b_oa, oa_schema.metadata)
    snap_c = _snapshot(c_erp, erp_schema.metadata) | _snapshot(c_oa, oa_schema.metadata)
    assert snap_a == snap_b
    assert snap_a["HrmResource"] != snap_c["HrmResource"]
    assert snap_a["formtable_main_12_dt1"] != snap_c["formtable_main_12_dt1"]
    assert {t: len(r) for t, r in snap_a.items()} == first.row_counts["erp"] | first.row_counts["oa"]

    # rebuilding over an existing database replaces the tables
    again = build_demo(a_erp, a_oa, SMALL, seed=3)
    assert again.row_counts == first.row_counts
    assert _snapshot(a_oa, oa_schema.metadata) == _snapshot(b_oa, oa_schema.metadata)
    with pytest.raises(ValueError, match="drop=True"):
        create_erp(a_erp, SMALL, seed=3, drop=False)
    fresh_erp, fresh_oa = _sqlite_pair(tmp_path, "fresh")
    assert create_erp(fresh_erp, SMALL, seed=3, drop=False) == first.row_counts["erp"]
    assert create_oa(fresh_oa, SMALL, seed=3, drop=False) == first.row_counts["oa"]


@pytest.mark.sqlite
def test_departments_differ_across_systems(default_build: tuple[sa.Engine, sa.Engine, DemoManifest]) -> None:
    erp, oa, m = default_build
    erp_dep = {r["cDepCode"]: r for r in _rows(erp, erp_schema.department)}
    oa_dep = {r["id"]: r for r in _rows(oa, oa_schema.hrm_department)}
    assert len(erp_dep) >= 12
    pairs = {(d["erp_code"], d["erp_name"], d["oa_code"], d["oa_name"]) for d in m.department_mapping}
    assert ("0101", "市场部", "SC01", "市场营销中心") in pairs
    assert ("0201", "财务部", "CW01", "财务中心") in pairs
    for d in m.department_mapping:
        assert erp_dep[d["erp_code"]]["cDepName"] == d["erp_name"]
        assert oa_dep[d["oa_id"]]["departmentcode"] == d["oa_code"] != d["erp_code"]
        assert oa_dep[d["oa_id"]]["departmentname"] != d["erp_name"]
    gap = m.unmapped_oa_department
    assert oa_dep[gap["oa_id"]]["departmentname"] == gap["name"]
    assert gap["code"] not in erp_dep and gap["name"] not in {r["cDepName"] for r in erp_dep.values()}
    assert gap["oa_id"] not in {d["oa_id"] for d in m.department_mapping}
    gone = m.abolished_erp_department
    assert erp_dep[gone["erp_code"]]["dDepEndDate"] is not None
    assert [c for c, r in erp_dep.items() if r["dDepEndDate"] is not None] == [gone["erp_code"]]
    assert oa_dep[gone["oa_id"]]["canceled"] in (None, "0")


@pytest.mark.sqlite
def test_employee_anomalies(default_build: tuple[sa.Engine, sa.Engine, DemoManifest]) -> None:
    erp, oa, m = default_build
    erp_p = {r["cPsn_Num"]: r for r in _rows(erp, erp_schema.person)}
    oa_rows = _rows(oa, oa_schema.hrm_resource)
    oa_by_id = {r["id"]: r for r in oa_rows}
    by_code: dict[str, list[dict[str, Any]]] = {}
    for r in oa_rows:
        by_code.setdefault(canonical_workcode(r["workcode"]) or "", []).append(r)

    assert all(len(c) == 6 and c.isdigit() for c in erp_p)
    raw = [r["workcode"] for r in oa_rows]
    assert any(w.isdigit() and len(w) < 6 for w in raw)  # lost zeros
    assert any(w.isdigit() and len(w) > 6 for w in raw)  # extra zeros
    assert any(w and all("０" <= ch <= "９" for ch in w) for w in raw)  # full-width digits
    assert any(w != w.strip() for w in raw)  # stray (ideographic) spaces
    for kind, codes in m.workcode_variants.items():
        assert codes, kind

    assert set(m.employees_only_in_erp) <= set(erp_p) and not set(m.employees_only_in_erp) & set(by_code)
    assert set(m.employees_only_in_oa) <= set(by_code) and not set(m.employees_only_in_oa) & set(erp_p)
    assert set(by_code) - set(erp_p) == set(m.employees_only_in_oa)
    assert set(erp_p) - set(by_code) == set(m.employees_only_in_erp)

    dups = {c for c, rows in by_code.items() if len(rows) > 1}
    assert dups == {d["code"] for d in m.duplicate_oa_workcodes}
    for d in m.duplicate_oa_workcodes:
        assert sorted(r["id"] for r in by_code[d["code"]]) == sorted(d["oa_ids"])
        assert len({oa_by_id[i]["workcode"] for i in d["oa_ids"]}) == 2  # spelled differently

    for code in m.departed_in_oa_active_in_erp:
        assert erp_p[code]["rPersonType"] == "10" and erp_p[code]["dLastDate"] is None
        assert [r["status"] for r in by_code[code]] == ["5"]
    (code,) = m.departed_in_erp_active_in_oa
    assert erp_p[code]["rPersonType"] == "20" and erp_p[code]["dLastDate"] is not None
    assert by_code[code][0]["status"] in ("0", "1", "2", "3")

    for v in m.name_variants:
        assert erp_p[v["code"]]["cPsn_Name"] == v["erp_name"]
        assert by_code[v["code"]][0]["lastname"] == v["oa_name"] != v["erp_name"]
    for code in m.missing_contacts["erp_mobile"]:
        assert erp_p[code]["cPsnMobilePhone"] is None
    for code in m.missing_contacts["oa_email"]:
        assert by_code[code][0]["email"] in (None, "")
    unmapped = m.employee_in_unmapped_department
    assert oa_by_id[unmapped["oa_id"]]["departmentid"] == m.unmapped_oa_department["oa_id"]
    assert erp_p[unmapped["code"]]["cDept_num"] in {d["erp_code"] for d in m.department_mapping}
    bad = m.invalid_id_number
    assert erp_p[bad["code"]]["cPsnIDNum"] == bad["value"] and len(bad["value"]) != 18
    assert sum(len(r["cPsnIDNum"]) != 18 for r in erp_p.values()) == 1
    assert {r["rSex"] for r in erp_p.values()} == {"1", "2"} and {r["sex"] for r in oa_rows} == {"0", "1"}


@pytest.mark.sqlite
def test_requisition_anomalies(default_build: tuple[sa.Engine, sa.Engine, DemoManifest]) -> None:
    erp, oa, m = default_build
    base = {r["requestid"]: r for r in _rows(oa, oa_schema.requestbase)}
    forms = {r["requestid"]: r for r in _rows(oa, oa_schema.form_requisition)}
    lines = _rows(oa, oa_schema.form_requisition_lines)
    heads = {r["cCode"]: r for r in _rows(erp, erp_schema.pu_appvouch)}
    erp_lines = {(r["ID"], r["ivouchrowno"]): r for r in _rows(erp, erp_schema.pu_appvouchs)}

    expected = {
        "approved": ("归档", "3"),
        "rejected": ("退回", "0"),
        "withdrawn": ("撤回", "0"),
        "running": ("审批中", "1"),
    }
    for status, ids in m.requisition_requests.items():
        for rid in ids:
            assert base[rid]["workflowid"] == 12
            assert base[rid]["deleted"] == (1 if status == "deleted" else 0)
            if status in expected:
                assert (base[rid]["status"], base[rid]["currentnodetype"]) == expected[status]
    approved = {forms[r]["sqdh"] for r in m.requisition_requests["approved"]}
    assert all("-" in s and erp_requisition_no(s) != s for s in approved)
    in_erp = {s for s in approved if erp_requisition_no(s) in heads}
    assert approved - in_erp == set(m.requisitions_missing_in_erp)
    assert len(in_erp) > 0.9 * len(approved)
    assert {erp_requisition_no(s) for s in in_erp} == set(heads)  # nothing unapproved reached the ERP

    unknown = m.requisition_unknown_requester
    person_ids = {r["id"] for r in _rows(oa, oa_schema.hrm_resource)}
    assert forms[unknown["requestid"]]["sqr"] == unknown["sqr"] not in person_ids
    assert all(f["sqr"] in person_ids for rid, f in forms.items() if rid != unknown["requestid"])

    by_id = {r["id"]: r for r in lines}
    negatives = {r["id"] for r in lines if r["sl"] < 0}
    assert negatives == {d["dt1_id"] for d in m.negative_quantity_lines}
    precise = {r["id"] for r in lines if r["dj"] != round(r["dj"], 2)}
    assert precise == {d["dt1_id"] for d in m.over_precise_price_lines}
    assert all(by_id[d["dt1_id"]]["dj"] == Decimal(str(d["dj"])) for d in m.over_precise_price_lines)

    for d in m.requisition_line_differences:
        row = erp_lines[(heads[d["ccode"]]["ID"], d["line_no"])]
        erp_value = row["fQuantity"] if d["field"] == "quantity" else row["fMoney"]
        assert float(erp_value) == d["erp"] != d["oa"]
    assert len(m.requisition_line_differences) >= 3

    # lines match by (number, line no); the rest agree
    form_by_id = {f["id"]: f for f in forms.values()}
    differing = {(d["ccode"], d["line_no"]) for d in m.requisition_line_differences}
    matched = 0
    for line in lines:
        ccode = erp_requisition_no(form_by_id[line["mainid"]]["sqdh"])
        if ccode in heads and (ccode, line["xh"]) not in differing:
            row = erp_lines[(heads[ccode]["ID"], line["xh"])]
            assert (row["cInvCode"], row["fQuantity"], row["fMoney"]) == (line["wlbm"], line["sl"], line["je"])
            matched += 1
    assert matched + len(differing) == len(erp_lines)


@pytest.mark.sqlite
def test_contract_and_po_anomalies(default_build: tuple[sa.Engine, sa.Engine, DemoManifest]) -> None:
    erp, oa, m = default_build
    forms = {r["htbh"]: r for r in _rows(oa, oa_schema.form_contract)}
    contracts = {r["cContractID"]: r for r in _rows(erp, erp_schema.cm_contract)}
    approved = {r["htbh"] for r in forms.values() if r["requestid"] in set(m.contract_requests["approved"])}
    assert approved - set(contracts) == set(m.contracts_missing_in_erp)
    assert set(contracts) - set(forms) == {m.erp_contract_without_oa_request}
    assert contracts[m.erp_contract_without_oa_request]["cOARequestID"] is None
    for no, row in contracts.items():
        if no != m.erp_contract_without_oa_request:
            assert row["cOARequestID"] == str(forms[no]["requestid"])
    bad = forms[m.contract_end_before_start]
    assert bad["jsrq"] < bad["qsrq"]
    assert contracts[m.contract_end_before_start]["dtEndDate"] < contracts[m.contract_end_before_start]["dtStartDate"]
    assert sum(r["jsrq"] < r["qsrq"] for r in forms.values()) == 1
    diffs = {d["htbh"]: d for d in m.contract_amount_differences}
    assert diffs
    for no in approved & set(contracts):
        same = float(contracts[no]["dblTotalMoney"]) == float(forms[no]["htje"])
        assert same != (no in diffs)

    pos = {r["cPOID"]: r for r in _rows(erp, erp_schema.po_pomain)}
    assert {p for p, r in pos.items() if r["cDefine10"] is None} == set(m.purchase_orders_without_oa_request)
    for p in m.purchase_orders_from_oa:
        assert pos[p["cPOID"]]["cDefine10"] == str(p["requestid"])
    assert any(p.startswith("PO202611") for p in pos)
    assert all(len(p) == 12 for p in pos)


@pytest.mark.sqlite
def test_every_table_has_2026_modify_timestamps(default_build: tuple[sa.Engine, sa.Engine, DemoManifest]) -> None:
    erp, oa, _ = default_build
    for engine, metadata in ((erp, erp_schema.metadata), (oa, oa_schema.metadata)):
        for table in metadata.sorted_tables:
            col = next((c for c in ("dModifyDate", "modified") if c in table.c), None)
            if col is None:
                continue  # detail tables follow their header, the log has operatedate
            with engine.connect() as conn:
                lo, hi = conn.execute(sa.select(sa.func.min(table.c[col]), sa.func.max(table.c[col]))).one()
            assert lo.year == 2026 and hi.year == 2026, table.name


# ----------------------------------------------------------------------------- servers


@pytest.mark.postgres
def test_postgres_build_matches_sqlite(pg_url: str, tmp_path: Any) -> None:
    manifest = build_demo(pg_url, pg_url, SMALL, seed=5)
    ref_erp, ref_oa = _sqlite_pair(tmp_path, "ref")
    build_demo(ref_erp, ref_oa, SMALL, seed=5)
    assert _snapshot(pg_url, erp_schema.metadata) == _snapshot(ref_erp, erp_schema.metadata)
    assert _snapshot(pg_url, oa_schema.metadata) == _snapshot(ref_oa, oa_schema.metadata)
    assert build_demo(pg_url, pg_url, SMALL, seed=5).row_counts == manifest.row_counts


@pytest.mark.mariadb
def test_mariadb_build_matches_sqlite(mariadb_url: str, tmp_path: Any) -> None:
    manifest = build_demo(mariadb_url, mariadb_url, SMALL, seed=5)
    ref_erp, ref_oa = _sqlite_pair(tmp_path, "ref")
    build_demo(ref_erp, ref_oa, SMALL, seed=5)
    assert _snapshot(mariadb_url, erp_schema.metadata) == _snapshot(ref_erp, erp_schema.metadata)
    assert _snapshot(mariadb_url, oa_schema.metadata) == _snapshot(ref_oa, oa_schema.metadata)
    assert build_demo(mariadb_url, mariadb_url, SMALL, seed=5).row_counts == manifest.row_counts


@pytest.mark.postgres
@pytest.mark.mariadb
def test_erp_and_oa_in_different_servers(pg_url: str, mariadb_url: str) -> None:
    manifest = build_demo(pg_url, mariadb_url, SMALL, seed=9)
    erp, oa = sa.create_engine(pg_url), sa.create_engine(mariadb_url)
    try:
        with erp.connect() as conn:
            codes = set(conn.execute(sa.select(erp_schema.person.c.cPsn_Num)).scalars())
        with oa.connect() as conn:
            workcodes = list(conn.execute(sa.select(oa_schema.hrm_resource.c.workcode)).scalars())
        assert {canonical_workcode(w) for w in workcodes} - codes == set(manifest.employees_only_in_oa)
        assert any("\u3000" in w or any("０" <= ch <= "９" for ch in w) for w in workcodes)
    finally:
        erp.dispose()
        oa.dispose()
