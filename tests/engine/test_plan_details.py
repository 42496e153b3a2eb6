"""What `erpoa plan` shows of the updates it would make."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.engine.pipeline import run_sync
from etl.engine.plan import plan_details
from tests.helpers.project import make_project, urls_for

pytestmark = pytest.mark.sqlite


def test_a_reactivation_shows_as_a_change_of_active(tmp_path: Path) -> None:
    """Dropping `left` from `inactive_values` re-activates the leavers: the plan's samples must show it, not
    `changes: {}`."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    path = config.resolve(config.mappings) / "employee.yaml"
    text = path.read_text(encoding="utf-8")
    assert "inactive_values: [left, retired, invalid]" in text
    path.write_text(text.replace("inactive_values: [left, retired, invalid]", "inactive_values: [retired, invalid]"),
                    encoding="utf-8")
    summary, ctx = run_sync(config, entities=["employee"], full_refresh=True, dry_run=True)
    try:
        assert summary.entities[0].updated > 0, summary.entities[0]
        updates = plan_details(ctx, "employee", samples=50)["updates"]
    finally:
        ctx.close()
    assert updates and all(u["changes"] == {"_active": {"old": False, "new": True}} for u in updates), updates


def test_a_refused_entity_keeps_its_figures_and_a_changed_mapping_is_noted(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from etl.cli.app import app
    from etl.engine.pipeline import open_store

    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    path = config.resolve(config.mappings) / "purchase.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["quality"] = {**data.get("quality", {}), "max_quarantined_rows": 0}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    refused, _ = run_sync(config, entities=["purchase"], full_refresh=True)
    purchase = refused.entities[0]
    assert (purchase.status, purchase.exit_code) == ("failed", 4)
    assert purchase.read_total > 0 and purchase.quarantined > 0  # what it read and set aside, not zeros
    stored = open_store(config).entity_run(refused.run_id, "purchase")
    assert stored is not None and stored["read_total"] == purchase.read_total
    assert stored["quarantined"] == purchase.quarantined

    # The mappings changed since the last sync: an incremental plan says that what it does not read keeps
    # the old mapping; a full refresh re-maps everything and needs no note.
    plan = CliRunner().invoke(app, ["plan", "department", "--config", str(config.config_path)])
    assert plan.exit_code == 0, plan.output
    text = " ".join(plan.output.split())
    assert "department: the mappings changed since department was last synced" in text
    assert "`erpoa sync department --full-refresh` re-maps them" in text
    full, _ = run_sync(config, entities=["department"], full_refresh=True, dry_run=True)
    assert full.entities[0].message is None
    # Per entity: purchase failed above, so its last sync is the first one, of the old mapping too.
    synced, _ = run_sync(config, entities=["department"])
    assert "mappings changed since department" in (synced.entities[0].message or "")
    after, _ = run_sync(config, entities=["department"])  # synced with this mapping now
    assert after.entities[0].message is None
    employee, _ = run_sync(config, entities=["employee"])  # not synced since the change: still noted
    assert "mappings changed since employee was last synced" in (employee.entities[0].message or "")
