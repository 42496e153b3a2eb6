"""Secrets and personal data never leak into anything the tool writes; sources are opened read-only.

A MariaDB user and a PostgreSQL role with passwords own the demo ERP (MariaDB)
and OA, target and reconciliation store (PostgreSQL). The passwords come from
the environment (`${ERP_PASSWORD}`, `${PG_PASSWORD}` in erpoa.yaml). After a full
sync with DEBUG logs in JSON, `--json` output, the reports, a failing run whose
driver error names the URL's host part, a sync whose ERP comes through an ODBC
string (`PWD={...}`) and one whose ERP comes from an Airflow Connection, every
artefact is searched: stdout, stderr, reports (HTML, XLSX parts, CSV, JSON), Data
Docs, every table of every database involved, and the error messages. No
password (raw or URL-encoded, or a fragment of it) may appear anywhere.

Personal data: values of `pii: true` fields (employee mobile and id_number) never
appear unmasked in the reports, the Data Docs, the logs or the quarantine table
(value and raw source row).
"""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from etl import logs
from etl.cli.app import app
from etl.cli.demo_cmd import write_project
from etl.config.project import ConnectionConfig, load_project
from etl.db.connect import dispose_all, engine_for
from etl.demo.generate import build_demo
from etl.engine.pipeline import open_store, run_sync
from etl.orchestration.connections import connection_config, register_secrets
from etl.report.build import write_reports
from tests.conftest import MARIADB_ADMIN, PG_ADMIN
from tests.reliability import DEMO_SEED, DEMO_SIZE
from tests.reliability.figures import record

pytestmark = pytest.mark.reliability

MARIA_PASSWORD = "S3cr3t-P@ss!"
PG_PASSWORD = "Pg0Sekr1tQ9z"
# Needles: both passwords raw and URL-encoded, and fragments on either side of the '@' (a URL whose
# password was not URL-encoded splits it there and a driver error then names the second half as the host).
NEEDLES = [MARIA_PASSWORD, quote(MARIA_PASSWORD, safe=""), "S3cr3t", "P@ss", "ss!@", "ss%21", PG_PASSWORD, "Sekr1t"]

CONFIG = """\
project: secrets
connections:
  erp: {{{erp}}}
  oa: {{url: "postgresql+psycopg://{role}:${{PG_PASSWORD}}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"}}
  target: {{url: "postgresql+psycopg://{role}:${{PG_PASSWORD}}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"}}
  recon: {{url: "postgresql+psycopg://{role}:${{PG_PASSWORD}}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"}}
mappings: mappings
expectations: expectations
reports: reports
run:
  chunk_size: 5000
  retries: 1
  retry_backoff_seconds: 0.05
"""


@dataclass
class Secured:
    """A demo project whose databases need the passwords."""

    folder: Path
    user: str
    role: str
    schema: str
    database: str
    erp_url: str
    pg_url: str

    def write_config(self, erp: str, name: str = "erpoa.yaml") -> Path:
        path = self.folder / name
        path.write_text(CONFIG.format(erp=erp, role=self.role, schema=self.schema), encoding="utf-8")
        return path


@pytest.fixture
def secured(pg_url: str, mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secured]:
    tag = uuid.uuid4().hex[:6]
    user, role = f"erpoa_t_{tag}", f"erpoa_r_{tag}"
    database = mariadb_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    schema = pg_url.rsplit("%3D", 1)[1]
    maria = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    pg = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with maria.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{MARIA_PASSWORD}'"))
            conn.execute(text(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'"))
    with pg.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'"))
        conn.execute(text(f'GRANT ALL ON SCHEMA "{schema}" TO {role}'))
    erp_url = f"mysql+pymysql://{user}:{quote(MARIA_PASSWORD, safe='')}@127.0.0.1:3306/{database}?charset=utf8mb4"
    oa_url = f"postgresql+psycopg://{role}:{PG_PASSWORD}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    build_demo(erp_url, oa_url, DEMO_SIZE, DEMO_SEED)
    write_project(tmp_path / "project")
    monkeypatch.setenv("ERP_PASSWORD", quote(MARIA_PASSWORD, safe=""))
    monkeypatch.setenv("ERP_RAW_PASSWORD", MARIA_PASSWORD)
    monkeypatch.setenv("PG_PASSWORD", PG_PASSWORD)
    try:
        yield Secured(tmp_path / "project", user, role, schema, database, erp_url, oa_url)
    finally:
        dispose_all()
        logs.setup("WARNING", "text")
        with maria.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        with pg.connect() as conn:
            conn.execute(text(f'DROP OWNED BY {role}'))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        maria.dispose()
        pg.dispose()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--log-level", "DEBUG", "--log-format", "json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def database_dump(url: str) -> str:
    """Every row of every table behind `url`, as text."""
    engine = create_engine(url)
    parts = []
    try:
        q = engine.dialect.identifier_preparer.quote
        with engine.connect() as conn:
            for name in inspect(engine).get_table_names():
                rows = conn.execute(text(f"SELECT * FROM {q(name)}")).all()
                parts.append(f"## {name}\n" + "\n".join(repr(tuple(r)) for r in rows))
    finally:
        engine.dispose()
    return "\n".join(parts)


def file_texts(folder: Path) -> dict[str, str]:
    """Text of every file under `folder`; XLSX workbooks unzipped part by part."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as book:
                for part in book.namelist():
                    out[f"{path}:{part}"] = book.read(part).decode("utf-8", "replace")
        else:
            out[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return out


def leaks(artefacts: dict[str, str], needles: list[str]) -> list[str]:
    found = []
    for name, body in artefacts.items():
        for needle in needles:
            if needle in body:
                at = body.index(needle)
                found.append(f"{needle!r} in {name}: ...{body[max(0, at - 80):at + 40]!r}...")
    return found


@dataclass
class FakeAirflowConnection:
    """The fields of an Airflow Connection that `connection_config` reads."""

    conn_id: str
    conn_type: str
    host: str
    schema: str
    login: str
    password: str
    port: int
    extra_dejson: dict[str, Any]


@pytest.mark.mariadb
@pytest.mark.postgres
@pytest.mark.odbc
def test_passwords_and_personal_data_appear_in_no_artefact(secured: Secured) -> None:
    artefacts: dict[str, str] = {}
    erp_url_entry = (f'url: "mysql+pymysql://{secured.user}:${{ERP_PASSWORD}}@127.0.0.1:3306/'
                     f'{secured.database}?charset=utf8mb4"')
    config_path = secured.write_config(erp_url_entry)

    # 1. A full sync (entities, reconciliation, approval flows writing to the ERP), DEBUG logs in JSON.
    code, out, err = cli("sync", "--config", str(config_path), "--json")
    assert code == 0, out + err
    summary = json.loads(out)
    artefacts["sync stdout"], artefacts["sync stderr"] = out, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records, "no JSON log records were emitted"
    config = load_project(config_path)
    logs.add_secrets(config.secrets())
    reports = write_reports(config, summary["run_id"])
    assert {"html", "excel", "csv", "quarantine_csv", "json"} <= set(reports)
    code, out, err = cli("status", "--config", str(config_path), "--json")
    artefacts["status"] = out + err
    code, out, err = cli("quarantine", "list", "--config", str(config_path), "--json", "--limit", "1000")
    artefacts["quarantine list"] = out + err

    # 2. Failing runs whose error would carry the URL: a password put in the environment without
    #    URL-encoding (the URL splits at its '@' and a driver error names the rest as the host), a typo in
    #    the scheme (an unparsable URL escapes URL masking), the password variable where the URL goes, and
    #    a refused connection.
    failing_messages = {}
    for label, entry in {
        "password not URL-encoded": erp_url_entry.replace("ERP_PASSWORD", "ERP_RAW_PASSWORD"),
        "scheme typo": erp_url_entry.replace("mysql+pymysql://", "mysql+pymysql:/"),
        "password as the URL": 'url: "${ERP_PASSWORD}"',
        "connection refused": erp_url_entry.replace(":3306/", ":1/"),
    }.items():
        failing = secured.write_config(entry, "failing.yaml")
        code, out, err = cli("sync", "department", "--config", str(failing), "--json")
        assert code != 0, label
        artefacts[f"failing run ({label})"] = out + err
        failing_messages[label] = json.loads(out).get("message") or ""
        assert failing_messages[label], label
        dispose_all()

    # 3. The ERP through an ODBC connection string with PWD={...}.
    odbc = secured.write_config(
        f'odbc: "Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=3306;Database={secured.database};'
        f'Uid={secured.user};Pwd={{${{ERP_RAW_PASSWORD}}}};CharSet=utf8mb4", dialect: mysql',
        "odbc.yaml")
    code, out, err = cli("sync", "department", "--config", str(odbc), "--json")
    assert code == 0, out + err
    artefacts["odbc stdout"], artefacts["odbc stderr"] = out, err
    dispose_all()

    # 4. The ERP from an Airflow Connection (the password as Airflow stores it, raw).
    airflow_conn = FakeAirflowConnection("erpoa_erp", "mysql", "127.0.0.1", secured.database, secured.user,
                                         MARIA_PASSWORD, 3306, {})
    erp_conn: ConnectionConfig = connection_config(airflow_conn)
    register_secrets([MARIA_PASSWORD, *erp_conn.secrets])
    airflow_config = config.model_copy(update={"connections": {**config.connections, "erp": erp_conn}})
    airflow_summary, _ = run_sync(airflow_config, entities=["department"], trigger="airflow")
    assert airflow_summary.status == "success", airflow_summary.message
    artefacts["airflow summary"] = json.dumps(airflow_summary.to_dict(), default=str)
    write_reports(airflow_config, airflow_summary.run_id)
    dispose_all()

    # Everything written: files of the project (reports, Data Docs), every table of both databases.
    artefacts.update(file_texts(secured.folder / "reports"))
    artefacts["postgres tables"] = database_dump(secured.pg_url)
    artefacts["mariadb tables"] = database_dump(secured.erp_url)
    datadocs = [name for name in artefacts if "/datadocs/" in name]
    assert datadocs, "no Data Docs were written"
    found = leaks(artefacts, NEEDLES)
    assert found == [], "\n".join(found)

    # Personal data: every mobile and id number the sources hold, raw and canonical.
    pii = pii_values(secured)
    assert len(pii) > 50
    public = {k: v for k, v in artefacts.items() if k not in ("postgres tables", "mariadb tables")}
    public["quarantine table"] = quarantine_dump(config)
    pii_leaks = leaks(public, sorted(pii))
    assert pii_leaks == [], "\n".join(pii_leaks[:10])
    quarantined_pii = quarantined_personal_rows(config)
    assert quarantined_pii > 0, "the demo's invalid id number should be quarantined (and masked)"
    record(
        "test_secrets::passwords_and_pii",
        "Passwords and personal data in every artefact",
        "With passwords on a MariaDB user and a PostgreSQL role (from the environment, via URL, ODBC PWD= and an "
        "Airflow Connection), no password or fragment of one appears in stdout, stderr (DEBUG JSON logs), "
        "`--json` output, error messages, reports (HTML, XLSX, CSV, JSON), Data Docs, or any table of either "
        "database; no unmasked mobile or id number appears in reports, Data Docs, logs or the quarantine table.",
        artefacts_searched=len(artefacts) + 1,
        data_docs_files=len(datadocs),
        password_needles=len(NEEDLES),
        password_leaks=0,
        pii_values_searched=len(pii),
        pii_leaks=0,
        quarantine_rows_with_pii_field=quarantined_pii,
        failing_runs={k: v.replace(f"{secured.folder}/", "")[:160] for k, v in failing_messages.items()},
    )


def pii_values(secured: Secured) -> set[str]:
    """Mobile and id numbers as the sources hold them and as the target holds them (at least 7 characters)."""
    values: set[str] = set()
    for url, sql in ((secured.erp_url, 'SELECT "cPsnMobilePhone", "cPsnIDNum" FROM hr_hi_person'),
                     (secured.pg_url, 'SELECT mobile, certificatenum FROM "HrmResource"'),
                     (secured.pg_url, "SELECT mobile, id_number FROM md_employee")):
        engine = create_engine(url)
        with engine.connect() as conn:
            if url.startswith("mysql"):
                conn.execute(text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"))
            for row in conn.execute(text(sql)):
                values.update(str(v).strip() for v in row if v is not None and len(str(v).strip()) >= 7)
        engine.dispose()
    return values


def quarantine_dump(config: Any) -> str:
    frame = open_store(config).quarantine(status=None)
    return frame[["value", "raw", "reason"]].to_csv(index=False)


def quarantined_personal_rows(config: Any) -> int:
    frame = open_store(config).quarantine(status=None)
    return int(frame["field"].isin(["mobile", "id_number"]).sum())


READ_ONLY_BACKENDS = [pytest.param("sqlite", marks=pytest.mark.sqlite),
                      pytest.param("postgres", marks=pytest.mark.postgres),
                      pytest.param("mariadb", marks=pytest.mark.mariadb)]


@pytest.mark.parametrize("backend", READ_ONLY_BACKENDS)
def test_source_connections_refuse_writes(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = {"sqlite": f"sqlite:///{tmp_path / 'erp.db'}"}.get(backend) or request.getfixturevalue(
        "pg_url" if backend == "postgres" else "mariadb_url")
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text("CREATE TABLE src (id INTEGER PRIMARY KEY, v VARCHAR(10))"))
        conn.execute(text("INSERT INTO src VALUES (1, 'a')"))
    admin.dispose()
    source = engine_for(ConnectionConfig(url=url), read_only=True)
    refused = {}
    for statement in ("INSERT INTO src VALUES (2, 'b')", "UPDATE src SET v = 'x'", "DELETE FROM src",
                      "DROP TABLE src", "CREATE TABLE other (id INTEGER)"):
        with pytest.raises(DBAPIError) as info, source.begin() as conn:
            conn.execute(text(statement))
        refused[statement.split()[0]] = str(info.value.orig).splitlines()[0][:90]
    with source.connect() as conn:
        assert conn.execute(text("SELECT id, v FROM src")).all() == [(1, "a")]
    dispose_all()
    record(f"test_secrets::{backend}::read_only_sources", f"{backend}: source connections are read-only",
           "The engine the sync reads sources through refuses INSERT, UPDATE, DELETE, DROP and CREATE "
           "(PostgreSQL default_transaction_read_only, MariaDB SET SESSION TRANSACTION READ ONLY, SQLite "
           "PRAGMA query_only); the table is unchanged.",
           writes_attempted=len(refused), writes_refused=len(refused), errors=refused)


@pytest.fixture
def password_target(mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A demo project on SQLite whose target is a MariaDB database reached as a user with a given password."""
    user = f"fixsec_{uuid.uuid4().hex[:8]}"
    database = mariadb_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    admin = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    folder = tmp_path / "project"
    target = f"mysql+pymysql://{user}:${{FIXSEC_TGT_PW}}@127.0.0.1:3306/{database}?charset=utf8mb4"
    config = write_project(folder, {"target": target})
    build_demo(f"sqlite:///{folder / 'erp.db'}", f"sqlite:///{folder / 'oa.db'}", DEMO_SIZE, DEMO_SEED)

    def with_password(password: str) -> Path:
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(text(f"CREATE USER IF NOT EXISTS '{user}'@'{host}'"))
                conn.execute(text(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY :pw"), {"pw": password})
                conn.execute(text(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'"))
        return config

    try:
        yield with_password
    finally:
        dispose_all()
        logs.setup("WARNING", "text")
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        admin.dispose()


@pytest.mark.mariadb
@pytest.mark.sqlite
def test_password_with_raw_at_after_a_slash_is_refused_before_any_connection(
    password_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "ab/cd@efgh"
    config = password_target(password)
    monkeypatch.setenv("FIXSEC_TGT_PW", password)
    code, out, err = cli("sync", "department", "--config", str(config), "--json")
    assert code == 2, out + err
    payload = json.loads(out)
    assert payload["error"] == "ConfigError"
    assert any("connections.target.url: the user:password part contains a raw '@'" in i for i in payload["issues"])
    assert "retry" not in err
    store = database_dump(f"sqlite:///{config.parent / 'recon.db'}")
    assert leaks({"stdout": out, "stderr": err, "store": store}, ["efgh", "ab/cd", "cd@"]) == []

    monkeypatch.setenv("FIXSEC_TGT_PW", quote(password, safe=""))
    code, out, err = cli("sync", "department", "--config", str(config), "--json")
    assert code == 0, out + err
    assert json.loads(out)["status"] == "success"
    store = database_dump(f"sqlite:///{config.parent / 'recon.db'}")
    assert leaks({"stdout": out, "stderr": err, "store": store}, ["efgh", "ab/cd", "ab%2Fcd"]) == []


@pytest.mark.mariadb
@pytest.mark.sqlite
def test_one_character_password_keeps_json_output_and_logs_intact(
    password_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = password_target("1")
    monkeypatch.setenv("FIXSEC_TGT_PW", "1")
    code, out, err = cli("sync", "department", "--config", str(config), "--json")
    assert code == 0, out + err
    summary = json.loads(out)
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}-[0-9a-f]{6}", summary["run_id"]), summary["run_id"]
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records
    assert "***" not in out + err
