"""Fixes of session 22 in the connection layer: ODBC text decoding, ODBC connection errors, DEBUG logs.

Real servers and real ODBC drivers (Debian's odbc-mariadb and odbc-postgresql), as tests/db/test_odbc.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, select
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import ConnectionConfig, mask_secrets
from etl.db.connect import dispose_all, name_connections
from etl.db.extract import ExtractRequest, iter_rows, probe_columns
from etl.db.write import insert_frame, upsert_select
from etl.errors import ErpOaError, SourceUnavailableError, classify_db_error, is_transient_db_error
from etl.logs import redact_with
from etl.mapping.model import SourceSpec
from tests.helpers.project import replace_in, tiny_sqlite_project
from tests.reliability.test_secrets import NEEDLES, Secured, cli, secured  # noqa: F401 - `secured` is a fixture

#: Texts whose UTF-8 is longer than their UTF-16: the MariaDB driver cut them short (高芳怡 -> 高芳).
NAMES = ["高芳怡", "天津盛达IT设备年度供货协议", "王五", "abc", "姚国宇 ", "😀x"]


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    dispose_all()


def _driver(name: str) -> None:
    pyodbc = pytest.importorskip("pyodbc")
    if name not in pyodbc.drivers():
        pytest.fail(f"ODBC driver '{name}' is not registered; run `make system-deps` (odbc-postgresql, odbc-mariadb)")


def _maria_odbc(mariadb_url: str, *, port: int = 3306, password: str = "") -> str:
    database = urlparse(mariadb_url).path.lstrip("/")
    # No CharSet: the tester's (and the docs') connection strings name none.
    return f"Driver={{MariaDB Unicode}};Server=127.0.0.1;Port={port};Database={database};UID=root;PWD={{{password}}}"


def _pg_odbc(pg_url: str, *, port: int = 5432, password: str = "") -> str:
    schema = parse_qs(urlparse(pg_url).query)["options"][0].split("=", 1)[1]
    return (
        f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={port};Database=test;UID=postgres;"
        f"ConnSettings=SET search_path TO {schema};PWD={password}"
    )


def _people(url: str) -> None:
    engine = create_engine(url)
    people = Table("people", MetaData(), Column("id", String(40), primary_key=True), Column("姓名", String(60)))
    people.create(engine)
    with engine.begin() as c:
        c.execute(people.insert(), [{"id": f"键{i}", "姓名": name} for i, name in enumerate(NAMES)])
    engine.dispose()


def _read(conn: ConnectionConfig, ids: list[str] | None = None) -> list[tuple[str, str]]:
    spec = SourceSpec.model_validate({"table": "people", "id": ["id"], "fields": {"name": "姓名"}})
    request = ExtractRequest(source_name="people", spec=spec, columns=["id", "姓名"], chunk_size=2, where_ids=ids)
    return sorted(row for rows in iter_rows(conn, request) for row in rows)  # type: ignore[misc]


@pytest.mark.odbc
@pytest.mark.mariadb
def test_mariadb_odbc_reads_chinese_text_whole(mariadb_url: str) -> None:
    _driver("MariaDB Unicode")
    _people(mariadb_url)
    conn = ConnectionConfig(odbc=_maria_odbc(mariadb_url), dialect="mysql")
    expected = sorted((f"键{i}", name) for i, name in enumerate(NAMES))
    assert _read(conn) == expected
    # Chinese parameters (the ids a replay reads) match the stored text, and column names stay whole.
    assert _read(conn, ["键0", "键1"]) == expected[:2]
    spec = SourceSpec.model_validate({"table": "people", "id": ["id"], "fields": {"name": "姓名"}})
    assert probe_columns(conn, spec, "erp") == ["id", "姓名"]


@pytest.mark.odbc
@pytest.mark.postgres
def test_postgresql_odbc_still_reads_chinese_text_whole(pg_url: str) -> None:
    _driver("PostgreSQL Unicode")
    _people(pg_url)
    conn = ConnectionConfig(odbc=_pg_odbc(pg_url), dialect="postgresql")
    expected = sorted((f"键{i}", name) for i, name in enumerate(NAMES))
    assert _read(conn) == expected
    assert _read(conn, ["键0", "键1"]) == expected[:2]


def test_masked_odbc_password_keeps_the_rest_of_a_message() -> None:
    secret = "MyS3cret_Xa#99"
    odbc = f"Driver={{MariaDB Unicode}};Server=h;Port=3307;UID=u;PWD={{{secret}}}"
    conn = ConnectionConfig(odbc=odbc, dialect="mysql")
    message = f"employee: reading: connections.erp ({conn.display}): ('HY000', \"[HY000] Can't connect (2002)\"); check"
    assert conn.display.endswith("PWD=***")
    # Masking again (the pipeline masks every message, logs redact every line) keeps the driver's error.
    assert mask_secrets(message) == message
    assert redact_with(message, []) == message
    # A braced password holding an escaped '}' is masked whole, and known whole as a secret.
    braced = ConnectionConfig(odbc="DSN=u8;UID=etl;PWD={ab}}c;d};Database=x", dialect="mysql")
    assert braced.display == "DSN=u8;UID=etl;PWD=***;Database=x"
    assert mask_secrets("PWD={ab}}c;d} rest") == "PWD=*** rest"
    assert redact_with("PWD={ab}}c;d} rest", []) == "PWD=*** rest"
    assert "ab}c;d" in braced.secrets
    # Unmasked values are still masked whole: up to ';' (connection strings), or to a blank (log lines).
    assert mask_secrets("DSN=u8;PWD=s3 cr;et") == "DSN=u8;PWD=***;et"
    assert redact_with("PWD=s3cr3t) tail", []) == "PWD=*** tail"


def _odbc_error(conn: ConnectionConfig) -> BaseException:
    spec = SourceSpec.model_validate({"table": "people", "id": ["id"], "fields": {"name": "name"}})
    name_connections({"erp": conn})
    with pytest.raises(ErpOaError) as caught:
        probe_columns(conn, spec, "erp")
    return caught.value


@pytest.mark.odbc
@pytest.mark.mariadb
def test_mariadb_odbc_server_down_is_transient_with_the_driver_error(mariadb_url: str) -> None:
    _driver("MariaDB Unicode")
    secret = "MyS3cret_Xa#99"
    conn = ConnectionConfig(odbc=_maria_odbc(mariadb_url, port=1, password=secret), dialect="mysql")
    error = _odbc_error(conn)
    message = mask_secrets(str(error))
    assert isinstance(error, SourceUnavailableError) and error.exit_code == 6, message
    assert secret not in message and "PWD=***)" in message
    assert "Can't connect to server on '127.0.0.1'" in message, message
    assert message.endswith("check that the database server is running and reachable at the host and port of this "
                            "connection"), message


@pytest.mark.odbc
@pytest.mark.postgres
def test_postgresql_odbc_server_down_is_transient(pg_url: str) -> None:
    _driver("PostgreSQL Unicode")
    conn = ConnectionConfig(odbc=_pg_odbc(pg_url, port=1, password="S3cretPg_Xa!2026"), dialect="postgresql")
    error = _odbc_error(conn)
    assert isinstance(error, SourceUnavailableError) and error.exit_code == 6, str(error)
    assert "Connection refused" in str(error) and "S3cretPg_Xa!2026" not in mask_secrets(str(error))


@pytest.mark.odbc
@pytest.mark.mariadb
def test_mariadb_odbc_settings_errors_stay_configuration_errors(mariadb_url: str) -> None:
    _driver("MariaDB Unicode")
    import pyodbc

    refused = []
    for odbc in (
        _maria_odbc(mariadb_url).replace("UID=root", "UID=f4_nobody"),  # access denied (1698/1045)
        _maria_odbc(mariadb_url).replace("Server=127.0.0.1", "Server=f4-no-such-host.invalid"),  # 2005
    ):
        try:
            pyodbc.connect(odbc, timeout=5)
        except pyodbc.Error as exc:
            refused.append(exc)
    assert len(refused) == 2
    for exc in refused:
        assert not is_transient_db_error(exc), exc
        assert classify_db_error(exc, what="x").exit_code == 2, exc


@pytest.mark.odbc
@pytest.mark.mariadb
@pytest.mark.sqlite
def test_sync_retries_an_odbc_source_that_is_down_and_exits_6(
    mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _driver("MariaDB Unicode")
    secret = "MyS3cret_Xa#99"
    monkeypatch.setenv("F4_ERP_PASSWORD", secret)
    project = tiny_sqlite_project(tmp_path)
    erp_url = f"sqlite:///{tmp_path.resolve().as_posix()}/erp.db"
    odbc = _maria_odbc(mariadb_url, port=1, password="${F4_ERP_PASSWORD}")  # PWD last, as in the docs
    replace_in(project, (f'{{url: "{erp_url}"}}', f'{{odbc: "{odbc}", dialect: mysql}}'),
               ("timezone: Asia/Shanghai", "timezone: Asia/Shanghai\n  retries: 1\n  retry_backoff_seconds: 0"))
    done = CliRunner().invoke(app, ["sync", "--no-flows", "department", "--config", str(project)])
    output = done.stdout + done.stderr
    assert done.exit_code == 6, output
    assert secret not in output
    assert re.search(r"retry 1/1", output), output
    assert "Can't connect to server" in output and "PWD=***)" in output, output


def test_debug_logs_name_connections_queries_and_chunks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "erp.db"
    _people(f"sqlite:///{db}")
    conn = ConnectionConfig(url=f"sqlite:///{db}")
    with caplog.at_level(logging.DEBUG, logger="erpoa"):
        rows = _read(conn)
    assert len(rows) == len(NAMES)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("erpoa"))
    assert "engine" in logged and str(db) in logged, logged
    assert "SELECT" in logged and "people" in logged, logged
    assert "in chunks of 2 row(s)" in logged, logged
    # Writes: the rows of a frame, by batch, and what an upsert touched.
    engine = create_engine(f"sqlite:///{db}")
    meta = MetaData()
    people = Table("people", meta, autoload_with=engine)
    copy = Table("people_copy", meta, Column("id", String(40), primary_key=True), Column("姓名", String(60)))
    copy.create(engine)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="erpoa"), engine.begin() as c:
        insert_frame(c, copy, pd.DataFrame({"id": ["键0"], "姓名": ["x"]}))
        every = select(people.c.id, people.c["姓名"]).where(people.c.id.is_not(None))  # SQLite: a WHERE before ON
        upsert_select(c, copy, ["id", "姓名"], every, ["id"])
    engine.dispose()
    written = "\n".join(r.getMessage() for r in caplog.records if r.name == "erpoa.write")
    assert "writing 1 row(s) of 2 column(s) to people_copy (sqlite+pysqlite)" in written, written
    assert re.search(r"people_copy: executemany batch of rows 1-1 of 1 written", written), written
    assert re.search(r"people_copy: upsert \(sqlite\) touched 6 row\(s\)", written), written
    assert re.search(r"chunk \d+: [12] row\(s\), 6 so far", logged) and re.search(r"6 row\(s\) in \d+ chunk", logged)


@pytest.mark.odbc
@pytest.mark.postgres
@pytest.mark.mariadb
def test_debug_logs_of_a_sync_help_an_operator_and_hold_no_secret(secured: Secured) -> None:  # noqa: F811
    """The secrets test of tests/reliability at DEBUG level, with DEBUG lines to check: through a URL, and through
    an ODBC string whose PWD= comes last to a server that is down (retried, exit 6)."""
    import json

    config = secured.write_config(
        f'url: "mysql+pymysql://{secured.user}:${{ERP_PASSWORD}}@127.0.0.1:3306/{secured.database}?charset=utf8mb4"'
    )
    code, out, err = cli("sync", "--no-flows", "department", "--config", str(config))
    assert code == 0, out + err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    debug = "\n".join(f"{r['logger']}: {r['message']}" for r in records if r["level"] == "DEBUG")
    # The URL without its password (not even `***`: a one-character password's mask would be noise).
    assert f"engine created for connections.erp (mysql+pymysql://{secured.user}@127.0.0.1" in debug, debug
    assert re.search(r"connection opened to [^(]*connections.target[^(]* \(postgresql\+psycopg://", debug), debug
    assert re.search(r"erpoa.extract: extracting from erp: reading connections.erp .* in chunks of 5000 row\(s\)"
                     r".*: SELECT ", debug), debug
    assert re.search(r"extracting from erp: chunk 1: \d+ row\(s\)", debug), debug
    assert re.search(r"erpoa.write: writing \d+ row\(s\) of \d+ column\(s\) to \S+ \(postgresql\+psycopg\)", debug)
    assert re.search(r"erpoa.write: md_department: INSERT \.\.\. SELECT wrote 18 row\(s\)", debug), debug  # first load

    down = secured.write_config(
        f'odbc: "Driver={{MariaDB Unicode}};Server=127.0.0.1;Port=1;Database={secured.database};'
        f'Uid={secured.user};Pwd={{${{ERP_RAW_PASSWORD}}}}", dialect: mysql',
        "down.yaml")
    code, out, err_down = cli("sync", "--no-flows", "department", "--config", str(down))
    assert code == 6, out + err_down
    assert "opening ODBC connection connections.erp (Driver={MariaDB Unicode}" in err_down, err_down
    assert "retry 1/1" in err_down and "Can't connect to server" in err_down, err_down
    for text in (out, err, err_down):
        for needle in NEEDLES:
            assert needle not in text, needle
