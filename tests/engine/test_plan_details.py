"""What `erpoa plan` shows of the updates it would make."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.engine.pipeline import run_sync
from etl.engine.plan import plan_details
from tests.helpers.project import make_project, urls_for

pytestmark = pytest.mark.sqlite


def test_a_reactivation_shows_as_a_change_of_active(tmp_path: Path) -> None:
    """A typo in `inactive_values` re-activates the leavers: the plan's samples must show it, not `changes: {}`."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    path = config.resolve(config.mappings) / "employee.yaml"
    text = path.read_text(encoding="utf-8")
    assert "inactive_values: [left, retired, invalid]" in text
    typo = text.replace("inactive_values: [left, retired, invalid]", "inactive_values: [lfet, retired, invalid]")
    path.write_text(typo, encoding="utf-8")
    summary, ctx = run_sync(config, entities=["employee"], full_refresh=True, dry_run=True)
    try:
        assert summary.entities[0].updated > 0, summary.entities[0]
        updates = plan_details(ctx, "employee", samples=50)["updates"]
    finally:
        ctx.close()
    assert updates and all(u["changes"] == {"_active": {"old": False, "new": True}} for u in updates), updates
