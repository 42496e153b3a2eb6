"""Cross-reference on a PostgreSQL store: the first load of an entity COPies its links straight in,
later runs merge through a temporary table; both give the same rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from etl.engine import publish
from etl.engine.pipeline import run_sync
from tests.helpers.project import make_project

pytestmark = pytest.mark.postgres


def _links(url: str) -> set[tuple[Any, ...]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT entity, source, src_id, golden_key, active, first_run_id = last_run_id, detail, "
                "updated_at IS NOT NULL FROM erpoa_xref WHERE src_id <> 'planted'"
            )
        ).all()
    engine.dispose()
    return {tuple(r) for r in rows}


def _links_of_gold(url: str) -> set[tuple[Any, ...]]:
    """What the client-side path (`_explode_ids`) makes of the last run's gold rows of every entity."""
    engine = create_engine(url)
    out: set[tuple[Any, ...]] = set()
    with engine.connect() as conn:
        for entity in ("department", "employee", "contract", "purchase"):
            gold = pd.DataFrame(
                conn.execute(
                    text(f"SELECT _key, _ids FROM erpoa_gold_{entity} "
                         "WHERE _action IN ('insert', 'update', 'unchanged')")
                ).all(),
                columns=["golden_key", "ids"],
            )
            links = publish._explode_ids(gold, ["erp", "oa"])
            out |= {(entity, r.source, r.src_id, r.golden_key) for r in links.itertuples()}
    engine.dispose()
    return out


@pytest.mark.parametrize("in_database", [True, False], ids=["server-side", "client-side"])
def test_first_load_copies_links_straight_in_with_what_the_merge_writes(
    tmp_path: Path, pg_url: str, pg_url_b: str, monkeypatch: pytest.MonkeyPatch, in_database: bool
) -> None:
    """Both ways of cutting the links out of the gold rows: by the server when the store is the target's
    database, in pandas otherwise (here forced, as the test's store and target share a database)."""
    paths: dict[tuple[str, str], bool] = {}
    real_exit = publish._XrefLoader.__exit__
    used: set[bool] = set()

    def exit_recording(self: Any, *exc: Any) -> None:
        paths[(self.ctx.config.connection("recon").sqlalchemy_url(), self.entity)] = self.direct
        used.add(self.in_target_database())
        real_exit(self, *exc)

    monkeypatch.setattr(publish._XrefLoader, "__exit__", exit_recording)
    if not in_database:
        monkeypatch.setattr(publish._XrefLoader, "in_target_database", lambda self: False)
    configs = {}
    for name, url in (("direct", pg_url), ("merged", pg_url_b)):
        config, _ = make_project(tmp_path / name, {"erp": url, "oa": url, "target": url, "recon": url})
        configs[name] = config
    # The second store already holds one link of every entity: its first sync takes the merge path.
    run_sync(configs["merged"], entities=["department"], full_refresh=True)  # creates the store tables
    engine = create_engine(pg_url_b)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM erpoa_xref"))
        for entity in ("department", "employee", "contract", "purchase"):
            conn.execute(
                text("INSERT INTO erpoa_xref (entity, source, src_id, golden_key, active) "
                     "VALUES (:e, 'erp', 'planted', 'nowhere', true)"),
                {"e": entity},
            )
    engine.dispose()
    for config in configs.values():
        summary, _ = run_sync(config, full_refresh=True)
        assert summary.status == "success", summary.message
    direct_url = configs["direct"].connection("recon").sqlalchemy_url()
    merged_url = configs["merged"].connection("recon").sqlalchemy_url()
    assert {e: d for (u, e), d in paths.items() if u == direct_url} == dict.fromkeys(
        ("department", "employee", "contract", "purchase"), True
    )
    assert {d for (u, _), d in paths.items() if u == merged_url} == {False}
    assert used == {in_database}
    links = _links(pg_url)
    assert len(links) > 100
    assert links == _links(pg_url_b)
    assert {link[:4] for link in links} == _links_of_gold(pg_url)
    # A second run of the directly loaded store merges, and changes no link.
    paths.clear()
    again, _ = run_sync(configs["direct"], full_refresh=True)
    assert again.status == "success"
    assert set(paths.values()) == {False}
    assert _links(pg_url) == links


def test_links_of_a_record_merged_with_a_mirrored_row_keep_that_rows_id(tmp_path: Path, pg_url: str) -> None:
    """The server cuts a run's links out of its staged rows only while the mirror holds nothing older;
    a golden record merged from a row read now and a row mirrored by an earlier run links both."""
    config, _ = make_project(tmp_path / "p", {"erp": pg_url, "oa": pg_url, "target": pg_url, "recon": pg_url})
    first, _ = run_sync(config, entities=["department", "employee"], full_refresh=True)
    assert first.status == "success", first.message
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        both = conn.execute(
            text("SELECT golden_key, MAX(CASE WHEN source = 'oa' THEN src_id END) FROM erpoa_xref "
                 "WHERE entity = 'employee' GROUP BY golden_key HAVING COUNT(DISTINCT source) = 2 "
                 "ORDER BY golden_key LIMIT 1")
        ).one()
        links_before = conn.execute(
            text("SELECT source, src_id FROM erpoa_xref WHERE entity = 'employee' AND golden_key = :k"),
            {"k": both[0]},
        ).all()
        # A store that lost the entity's links: the next publish writes those of what it publishes, afresh.
        conn.execute(text("DELETE FROM erpoa_xref WHERE entity = 'employee'"))
        conn.execute(
            text('UPDATE "HrmResource" SET mobile = :m, modified = :t WHERE id = :i'),
            {"m": "13900000000", "t": datetime(2030, 1, 1), "i": int(both[1])},
        )
    second, _ = run_sync(config, entities=["employee"])
    assert second.status == "success", second.message
    with engine.connect() as conn:
        links = conn.execute(
            text("SELECT source, src_id FROM erpoa_xref WHERE entity = 'employee' AND golden_key = :k"),
            {"k": both[0]},
        ).all()
    engine.dispose()
    assert len(links_before) == 2
    assert sorted(links) == sorted(links_before)  # the ERP id, read only from the mirror, is linked too
