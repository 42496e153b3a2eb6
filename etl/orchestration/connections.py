"""The project's connections from Airflow Connections, built inside a task (never at parse time).

Each connection name of `erpoa.yaml` (erp, oa, target, recon) has an Airflow
connection id, by default `erpoa_<name>` (override per name with the env var
`ERPOA_CONN_ID_<NAME>` or the DAG param `connections`). When that id is defined
in Airflow it replaces the entry of the config file; when it is not, the config
file's entry is used, so the demo runs without any Airflow Connection.

Airflow connection types become SQLAlchemy URLs: postgres -> postgresql+psycopg,
mysql/mariadb -> mysql+pymysql (charset utf8mb4), sqlite, mssql -> mssql+pyodbc;
an `odbc_connect` extra (or type odbc) becomes an ODBC connection string. Other
extras are passed to the driver as URL query parameters, except these, which
configure the connection itself: `db_schema` (schema of the tables),
`read_only`, `sqlalchemy_scheme` (e.g. postgresql+psycopg2), `connect_args`,
`dialect` (ODBC only), `fast_executemany`, `pool_pre_ping`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

import yaml
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import URL

from etl import logs
from etl.config.project import REQUIRED_CONNECTIONS, ConnectionConfig, ProjectConfig, load_project
from etl.errors import ConfigError

log = logging.getLogger("erpoa.airflow")

CONN_ID_ENV_PREFIX = "ERPOA_CONN_ID_"
DEFAULT_CONN_IDS: dict[str, str] = {name: f"erpoa_{name}" for name in REQUIRED_CONNECTIONS}

_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
    "mssql": "mssql+pyodbc",
}
_ODBC_DIALECTS = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
_OWN_EXTRAS = {
    "odbc_connect",
    "dialect",
    "db_schema",
    "read_only",
    "sqlalchemy_scheme",
    "connect_args",
    "fast_executemany",
    "pool_pre_ping",
}
# Extras that Airflow's own hooks read; drivers would reject them.
_HOOK_ONLY_EXTRAS = {
    "cursor",
    "iam",
    "aws_conn_id",
    "redshift",
    "cluster-identifier",
    "sqlalchemy_options",
    "sqlalchemy_query",
    "enable_log_db_messages",
    "log_sql",
    "driver_path",
    "driver_class",
}
_TRUE = {"1", "true", "yes", "on"}


class AirflowConnectionLike(Protocol):
    """The fields of `airflow.sdk.Connection` this module reads."""

    conn_id: str
    conn_type: str | None
    host: str | None
    schema: str | None
    login: str | None
    password: str | None
    port: int | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def default_config_path(env: Mapping[str, str] | None = None) -> str:
    """`$ERPOA_CONFIG`, else `erpoa.yaml` in `$ERPOA_PROJECT_DIR`, else `erpoa.yaml`."""
    env = os.environ if env is None else env
    if env.get("ERPOA_CONFIG"):
        return env["ERPOA_CONFIG"]
    return str(Path(env.get("ERPOA_PROJECT_DIR") or ".") / "erpoa.yaml")


def conn_ids(overrides: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Airflow connection id per connection name: defaults, then `ERPOA_CONN_ID_<NAME>`, then `overrides`."""
    env = os.environ if env is None else env
    ids = {name: env.get(CONN_ID_ENV_PREFIX + name.upper(), default) for name, default in DEFAULT_CONN_IDS.items()}
    ids.update({str(k): str(v) for k, v in (overrides or {}).items() if v})
    return ids


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE


def _query(extra: Mapping[str, Any]) -> dict[str, str]:
    query = {}
    for key, value in extra.items():
        if key in _OWN_EXTRAS or key in _HOOK_ONLY_EXTRAS or value is None:
            continue
        if isinstance(value, dict | list):
            log.warning("connection extra %r is not a scalar; it is not passed to the driver", key)
            continue
        query[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return query


def _odbc_string(conn: AirflowConnectionLike, extra: Mapping[str, Any]) -> str:
    if extra.get("odbc_connect"):
        return str(extra["odbc_connect"])
    parts = []
    if extra.get("dsn"):
        parts.append(f"DSN={extra['dsn']}")
    else:
        if extra.get("driver"):
            parts.append(f"DRIVER={{{extra['driver']}}}")
        if conn.host:
            parts.append(f"SERVER={conn.host}" + (f",{conn.port}" if conn.port else ""))
        if conn.schema:
            parts.append(f"DATABASE={conn.schema}")
    if conn.login:
        parts.append(f"UID={conn.login}")
    if conn.password:
        parts.append("PWD={" + conn.password.replace("}", "}}") + "}")  # ODBC escapes } inside braces
    if not parts:
        raise ConfigError(f"Airflow connection '{conn.conn_id}' (odbc) needs an odbc_connect extra, a dsn or a host")
    return ";".join(parts)


def connection_config(conn: AirflowConnectionLike) -> ConnectionConfig:
    """The `ConnectionConfig` equivalent of an Airflow connection."""
    conn_type = (conn.conn_type or "").lower().replace("_", "-")
    extra = dict(conn.extra_dejson or {})
    common: dict[str, Any] = {"schema": extra.get("db_schema") or None}
    if "read_only" in extra:
        common["read_only"] = _flag(extra["read_only"])
    for key in ("fast_executemany", "pool_pre_ping"):
        if key in extra:
            common[key] = _flag(extra[key])
    if isinstance(extra.get("connect_args"), dict):
        common["connect_args"] = extra["connect_args"]
    if conn_type == "odbc" or extra.get("odbc_connect"):
        dialect = extra.get("dialect") or _ODBC_DIALECTS.get(conn_type, "mssql")
        return _validated(conn, {"odbc": SecretStr(_odbc_string(conn, extra)), "dialect": dialect, **common})
    driver = extra.get("sqlalchemy_scheme") or _DRIVERS.get(conn_type)
    if driver is None:
        raise ConfigError(
            f"Airflow connection '{conn.conn_id}' has type '{conn.conn_type}'; use postgres, mysql, sqlite, "
            f"mssql or odbc (or set the extra sqlalchemy_scheme)"
        )
    query = _query(extra)
    if driver.startswith("sqlite"):
        url = URL.create(driver, database=conn.schema or conn.host or None, query=query)
    else:
        if driver.startswith("mysql"):
            query.setdefault("charset", "utf8mb4")
        url = URL.create(
            driver,
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query=query,
        )
    return _validated(conn, {"url": SecretStr(url.render_as_string(hide_password=False)), **common})


def _validated(conn: AirflowConnectionLike, values: dict[str, Any]) -> ConnectionConfig:
    try:
        return ConnectionConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'connection'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Airflow connection '{conn.conn_id}' cannot be used: {problems}") from None


def airflow_connections(ids: Mapping[str, str]) -> dict[str, ConnectionConfig]:
    """The connections among `ids` (name -> Airflow conn id) that Airflow defines; the rest are left out."""
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return {}
    found: dict[str, ConnectionConfig] = {}
    for name, conn_id in ids.items():
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            log.info("Airflow connection %s is not defined; '%s' comes from the project config", conn_id, name)
            continue
        if conn.password:
            register_secrets([conn.password])
        found[name] = connection_config(conn)
        register_secrets(found[name].secrets)
        log.info("connection '%s' from Airflow connection %s (%s)", name, conn_id, conn.conn_type)
    return found


def register_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` (and their URL-encoded forms) in erp-oa-sync's and Airflow's task logs."""
    values = {v for s in secrets if s for v in (s, quote(s, safe=""), quote_plus(s, safe=""))}
    logs.add_secrets(values)
    if "airflow.sdk" not in sys.modules:  # not running under Airflow: importing it would set it up
        return
    from airflow.sdk.log import mask_secret

    for value in values:
        if len(value) >= 3:  # Airflow's masker ignores very short values anyway
            mask_secret(value)


def load_config(path: str | Path, ids: Mapping[str, str] | None = None) -> ProjectConfig:
    """`erpoa.yaml` with the connections Airflow defines put in place of the file's.

    A connection that Airflow provides may be missing from the file or use
    `${VAR}`s set only outside Airflow.
    """
    overrides = airflow_connections(conn_ids(ids))
    try:
        config = load_project(path)
    except ConfigError as exc:
        if not overrides:
            raise
        config = _load_without(Path(path), set(overrides), exc)
    config = config.model_copy(update={"connections": {**config.connections, **overrides}})
    register_secrets(config.secrets())
    return config


def _load_without(path: Path, names: set[str], original: ConfigError) -> ProjectConfig:
    """Load the config with the connections in `names` replaced by placeholders; `original` if it still fails."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        raise original from None
    if not isinstance(data, dict):
        raise original
    connections = data.get("connections")
    data["connections"] = {
        **(connections if isinstance(connections, dict) else {}),
        **{n: {"url": "sqlite://"} for n in names},
    }
    with tempfile.TemporaryDirectory(prefix="erpoa-config-") as folder:
        copy = Path(folder) / path.name
        copy.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        try:
            config = load_project(copy)
        except ConfigError:
            raise original from None
    return config.model_copy(update={"config_path": path.resolve()})
