"""A source cut short is refused: a run that is not a full refresh does not inactivate more than
`max_vanished_pct` of the records the target holds from one source (a broken view, a changed filter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config.project import ProjectConfig, load_project
from etl.errors import ConfigError
from tests.engine.test_sweep_s23 import BACKENDS, MAPPING, _active, _project, _sync
from tests.helpers.project import execute_sql, replace_in


def _delete_all_but(config: ProjectConfig, *kept: str) -> None:
    names = ", ".join(f"'{k}'" for k in kept)
    execute_sql(config.connection("erp").sqlalchemy_url(), f"DELETE FROM erp_item WHERE id NOT IN ({names})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sweep_that_finds_most_records_gone_is_refused_and_a_full_refresh_accepts_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = _project(backend, request, tmp_path)
    _delete_all_but(config, "I01", "I02")  # 5 of 7 gone: 71.4%
    planned = _sync(config, dry_run=True)
    assert planned.exit_code == 4 and "would refuse" in (planned.message or ""), planned.message
    refused = _sync(config)
    assert refused.status != "success" and refused.exit_code == 4
    message = refused.message or ""
    assert "source 'erp' no longer has 5 of the 7 record(s) the target holds from it (71.4%)" in message, message
    assert "more than max_vanished_pct=50" in message and "erpoa sync item --full-refresh" in message
    assert "Nothing of this entity was published and its watermark did not move" in message
    assert list(_active(config).values()) == [True] * 7  # nothing inactivated
    again = _sync(config)  # refused again: the loss is still there
    assert again.exit_code == 4
    accepted = _sync(config, full_refresh=True)
    assert accepted.status == "success" and accepted.inactivated == 5
    assert sorted(code for code, active in _active(config).items() if active) == ["C01", "C02"]
    assert _sync(config).status == "success"  # the next incremental run finds nothing more gone


@pytest.mark.sqlite
def test_a_source_read_whole_every_run_is_judged_too_and_the_entity_may_allow_more(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A source without a cursor is read completely by every run, its deletions found by that read."""
    config = _project("sqlite", request, tmp_path, mapping=MAPPING.replace("    cursor: modified\n", ""))
    _delete_all_but(config, "I01", "I02", "I03")  # 4 of 7: 57.1%
    refused = _sync(config)
    assert refused.exit_code == 4 and "no longer has 4 of the 7 record(s)" in (refused.message or "")
    mapping = tmp_path / "project" / "mappings" / "item.yaml"
    mapping.write_text(mapping.read_text(encoding="utf-8") + "quality:\n  max_vanished_pct: 60\n", encoding="utf-8")
    allowed = _sync(load_project(tmp_path / "project" / "erpoa.yaml"))
    assert allowed.status == "success" and allowed.inactivated == 4


@pytest.mark.sqlite
def test_small_sources_and_no_limit_are_not_judged(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    config = _project("sqlite", request, tmp_path)
    path = tmp_path / "project" / "erpoa.yaml"
    replace_in(path, ("  chunk_size: 100\n", "  chunk_size: 100\n  pct_min_rows: 8\n"))
    _delete_all_but(config, "I04")
    small = _sync(load_project(path))  # 6 of 7 gone, but a source of 7 records is below pct_min_rows
    assert small.status == "success" and small.inactivated == 6
    replace_in(path, ("  pct_min_rows: 8\n", "  max_vanished_pct: null\n"))
    execute_sql(config.connection("erp").sqlalchemy_url(), "DELETE FROM erp_item")
    execute_sql(config.connection("erp").sqlalchemy_url(),
                "INSERT INTO erp_item (id, code, name, qty, modified) VALUES ('I09', 'C09', 'x', '1', '2026-06-02')")
    unlimited = _sync(load_project(path))  # the last active record gone, a new one read: no limit set
    assert unlimited.status == "success" and unlimited.inactivated == 1 and unlimited.inserted == 1


@pytest.mark.sqlite
def test_a_limit_out_of_range_is_refused_where_it_is_written(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    config = _project("sqlite", request, tmp_path)
    assert config.run.max_vanished_pct == 50  # the default
    path = tmp_path / "project" / "erpoa.yaml"
    replace_in(path, ("  chunk_size: 100\n", "  chunk_size: 100\n  max_vanished_pct: 150\n"))
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    assert "run.max_vanished_pct" in str(caught.value) and "100" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_records_read_under_new_ids_are_not_lost(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A source whose ids were all renumbered (a migrated ERP table) has the same records: every id vanished, yet the
    run stages each golden key again from that source, so nothing is lost and the run is not refused."""
    config = _project(backend, request, tmp_path)
    renumber = "CONCAT('N', id)" if backend == "mariadb" else "'N' || id"
    execute_sql(config.connection("erp").sqlalchemy_url(), f"UPDATE erp_item SET id = {renumber}")
    execute_sql(config.connection("erp").sqlalchemy_url(), "DELETE FROM erp_item WHERE id = 'NI07'")
    result = _sync(config)  # 7 ids vanished, 6 of their records read under new ids: 1 of 7 lost, under the limit
    assert result.status == "success" and result.exit_code == 0, result.message
    assert result.inactivated == 1 and result.inserted == 0
    assert [code for code, active in sorted(_active(config).items()) if not active] == ["C07"]
