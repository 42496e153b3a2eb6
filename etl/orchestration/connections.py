"""The project's connections from Airflow Connections, built inside a task (never at parse time).

Each connection name of `erpoa.yaml` (erp, oa, target, recon) has an Airflow
connection id, by default `erpoa_<name>` (override per name with the env var
`ERPOA_CONN_ID_<NAME>` of the worker running the task, or the DAG param
`connections`). When that id is defined in Airflow it replaces the entry of the
config file. Only a built-in default id that Airflow does not define falls back to
the config file's entry (so the demo runs without any Airflow Connection); an id
asked for explicitly must exist.

Airflow connection types become SQLAlchemy URLs: postgres -> postgresql+psycopg,
mysql/mariadb -> mysql+pymysql (charset utf8mb4), sqlite, mssql -> mssql+pyodbc;
an `odbc_connect` extra (or type odbc) becomes an ODBC connection string (Login and
Password added unless it has UID / PWD). Other scalar extras are passed to the driver
as URL query parameters, except these, which configure the connection itself:
`db_schema` (schema of the tables), `read_only`, `sqlalchemy_scheme` (e.g.
postgresql+psycopg2), `connect_args`, `dialect` (ODBC only), `fast_executemany`,
`pool_pre_ping`. MySQL's `ssl` object (Airflow's TLS extra) becomes
`connect_args["ssl"]`; any other extra that cannot be passed is a ConfigError.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

import yaml
from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import URL

from etl import logs
from etl.config.project import READ_ONLY_STORE, REQUIRED_CONNECTIONS, ConnectionConfig, ProjectConfig, load_project
from etl.errors import ConfigError, ConfigIssue

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
_ODBC_CREDENTIAL = re.compile(r"(?:^|;)\s*(UID|PWD)\s*=", re.IGNORECASE)


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


def default_conn_id(name: str) -> str:
    """The built-in Airflow connection id of connection `name`: `erpoa_<name>`."""
    return f"erpoa_{name}"


def conn_ids(
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    names: Sequence[str] = REQUIRED_CONNECTIONS,
) -> dict[str, str]:
    """Airflow connection id per connection name: defaults, then `ERPOA_CONN_ID_<NAME>`, then `overrides`.

    `names` are the connections to resolve (the four of `erpoa.yaml` always are); `check_names` refuses
    overrides of other names.
    """
    env = os.environ if env is None else env
    ids = {
        name: env.get(CONN_ID_ENV_PREFIX + name.upper()) or default_conn_id(name)
        for name in dict.fromkeys([*REQUIRED_CONNECTIONS, *names])
    }
    ids.update({str(k): str(v) for k, v in (overrides or {}).items() if v})
    return ids


def check_names(overrides: Mapping[str, Any] | None, names: Sequence[str] = REQUIRED_CONNECTIONS) -> None:
    """ConfigError for a key of the `connections` param that is no connection name (a typo, the wrong case)."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"the connections param must be an object of connection name -> conn id, not {overrides!r}")
    unknown = [str(k) for k in overrides or {} if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown connection name {', '.join(repr(k) for k in unknown)} in the connections param; "
            f"use {', '.join(names)}"
        )


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE


def _query(conn: AirflowConnectionLike, extra: Mapping[str, Any]) -> dict[str, str]:
    query = {}
    for key, value in extra.items():
        if key in _OWN_EXTRAS or key in _HOOK_ONLY_EXTRAS or value is None:
            continue
        if isinstance(value, dict | list):
            raise ConfigError(
                f"Airflow connection '{conn.conn_id}': extra {key!r} is an object or a list, which cannot be "
                f"passed to the driver as a URL parameter; put it under the extra connect_args"
            )
        query[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return query


def _object_extra(conn: AirflowConnectionLike, key: str, value: Any) -> dict[str, Any]:
    """An extra that must be an object, given as one or as JSON text (as Airflow's MySQL hook accepts)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, dict):
        # The value may hold a secret: name its type only.
        raise ConfigError(
            f"Airflow connection '{conn.conn_id}': extra {key!r} must be an object, not {type(value).__name__}"
        )
    return value


def _connect_args(conn: AirflowConnectionLike, extra: Mapping[str, Any], driver: str) -> dict[str, Any]:
    """The driver's connect_args: the `connect_args` extra, plus MySQL's `ssl` object (its TLS settings)."""
    args = _object_extra(conn, "connect_args", extra["connect_args"]) if "connect_args" in extra else {}
    if driver.startswith("mysql") and extra.get("ssl") is not None:
        args = {**args, "ssl": _object_extra(conn, "ssl", extra["ssl"])}
    return args


def _braced(value: str) -> str:
    return "{" + value.replace("}", "}}") + "}"  # ODBC escapes } inside braces


def _odbc_string(conn: AirflowConnectionLike, extra: Mapping[str, Any]) -> str:
    parts = []
    if extra.get("odbc_connect"):
        parts.append(str(extra["odbc_connect"]).strip().rstrip(";"))
    elif extra.get("dsn"):
        parts.append(f"DSN={extra['dsn']}")
    else:
        if extra.get("driver"):
            parts.append(f"DRIVER={{{extra['driver']}}}")
        if conn.host:
            parts.append(f"SERVER={conn.host}" + (f",{conn.port}" if conn.port else ""))
        if conn.schema:
            parts.append(f"DATABASE={conn.schema}")
    given = {m.upper() for m in _ODBC_CREDENTIAL.findall(parts[0])} if parts else set()
    if conn.login and "UID" not in given:
        parts.append("UID=" + _braced(conn.login))
    if conn.password and "PWD" not in given:
        parts.append("PWD=" + _braced(conn.password))
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
    if conn_type == "odbc" or extra.get("odbc_connect"):
        dialect = extra.get("dialect") or _ODBC_DIALECTS.get(conn_type, "mssql")
        common["connect_args"] = _connect_args(conn, extra, "odbc")
        return _validated(conn, {"odbc": SecretStr(_odbc_string(conn, extra)), "dialect": dialect, **common})
    driver = extra.get("sqlalchemy_scheme") or _DRIVERS.get(conn_type)
    if driver is None:
        raise ConfigError(
            f"Airflow connection '{conn.conn_id}' has type '{conn.conn_type}'; use postgres, mysql, sqlite, "
            f"mssql or odbc (or set the extra sqlalchemy_scheme)"
        )
    common["connect_args"] = _connect_args(conn, extra, driver)
    query = _query(conn, {k: v for k, v in extra.items() if not (k == "ssl" and driver.startswith("mysql"))})
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


def airflow_connections(
    ids: Mapping[str, str], *, strict: bool = False, verbose: bool = False
) -> dict[str, ConnectionConfig]:
    """The connections among `ids` (name -> Airflow conn id) that Airflow defines; the rest are left out.

    With `strict`, an id that Airflow does not define is a ConfigError unless it is the built-in default
    `erpoa_<name>`: a conn id asked for explicitly never falls back to the config file silently.
    `verbose`: say where each connection comes from at INFO (once per run, in `start_run`), else at DEBUG.
    """
    level = logging.INFO if verbose else logging.DEBUG
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return {}
    found: dict[str, ConnectionConfig] = {}
    missing: list[str] = []
    for name, conn_id in ids.items():
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            if strict and conn_id != default_conn_id(name):
                missing.append(f"'{conn_id}' ({name})")
            else:
                said = "Airflow connection %s is not defined; '%s' comes from the project config"
                log.log(level, said, conn_id, name)
            continue
        if conn.password:
            register_secrets([conn.password])
        found[name] = connection_config(conn)
        register_secrets(found[name].secrets)
        if name == "recon" and found[name].read_only:
            raise ConfigError(f"Airflow connection '{conn_id}' (recon): {READ_ONLY_STORE} (its `read_only` extra)")
        log.log(level, "connection '%s' from Airflow connection %s (%s)", name, conn_id, conn.conn_type)
    if missing:
        raise ConfigError(
            f"Airflow connection {', '.join(missing)} is not defined; define it in Airflow or correct the "
            f"connections param or {CONN_ID_ENV_PREFIX}<NAME> (only the default ids erpoa_<name> fall back to "
            f"erpoa.yaml)"
        )
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


#: What a missing `erpoa.yaml` tells the operator of a DAG (the CLI's message names its --config option).
NOT_FOUND = (
    "config file not found on this worker; set the DAG run's config_path param, or ERPOA_CONFIG (or "
    "ERPOA_PROJECT_DIR) in the environment of the dag processor and of every worker"
)


def load_config(
    path: str | Path, ids: Mapping[str, str] | None = None, *, strict: bool = False, verbose: bool = False
) -> ProjectConfig:
    """`erpoa.yaml` with the connections Airflow defines put in place of the file's.

    A connection that Airflow provides may be missing from the file or use
    `${VAR}`s set only outside Airflow. `strict`: see `airflow_connections` (tasks
    use it; a failure callback does not, so it can still load the config to alert).
    `verbose`: log where each connection comes from at INFO (`start_run`, once per run).
    """
    if not Path(path).exists():
        raise ConfigError([ConfigIssue(str(path), None, None, "", NOT_FOUND)])
    overrides = airflow_connections(conn_ids(ids), strict=strict, verbose=verbose)
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
