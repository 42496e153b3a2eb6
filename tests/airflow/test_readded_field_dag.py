"""A field removed from a mapping and mapped again, synced by the Airflow DAG: its publish task records the fields
it published (as `erpoa sync` does, through the same `publish_and_finalize`), and its `prepare` task finds the field
mapped again and forgets the watermarks, so that its extract tasks read the entity completely and fill the column.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from etl.config.project import ProjectConfig, load_project
from etl.engine.pipeline import run_sync
from etl.store import schema as s
from tests.airflow.helpers import airflow_home_fixture, load_dag, run_dag, task_states  # noqa: F401
from tests.helpers.project import replace_in, source_sql, target_rows, tiny_sqlite_project

pytestmark = [pytest.mark.airflow, pytest.mark.sqlite]

FIELD = "  updated_at: {type: datetime, compare: false}\n"
LEADER = "  leader: {type: string, length: 20}\n"
SOURCE = "      is_leaf: {from: bDepEnd, transforms: [to_boolean]}\n"
LEADER_SOURCE = "      leader: {from: cDepLeader, transforms: [trim]}\n"


def _dag_sync(config: ProjectConfig) -> dict[str, object]:
    """Sync department with the DAG; returns its entity-run row in the store."""
    dag_run = run_dag(load_dag(), {"config_path": str(config.config_path), "entities": ["department"]})
    assert dag_run.state == "success", task_states(dag_run)
    engine = create_engine(config.connection("recon").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(s.entity_runs).where(s.entity_runs.c.entity == "department").order_by(
                    s.entity_runs.c.run_id.desc()).limit(1)
            ).mappings().one()
        return dict(row)
    finally:
        engine.dispose()


def _recorded(config: ProjectConfig) -> list[str]:
    """The fields the entity's last publish wrote, as the store records them."""
    engine = create_engine(config.connection("recon").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            return list(json.loads(conn.execute(select(s.published_fields.c.field_names)).scalar_one())["fields"])
    finally:
        engine.dispose()


def _erp(config: ProjectConfig, statement: str, **params: object) -> list[tuple[object, ...]]:
    return source_sql(config, "erp", statement, **params)


def test_the_dag_refills_a_field_mapped_again(airflow_home: Path, tmp_path: Path) -> None:
    path = tiny_sqlite_project(tmp_path)
    mapping = path.parent / "mappings" / "department.yaml"
    summary, ctx = run_sync(load_project(path), entities=["department"], full_refresh=True)
    ctx.close()
    assert summary.status == "success", summary.message

    replace_in(mapping, (FIELD, FIELD + LEADER), (SOURCE, SOURCE + LEADER_SOURCE))
    config = load_project(path)
    _dag_sync(config)
    assert "leader" in _recorded(config)
    leaders = dict(target_rows(config, "md_department", ["department_code", "leader"]))
    code, leader = next((c, v) for c, v in sorted(leaders.items()) if v and list(leaders.values()).count(v) == 1)
    (erp_code,) = [r[0] for r in _erp(config, 'SELECT "cDepCode" FROM "Department" WHERE trim("cDepLeader") = :v',
                                      v=leader)]

    replace_in(mapping, (FIELD + LEADER, FIELD), (SOURCE + LEADER_SOURCE, SOURCE))
    config = load_project(path)
    _erp(config, 'UPDATE "Department" SET "cDepLeader" = \'NEWLEADER\', "dModifyDate" = datetime(\'now\') '
                 'WHERE "cDepCode" = :code', code=erp_code)
    _erp(config, 'UPDATE "Department" SET "dModifyDate" = datetime(\'now\', \'+1 day\') WHERE "cDepCode" <> :code',
         code=erp_code)
    _dag_sync(config)
    assert "leader" not in _recorded(config)
    assert dict(target_rows(config, "md_department", ["department_code", "leader"]))[code] == leader

    replace_in(mapping, (FIELD, FIELD + LEADER), (SOURCE, SOURCE + LEADER_SOURCE))
    config = load_project(path)
    row = _dag_sync(config)  # no source change since the last run
    assert row["message"] == "field leader is mapped again: department is read completely to fill it"
    assert dict(target_rows(config, "md_department", ["department_code", "leader"]))[code] == "NEWLEADER"
    assert "leader" in _recorded(config)
    again = _dag_sync(config)
    assert (again["inserted"], again["updated"], again["message"]) == (0, 0, None)
