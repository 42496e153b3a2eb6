"""The Great Expectations gate inside real syncs on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from etl.engine.pipeline import open_store, run_sync
from etl.errors import ConfigError
from tests.helpers.project import BACKENDS, execute_sql, make_project, table_checksums, target_rows, urls_for

BACKENDS3 = BACKENDS[:3]


@pytest.fixture(params=BACKENDS3)
def project(request: pytest.FixtureRequest, tmp_path: Path):
    return make_project(tmp_path / "project", urls_for(request.param, request, tmp_path))


def _edit_mapping(config, entity: str, **quality: object) -> None:
    path = config.resolve(config.mappings) / f"{entity}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["quality"] = {**data.get("quality", {}), **quality}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_bad_rows_quarantined_good_rows_published(project) -> None:
    config, manifest = project
    summary, _ = run_sync(config, full_refresh=True)
    assert summary.status == "success", summary.message
    q = open_store(config).quarantine(entity="purchase")
    negative = {f"{line['sqdh'].replace('-', '')}|{line['line_no']}" for line in manifest["negative_quantity_lines"]}
    caught = q[(q["rule"] == "expect_column_values_to_be_between") & (q["field"] == "quantity")]
    assert set(caught["golden_key"]) == negative
    published = {f"{r[0]}|{r[1]}" for r in target_rows(config, "md_purchase_line", ["request_no", "line_no"])}
    assert not negative & published
    assert len(published) > 100
    contracts = open_store(config).quarantine(entity="contract")
    pair = contracts[contracts["rule"] == "expect_column_pair_values_a_to_be_greater_than_b"]
    assert set(pair["golden_key"]) == {manifest["contract_end_before_start"]}


def test_over_threshold_publishes_nothing_and_keeps_watermark(project) -> None:
    config, _ = project
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    store = open_store(config)
    marks = (store.watermark("purchase", "erp"), store.watermark("purchase", "oa"))
    target_url = config.connection("target").sqlalchemy_url()
    before = table_checksums(target_url, ("md_purchase",))
    _edit_mapping(config, "purchase", max_quarantined_rows=0)
    summary, _ = run_sync(config, entities=["purchase"], full_refresh=True)
    result = summary.entities[0]
    assert result.status == "failed"
    assert "quality gate refused to publish" in (result.message or "")
    # Nothing was published: the figures say so (the merge's planned counts are not shown), what it read stays.
    recorded = store.entity_run(summary.run_id, "purchase")
    assert recorded is not None
    for figures in ({k: getattr(result, k) for k in ("inserted", "updated", "unchanged", "inactivated")}, recorded):
        assert [figures[k] for k in ("inserted", "updated", "unchanged", "inactivated")] == [0, 0, 0, 0], figures
    assert result.read_total > 0 and result.quarantined > 0 and recorded["quarantined"] == result.quarantined
    # The message names what was counted: every rule of the run's findings, with its number of source records.
    found = store.quarantine(run_id=summary.run_id, status=None)
    assert not found.empty
    counted = (result.message or "").split("Quarantined records counted: ", 1)[1]
    for rule, rows in found.groupby("rule"):
        n = rows.drop_duplicates(["source", "src_id"]).shape[0]
        assert f"{rule}: {n} record{'s' if n != 1 else ''} (" in counted, (rule, counted)
    assert "max_quarantined_rows=0" in (result.message or "")
    assert table_checksums(target_url, ("md_purchase",)) == before
    assert (store.watermark("purchase", "erp"), store.watermark("purchase", "oa")) == marks
    run = store.entity_run(summary.run_id, "purchase")
    assert run is not None and run["status"] == "failed"


@pytest.mark.sqlite
def test_exist_in_entity_quarantines_values_no_active_record_has(tmp_path: Path) -> None:
    """erp-oa-sync's own `expect_column_values_to_exist_in_entity` in a suite (as `expectations init` writes it for
    `references:`), here with an `entity_column` other than the key: a requisition's department must have an active
    employee. Sync and plan run it (they failed with an internal error) and quarantine what it finds."""
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, entities=["department", "employee"], full_refresh=True)
    assert first.status == "success", first.message
    # The employees of one department left (inactive in the target): its requisitions fail the expectation only.
    target = config.connection("target").sqlalchemy_url()
    execute_sql(target, "UPDATE md_employee SET _active = 0 WHERE department_code = 'D0602'")
    staffed = {str(r[0]) for r in target_rows(config, "md_employee", ["department_code", "_active"]) if r[1]}
    assert "D0602" not in staffed
    path = config.resolve(config.expectations) / "purchase.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    suite["expectations"].append({
        "type": "expect_column_values_to_exist_in_entity",
        "kwargs": {"column": "department_code", "entity": "employee", "entity_column": "department_code"},
        "meta": {},
    })
    path.write_text(json.dumps(suite, ensure_ascii=False, indent=2), encoding="utf-8")
    _edit_mapping(config, "purchase", max_quarantined_pct=100)

    plan, _ = run_sync(config, entities=["purchase"], full_refresh=True, dry_run=True)
    assert plan.status == "planned", plan.message
    summary, _ = run_sync(config, entities=["purchase"], full_refresh=True)
    assert summary.status == "success", summary.message
    found = open_store(config).quarantine(entity="purchase")
    caught = found[found["rule"] == "expect_column_values_to_exist_in_entity"]
    assert not caught.empty and set(caught["field"]) == {"department_code"}
    assert set(caught["value"].astype(str)) == {"D0602"}
    published = {str(r[0]) for r in target_rows(config, "md_purchase_line", ["department_code"]) if r[0] is not None}
    assert published <= staffed


@pytest.mark.sqlite
def test_plan_says_when_the_gate_would_refuse(tmp_path: Path) -> None:
    """`erpoa plan` decides as the sync's gate does (thresholds and batch expectations), writing nothing."""
    from typer.testing import CliRunner

    from etl.cli.app import app

    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    store_url = config.connection("recon").sqlalchemy_url()
    before = table_checksums(store_url, ("erpoa_run", "erpoa_quarantine", "erpoa_gate"))
    _edit_mapping(config, "purchase", max_quarantined_rows=0)
    plan = CliRunner().invoke(app, ["plan", "purchase", "contract", "--full-refresh", "--json",
                                    "--config", str(config.config_path)])
    assert plan.exit_code == 4, plan.output
    out = json.loads(plan.output)
    by_name = {e["entity"]: e for e in out["entities"]}
    purchase, contract = by_name["purchase"], by_name["contract"]
    assert (purchase["status"], purchase["error"]) == ("failed", "QualityGateError"), purchase
    assert "the quality gate would refuse to publish" in purchase["message"]
    assert "max_quarantined_rows=0" in purchase["message"]
    planned_rules = {row["rule"] for row in out["details"]["purchase"]["quarantined"]}
    assert planned_rules and all(f"{rule}: " in purchase["message"].split("Quarantined records counted: ")[1]
                                 for rule in planned_rules)
    assert purchase["quarantined"] > 0 and out["details"]["purchase"]["quarantined"]  # the plan's samples stay
    assert contract["status"] == "planned"
    assert table_checksums(store_url, ("erpoa_run", "erpoa_quarantine", "erpoa_gate")) == before
    _edit_mapping(config, "purchase", max_quarantined_rows=100_000)
    summary, _ = run_sync(config, entities=["purchase"], full_refresh=True, dry_run=True)
    assert summary.status == "planned" and summary.exit_code == 0


@pytest.mark.sqlite
def test_the_suites_row_count_limits_hold_on_a_full_read(tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    path = config.resolve(config.expectations) / "contract.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    count = next(e for e in suite["expectations"] if e["type"] == "expect_table_row_count_to_be_between")
    count["kwargs"] = {"min_value": 100_000}
    path.write_text(json.dumps(suite), encoding="utf-8")
    summary, _ = run_sync(config, entities=["department", "contract"], full_refresh=True)
    contract = {e.entity: e for e in summary.entities}["contract"]
    assert contract.status == "failed" and contract.exit_code == 4, contract
    assert "expect_table_row_count_to_be_between: read" in (contract.message or "")
    assert "expected at least 100000" in (contract.message or "")
    incremental, _ = run_sync(config, entities=["department", "contract"])  # changed rows only: not checked
    assert incremental.status == "success", incremental.message


@pytest.mark.sqlite
def test_an_incremental_read_counts_only_new_bad_records(tmp_path: Path) -> None:
    """A record a published run quarantined, re-read because it changed, fails again: not new bad data.

    Counted, it refused every incremental run that read it (the watermark never moved).
    """
    import sqlalchemy as sa

    config, _ = make_project(tmp_path / "project", urls_for("sqlite", None, tmp_path))
    first, _ = run_sync(config, full_refresh=True)
    assert first.status == "success", first.message
    store = open_store(config)
    held = store.quarantine(entity="employee", status="open")
    held = held[(held["source"] == "oa") & (held["rule"] == "lookup:department")]
    assert len(held), "the demo quarantines an OA employee whose department does not map"
    oa = sa.create_engine(config.connection("oa").sqlalchemy_url())
    with oa.begin() as conn:
        ids = [int(held["src_id"].iloc[0]), *[r[0] for r in conn.execute(sa.text('SELECT id FROM "HrmResource" '
                                                                                 "ORDER BY id LIMIT 2"))]]
        conn.execute(sa.text('UPDATE "HrmResource" SET modified = :now WHERE id IN (:a, :b, :c)'),
                     {"now": "2099-01-01 00:00:00", "a": ids[0], "b": ids[1], "c": ids[2]})
    again, _ = run_sync(config, entities=["employee"])
    employee = again.entities[0]
    assert employee.status == "success", employee.message  # 1 of 3 re-read rows quarantined: 33% > 10%
    assert employee.read_total >= 3
    with oa.begin() as conn:  # a new bad record in the next batch is still judged
        conn.execute(sa.text('UPDATE "HrmDepartment" SET departmentcode = :c WHERE id IN '
                             '(SELECT departmentid FROM "HrmResource" WHERE id = :i)'), {"c": "ZZ99", "i": ids[1]})
        conn.execute(sa.text('UPDATE "HrmResource" SET modified = :now WHERE id = :i'),
                     {"now": "2099-02-01 00:00:00", "i": ids[1]})
    refused, _ = run_sync(config, entities=["employee"])
    assert refused.entities[0].exit_code == 4, refused.entities[0]
    oa.dispose()


@pytest.mark.sqlite
def test_broken_suite_stops_before_any_data_is_read(tmp_path: Path) -> None:
    from etl.cli.demo_cmd import sqlite_urls

    config, _ = make_project(tmp_path / "p", sqlite_urls(tmp_path / "p"))
    path = config.resolve(config.expectations) / "employee.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    suite["expectations"].append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nickname"}})
    suite["expectations"].append({"type": "expect_column_values_to_be_awesome", "kwargs": {"column": "name"}})
    path.write_text(json.dumps(suite), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        run_sync(config, full_refresh=True)
    text = info.value.render()
    assert "employee.json" in text and "nickname" in text and "expect_column_values_to_be_awesome" in text
    assert (
        not (tmp_path / "p" / "target.db").exists()
        or table_checksums(config.connection("target").sqlalchemy_url()) == {}
    )


@pytest.mark.sqlite
def test_demo_bad_rows_name_their_expectation(tmp_path: Path) -> None:
    from etl.cli.demo_cmd import sqlite_urls

    config, manifest = make_project(tmp_path / "p", sqlite_urls(tmp_path / "p"))
    run_sync(config, full_refresh=True)
    q = open_store(config).quarantine()
    rules = set(zip(q["entity"], q["rule"], strict=True))
    assert ("employee", "expect_column_values_to_match_regex") in rules  # the invalid ID number
    assert ("purchase", "expect_column_values_to_not_be_null") in rules  # the unknown requester
    assert ("purchase", "decimal_scale") in rules  # over-precise prices, caught by the mapping
    invalid = q[(q["entity"] == "employee") & (q["rule"] == "expect_column_values_to_match_regex")]
    assert manifest["invalid_id_number"]["code"] in set(invalid["golden_key"])
