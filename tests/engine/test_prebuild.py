"""A first load's mirror and cross-reference partition, built beside the merge and taken over by the publish.

`etl.engine.prebuild`, `etl.engine.mirror_swap`, `etl.engine.xref_partition`; PostgreSQL.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.demo.generate import build_demo
from etl.engine import mirror_swap, prebuild, xref_partition
from etl.engine.pipeline import open_store, run_sync
from tests.helpers.crash import TINY, compare, killed_sync, rerun, snapshot
from tests.helpers.project import make_project, target_rows

pytestmark = pytest.mark.postgres

ENTITIES = ("department", "employee", "contract", "purchase")


def _rows(url: str, statement: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted((tuple(r) for r in conn.execute(text(statement))), key=repr)
    finally:
        engine.dispose()


def _mirror(url: str, entity: str) -> list[tuple[Any, ...]]:
    columns = [c for (c,) in _rows(url, f"SELECT column_name FROM information_schema.columns "
                                        f"WHERE table_name = 'erpoa_src_{entity}' AND table_schema = current_schema()")]
    keep = ", ".join(f'"{c}"' for c in sorted(columns) if c != "_run")
    return _rows(url, f"SELECT {keep} FROM erpoa_src_{entity}")


def _shape(url: str, entity: str) -> list[tuple[Any, ...]]:
    """Index names and definitions (schema left out), constraints, and the table's comment."""
    indexes = _rows(url, f"SELECT indexname, replace(indexdef, schemaname || '.', '') FROM pg_indexes "
                         f"WHERE tablename = 'erpoa_src_{entity}' AND schemaname = current_schema()")
    constraints = _rows(url, f"SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                             f"WHERE conrelid = 'erpoa_src_{entity}'::regclass")
    comment = _rows(url, f"SELECT obj_description('erpoa_src_{entity}'::regclass, 'pg_class')")
    return [*indexes, *constraints, *comment]


def _leftovers(url: str) -> list[tuple[Any, ...]]:
    return _rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE '%_next'")


@contextmanager
def _without_swap() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prebuild, "building", _nothing)
        yield


@contextmanager
def _nothing(ctx: Any, entity: str) -> Any:
    yield


def test_first_load_swaps_in_the_mirror_built_beside_the_merge(
    tmp_path: Path, pg_url: str, pg_url_b: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same mirrors, targets and cross-reference as copying the rows in the publish; the held rows stay out."""
    real, swapped, real_adopt, adopted = mirror_swap.swap, {}, xref_partition.adopt, {}

    def swap(conn: Any, ctx: Any, entity: str) -> int | None:
        swapped[entity] = real(conn, ctx, entity)
        return swapped[entity]

    def adopt(conn: Any, ctx: Any, entity: str) -> Any:
        partition = real_adopt(conn, ctx, entity)
        adopted[entity] = None if partition is None else partition.info["rows"]
        return partition

    monkeypatch.setattr(mirror_swap, "swap", swap)
    monkeypatch.setattr(xref_partition, "adopt", adopt)
    states = {}
    for name, url in (("swapped", pg_url), ("copied", pg_url_b)):
        config, _ = make_project(tmp_path / name, {"erp": url, "oa": url, "target": url, "recon": url})
        if name == "copied":
            with _without_swap():
                summary, _ = run_sync(config, full_refresh=True)
        else:
            summary, _ = run_sync(config, full_refresh=True)
        assert summary.status == "success", summary.message
        store = open_store(config)
        held = store.quarantine()
        states[name] = {
            "mirrors": {e: _mirror(url, e) for e in ENTITIES},
            "shapes": {e: _shape(url, e) for e in ENTITIES},
            "targets": {t: target_rows(config, t) for t in ("md_department", "md_employee", "md_purchase_line")},
            "xref": _rows(url, "SELECT entity, source, src_id, golden_key, active FROM erpoa_xref"),
            "xref_shape": _rows(url, "SELECT tablename, indexname, replace(indexdef, schemaname || '.', '') "
                                     "FROM pg_indexes WHERE schemaname = current_schema() "
                                     "AND tablename LIKE 'erpoa_xref%'"),
            "held": sorted(held.loc[held["stage"].str.match(r"^(gate|integrity)"), "src_id"].astype(str)),
        }
        assert _leftovers(url) == []
        if name == "swapped":
            assert set(swapped) == set(ENTITIES) and all(n is not None for n in swapped.values()), swapped
            assert swapped == {e: len(states[name]["mirrors"][e]) for e in ENTITIES}
            links = states[name]["xref"]
            assert adopted == {e: sum(1 for r in links if r[0] == e) for e in ENTITIES}
    assert states["swapped"] == states["copied"]
    assert states["swapped"]["held"]  # the demo's planted problems: rows the swap had to take out again
    for entity in ENTITIES:
        assert states["swapped"]["mirrors"][entity]

    # A second full sync finds a mirror with rows: nothing is built, the rows are upserted as before.
    swapped.clear()
    adopted.clear()
    config = load_project(tmp_path / "swapped" / "erpoa.yaml")
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    assert swapped == {}
    assert adopted == {}
    assert {e: _mirror(pg_url, e) for e in ENTITIES} == states["copied"]["mirrors"]
    assert _leftovers(pg_url) == []


def test_a_mirror_that_is_not_plain_is_filled_in_place(tmp_path: Path, pg_url: str) -> None:
    """A grant on the mirror (say, for a reporting role) keeps it: the publish copies the rows into it."""
    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    summary, _ = run_sync(config, entities=["department"], full_refresh=True)
    assert summary.status == "success", summary.message
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM erpoa_src_department"))
        conn.execute(text("COMMENT ON TABLE erpoa_src_department IS 'kept'"))
        conn.execute(text("GRANT SELECT ON erpoa_src_department TO PUBLIC"))
        oid = conn.execute(text("SELECT 'erpoa_src_department'::regclass::oid")).scalar()
    engine.dispose()
    summary, _ = run_sync(config, entities=["department"], full_refresh=True)
    assert summary.status == "success", summary.message
    assert _rows(pg_url, "SELECT 'erpoa_src_department'::regclass::oid") == [(oid,)]
    assert _rows(pg_url, "SELECT obj_description('erpoa_src_department'::regclass, 'pg_class')") == [("kept",)]
    assert len(_mirror(pg_url, "department")) > 0
    assert _leftovers(pg_url) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "nth"),
    [("mirror.next_loaded", 1), ("mirror.next_built", 2), ("xref.next_built", 3), ("publish.mirror_swapped", 3),
     ("finalize.xref_loaded", 4)],
    ids=["mirror-mid-build", "mirror-built", "links-built", "mirror-swapped", "links-adopted"],
)
def test_killed_around_the_swap_then_rerun_equals_clean_run(
    point: str, nth: int, tmp_path: Path, pg_url: str, pg_url_b: str
) -> None:
    snapshots = {}
    for name, url in (("clean", pg_url_b), ("killed", pg_url)):
        build_demo(url, url, TINY, 7)
        config_path = write_project(tmp_path / name, {"erp": url, "oa": url, "target": url, "recon": url})
        if name == "killed":
            assert killed_sync(config_path, point, nth), f"the sync did not reach {point}:{nth}"
            dispose_all()
        rerun(config_path)
        snapshots[name] = snapshot(config_path)
        assert _leftovers(url) == []
    assert compare(snapshots["clean"], snapshots["killed"]) == ""
