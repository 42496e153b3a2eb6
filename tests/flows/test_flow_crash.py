"""SIGKILL the purchase-order flow at 13 points (12 distinct) between reading the approvals and the write-back; rerun.

After every crash a plain rerun must leave exactly one PO per approved requisition
(created or adopted, none for the others), one link each, every PO number written
back to the OA form, both cross-reference rows per link, and the same differences
as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.flows import FLOW_POINTS
from etl.flows.run import run_flows
from tests.helpers.crash import build_sources, new_project

POINTS = [
    ("flow.approvals_read", 1),
    ("flow.doc_mapped", 1),
    ("flow.doc_locked", 2),
    ("flow.doc_header_inserted", 5),
    ("flow.doc_lines_inserted", 3),
    ("flow.doc_link_inserted", 1),
    ("flow.doc_link_inserted", 7),
    ("flow.doc_committed", 4),
    ("flow.writeback_begin", 1),
    ("flow.writeback_row", 3),
    ("flow.writeback_done", 1),
    ("flow.xref_chunk", 1),
    ("flow.differences_recorded", 1),
]
RUN = "import sys; from etl.config.project import load_project; from etl.flows.run import run_flows; " \
      "run_flows(load_project(sys.argv[1]), flows=['purchase_order'])"


def killed_run(config_path: Path, point: str, nth: int) -> bool:
    """Run the flow in a subprocess that SIGKILLs itself at `point` (n-th time); True if it died there."""
    env = {**os.environ, "ERPOA_FAULT": f"{point}:{nth}"}
    proc = subprocess.run([sys.executable, "-c", RUN, str(config_path)], env=env, capture_output=True, timeout=120,
                          check=False)
    return proc.returncode == -signal.SIGKILL


def snapshot(config_path: Path) -> dict[str, Any]:
    """POs per OA request, links, write-backs, xref rows and differences of a project."""
    config = load_project(config_path)
    engines = {n: sa.create_engine(config.connection(n).sqlalchemy_url()) for n in ("erp", "oa", "recon")}
    try:
        with engines["erp"].connect() as conn:
            po = Counter(r[0] for r in conn.exec_driver_sql('SELECT "cDefine10" FROM "PO_Pomain"') if r[0])
            links = dict(conn.exec_driver_sql("SELECT oa_request_id, po_no FROM erpoa_po_link").all())
            orphans = conn.exec_driver_sql('SELECT COUNT(*) FROM "PO_Podetails" d WHERE NOT EXISTS '
                                           '(SELECT 1 FROM "PO_Pomain" h WHERE h."POID" = d."POID")').scalar()
            lines = dict(conn.exec_driver_sql('SELECT h."cDefine10", COUNT(*) FROM "PO_Pomain" h JOIN "PO_Podetails" d'
                                              ' ON d."POID" = h."POID" GROUP BY h."cDefine10"').all())
        with engines["oa"].connect() as conn:
            shown = dict(conn.exec_driver_sql("SELECT CAST(requestid AS TEXT), erp_po_no FROM formtable_main_12 "
                                              "WHERE erp_po_no IS NOT NULL").all())
        with engines["recon"].connect() as conn:
            xref = sorted(conn.exec_driver_sql("SELECT source, src_id, golden_key FROM erpoa_xref "
                                               "WHERE entity = 'purchase_order'").all())
            diffs = sorted(conn.exec_driver_sql("SELECT class, golden_key, field, present FROM erpoa_difference "
                                                "WHERE entity = 'purchase_order'").all())
    finally:
        for engine in engines.values():
            engine.dispose()
    return {"po": dict(po), "links": links, "orphan_lines": orphans, "lines": lines, "shown": shown,
            "xref": xref, "diffs": diffs}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def reference(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = new_project(sources, tmp_path_factory.mktemp("clean"))
    assert run_flows(load_project(config), flows=["purchase_order"]).status == "success"
    dispose_all()
    return snapshot(config)


@pytest.mark.unit
def test_points_are_declared() -> None:
    assert {p for p, _ in POINTS} <= set(FLOW_POINTS) and len({p for p, _ in POINTS}) >= 10


@pytest.mark.sqlite
@pytest.mark.slow
@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[f"{p}:{n}" for p, n in POINTS])
def test_killed_then_rerun_publishes_exactly_once(point: str, nth: int, sources: Path, reference: dict[str, Any],
                                                  tmp_path: Path) -> None:
    config = new_project(sources, tmp_path / "p")
    assert killed_run(config, point, nth), f"the flow did not reach {point}:{nth}"
    summary = run_flows(load_project(config), flows=["purchase_order"])
    dispose_all()
    assert summary.status == "success", summary.message
    got = snapshot(config)
    assert set(got["po"].values()) == {1} and got["orphan_lines"] == 0
    assert set(got["po"]) == set(reference["po"]) == set(got["links"])
    assert got["lines"] == reference["lines"]
    assert got["shown"] == got["links"]
    assert {(s, i) for s, i, _ in got["xref"]} == {(s, i) for s, i, _ in reference["xref"]}
    assert all(key == got["links"].get(i, key) for s, i, key in got["xref"] if s == "oa")
    assert got["diffs"] == reference["diffs"]
