"""SQLite files named relative to erpoa.yaml, as its other paths are; a store the config names wrongly is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project
from tests.helpers.project import TINY, make_project, urls_for

pytestmark = pytest.mark.sqlite


def _relative(config_path: Path) -> None:
    """Rewrite the project's SQLite URLs as paths relative to its folder."""
    text = config_path.read_text(encoding="utf-8")
    folder = str(config_path.parent.parent)  # the files lie beside the project folder (`urls_for`)
    config_path.write_text(text.replace(f"sqlite:///{folder}/", "sqlite:///../"), encoding="utf-8")


def _moved(tmp_path: Path, connection: str, old: str, new: str) -> Path:
    """A tiny SQLite project whose `connection` names another file (`old` replaced by `new` in its URL)."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)
    path = config.config_path
    url = config.connection(connection).sqlalchemy_url()
    path.write_text(path.read_text(encoding="utf-8").replace(url, url.replace(old, new)), encoding="utf-8")
    return path


def test_relative_sqlite_files_are_beside_the_config_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path), size=TINY)
    _relative(config.config_path)
    assert "sqlite:///../" in config.config_path.read_text(encoding="utf-8")
    elsewhere = tmp_path / "cron"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_project(config.config_path)
    assert loaded.connection("erp").sqlalchemy_url() == f"sqlite:///{tmp_path / 'project' / '..' / 'erp.db'}"
    done = CliRunner().invoke(app, ["sync", "department", "--json", "--config", str(config.config_path)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["entities"][0]["inserted"] > 0
    assert list(elsewhere.iterdir()) == []  # no new, empty database in the working directory
    status = CliRunner().invoke(app, ["status", "--json", "--config", str(config.config_path)])
    assert status.exit_code == 0 and json.loads(status.stdout)["runs"], status.output


def test_a_store_in_a_folder_that_does_not_exist_is_an_error_for_the_reading_commands(tmp_path: Path) -> None:
    path = _moved(tmp_path, "recon", "/recon.db", "/missing/recon.db")
    for args in (["status"], ["reconcile", "list"], ["quarantine", "list"]):
        done = CliRunner().invoke(app, [*args, "--config", str(path)])
        assert done.exit_code == 2, (args, done.output)
        assert "missing of this SQLite file does not exist" in done.output, (args, done.output)


def test_a_mistyped_sqlite_source_is_refused_and_no_file_is_made(tmp_path: Path) -> None:
    path = _moved(tmp_path, "erp", "/erp.db", "/erp_typo.db")
    done = CliRunner().invoke(app, ["sync", "--config", str(path)])  # entities, then the flows, which write to erp
    assert done.exit_code == 2, done.output
    assert "erp_typo.db does not exist; fix the path (a source is read, never created)" in done.output
    assert not (tmp_path / "erp_typo.db").exists()
