"""Hostile and broken configuration: fuzzed mapping files and erpoa.yaml, SQL in YAML values.

A seeded hypothesis fuzzer mutates the shipped mapping files, code tables and a
demo erpoa.yaml: structurally (delete, replace with hostile values, rename,
retype) and as text (dropped and doubled lines, tabs, truncation, invalid UTF-8,
recursive aliases, alias bombs, Python tags). Each case runs `erpoa mappings
check` and `erpoa sync ENTITY --json` through the CLI app. Every case must end
with success or a clear error (exit 2 with located issues for configuration
errors), never an uncaught exception, and a failed case must not have written to
the target (nor, for a configuration error, to the reconciliation store).

Identifiers from YAML are validated: no table or column name can carry SQL. A
steward's `filter:` and `query:` are SQL by design, but run on read-only
sessions: a DELETE or DROP smuggled into them cannot change the source.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from etl.cli.app import app
from etl.cli.demo_cmd import sqlite_urls
from etl.config.project import load_project
from etl.db.connect import dispose_all, engine_for
from etl.engine.pipeline import run_sync
from etl.mapping.model import IDENT, check_identifier
from tests.helpers.crash import build_sources, new_project
from tests.helpers.project import table_checksums
from tests.reliability import DEMO_SEED, DEMO_SIZE, copy_project, scratch, write_tiny_project
from tests.reliability.figures import record

pytestmark = pytest.mark.reliability

MAPPING_EXAMPLES = 150
CONFIG_EXAMPLES = 90
IDENTIFIER_EXAMPLES = 60
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
MAPPING_FILES = ["department.yaml", "employee.yaml", "contract.yaml", "purchase.yaml",
                 "codes/department.yaml", "codes/employee_status.yaml"]
ENTITY_OF = {"department.yaml": "department", "employee.yaml": "employee", "contract.yaml": "contract",
             "purchase.yaml": "purchase", "codes/department.yaml": "department",
             "codes/employee_status.yaml": "employee"}
HOSTILE = [
    "x; DROP TABLE y", 'a" OR "1"="1', "'; DELETE FROM md_employee; --", "${UNSET_RELIABILITY_VAR}",
    "${ERP_PASSWORD}", "", " ", "😀", "长" * 3000, "0101", "12:30", "yes", "null", "~", "-1", "1e999", ".nan",
    "../../../etc/passwd", "mysql+pymysql://u:literal-pw@h/db", "DSN=x;UID=u;PWD=literal-pw", "{", "[", "*nope",
    "%(x)s", "\\", "\u202e", "2026-13-45", "Asia/Nowhere", "most_recent", "lookup", "string", "decimal",
    "sqlite:///no-such-dir/x.db",
]
TEXT_SNIPPETS = [
    "a: &a [*a]\n",
    "b0: &b0 [x, x, x, x, x, x, x, x, x, x]\nb1: &b1 [*b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0]\n"
    "b2: &b2 [*b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1]\nb3: &b3 [*b2, *b2, *b2, *b2, *b2, *b2, *b2, *b2]\n"
    "b4: &b4 [*b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3, *b3]\nb5: [*b4, *b4, *b4, *b4, *b4, *b4, *b4, *b4]\n",
    "evil: !!python/object/apply:os.system ['touch /tmp/erpoa-pwned']\n",
    "key: [unclosed\n",
    "\t- tabbed\n",
    "dup: 1\ndup: 2\n",
    "when: 2026-02-30\n",
    "? [complex, key]\n: value\n",
    "deep: " + "[" * 200 + "]" * 200 + "\n",
]
ALLOWED_EXIT = {0, 1, 2, 3, 4, 6}


def invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run `erpoa ARGS` in-process (from `cwd`); fail the test on an uncaught exception or a traceback."""
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, args)
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception!r} for {args}"
    )
    assert "Traceback" not in output, output
    assert result.exit_code in ALLOWED_EXIT, (result.exit_code, output)
    return result.exit_code, result.stdout


def checksums(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    urls = sqlite_urls(folder)
    return table_checksums(urls["target"], ("md_",)), table_checksums(urls["recon"], ("erpoa_",))


def check_outcome(code: int, stdout: str, before: tuple[dict, dict], folder: Path) -> str:
    """The case's outcome class; asserts the error is clear and nothing was half-written."""
    if code == 0:
        return "valid"
    payload = json.loads(stdout)
    if payload.get("status") == "error":
        assert payload["message"].strip(), payload
        if code == 2:
            assert payload["issues"] and all(str(i).strip() for i in payload["issues"]), payload
    else:
        failed = [e for e in payload["entities"] if e["status"] != "success"]
        assert failed and all((e.get("message") or "").strip() for e in failed), payload
    after = checksums(folder)
    assert after[0] == before[0], "a failed sync changed the target"
    if code == 2:
        assert after[1] == before[1], "a configuration error wrote to the reconciliation store"
    return f"exit {code}"


# --------------------------------------------------------------------------- mutations


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


hostile_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=20),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(HOSTILE[:8]), max_size=3),
    st.dictionaries(st.sampled_from(["from", "table", "type", "x", "lookup"]), st.sampled_from(HOSTILE[:6]),
                    max_size=2),
)


def mutate_structure(draw: Any, text_in: str) -> tuple[str, str]:
    """A structural mutation of the YAML document: (label, new text)."""
    data = yaml.safe_load(text_in)
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["delete", "replace", "replace", "rename", "add", "retype"]))
    parent = _parent(data, path)
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = draw(hostile_values)
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(st.sampled_from([*HOSTILE[:4], f"{key}s", str(key).upper(), "_" + str(key)]))] = parent.pop(key)
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "quailty", "filter", "query", "schema", "pii", "__class__"]))] = draw(
            hostile_values)
    else:
        value = parent[key]
        parent[key] = [value] if not isinstance(value, list) else {"x": value}
    return f"{op} {'.'.join(map(str, path))}", yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def mutate_text(draw: Any, text_in: str) -> tuple[str, bytes]:
    """A textual mutation: (label, new bytes)."""
    lines = text_in.splitlines(keepends=True)
    op = draw(st.sampled_from(["drop_line", "double_line", "tab", "truncate", "snippet", "bytes", "indent"]))
    i = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
    if op == "drop_line":
        del lines[i]
    elif op == "double_line":
        lines.insert(i, lines[i])
    elif op == "tab":
        lines[i] = "\t" + lines[i].lstrip(" ")
    elif op == "indent":
        lines[i] = " " + lines[i]
    elif op == "snippet":
        lines.insert(i, draw(st.sampled_from(TEXT_SNIPPETS)))
    body = "".join(lines).encode("utf-8")
    if op == "truncate":
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    elif op == "bytes":
        pos = draw(st.integers(min_value=0, max_value=len(body)))
        body = body[:pos] + draw(st.sampled_from([b"\xff\xfe", b"\x00", b"\xc3", b"\x1b[2J", b"\r"])) + body[pos:]
    return f"text {op} at line {i + 1}", body


@st.composite
def mutated(draw: Any, original: str) -> tuple[str, bytes]:
    if draw(st.booleans()):
        label, body = mutate_structure(draw, original)
        return label, body.encode("utf-8")
    return mutate_text(draw, original)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A demo project on SQLite, fully synced once (so any single entity can sync on its own)."""
    with scratch("config") as folder:
        sources = build_sources(folder / "sources", DEMO_SIZE, DEMO_SEED)
        config = new_project(sources, folder / "base")
        summary, _ = run_sync(load_project(config), full_refresh=True)
        dispose_all()
        assert summary.status == "success", summary.message
        yield folder


def _fresh_copy(base: Path, name: str) -> Path:
    folder = base / name
    if folder.exists():
        shutil.rmtree(folder)
    copy_project(base / "base", folder)
    shutil.rmtree(folder / "mappings" / "flows", ignore_errors=True)
    return folder


# --------------------------------------------------------------------------- tests


@pytest.mark.sqlite
def test_fuzzed_mapping_files_end_in_success_or_a_clear_error(base: Path) -> None:
    outcomes: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    originals = {name: (base / "base" / "mappings" / name).read_text(encoding="utf-8") for name in MAPPING_FILES}

    @settings(FUZZ, max_examples=MAPPING_EXAMPLES)
    @given(data=st.data())
    def case(data: Any) -> None:
        name = data.draw(st.sampled_from(MAPPING_FILES))
        label, body = data.draw(mutated(originals[name]))
        ops[label.split()[0] if not label.startswith("text") else " ".join(label.split()[:2])] += 1
        folder = _fresh_copy(base, "case")
        (folder / "mappings" / name).write_bytes(body)
        before = checksums(folder)
        check_code, _ = invoke(["mappings", "check", "--config", str(folder / "erpoa.yaml")], folder)
        assert check_code in (0, 2)
        code, stdout = invoke(["sync", ENTITY_OF[name], "--config", str(folder / "erpoa.yaml"), "--json"], folder)
        if check_code == 2:
            assert code == 2, f"`mappings check` rejected {name} ({label}) but sync exited {code}"
        outcomes[check_outcome(code, stdout, before, folder)] += 1
        dispose_all()

    case()
    assert not Path("/tmp/erpoa-pwned").exists(), "a YAML python tag was executed"
    total = sum(outcomes.values())
    record(
        "test_hostile_config::fuzzed_mapping_files",
        "Fuzzed mapping files and code tables",
        "Seeded structural and textual mutations of the shipped mappings and code tables: every case ends in "
        "success or a clear error (configuration errors: exit 2 with located issues, the same verdict from "
        "`mappings check` and `sync`), never an uncaught exception, never a write to the target on failure.",
        cases_fuzzed=total,
        outcomes=dict(sorted(outcomes.items())),
        mutations=dict(sorted(ops.items())),
        uncaught_exceptions=0,
        partial_writes=0,
    )
    assert total == MAPPING_EXAMPLES


@pytest.mark.sqlite
def test_fuzzed_project_config_ends_in_success_or_a_clear_error(base: Path) -> None:
    outcomes: Counter[str] = Counter()
    folder0 = _fresh_copy(base, "config-base")
    original = (folder0 / "erpoa.yaml").read_text(encoding="utf-8")

    @settings(FUZZ, max_examples=CONFIG_EXAMPLES)
    @given(data=st.data())
    def case(data: Any) -> None:
        _, body = data.draw(mutated(original))
        folder = _fresh_copy(base, "config-case")
        # The copy has its own databases; point the mutated config at them, not at config-base's.
        body = body.replace(str(folder0).encode(), str(folder).encode())
        (folder / "erpoa.yaml").write_bytes(body)
        before = checksums(folder)
        code, stdout = invoke(["sync", "department", "--config", str(folder / "erpoa.yaml"), "--json"], folder)
        outcomes[check_outcome(code, stdout, before, folder)] += 1
        dispose_all()

    case()
    total = sum(outcomes.values())
    record(
        "test_hostile_config::fuzzed_project_config",
        "Fuzzed erpoa.yaml",
        "Seeded mutations of a project config (connections, folders, run settings; literal passwords, unset "
        "variables, bad URLs, wrong types): success or a clear error, never an uncaught exception, nothing "
        "written on a configuration error.",
        cases_fuzzed=total,
        outcomes=dict(sorted(outcomes.items())),
        uncaught_exceptions=0,
        partial_writes=0,
    )
    assert total == CONFIG_EXAMPLES


@pytest.mark.sqlite
def test_console_script_reports_broken_yaml_without_traceback(base: Path) -> None:
    """The same cases through a real interpreter and `main()`, as the `erpoa` console script runs them."""
    folder = _fresh_copy(base, "subprocess")
    mapping = folder / "mappings" / "department.yaml"
    original = mapping.read_text(encoding="utf-8")
    cases = {"recursive alias": original + TEXT_SNIPPETS[0], "alias bomb": original + TEXT_SNIPPETS[1],
             "tab": "\t" + original, "python tag": original + TEXT_SNIPPETS[2]}
    seen = {}
    for label, body in cases.items():
        mapping.write_text(body, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-c", "from etl.cli.app import main; main()", "mappings", "check", "--config",
             str(folder / "erpoa.yaml")],
            capture_output=True, text=True, timeout=120, cwd=folder, check=False,
        )
        assert proc.returncode == 2, (label, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "error:" in proc.stderr, proc.stderr
        seen[label] = next(line.strip() for line in proc.stderr.splitlines() if "department.yaml" in line)
    assert not Path("/tmp/erpoa-pwned").exists()
    record("test_hostile_config::console_script", "Broken YAML through the console script",
           "A recursive alias, an alias bomb, a tab and a Python object tag, checked by a real `erpoa` process: "
           "exit 2 with a located message, no traceback, nothing executed.",
           cases=len(cases), messages=seen)


@pytest.mark.sqlite
@pytest.mark.parametrize("role", ["recon", "target", "erp"])
def test_unreachable_database_is_a_clear_error(role: str, base: Path) -> None:
    folder = _fresh_copy(base, f"unreachable-{role}")
    config = folder / "erpoa.yaml"
    body = config.read_text(encoding="utf-8")
    config.write_text(body.replace(f"{folder}/{role}.db", "no-such-dir/x.db"), encoding="utf-8")
    before = checksums(folder)
    code, stdout = invoke(["sync", "department", "--config", str(config), "--json"], folder)
    assert code == 2
    payload = json.loads(stdout)
    assert payload["error"] == "ConfigError", payload
    (issue,) = payload["issues"]
    assert issue.startswith(f"connections.{role}: sqlite:///"), issue
    assert "of this SQLite file does not exist; create it or fix the path" in issue
    assert checksums(folder) == before  # found before the run: neither the target nor the store is touched


# --------------------------------------------------------------------------- SQL in YAML values

INJECTED = {
    "table": ("table: Department", "table: 'x; DROP TABLE y'"),
    "column": ("name: {from: cDepName", "name: {from: 'a\" OR \"1\"=\"1'"),
    "id": ("id: cDepCode", "id: 'cDepCode; DELETE FROM Department'"),
    "cursor": ("cursor: dModifyDate", "cursor: 'dModifyDate--'"),
    "target table": ("table: md_department", "table: 'md_department; DROP TABLE md_employee'"),
    "schema": ("table: HrmDepartment", "table: HrmDepartment\n    schema: 'main\"; DROP TABLE x; --'"),
}


@pytest.mark.sqlite
@pytest.mark.parametrize("where", list(INJECTED))
def test_sql_in_identifiers_is_rejected_before_any_connection(where: str, base: Path) -> None:
    folder = _fresh_copy(base, f"ident-{where.replace(' ', '-')}")
    mapping = folder / "mappings" / "department.yaml"
    old, new = INJECTED[where]
    body = mapping.read_text(encoding="utf-8")
    assert old in body
    mapping.write_text(body.replace(old, new, 1), encoding="utf-8")
    before = checksums(folder)
    code, _ = invoke(["mappings", "check", "--config", str(folder / "erpoa.yaml")], folder)
    assert code == 2
    code, stdout = invoke(["sync", "department", "--config", str(folder / "erpoa.yaml"), "--json"], folder)
    assert code == 2
    assert "is not a plain identifier" in json.loads(stdout)["message"]
    assert checksums(folder) == before


@pytest.mark.unit
def test_accepted_identifiers_carry_no_sql() -> None:
    """Property: whatever text is offered, an accepted identifier contains only identifier characters."""
    accepted = rejected = 0

    @settings(FUZZ, max_examples=IDENTIFIER_EXAMPLES)
    @given(value=st.one_of(st.text(min_size=1, max_size=40), st.sampled_from([*HOSTILE, "ok_name", "s.t", "名称"])))
    def case(value: str) -> None:
        nonlocal accepted, rejected
        try:
            check_identifier(value, "table")
        except ValueError:
            rejected += 1
            return
        accepted += 1
        assert all(IDENT.match(part) for part in value.split("."))
        assert not re.search(r"[\s'\";`\-\\/*()=]", value)

    case()
    record("test_hostile_config::identifiers", "Identifiers from YAML",
           "Property test: any text accepted as a table or column name is a plain identifier (letters, digits, "
           "_, $, #, CJK; schema.table) and is quoted by the dialect; nothing else passes.",
           cases_fuzzed=accepted + rejected, accepted=accepted, rejected=rejected)


WRITE_ATTEMPTS = {
    "filter with DELETE": ("filter", "1=1); DELETE FROM erp_item; --"),
    "filter with DROP": ("filter", "1=1); DROP TABLE erp_item; --"),
    "filter with UPDATE": ("filter", "1=1); UPDATE erp_item SET name = 'pwned'; --"),
    "filter calling a stored function that deletes": ("filter", "purge_items() = 1"),
    "query that is a DELETE": ("query", "DELETE FROM erp_item"),
    "query with a DELETE in a CTE": ("query", "WITH d AS (DELETE FROM erp_item RETURNING id, code) "
                                              "SELECT id, code FROM d"),
    "query that unlocks the session": ("query", "SELECT id, code FROM erp_item WHERE "
                                                "set_config('default_transaction_read_only', 'off', false) <> ''"),
}


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def writable_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    backend = request.param
    url = {"sqlite": f"sqlite:///{tmp_path / 'erp.db'}", "postgres": None, "mariadb": None}[backend] or \
        request.getfixturevalue("pg_url" if backend == "postgres" else "mariadb_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE erp_item (id INTEGER PRIMARY KEY, code VARCHAR(20), name VARCHAR(50))"))
        conn.execute(text("INSERT INTO erp_item VALUES (1, 'A', 'one'), (2, 'B', 'two'), (3, 'C', 'three')"))
        # A function with side effects that already exists in the source database: one expression in a
        # filter is enough to call it, so only the read-only session stands between it and the data.
        if backend == "postgres":
            conn.execute(text("CREATE FUNCTION purge_items() RETURNS integer LANGUAGE sql VOLATILE AS "
                              "'DELETE FROM erp_item; SELECT 1'"))
        elif backend == "mariadb":
            conn.execute(text("CREATE FUNCTION purge_items() RETURNS INT MODIFIES SQL DATA "
                              "BEGIN DELETE FROM erp_item; RETURN 1; END"))
    engine.dispose()
    yield backend, url
    dispose_all()


def _item_mapping(kind: str, sql: str) -> str:
    source = (f"    table: erp_item\n    filter: {json.dumps(sql)}\n" if kind == "filter"
              else f"    query: {json.dumps(sql)}\n")
    return (f"entity: item\nkey: code\nfields:\n  code: {{type: string, length: 20}}\nsources:\n  erp:\n{source}"
            "    id: id\n    fields:\n      code: code\ntarget:\n  table: md_item\n")


def test_filter_and_query_cannot_modify_the_source(writable_source: tuple[str, str], tmp_path: Path) -> None:
    backend, url = writable_source
    results = {}
    for n, (label, (kind, sql)) in enumerate(WRITE_ATTEMPTS.items()):
        if ("set_config" in sql and backend != "postgres") or ("purge_items" in sql and backend == "sqlite"):
            continue
        folder = tmp_path / f"p{n}"
        urls = {**sqlite_urls(folder), "erp": url, "oa": url}
        write_tiny_project(folder, urls, {"item": _item_mapping(kind, sql)})
        code, stdout = invoke(["sync", "item", "--config", str(folder / "erpoa.yaml"), "--json"], folder)
        payload = json.loads(stdout)
        message = payload.get("message") or "; ".join(e.get("message") or "" for e in payload.get("entities", []))
        results[label] = f"exit {code}: {message[:160]}"
        if label == "query that unlocks the session":
            assert code == 0  # it only reads; what matters is that the next statement is still read-only
            continue
        assert code in (1, 2) and message, (label, payload)
        dispose_all()
    if backend == "postgres":
        # The unlocking query ran on a pooled read-only connection; set_config is undone with its
        # transaction, so the next statement on that same pool is still refused.
        unlock = list(WRITE_ATTEMPTS).index("query that unlocks the session")
        engine = engine_for(load_project(tmp_path / f"p{unlock}" / "erpoa.yaml").connection("erp"), read_only=True)
        with pytest.raises(DBAPIError, match="read-only transaction"), engine.connect() as conn:
            conn.execute(text("DELETE FROM erp_item"))
        results["write on the pooled connection after the unlock attempt"] = "refused: read-only transaction"
    dispose_all()
    # After every attempt the source is untouched.
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, code, name FROM erp_item ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "A", "one"), (2, "B", "two"), (3, "C", "three")]
    record(f"test_hostile_config::{backend}::read_only_sql", f"{backend}: DELETE/DROP in filter: and query:",
           "SQL written into `filter:` or `query:` (stacked statements, a data-modifying CTE, an attempt to switch "
           "the session to read-write) fails with a clear message and leaves the source table untouched.",
           attempts=len(results), source_rows_changed=0, outcomes=results)
