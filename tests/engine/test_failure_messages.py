"""What a failed run says: the error first, the notes of the run apart from it; who was skipped for whom."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config.project import load_project
from etl.engine.pipeline import run_sync
from tests.helpers.project import make_project, replace_in, urls_for


@pytest.mark.sqlite
def test_a_failed_entity_says_its_error_then_its_notes_and_dependants_say_why_they_were_skipped(
    tmp_path: Path,
) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    replace_in(config.resolve(config.mappings) / "department.yaml", ("from: cDepName", "from: cDepNam"))
    config = load_project(config.config_path)
    summary, _ = run_sync(config)  # incremental: the mappings changed since the last sync, which a note says
    by_name = {e.entity: e for e in summary.entities}
    message = by_name["department"].message or ""
    error, _, notes = message.partition(" Also: ")
    assert "cDepNam" in error and error.endswith("."), message
    assert notes.startswith("the mappings changed since department was last synced"), message
    assert ".;" not in message
    assert by_name["employee"].message == "skipped: department failed"
    assert by_name["purchase"].message == "skipped: department failed and employee skipped"
    assert ".;" not in (summary.message or "")
