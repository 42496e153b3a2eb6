"""Concurrent syncs: the same entity twice (one runs, one exits 5 or waits), two entities side by side.

Same entity: sync A is paused inside its entity lock (fault point
`extract.prepared`, action `pause`); sync B, started without `--wait`, must exit
with code 5 and say another sync holds the lock; sync C, started with `--wait`,
queues behind A and runs after it. Both are real `erpoa` processes, started
together. The target must equal a single run: A publishes, C finds nothing to
change.

Different entities: `erpoa sync contract` and `erpoa sync purchase` start at the
same instant (a barrier) on a project where department and employee exist, and
share the target and the reconciliation store (SQLite, so every write contends
for the database lock). Both succeed and the result equals running them one
after the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import run_sync
from tests.helpers.crash import build_sources, new_project
from tests.reliability import DEMO_SEED, DEMO_SIZE, business_rows, copy_project, scratch
from tests.reliability.figures import record

pytestmark = [pytest.mark.reliability, pytest.mark.sqlite]

TABLES = {"department": "md_department", "employee": "md_employee", "contract": "md_contract",
          "purchase": "md_purchase_line"}


def state(folder: Path, entities: list[str]) -> dict[str, Any]:
    """What a sync leaves behind for `entities`, without per-run ids and stamps."""
    urls = sqlite_urls(folder)
    out: dict[str, Any] = {}
    for entity in entities:
        out[TABLES[entity]] = business_rows(urls["target"], TABLES[entity])
        out[f"mirror {entity}"] = business_rows(urls["target"], f"erpoa_src_{entity}")
    engine = create_engine(urls["recon"])
    marks = ", ".join(f"'{e}'" for e in entities)
    with engine.connect() as conn:
        out["xref"] = sorted(tuple(r) for r in conn.execute(text(
            f"SELECT entity, source, src_id, golden_key, active FROM erpoa_xref WHERE entity IN ({marks})")))
        out["watermarks"] = sorted(tuple(r) for r in conn.execute(text(
            f"SELECT entity, source, value FROM erpoa_watermark WHERE entity IN ({marks})")))
        out["open quarantine"] = sorted(tuple(r) for r in conn.execute(text(
            "SELECT entity, source, src_id, rule FROM erpoa_quarantine "
            f"WHERE status = 'open' AND entity IN ({marks})")))
        out["differences"] = sorted((tuple(r) for r in conn.execute(text(
            "SELECT entity, class, golden_key, field, erp_value, oa_value, target_value FROM erpoa_difference "
            f"WHERE present AND entity IN ({marks})"))), key=repr)
        out["locks left"] = conn.execute(text("SELECT COUNT(*) FROM erpoa_lock")).scalar()
    engine.dispose()
    return out


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with scratch("concurrency") as folder:
        build_sources(folder / "sources", DEMO_SIZE, DEMO_SEED)
        new_project(folder / "sources", folder / "fresh")
        yield folder


def _erpoa(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`erpoa ARGS` as the console script runs it: a new interpreter calling `main()`."""
    return subprocess.Popen(
        [sys.executable, "-c", "from etl.cli.app import main; main()", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _runs(folder: Path) -> list[dict[str, Any]]:
    engine = create_engine(sqlite_urls(folder)["recon"])
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(
                "SELECT run_id, status, started_at, finished_at, pid FROM erpoa_run ORDER BY started_at")).mappings()]
    except Exception:  # the store does not exist yet
        return []
    finally:
        engine.dispose()


def test_same_entity_twice_one_runs_the_other_exits_5_or_waits(workdir: Path) -> None:
    reference_dir = workdir / "same-reference"
    config = copy_project(workdir / "fresh", reference_dir)
    summary, _ = run_sync(load_project(config), entities=["department"], full_refresh=True,
                          hooks=default_hooks(load_project(config)))
    assert summary.status == "success", summary.message
    dispose_all()
    reference = state(reference_dir, ["department"])

    folder = workdir / "same"
    config = copy_project(workdir / "fresh", folder)
    gate = folder / "release"
    args = ["sync", "department", "--full-refresh", "--config", str(config), "--json"]
    started = time.monotonic()
    a = _erpoa(args, folder, {"ERPOA_FAULT": "extract.prepared:1:pause", "ERPOA_FAULT_GATE": str(gate)})
    try:
        _wait_for(lambda: (folder / "release.paused").exists() or a.poll() is not None, 180, "sync A to hold the lock")
        assert a.poll() is None, a.communicate()
        b = _erpoa(args, folder)
        c = _erpoa([*args[:-1], "--wait", "300", "--json"], folder)
        b_out, b_err = b.communicate(timeout=180)
        # C has recorded its run (the step before taking the lock): it is queued behind A.
        _wait_for(lambda: len(_runs(folder)) >= 3, 180, "sync C to start")
        time.sleep(1.0)
        assert c.poll() is None, "sync C did not wait for the lock"
        gate.write_text("go", encoding="utf-8")
        a_out, a_err = a.communicate(timeout=180)
        c_out, c_err = c.communicate(timeout=300)
    finally:
        gate.write_text("go", encoding="utf-8")
        for proc in (a,):
            if proc.poll() is None:
                proc.kill()
    assert b.returncode == 5, (b_out, b_err)
    b_payload = json.loads(b_out)
    b_dep = b_payload["entities"][0]
    assert (b_dep["error"], b_dep["exit_code"]) == ("LockedError", 5), b_payload
    assert "another sync holds the lock" in b_dep["message"], b_payload
    assert a.returncode == 0, (a_out, a_err)
    assert c.returncode == 0, (c_out, c_err)
    a_summary, c_summary = json.loads(a_out), json.loads(c_out)
    a_dep, c_dep = a_summary["entities"][0], c_summary["entities"][0]
    assert a_dep["inserted"] > 0
    # C ran after A published: it read everything again and found nothing to change.
    assert (c_dep["inserted"], c_dep["updated"], c_dep["inactivated"]) == (0, 0, 0)
    runs = {r["run_id"]: r for r in _runs(folder)}
    a_run, c_run = runs[a_summary["run_id"]], runs[c_summary["run_id"]]
    assert str(c_run["started_at"]) <= str(a_run["finished_at"]), "C was not started while A held the lock"
    assert state(folder, ["department"]) == reference
    record(
        "test_concurrency::same_entity",
        "The same entity synced twice at once",
        "While one `erpoa sync department` holds the entity lock, a second exits with code 5 and \"another sync "
        "holds the lock\", a third with `--wait` queues and runs afterwards, finding nothing to change; target, "
        "mirror, cross-reference, watermarks and differences equal a single run; no lock is left behind.",
        processes=3,
        exit_codes={"holder": a.returncode, "no --wait": b.returncode, "--wait": c.returncode},
        rows_published_by_holder=a_dep["inserted"],
        rows_changed_by_waiter=c_dep["inserted"] + c_dep["updated"],
        double_publishes=0,
        locked_message=b_payload["message"][:160],
        seconds=round(time.monotonic() - started, 1),
    )


def _cli_child(argv: list[str], log: str, barrier: Any) -> None:
    """A forked `erpoa` process: same imports as the parent, its own output files."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    dispose_all()
    barrier.wait(timeout=60)
    sys.argv = ["erpoa", *argv]
    from etl.cli.app import main

    main()


def test_two_entities_in_parallel_equal_sequential_runs(workdir: Path) -> None:
    import multiprocessing

    base = workdir / "with-dependencies"
    config = copy_project(workdir / "fresh", base)
    summary, _ = run_sync(load_project(config), entities=["department", "employee"], full_refresh=True)
    assert summary.status == "success", summary.message
    dispose_all()

    sequential = workdir / "sequential"
    config = copy_project(base, sequential)
    for entity in ("contract", "purchase"):
        cfg = load_project(config)
        summary, _ = run_sync(cfg, entities=[entity], hooks=default_hooks(cfg))
        assert summary.status == "success", summary.message
    dispose_all()

    parallel = workdir / "parallel"
    config = copy_project(base, parallel)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    started = time.monotonic()
    children = {
        entity: ctx.Process(target=_cli_child, args=(["sync", entity, "--config", str(config), "--json"],
                                                     str(parallel / f"{entity}.log"), barrier))
        for entity in ("contract", "purchase")
    }
    for child in children.values():
        child.start()
    for child in children.values():
        child.join(300)
    outputs = {e: (parallel / f"{e}.log").read_text(encoding="utf-8") for e in children}
    for entity, child in children.items():
        assert child.exitcode == 0, outputs[entity]
    # The two runs really overlapped in time.
    runs = _runs(parallel)[-2:]
    assert max(str(r["started_at"]) for r in runs) <= min(str(r["finished_at"]) for r in runs), runs
    entities = ["contract", "purchase"]
    assert state(parallel, entities) == state(sequential, entities)
    rows = sum(len(business_rows(sqlite_urls(parallel)["target"], TABLES[e])) for e in entities)
    record(
        "test_concurrency::two_entities",
        "Two entities synced in parallel",
        "`erpoa sync contract` and `erpoa sync purchase`, started at the same instant against one SQLite target "
        "and store, both succeed; target, mirrors, cross-reference, watermarks, quarantine and differences equal "
        "the same two syncs run one after the other.",
        processes=2,
        exit_codes={e: c.exitcode for e, c in children.items()},
        rows_checked=rows,
        rows_lost=0,
        duplicates=0,
        seconds=round(time.monotonic() - started, 1),
    )
