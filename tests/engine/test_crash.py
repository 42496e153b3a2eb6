"""SIGKILL a sync at 24 distinct points (mid-extract, mid-merge, mid-publish, mid-bookkeeping); rerun; compare.

After every crash, a plain rerun must leave the target, the mirror, the watermarks
and the cross-reference identical to an uninterrupted run: no duplicates, no lost rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.crash import build_sources, compare, killed_sync, new_project, rerun, snapshot

POINTS = [
    ("sync.start", 1),
    ("extract.prepared", 1),
    ("extract.chunk_staged", 1),
    ("extract.source_done", 2),
    ("extract.vanished_marked", 1),
    ("extract.watermark_pending", 2),
    ("merge.start", 1),
    ("merge.gold_written", 1),
    ("gate.decided", 2),
    ("publish.begin", 1),
    ("publish.upserted", 1),
    ("publish.upserted", 2),
    ("publish.inactivated", 2),
    ("publish.mirror_deleted", 3),
    ("publish.mirror_upserted", 2),
    ("publish.mirror_upserted", 4),
    ("publish.committed", 1),
    ("publish.committed", 4),
    ("finalize.watermarks", 2),
    ("finalize.xref_chunk", 3),
    ("finalize.resolved", 1),
    ("entity.cleaned", 2),
    ("entity.recorded", 3),
    ("run.finished", 1),
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="module")
def reference(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    config = new_project(sources, tmp_path_factory.mktemp("clean"))
    rerun(config)
    return snapshot(config)


@pytest.mark.sqlite
@pytest.mark.slow
@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[f"{p}:{n}" for p, n in POINTS])
def test_killed_then_rerun_equals_clean_run(point: str, nth: int, sources: Path, reference: dict,
                                            tmp_path: Path) -> None:
    config = new_project(sources, tmp_path / "p")
    assert killed_sync(config, point, nth), f"the sync did not reach {point}:{nth}"
    rerun(config)
    assert compare(reference, snapshot(config)) == ""
    assert {k: v for k, v in reference.items() if k.startswith("uncovered_ids_")} == {
        f"uncovered_ids_{entity}": 0 for entity in ("department", "employee", "contract", "purchase")
    }
