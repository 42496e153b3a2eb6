"""SIGKILL a sync at seeded random (fault point, nth hit) pairs, rerun, and compare with an uninterrupted run.

Two scenarios, half the trials each: a first full sync into an empty target, and
an incremental sync after seeded changes on both sources (updates, inserts,
deletes, late rows). The candidate pairs are every (point, n) that an
uninterrupted run of the same scenario actually reaches, so every trial kills
the sync somewhere real: mid-extract, mid-merge, inside the publish transaction,
during the bookkeeping after it, in any of the four entities. The rerun is the
operator's plain `erpoa sync`; the target, mirror, watermarks and
cross-reference must then equal the uninterrupted run's exactly.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.engine import pipeline
from etl.engine.pipeline import run_sync
from tests.helpers.crash import build_sources, compare, killed_sync, new_project, rerun, snapshot
from tests.reliability import (
    DEMO_SEED,
    DEMO_SIZE,
    SourceChanger,
    copy_project,
    count_fault_points,
    killed_in_fork,
    lift_percentage_gates,
    on_fault_point,
    scratch,
)
from tests.reliability.figures import record

SEED = int(os.environ.get("ERPOA_FAULT_SEED", "20261124"))
TRIALS = int(os.environ.get("ERPOA_FAULT_TRIALS", "50"))

pytestmark = [pytest.mark.reliability, pytest.mark.sqlite]


@dataclass
class Scenario:
    """A project state to crash from, and what an uninterrupted sync from it leaves behind."""

    name: str
    base: Path
    full_refresh: bool
    hits: dict[str, int]
    reference: dict
    entity_of: dict[tuple[str, int], str]


def _reference(name: str, base: Path, work: Path, full_refresh: bool) -> Scenario:
    """Run the scenario uninterrupted: its snapshot, how often it reaches each point, and in which entity."""
    config = copy_project(base, work / f"ref-{name}")
    current = {"entity": "(run)"}
    entity_of: dict[tuple[str, int], str] = {}
    real = pipeline.sync_entity

    def tracking(ctx: Any, entity: str, hooks: Any = ()) -> Any:
        current["entity"] = entity
        try:
            return real(ctx, entity, hooks)
        finally:
            current["entity"] = "(run)"

    with pytest.MonkeyPatch.context() as patch, count_fault_points() as hits, \
            on_fault_point(lambda point, n: entity_of.__setitem__((point, n), current["entity"])):
        patch.setattr(pipeline, "sync_entity", tracking)
        summary, _ = run_sync(load_project(config), full_refresh=full_refresh)
    dispose_all()
    assert summary.status == "success", summary.message
    return Scenario(name, base, full_refresh, dict(hits), snapshot(config), entity_of)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with scratch("faults") as folder:
        yield folder


@pytest.fixture(scope="module")
def scenarios(workdir: Path) -> list[Scenario]:
    sources = build_sources(workdir / "sources", DEMO_SIZE, DEMO_SEED)
    fresh = workdir / "base-full"
    new_project(sources, fresh)
    changed = workdir / "base-incremental"
    config = lift_percentage_gates(new_project(sources, changed))
    summary, _ = run_sync(load_project(config), full_refresh=True)
    dispose_all()
    assert summary.status == "success", summary.message
    changer = SourceChanger(changed, random.Random(SEED))
    changer.cycle()
    changer.cycle()
    return [_reference("full", fresh, workdir, True), _reference("incremental", changed, workdir, False)]


def plan_trials(scenario: Scenario, rng: random.Random, n: int) -> list[tuple[str, int]]:
    """n (point, nth) pairs the scenario reaches: every point once first (random nth), then random others."""
    pairs = [(p, k) for p, count in scenario.hits.items() for k in range(1, count + 1)]
    points = sorted(scenario.hits)
    rng.shuffle(points)
    chosen = [(p, rng.randint(1, scenario.hits[p])) for p in points]
    rest = [pair for pair in pairs if pair not in chosen]
    rng.shuffle(rest)
    chosen += rest
    while len(chosen) < n:  # more trials than distinct pairs: repeat some
        chosen.append(rng.choice(pairs))
    return chosen[:n]


def test_sigkill_at_seeded_points_then_rerun_equals_clean_run(scenarios: list[Scenario], workdir: Path) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    per = math.ceil(TRIALS / len(scenarios))
    divergences: list[str] = []
    not_reached: list[str] = []
    by_point: Counter[str] = Counter()
    by_scenario: Counter[str] = Counter()
    by_entity: Counter[str] = Counter()
    trials = 0
    for scenario in scenarios:
        for i, (point, nth) in enumerate(plan_trials(scenario, rng, per)):
            config = copy_project(scenario.base, workdir / f"trial-{scenario.name}-{i}")
            if not killed_in_fork(config, point, nth, full_refresh=scenario.full_refresh):
                not_reached.append(f"{scenario.name} {point}:{nth}")
                continue
            rerun(config)
            difference = compare(scenario.reference, snapshot(config))
            if difference:
                divergences.append(f"{scenario.name} {point}:{nth}: {difference}")
            trials += 1
            by_point[point] += 1
            by_scenario[scenario.name] += 1
            by_entity[scenario.entity_of.get((point, nth), "?")] += 1
    # One trial through the real console entry point and ERPOA_FAULT, as an operator's process would die.
    full = scenarios[0]
    point, nth = rng.choice([(p, k) for p, c in full.hits.items() for k in range(1, c + 1)])
    config = new_project(workdir / "sources", workdir / "trial-cli")
    cli_killed = killed_sync(config, point, nth)
    if cli_killed:
        rerun(config)
        difference = compare(full.reference, snapshot(config))
        if difference:
            divergences.append(f"cli {point}:{nth}: {difference}")
        trials += 1
        by_scenario["full (CLI subprocess)"] += 1
    record(
        "test_process_faults::test_sigkill_at_seeded_points_then_rerun_equals_clean_run",
        "SIGKILL at seeded random fault points, then a plain rerun",
        "After a SIGKILL at any reached (point, nth) pair, across all four entities and every stage, a plain "
        "`erpoa sync` leaves target, mirror, watermarks and cross-reference identical to an uninterrupted run: "
        "no lost rows, no duplicates, no stuck pending watermarks.",
        seed=SEED,
        trials=trials,
        faults_injected=trials,
        divergences=len(divergences),
        not_reached=len(not_reached),
        distinct_points_hit=len(by_point),
        candidate_pairs={s.name: sum(s.hits.values()) for s in scenarios},
        trials_by_scenario=dict(by_scenario),
        trials_by_entity=dict(sorted(by_entity.items())),
        trials_by_point=dict(sorted(by_point.items())),
        seconds=round(time.monotonic() - started, 1),
    )
    assert not not_reached, f"the sync did not reach {not_reached}"
    assert cli_killed, f"the CLI sync did not die at {point}:{nth}"
    assert trials >= TRIALS
    assert divergences == [], "\n".join(divergences)
