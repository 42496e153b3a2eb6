"""The Airflow DAG's `start_run` lists every problem of erpoa.yaml, the mapping files and the expectation suites in
one ConfigError, as `erpoa sync` does (`etl.engine.preflight.check_project`): no layer hides the next one's."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.cli.demo_cmd import write_project
from etl.errors import ConfigError
from tests.airflow.helpers import airflow_home_fixture  # noqa: F401

pytestmark = [pytest.mark.airflow, pytest.mark.sqlite]

KNOWN = ("department", "employee", "contract", "purchase")


def _break(path: Path, old: str, new: str) -> int:
    """Replace the first `old` of the file by `new`; returns the line of the change."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def _start_run(params: dict[str, object]) -> pytest.ExceptionInfo[Exception]:
    from airflow.sdk.exceptions import AirflowFailException

    from etl.orchestration import tasks

    with pytest.raises(AirflowFailException) as failed:
        tasks.start_run(params, dag_id="erpoa_master_data", dag_run="manual__every", started=None, known_entities=KNOWN)
    return failed


def test_a_broken_setting_mapping_and_suite_fail_start_run_in_one_error(airflow_home: Path, tmp_path: Path) -> None:
    config = write_project(tmp_path)  # no database is built: nothing may be connected to
    line = _break(config, "  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  chunk_sise: 10\n") + 1
    mapping_line = _break(tmp_path / "mappings" / "department.yaml", "[nfkc, trim]", "[nfkc, trimm]")
    suite = tmp_path / "expectations" / "employee.json"
    suite_line = _break(suite, '"column": "employee_code"', '"column": "employe_code"')

    failed = _start_run({"config_path": str(config)})

    cause = failed.value.__cause__
    assert isinstance(cause, ConfigError), repr(cause)  # terminal: AirflowFailException, no retry
    issues = [str(i) for i in cause.issues]
    expected = [
        f"{config}:{line}:3 run.chunk_sise: ",
        f"mappings/department.yaml:{mapping_line}:",
        f"{suite}:{suite_line} expectations[1].kwargs.column: ",
    ]
    for start in expected:
        found = [i for i in issues if i.startswith(start)]
        assert found, (start, issues)
        assert found[0] in str(failed.value), str(failed.value)  # the task's message names all three
    assert any("trimm" in i for i in issues) and any("employe_code" in i for i in issues), issues
    assert not list(tmp_path.glob("*.db"))  # no store, no source, no target was opened


def test_an_entity_outside_the_dag_is_listed_with_the_other_problems(airflow_home: Path, tmp_path: Path) -> None:
    config = write_project(tmp_path)
    line = _break(config, "  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  retries: -1\n") + 1
    entity = (tmp_path / "mappings" / "department.yaml").read_text(encoding="utf-8")
    entity = entity.replace("entity: department", "entity: unit", 1).replace("md_department", "md_unit")
    (tmp_path / "mappings" / "unit.yaml").write_text(entity, encoding="utf-8")  # a mapped entity the DAG lacks

    failed = _start_run({"config_path": str(config), "entities": ["unit", "departmnet"]})

    cause = failed.value.__cause__
    assert isinstance(cause, ConfigError), repr(cause)
    issues = [str(i) for i in cause.issues]
    assert [i for i in issues if i.startswith(f"{config}:{line}:12 run.retries: ")], issues
    assert "entities unit have no task group in this DAG; it syncs department, employee, contract, purchase" in issues
    assert [i for i in issues if "unknown entity 'departmnet'; did you mean 'department'?" in i], issues
    assert not list(tmp_path.glob("*.db"))
