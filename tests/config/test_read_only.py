"""`read_only: true` on a connection is a guard: nothing the sync or a flow writes may go through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.errors import ConfigError
from etl.flows import load_flows
from etl.mapping.loader import load_mappings
from etl.orchestration import connections as airflow_conns
from tests.airflow.helpers import airflow_home_fixture  # noqa: F401

pytestmark = pytest.mark.unit


def _project(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    config = write_project(tmp_path / "p")
    if edit is not None:
        text = config.read_text(encoding="utf-8")
        assert edit[0] in text, edit[0]
        config.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    return config


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def test_read_only_sources_load(tmp_path: Path) -> None:
    config = _project(tmp_path)
    text = re.sub(r'(  (erp|oa):\s+\{url: "[^"]+")\}', r"\1, read_only: true}", config.read_text(encoding="utf-8"))
    config.write_text(text, encoding="utf-8")
    loaded = load_project(config)
    assert loaded.connection("erp").read_only and loaded.connection("oa").read_only
    load_mappings(loaded.resolve(loaded.mappings), connections=loaded.connections)  # sources are read, not written


def test_read_only_store_is_located(tmp_path: Path) -> None:
    config = _project(tmp_path)
    text = config.read_text(encoding="utf-8").replace('  recon:  {url: "', '  recon:  {read_only: true, url: "')
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_project(config)
    line = _line_of(config, "recon:")
    located = [str(i).split(": ", 1)[0] for i in caught.value.issues]
    assert located == [f"{config}:{line}:23 connections.recon.read_only"]
    assert "remove `read_only: true` from the recon connection" in caught.value.render()
    result = CliRunner().invoke(app, ["sync", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert not (config.parent / "recon.db").exists()


def test_mapping_target_through_read_only_connection_is_located(tmp_path: Path) -> None:
    config = _project(tmp_path, ('target: {url: "', 'target: {read_only: true, url: "'))
    loaded = load_project(config)
    with pytest.raises(ConfigError) as caught:
        load_mappings(loaded.resolve(loaded.mappings), connections=loaded.connections)
    issues = [i for i in caught.value.issues if i.path == "target.connection"]
    assert {Path(i.file).stem for i in issues} == {"department", "employee", "contract", "purchase"}, issues
    assert all("connection 'target' is marked `read_only: true`" in i.message for i in issues)
    assert all("point this at a read-write connection" in i.message for i in issues)
    purchase = next(i for i in issues if Path(i.file).stem == "purchase")
    assert purchase.line == _line_of(config.parent / "mappings/purchase.yaml", "target:")  # the default connection
    result = CliRunner().invoke(app, ["sync", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "target.connection: connection 'target' is marked `read_only: true`" in result.output
    assert not (config.parent / "target.db").exists()


def test_flow_writing_through_read_only_fallback_is_located(tmp_path: Path) -> None:
    config = _project(tmp_path, ('erp:    {url: "', 'erp:    {read_only: true, url: "'))
    with pytest.raises(ConfigError) as caught:
        load_flows(load_project(config))
    issues = [i for i in caught.value.issues if i.path == "target.fallback_connection"]
    assert sorted(Path(i.file).name for i in issues) == ["contract_archive.yaml", "purchase_order.yaml"]
    flow = config.parent / "mappings/flows/purchase_order.yaml"
    assert issues[1].line == _line_of(flow, "fallback_connection: erp ")
    assert "but this flow writes its ERP documents through it" in issues[0].message
    assert not [i for i in caught.value.issues if i.path.startswith("writeback")]  # oa is not read-only


def test_airflow_recon_with_read_only_extra_is_refused(monkeypatch: pytest.MonkeyPatch, airflow_home: Path) -> None:
    # with the session's AIRFLOW_HOME: Airflow imported here first would keep the default home's settings (its DAG
    # folder) for the DAG runs of later tests
    monkeypatch.setenv("AIRFLOW_CONN_ERPOA_RECON", "postgres://u@db.invalid:5432/recon?read_only=true")
    with pytest.raises(ConfigError) as caught:
        airflow_conns.airflow_connections({"recon": "erpoa_recon"})
    assert str(caught.value).startswith(
        "Airflow connection 'erpoa_recon' (recon): the reconciliation store is written by every run"
    )
    monkeypatch.setenv("AIRFLOW_CONN_ERPOA_ERP", "postgres://u@db.invalid:5432/erp?read_only=true")
    assert airflow_conns.airflow_connections({"erp": "erpoa_erp"})["erp"].read_only  # a source may be
