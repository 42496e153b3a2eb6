"""`erpoa mappings check`: exit codes, output forms, folder resolution and `--against-db`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.demo.generate import DemoSize, build_demo

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "mappings"
BROKEN = Path(__file__).resolve().parent / "broken"
ENTITIES = "entities department, employee, contract, purchase"


def invoke(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `erpoa <args>` run in-process."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def copy_mappings(tmp_path: Path, *broken: str) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("flows"))
    for name in broken:
        shutil.copy(BROKEN / name, folder / Path(name).name)
    return folder


@pytest.mark.unit
def test_clean_folder_exits_0_with_a_summary() -> None:
    code, out, err = invoke("mappings", "check", str(SHIPPED))
    assert code == 0, err
    assert out.startswith(f"ok {SHIPPED}: {ENTITIES}; code tables contract_kind, contract_status, department")
    assert "mapping version " in out and not err


@pytest.mark.unit
def test_a_file_argument_checks_its_folder() -> None:
    code, out, _ = invoke("mappings", "check", str(SHIPPED / "employee.yaml"))
    assert code == 0 and f"ok {SHIPPED}:" in out


@pytest.mark.unit
def test_problems_go_to_stderr_and_exit_2(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "several_errors.yaml")
    code, out, err = invoke("mappings", "check", str(folder))
    assert code == 2 and not out
    assert err.splitlines()[0] == "error: 4 problem(s) in the configuration:"
    assert "  mappings/several_errors.yaml:5:55 fields.supplier_code.nullable: expected true or false" in err


@pytest.mark.unit
def test_json_output_for_success_and_failure(tmp_path: Path) -> None:
    code, out, _ = invoke("mappings", "check", str(SHIPPED), "--json")
    assert code == 0
    ok = json.loads(out)
    assert ok["status"] == "ok"
    assert ok["checked"][0]["entities"] == ["department", "employee", "contract", "purchase"]
    assert len(ok["checked"][0]["version"]) == 12

    folder = copy_mappings(tmp_path, "unknown_top_level_key.yaml")
    code, out, _ = invoke("mappings", "check", str(folder), "--json")
    assert code == 2
    error = json.loads(out)
    assert (error["status"], error["error"], error["exit_code"]) == ("error", "ConfigError", 2)
    assert error["issues"] == [
        "mappings/unknown_top_level_key.yaml:16:1 quailty: unknown key 'quailty'; did you mean 'quality'? "
        "allowed keys: entity, description, version, key, fields, sources, survivorship, target, depends_on, "
        "deletion, quality, partition_rows"
    ]


@pytest.mark.unit
def test_without_paths_the_configs_mappings_folder_is_checked(tmp_path: Path) -> None:
    copy_mappings(tmp_path, "unknown_connection.yaml")
    config = tmp_path / "erpoa.yaml"
    urls = sqlite_urls(tmp_path)
    config.write_text(
        "connections:\n"
        + "".join(f"  {name}: {{url: '{url}'}}\n" for name, url in urls.items())
        + "mappings: mappings\n",
        encoding="utf-8",
    )
    code, _, err = invoke("mappings", "check", "--config", str(config))
    assert code == 2
    assert "unknown_connection.yaml:9:17 sources.erp.connection: connection 'srm' not found" in err
    # A folder argument is checked against the config's connection names too (a pre-commit hook's form).
    code, _, err = invoke("mappings", "check", str(tmp_path / "mappings"), "--config", str(config))
    assert code == 2 and "connection 'srm' not found" in err
    # Without a config only the folder itself is checked.
    code, _, err = invoke("mappings", "check", str(tmp_path / "mappings"), "--config", str(tmp_path / "none.yaml"))
    assert code == 0, err


@pytest.mark.unit
def test_without_paths_or_config_the_mappings_folder_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_mappings(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, _ = invoke("mappings", "check")
    assert code == 0 and out.startswith("ok mappings:")


@pytest.mark.unit
def test_against_db_needs_the_project_config(tmp_path: Path) -> None:
    code, _, err = invoke("mappings", "check", str(SHIPPED), "--against-db", "--config", str(tmp_path / "none.yaml"))
    assert code == 2
    assert "--against-db needs the project config" in err


@pytest.mark.unit
def test_the_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    """The real entry point, in a subprocess: a date YAML cannot build used to escape as a ValueError."""
    folder = copy_mappings(tmp_path)
    (folder / "codes" / "extra.yaml").write_text("entries:\n  - {code: X, valid_from: 2026-02-30}\n", "utf-8")
    script = Path(sys.executable).with_name("erpoa")
    env = {k: v for k, v in os.environ.items() if k != "ERPOA_DEBUG"}
    command = [str(script), "mappings", "check", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.splitlines() == [
        "error: 1 problem(s) in the configuration:",
        "  mappings/codes/extra.yaml:2:27: invalid value: '2026-02-30' looks like a date but is not one "
        "(day is out of range for month); fix it, or quote it to keep it as text",
    ]


# --------------------------------------------------------------------------- --against-db on the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small SQLite demo project (its own copy of the mappings); returns its erpoa.yaml."""
    folder = tmp_path_factory.mktemp("check-demo")
    urls = sqlite_urls(folder)
    build_demo(urls["erp"], urls["oa"], DemoSize(departments=12, employees=40, requisitions=10, contracts=5), seed=5)
    yield write_project(folder, urls)
    from etl.db.connect import dispose_all

    dispose_all()


@pytest.mark.sqlite
def test_against_db_passes_on_the_demo(demo: Path) -> None:
    code, out, err = invoke("mappings", "check", "--against-db", "--config", str(demo))
    assert code == 0, err
    assert f"mappings: {ENTITIES}" in out


@pytest.mark.sqlite
def test_against_db_reports_a_missing_column_where_it_is_mapped(demo: Path, tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path)
    employee = folder / "employee.yaml"
    employee.write_text(
        employee.read_text(encoding="utf-8").replace("from: cPsn_Name,", "from: cPsnName,"), encoding="utf-8"
    )
    code, _, err = invoke("mappings", "check", str(folder), "--against-db", "--config", str(demo))
    assert code == 2
    assert (
        "mappings/employee.yaml:26:20 sources.erp.fields.name.from: column 'cPsnName' not found in hr_hi_person; "
        "columns there: cPsn_Num, cPsn_Name" in err
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "args", [["mappings", "suggest", "employe"], ["expectations", "init", "employe"], ["reconcile", "employe"]]
)
def test_an_unknown_entity_argument_is_named_as_such(args: list[str], tmp_path: Path) -> None:
    config = write_project(tmp_path, sqlite_urls(tmp_path))
    code, _, err = invoke(*args, "--config", str(config))
    assert code == 2, err
    assert "command-line argument ENTITY: unknown entity 'employe'; did you mean 'employee'?" in " ".join(err.split())


@pytest.mark.unit
def test_check_reports_an_unknown_entity_in_run_entities(tmp_path: Path) -> None:
    config = write_project(tmp_path, sqlite_urls(tmp_path))
    text = config.read_text(encoding="utf-8")
    text = text.replace("run:\n", "run:\n  entities: [department, employe]\n", 1)
    config.write_text(text, encoding="utf-8")
    line = next(n for n, body in enumerate(text.splitlines(), 1) if "employe]" in body)
    column = text.splitlines()[line - 1].index("employe]") + 1
    for command in (["mappings", "check"], ["sync"], ["plan"]):  # the sync and plan stop before reading data
        code, _, err = invoke(*command, "--config", str(config))
        assert code == 2, (command, err)
        assert (
            f"{config}:{line}:{column} run.entities[1]: unknown entity 'employe'; did you mean 'employee'?"
            in " ".join(err.split())
        ), (command, err)


@pytest.mark.unit
@pytest.mark.parametrize(("value", "traceback"), [("0", False), ("false", False), ("1", True)])
def test_erpoa_debug_off_values_keep_tracebacks_hidden(
    value: str, traceback: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ERPOA_DEBUG=0` means off: an internal error is a message, not a traceback."""
    from etl.cli import app as cli

    def bug() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", bug)
    monkeypatch.setenv("ERPOA_DEBUG", value)
    if traceback:
        with pytest.raises(RuntimeError):
            cli.main()
        return
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 1
    assert "ERPOA_DEBUG=1 for the traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------- what a steward checks, and where


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p")


@pytest.mark.unit
def test_static_checks_need_no_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mappings check` and `expectations check` connect to nothing: unset `${VAR}`s do not stop them."""
    lines = project.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  oa:"):
            lines[i] = '  oa: {url: "postgresql+psycopg://u:${ERPOA_T_OA_PW}@h/db"}'
        if line.startswith("  target:"):
            lines[i] = '  target: {url: "${ERPOA_T_TARGET_URL}"}'
    project.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.delenv("ERPOA_T_OA_PW", raising=False)
    monkeypatch.delenv("ERPOA_T_TARGET_URL", raising=False)
    monkeypatch.chdir(project.parent)
    for command in (("mappings", "check"), ("expectations", "check")):
        code, out, err = invoke(*command)
        assert code == 0 and out.startswith("ok "), (command, err)
    code, _, err = invoke("status")  # it connects: the variables are needed
    assert code == 2 and "ERPOA_T_OA_PW is not set" in err and "ERPOA_T_TARGET_URL is not set" in err
    code, _, err = invoke("mappings", "check", "--against-db")
    assert code == 2 and "ERPOA_T_OA_PW is not set" in err


@pytest.mark.unit
@pytest.mark.parametrize("where", ["codes/department.yaml", "codes", "flows/purchase_order.yaml", "flows"])
def test_a_code_table_or_flow_path_checks_its_mapping_folder(project: Path, where: str) -> None:
    code, out, err = invoke("mappings", "check", str(project.parent / "mappings" / where))
    assert code == 0, err
    assert out.startswith(f"ok {project.parent / 'mappings'}: {ENTITIES}")


@pytest.mark.unit
def test_mappings_check_reports_the_flows_too(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flow files share the code tables and transforms: a mistake in one is a mistake of the mapping folder."""
    flow = project.parent / "mappings" / "flows" / "purchase_order.yaml"
    flow.write_text(flow.read_text(encoding="utf-8").replace("strip_zeros", "strip_zero"), encoding="utf-8")
    monkeypatch.chdir(project.parent)
    for args in (("mappings", "check"), ("mappings", "check", "mappings")):
        code, _, err = invoke(*args)
        assert code == 2, args
        assert "mappings/flows/purchase_order.yaml:" in err
        assert "transform 'strip_zero' not found; did you mean 'strip_zeros'?" in err


@pytest.mark.unit
def test_a_broken_config_and_a_broken_mapping_are_listed_together(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = project.read_text(encoding="utf-8")
    project.write_text(text.replace("run:\n", "run:\n  retries: -1\n", 1), encoding="utf-8")
    employee = project.parent / "mappings" / "employee.yaml"
    employee.write_text(employee.read_text(encoding="utf-8").replace("length: 50", "lenght: 50", 1), encoding="utf-8")
    monkeypatch.chdir(project.parent)
    code, _, err = invoke("mappings", "check")
    assert code == 2
    assert "erpoa.yaml:" in err and "run.retries: expected a whole number from 0 to 20, got -1" in err
    assert "mappings/employee.yaml:" in err and "unknown key 'lenght'; did you mean 'length'?" in err
