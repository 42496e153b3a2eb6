"""Sustained load: many incremental syncs over seeded source changes end where one fresh full sync ends.

Each cycle edits the demo ERP and OA the way users do (updates with fresh modify
stamps, inserts, deletes, late rows stamped inside the overlap window) and runs
an incremental `run_sync` with reconciliation, in process. At the end, the final
source state is copied into a new project and synced once with `--full-refresh`.
The incremental target must equal it: every active golden record, every mirror
row, the active cross-reference, the present differences and the open
quarantine. Rows only the incremental target has are the records deleted from
the sources along the way, kept inactive (never hard-deleted).

`ERPOA_LOAD_CYCLES` sets the number of cycles (default 200 under CI, 40 locally).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.demo.generate import build_demo
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import run_sync
from tests.helpers.crash import build_sources, new_project
from tests.reliability import DEMO_SEED, DEMO_SIZE, SourceChanger, business_rows, lift_percentage_gates, scratch
from tests.reliability.figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.sqlite, pytest.mark.slow]

CYCLES = int(os.environ.get("ERPOA_LOAD_CYCLES") or (200 if os.environ.get("CI") else 40))
SEED = int(os.environ.get("ERPOA_LOAD_SEED", "8086"))
TABLES = {"department": "md_department", "employee": "md_employee", "contract": "md_contract",
          "purchase": "md_purchase_line"}


def _key(row: dict[str, Any]) -> str:
    return str(row["_key"])


def target_split(folder: Path, table: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(active rows by key, inactive rows by key) of a target table, without per-run columns."""
    url = sqlite_urls(folder)["target"]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(text(f'SELECT * FROM "{table}"')).mappings()]
    finally:
        engine.dispose()
    drop = {"_run_id", "_updated_at", "_mapping_version"}
    clean = {_key(r): tuple(sorted((k, v) for k, v in r.items() if k not in drop)) for r in rows}
    active = {k: v for k, v in clean.items() if dict(v)["_active"]}
    return active, {k: v for k, v in clean.items() if not dict(v)["_active"]}


def active_departments(folder: Path) -> tuple[list[str], list[int]]:
    """ERP codes and OA ids of the departments published active: where new people are filed."""
    target = create_engine(sqlite_urls(folder)["target"])
    recon = create_engine(sqlite_urls(folder)["recon"])
    try:
        with target.connect() as conn:
            active = {r[0] for r in conn.execute(text("SELECT department_code FROM md_department WHERE _active"))}
        with recon.connect() as conn:
            links = conn.execute(text("SELECT source, src_id, golden_key FROM erpoa_xref "
                                      "WHERE entity = 'department' AND active")).all()
    finally:
        target.dispose()
        recon.dispose()
    erp = sorted(i for s, i, k in links if s == "erp" and k in active)
    oa = sorted(int(i) for s, i, k in links if s == "oa" and k in active)
    return erp, oa


def refused_employees(folder: Path) -> set[str]:
    """Employee codes whose golden record a merge, integrity or gate check refused (see SourceChanger.frozen)."""
    engine = create_engine(sqlite_urls(folder)["recon"])
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text(
                "SELECT golden_key FROM erpoa_quarantine WHERE entity = 'employee' AND status = 'open' "
                "AND stage <> 'map' AND golden_key IS NOT NULL"))}
    finally:
        engine.dispose()


def recon_state(folder: Path) -> dict[str, Any]:
    engine = create_engine(sqlite_urls(folder)["recon"])
    try:
        with engine.connect() as conn:
            return {
                "active xref": sorted(tuple(r) for r in conn.execute(text(
                    "SELECT entity, source, src_id, golden_key FROM erpoa_xref WHERE active"))),
                "present differences": sorted((tuple(r) for r in conn.execute(text(
                    "SELECT entity, class, golden_key, field, erp_value, oa_value, target_value "
                    "FROM erpoa_difference WHERE present"))), key=repr),
                # Mapping findings are about a source record; later ones about a golden record, whatever
                # sources it was built from in the run that found them.
                "open quarantine": sorted(tuple(r) for r in conn.execute(text(
                    "SELECT entity, CASE WHEN stage = 'map' THEN source || ':' || src_id ELSE golden_key END, rule "
                    "FROM erpoa_quarantine WHERE status = 'open'"))),
            }
    finally:
        engine.dispose()


def first_difference(expected: list, actual: list) -> str:
    missing = [x for x in expected if x not in actual]
    extra = [x for x in actual if x not in expected]
    return f"{len(missing)} missing (e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})"


def test_many_incremental_cycles_equal_one_fresh_full_sync() -> None:
    with scratch("load") as work:
        sources = build_sources(work / "sources", DEMO_SIZE, DEMO_SEED)
        config_path = lift_percentage_gates(new_project(sources, work / "incremental"))
        config = load_project(config_path)
        hooks = default_hooks(config)
        summary, _ = run_sync(config, full_refresh=True, hooks=hooks)
        assert summary.status == "success", summary.message
        erp_depts, oa_depts = active_departments(work / "incremental")
        changer = SourceChanger(work / "incremental", random.Random(SEED), erp_departments=erp_depts,
                                oa_departments=oa_depts, frozen=refused_employees(work / "incremental"))
        started = time.monotonic()
        totals: Counter[str] = Counter()
        slowest = 0.0
        for cycle in range(CYCLES):
            changer.cycle()
            t0 = time.monotonic()
            summary, _ = run_sync(config, hooks=hooks)
            slowest = max(slowest, time.monotonic() - t0)
            assert summary.status == "success", f"cycle {cycle}: {summary.message}"
            for e in summary.entities:
                totals["read"] += e.read_total
                totals["inserted"] += e.inserted
                totals["updated"] += e.updated
                totals["inactivated"] += e.inactivated
        dispose_all()
        incremental_seconds = time.monotonic() - started

        fresh = work / "fresh"
        fresh.mkdir()
        for name in ("erp.db", "oa.db"):
            shutil.copy(work / "incremental" / name, fresh / name)
        fresh_config = load_project(lift_percentage_gates(write_project(fresh)))
        summary, _ = run_sync(fresh_config, full_refresh=True, hooks=default_hooks(fresh_config))
        assert summary.status == "success", summary.message
        dispose_all()

        problems = []
        rows_checked = vanished = lost = extra = 0
        for entity, table in TABLES.items():
            inc_active, inc_inactive = target_split(work / "incremental", table)
            new_active, new_inactive = target_split(fresh, table)
            rows_checked += len(new_active) + len(new_inactive)
            lost += sum(inc_active.get(k) != v for k, v in new_active.items())
            extra += len(set(inc_active) - set(new_active))
            if inc_active != new_active:
                problems.append(f"{table} active: " + first_difference(sorted(new_active.items()),
                                                                         sorted(inc_active.items())))
            for key, row in new_inactive.items():
                if inc_inactive.get(key) != row:
                    problems.append(f"{table} inactive {key}: {inc_inactive.get(key)} != {row}")
            # What only the incremental target has: records deleted at the sources, kept inactive.
            only = set(inc_inactive) - set(new_inactive) - set(new_active)
            vanished += len(only)
            stray = set(inc_inactive) - set(new_inactive) - only
            if stray:
                problems.append(f"{table}: {len(stray)} keys inactive here but active in the fresh sync")
            for name in (f"erpoa_src_{entity}",):
                inc = business_rows(sqlite_urls(work / "incremental")["target"], name)
                new = business_rows(sqlite_urls(fresh)["target"], name)
                if inc != new:
                    problems.append(f"{name}: " + first_difference(new, inc))
        inc_recon, new_recon = recon_state(work / "incremental"), recon_state(fresh)
        for part, expected in new_recon.items():
            if inc_recon[part] != expected:
                problems.append(f"{part}: " + first_difference(expected, inc_recon[part]))
        record(
            "test_load::incremental_cycles",
            "Repeated incremental syncs vs. a fresh full sync",
            "After many cycles of seeded changes (updates, inserts, deletes, late rows inside the overlap window) "
            "each followed by an incremental sync with reconciliation, target, mirrors, active cross-reference, "
            "present differences and open quarantine equal one full sync of the final sources into a new "
            "project; records deleted along the way are inactive, never lost or duplicated.",
            cycles=CYCLES,
            seed=SEED,
            source_changes=dict(sorted(changer.counts.items())),
            rows_read=totals["read"],
            rows_inserted=totals["inserted"],
            rows_updated=totals["updated"],
            rows_inactivated=totals["inactivated"],
            rows_checked=rows_checked,
            vanished_kept_inactive=vanished,
            rows_lost_or_different=lost,
            rows_unexpected=extra,
            divergences=len(problems),
            present_differences=len(new_recon["present differences"]),
            open_quarantine=len(new_recon["open quarantine"]),
            seconds_per_cycle=round(incremental_seconds / max(CYCLES, 1), 2),
            slowest_cycle_seconds=round(slowest, 2),
        )
        assert problems == [], "\n".join(problems)


def _demo_project(work: Path) -> tuple[Any, dict[str, Any]]:
    manifest = build_demo(f"sqlite:///{work / 'erp.db'}", f"sqlite:///{work / 'oa.db'}", DEMO_SIZE, DEMO_SEED)
    config = load_project(write_project(work))
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    return config, manifest.to_dict()


def test_vanished_source_record_is_unlinked_while_its_golden_record_lives_on() -> None:
    """Found by the load test: the cross-reference kept a deleted ERP record linked (active) to a golden
    record that survives through its OA record; a fresh sync has no such link."""
    with scratch("unlink") as work:
        config, manifest = _demo_project(work)
        plain = set(manifest["employees_only_in_erp"]) | set(manifest["employees_only_in_oa"])
        store_engine = create_engine(sqlite_urls(work)["recon"])
        with store_engine.connect() as conn:
            both = [r[0] for r in conn.execute(text(
                "SELECT golden_key FROM erpoa_xref WHERE entity = 'employee' AND active "
                "GROUP BY golden_key HAVING COUNT(DISTINCT source) = 2 ORDER BY golden_key"))]
        code = next(c for c in both if c not in plain)
        erp = create_engine(sqlite_urls(work)["erp"])
        with erp.begin() as conn:
            conn.execute(text('DELETE FROM hr_hi_person WHERE "cPsn_Num" = :c'), {"c": code})
        erp.dispose()
        summary, _ = run_sync(config, entities=["employee"])
        assert summary.status == "success", summary.message
        with store_engine.connect() as conn:
            links = dict(conn.execute(text("SELECT source, active FROM erpoa_xref "
                                           "WHERE entity = 'employee' AND golden_key = :k"), {"k": code}).all())
        store_engine.dispose()
        dispose_all()
        assert {s: bool(a) for s, a in links.items()} == {"erp": False, "oa": True}

