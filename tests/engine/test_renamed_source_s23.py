"""A source renamed or removed in an entity's mapping: its quarantine rows and its mirrored rows (xb F10, xa F13)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ProjectConfig
from etl.engine.pipeline import open_store, run_sync
from etl.store import schema as store_schema
from tests.helpers.project import make_project, sqlite_urls, target_rows


def _mapping_file(config: ProjectConfig, entity: str) -> Any:
    return config.resolve(config.mappings) / f"{entity}.yaml"


def _rename(config: ProjectConfig, entity: str, old: str, new: str) -> None:
    """Rename the source `old` of the entity `new` (the same connection), in the survivorship lists too."""
    path = _mapping_file(config, entity)
    text = path.read_text(encoding="utf-8").replace(f"\n  {old}:\n", f"\n  {new}:\n    connection: {old}\n")
    path.write_text(re.sub(rf"(?<=[\[ ]){old}(?=[\],])", new, text), encoding="utf-8")


def _remove(config: ProjectConfig, entity: str, old: str) -> None:
    """Remove the source `old` from the entity's mapping (its block and its places in the survivorship lists)."""
    path = _mapping_file(config, entity)
    text = re.sub(rf"\n  {old}:\n(    .*\n)*", "\n", path.read_text(encoding="utf-8"))
    text = re.sub(rf"(, {old}(?=\]))|((?<=\[){old}, )", "", text)
    path.write_text(text, encoding="utf-8")


def _rename_oa(config: ProjectConfig) -> None:
    _rename(config, "department", "oa", "oa2")


def _retry(config: ProjectConfig, *args: str) -> tuple[int, Any]:
    done = CliRunner().invoke(app, ["quarantine", "retry", *args, "--config", str(config.config_path), "--json"])
    try:
        return done.exit_code, json.loads(done.stdout)
    except ValueError:
        return done.exit_code, done.output


def _open_oa_rows(config: ProjectConfig, entity: str = "department") -> list[int]:
    rows = open_store(config).quarantine(entity=entity, status="open")
    ids = [int(i) for i in rows.loc[rows["source"] == "oa", "id"]]
    assert ids, "the demo quarantines OA departments"
    return ids


@pytest.mark.sqlite
def test_retry_after_a_source_was_renamed_skips_its_rows_and_replays_the_others(synced) -> None:
    config, _ = synced
    before = open_store(config).quarantine(entity="employee", status="open")
    oa_rows = [int(i) for i in before.loc[before["source"].str.contains("erp"), "id"]]  # the merge's: erp+oa
    assert oa_rows and (before["source"] == "oa").any(), "the demo quarantines merged and OA employees"
    _rename(config, "employee", "erp", "erp2")
    code, result = _retry(config, "employee")
    assert code == 0, result
    skipped = {row["id"]: row["reason"] for row in result["skipped_ids"]}
    assert set(skipped) == set(oa_rows)
    assert all("source 'erp'" in why and "employee.yaml no longer has" in why for why in skipped.values())
    assert result["replayed"] > 0
    still = open_store(config).quarantine(entity="employee", status="open")
    assert set(oa_rows) <= set(still["id"])  # a replay closes nothing it skipped


@pytest.mark.sqlite
def test_retry_of_ids_of_a_renamed_source_only_is_a_located_refusal(synced) -> None:
    config, _ = synced
    oa_rows = _open_oa_rows(config)
    _rename_oa(config)
    code, result = _retry(config, "department", "--id", str(oa_rows[0]))
    assert code == 2, result
    text = json.dumps(result, ensure_ascii=False)
    assert "internal error" not in text and "source 'oa'" in text and "no longer has" in text


@pytest.mark.sqlite
def test_a_sync_closes_the_open_rows_of_a_source_the_mapping_no_longer_has(synced) -> None:
    config, _ = synced
    oa_rows = _open_oa_rows(config)
    _rename_oa(config)
    summary, _ = run_sync(config, entities=["department"])
    assert summary.status == "success", summary.message
    rows = open_store(config).quarantine(entity="department", status=None).set_index("id")
    assert set(rows.loc[oa_rows, "status"]) == {"vanished"}
    code, result = _retry(config, "department")  # no crash on what the sync left open (rows of oa2 and erp)
    assert code in (0, 2), result


def _state(config: ProjectConfig) -> dict[str, tuple[Any, ...]]:
    rows = target_rows(config, "md_employee", ["employee_code", "name", "status", "_active", "_presence"])
    return {r[0]: tuple(r[1:]) for r in rows if r[3]}


def _removed_source_converges(config: ProjectConfig, tmp_path: Any) -> None:
    _remove(config, "employee", "oa")
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    after = _state(config)
    assert all(presence == "erp" for *_, presence in after.values()), after
    engine = create_engine(config.connection("target").sqlalchemy_url())
    with engine.connect() as conn:
        sources = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_src_employee")}
        hashes = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_ids_employee")}
    assert sources == {"erp"} and hashes <= {"erp"}
    x = store_schema.xref
    with open_store(config).engine.connect() as conn:
        live = conn.execute(select(x.c.src_id).where(x.c.entity == "employee", x.c.source == "oa", x.c.active)).all()
    assert live == []
    # The target equals a fresh full sync of the current mapping (a new project: a full refresh here would be
    # refused by the row-count band, which still counts the removed source's rows of the last complete read).
    fresh, _ = make_project(tmp_path / "fresh", sqlite_urls(tmp_path / "fresh"))
    _remove(fresh, "employee", "oa")
    summary, _ = run_sync(fresh, full_refresh=True)
    assert summary.status == "success", summary.message
    assert after == _state(fresh)


@pytest.mark.sqlite
def test_removing_a_source_drops_its_records_with_the_wiring(synced, tmp_path, monkeypatch) -> None:
    config, _ = synced
    only_oa = {k for k, v in _state(config).items() if v[-1] == "oa"}
    assert only_oa, "the demo has employees only the OA knows"
    _removed_source_converges(config, tmp_path)
    assert not only_oa & set(_state(config))


@pytest.mark.sqlite
def test_removing_a_source_drops_its_records(synced, tmp_path) -> None:
    config, _ = synced
    only_oa = {k for k, v in _state(config).items() if v[-1] == "oa"}
    _removed_source_converges(config, tmp_path)
    assert not only_oa & set(_state(config))


@pytest.mark.sqlite
def test_records_deleted_at_a_renamed_source_are_inactivated_with_the_wiring(synced, tmp_path, monkeypatch) -> None:
    """xa F13: `erp` renamed `erp2` (the same table), then a record only the ERP had is deleted there."""
    config, _ = synced
    erp_only = sorted(k for k, v in _state(config).items() if v[-1] == "erp")
    assert erp_only, "the demo has employees only the ERP knows"
    _rename(config, "employee", "erp", "erp2")
    with create_engine(config.connection("erp").sqlalchemy_url()).begin() as conn:
        conn.exec_driver_sql("DELETE FROM hr_hi_person WHERE cPsn_Num = ?", (erp_only[0],))
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    after = _state(config)
    assert erp_only[0] not in after
    assert {presence for *_, presence in after.values()} <= {"erp2", "oa", "erp2+oa"}
    with create_engine(config.connection("target").sqlalchemy_url()).connect() as conn:
        sources = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_src_employee")}
    assert sources == {"erp2", "oa"}
    fresh, _ = make_project(tmp_path / "fresh", sqlite_urls(tmp_path / "fresh"))
    _rename(fresh, "employee", "erp", "erp2")
    with create_engine(fresh.connection("erp").sqlalchemy_url()).begin() as conn:
        conn.exec_driver_sql("DELETE FROM hr_hi_person WHERE cPsn_Num = ?", (erp_only[0],))
    summary, _ = run_sync(fresh, full_refresh=True)
    assert summary.status == "success", summary.message
    assert after == _state(fresh)


def test_removing_a_source_on_each_database(department_synced: ProjectConfig, monkeypatch) -> None:
    """The same on SQLite, PostgreSQL (whose mirror key starts with the id: asked when the mappings changed) and
    MariaDB: the removed source's mirrored rows, id hashes and links go, and a second run finds nothing to do."""
    config = department_synced
    before = _departments(config)
    assert {presence for *_, presence in before.values()} == {"erp+oa"}
    _remove(config, "department", "oa")
    for _ in range(2):
        summary, _ = run_sync(config, entities=["department"])
        assert summary.status == "success", summary.message
        assert {presence for *_, presence in _departments(config).values()} == {"erp"}
        assert set(_departments(config)) == set(before)
        with create_engine(config.connection("target").sqlalchemy_url()).connect() as conn:
            sources = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_src_department")}
            hashes = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_ids_department")}
        assert sources == {"erp"} and hashes <= {"erp"}


def _departments(config: ProjectConfig) -> dict[str, tuple[Any, ...]]:
    rows = target_rows(config, "md_department", ["department_code", "name", "_active", "_presence"])
    return {r[0]: tuple(r[1:]) for r in rows if r[2]}


@pytest.mark.sqlite
@pytest.mark.parametrize("where", ["extract.prepared", "publish.mirror_upserted", "publish.committed"])
def test_a_run_stopped_anywhere_then_rerun_ends_the_same(synced, monkeypatch, where: str) -> None:
    """A removal interrupted before, inside or after the publish's transaction: the rerun converges."""
    from etl import faults

    config, _ = synced
    quarantined = _open_oa_rows(config, "employee")
    _remove(config, "employee", "oa")
    point = faults.point

    def stop(name: str) -> None:
        if name == where:
            raise KeyboardInterrupt(f"stopped at {name}")
        point(name)

    monkeypatch.setattr(faults, "point", stop)
    with pytest.raises(KeyboardInterrupt):
        run_sync(config, entities=["employee"])
    monkeypatch.setattr(faults, "point", point)
    summary, _ = run_sync(config, entities=["employee"])
    assert summary.status == "success", summary.message
    assert {presence for *_, presence in _state(config).values()} == {"erp"}
    with create_engine(config.connection("target").sqlalchemy_url()).connect() as conn:
        sources = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_src_employee")}
        hashes = {r[0] for r in conn.exec_driver_sql("select distinct _source from erpoa_ids_employee")}
    assert sources == {"erp"} and hashes <= {"erp"}
    rows = open_store(config).quarantine(entity="employee", status=None).set_index("id")
    closed = rows.loc[quarantined, ["source", "rule", "status"]]
    assert set(closed["status"]) == {"vanished"}, closed.to_string()
    x = store_schema.xref
    with open_store(config).engine.connect() as conn:
        live = conn.execute(select(x.c.src_id).where(x.c.entity == "employee", x.c.source == "oa", x.c.active)).all()
    assert live == []
