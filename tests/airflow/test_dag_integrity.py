"""Every DAG file imports cleanly, touches no database, file or connection while parsed, and has the expected shape."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.airflow.helpers import DAG_ID, DAGS, REPO, airflow_env, airflow_home_fixture, load_dag  # noqa: F401

pytestmark = pytest.mark.airflow

ENTITIES = ("department", "employee", "contract", "purchase")
PREVIOUS = {"department": (), "employee": ("department",), "contract": ("employee",), "purchase": ("employee",)}
STAGES = ("prepare", "extract", "plan_partitions", "prebuild", "merge_validate", "publish", "reconcile")

# Parses dags/ in a fresh interpreter in which opening a database connection, a socket,
# an Airflow Connection or Variable raises, and records every file opened.
PARSE_SCRIPT = r"""
import builtins, io, json, socket, sys
import airflow  # Airflow sets up its own metadata engine on import, before anything is patched
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Connection, Variable
import sqlalchemy, sqlalchemy.engine, sqlalchemy.engine.create

touched, opened = [], []

def refuse(what):
    def refused(*args, **kwargs):
        touched.append(what)
        raise RuntimeError(what + " called while parsing DAGs")
    return refused

sqlalchemy.create_engine = sqlalchemy.engine.create_engine = refuse("sqlalchemy.create_engine")
sqlalchemy.engine.create.create_engine = refuse("sqlalchemy.create_engine")
socket.socket.connect = refuse("socket.connect")
socket.socket.connect_ex = refuse("socket.connect_ex")
socket.create_connection = refuse("socket.create_connection")
Connection.get = refuse("Connection.get")
Variable.get = refuse("Variable.get")
real_open = builtins.open

def tracking_open(file, *args, **kwargs):
    opened.append(str(file))
    return real_open(file, *args, **kwargs)

builtins.open = io.open = tracking_open
before = set(sys.modules)
bag = DagBag(sys.argv[1])
builtins.open = io.open = real_open
print("RESULT " + json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {str(k): v for k, v in bag.import_errors.items()},
    "touched": touched,
    "opened": opened,
    "new_modules": sorted(set(sys.modules) - before),
}))
"""


def parse_in_isolation(home: Path, folder: Path, workdir: Path) -> dict[str, Any]:
    """Parse `folder` in a fresh interpreter that refuses databases, sockets, Connections and Variables."""
    env = {
        **os.environ,
        **airflow_env(home),
        "ERPOA_CONFIG": str(workdir / "erpoa.yaml"),
        "PYTHONPATH": str(REPO),
        "AIRFLOW_CONN_ERPOA_ERP": "postgres://u:secret@192.0.2.1:5432/erp",
    }
    done = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(folder)],
        check=False,
        env=env,
        cwd=str(workdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"parse failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def parsed_in_isolation(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return parse_in_isolation(airflow_home, DAGS, tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def dag_bag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


@pytest.fixture(scope="module")
def dag(airflow_home: Path) -> Any:
    return load_dag()


def test_every_dag_file_imports(parsed_in_isolation: dict[str, Any]) -> None:
    assert parsed_in_isolation["import_errors"] == {}
    assert DAG_ID in parsed_in_isolation["dag_ids"]
    files = [p for p in DAGS.glob("*.py") if not p.name.startswith("_")]
    assert len(parsed_in_isolation["dag_ids"]) >= len(files)


def test_parsing_touches_no_database_connection_or_project_file(parsed_in_isolation: dict[str, Any]) -> None:
    assert parsed_in_isolation["touched"] == []
    project_files = [
        p
        for p in parsed_in_isolation["opened"]
        if Path(p).name == "erpoa.yaml"
        or (Path(p).is_absolute() and Path(p).is_relative_to(REPO) and not Path(p).is_relative_to(DAGS))
    ]
    assert project_files == []


def test_the_isolation_catches_a_dag_that_connects_while_parsed(airflow_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "bad_dag.py").write_text(
        "from airflow.sdk import Variable, dag\n"
        "import sqlalchemy\n"
        "try:\n    sqlalchemy.create_engine('sqlite://')\nexcept RuntimeError:\n    pass\n"
        "try:\n    Variable.get('x')\nexcept RuntimeError:\n    pass\n"
        "open(__file__.replace('bad_dag.py', '../erpoa.yaml'), 'a').close()\n"
        "@dag(schedule=None)\ndef bad():\n    pass\nbad()\n",
        encoding="utf-8",
    )
    result = parse_in_isolation(airflow_home, folder, tmp_path)
    assert result["touched"] == ["sqlalchemy.create_engine", "Variable.get"]
    assert any(Path(p).name == "erpoa.yaml" for p in result["opened"])


def test_parsing_imports_no_engine_pandas_or_great_expectations(parsed_in_isolation: dict[str, Any]) -> None:
    heavy = [
        m
        for m in parsed_in_isolation["new_modules"]
        if m.split(".")[0] in ("pandas", "great_expectations") or m.startswith(("etl.engine", "etl.db"))
    ]
    assert heavy == []


def test_every_dag_has_tags_retries_no_catchup_schedule_and_docs(dag_bag: Any) -> None:
    assert not dag_bag.import_errors
    assert dag_bag.dags
    for dag_id, dag in dag_bag.dags.items():
        assert dag.tags, dag_id
        assert dag.catchup is False, dag_id
        assert dag.doc_md and dag.doc_md.strip(), dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_every_dag_declares_its_schedule(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("dag", "DAG")
    ]
    assert calls, f"{path.name} defines no DAG"
    for call in calls:
        assert "schedule" in {k.arg for k in call.keywords}, f"{path.name}: pass schedule= explicitly"


def test_schedule_is_2am_shanghai_without_catchup(dag: Any) -> None:
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timezone) == "Asia/Shanghai"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.doc_md and "erpoa_master_data" in dag.doc_md


def test_schedule_can_be_changed_or_disabled_by_environment(airflow_home: Path) -> None:
    assert load_dag(ERPOA_SCHEDULE="30 1 * * 1-5").timetable.expression == "30 1 * * 1-5"
    assert not load_dag(ERPOA_SCHEDULE="none").timetable.can_be_scheduled


def test_retries_back_off_exponentially(dag: Any) -> None:
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay is not None


def test_params(dag: Any) -> None:
    params = {k: dag.params[k] for k in dag.params}
    assert params["entities"] == []  # run.entities of erpoa.yaml, else every mapped entity
    assert params["full_refresh"] is False
    assert params["dry_run"] is False
    assert params["config_path"].endswith("erpoa.yaml")
    assert params["connections"] == {}  # ERPOA_CONN_ID_<NAME> of the worker, else erpoa_<name>


def expected_upstreams() -> dict[str, set[str]]:
    expected: dict[str, set[str]] = {
        "start_run": set(),
        "plan": {"start_run"},
        "report": {"start_run", "plan", "contract.reconcile", "purchase.reconcile"},
        "finish_run": {"start_run", "plan", "report"},
    }
    for entity in ENTITIES:

        def t(stage: str, entity: str = entity) -> str:
            return f"{entity}.{stage}"

        expected[t("prepare")] = {"start_run", *(f"{p}.reconcile" for p in PREVIOUS[entity])}
        expected[t("extract")] = {"start_run", t("prepare")}
        expected[t("plan_partitions")] = {"start_run", t("extract")}
        expected[t("merge_validate")] = {"start_run", t("plan_partitions")}
        expected[t("prebuild")] = {"start_run", t("plan_partitions")}
        expected[t("publish")] = {"start_run", t("extract"), t("merge_validate"), t("prebuild")}
        expected[t("reconcile")] = {"start_run", t("publish")}
    return expected


def test_task_graph_shape(dag: Any) -> None:
    actual = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert actual == expected_upstreams()


def test_trigger_rules_and_mapping(dag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    all_done = {t.task_id for t in dag.tasks if t.trigger_rule == "all_done"}
    assert all_done == {"report", "finish_run", *(f"{e}.prepare" for e in ENTITIES)}
    mapped = {t.task_id for t in dag.tasks if isinstance(t, MappedOperator)}
    assert mapped == {f"{e}.{s}" for e in ENTITIES for s in ("extract", "merge_validate")}


def test_publish_emits_the_entity_asset_named_after_the_mapped_target_table(dag: Any) -> None:
    for entity in ENTITIES:
        mapping = yaml.safe_load((REPO / "mappings" / f"{entity}.yaml").read_text(encoding="utf-8"))
        table = mapping["target"]["table"]
        outlets = dag.get_task(f"{entity}.publish").outlets
        assert [a.uri for a in outlets] == [f"erpoa://target/{table}"]
    others = [t for t in dag.tasks if not t.task_id.endswith(".publish")]
    assert all(not t.outlets for t in others)


def test_dag_serializes_for_the_scheduler(dag: Any) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(dag)
    restored = DagSerialization.from_dict(data)
    assert set(restored.task_dict) == set(expected_upstreams())
