"""`erpoa.yaml`: named connections, folders and run settings, loaded into strict models.

Connection values may reference the environment as `${VAR}`; a password written
literally in a URL is accepted only from the environment, never from the file.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from etl import settings
from etl.errors import ConfigError, ConfigIssue
from etl.yamlio import SourceMap, load_yaml, sort_issues, validate_model

REQUIRED_CONNECTIONS = ("erp", "oa", "target", "recon")
_PASSWORD_IN_URL = re.compile(r"^(?P<scheme>[a-z0-9+]+://)(?P<user>[^:/@]*):(?P<pw>[^@]+)@", re.I)
_PASSWORD_IN_ODBC = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(\{[^}]*\}|[^;]*)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ConnectionConfig(Strict):
    """One database: a SQLAlchemy URL or an ODBC connection string / DSN.

    The resolved secret-bearing value is held as SecretStr and only revealed to
    the driver; `display` is what may be printed.
    """

    url: SecretStr | None = None
    odbc: SecretStr | None = None
    dialect: Literal["mssql", "postgresql", "mysql", "sqlite"] | None = Field(
        default=None, description="SQL dialect spoken over ODBC (odbc only)"
    )
    schema_: str | None = Field(default=None, alias="schema")
    read_only: bool | None = None
    fast_executemany: bool = True
    pool_pre_ping: bool = True
    connect_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of_url_or_odbc(self) -> ConnectionConfig:
        if (self.url is None) == (self.odbc is None):
            raise ValueError(
                "give exactly one of `url` (a SQLAlchemy URL such as postgresql+psycopg://user@host/db) "
                "or `odbc` (an ODBC connection string such as 'DSN=u8;UID=sa;PWD=${ERP_PASSWORD}')"
            )
        if self.odbc is not None and self.dialect is None:
            raise ValueError("an `odbc` connection needs `dialect:` (mssql, postgresql, mysql or sqlite)")
        return self

    @property
    def kind(self) -> Literal["url", "odbc"]:
        return "url" if self.url is not None else "odbc"

    def sqlalchemy_url(self) -> str:
        """The URL handed to SQLAlchemy (ODBC strings wrapped for `<dialect>+pyodbc`)."""
        if self.url is not None:
            return self.url.get_secret_value()
        assert self.odbc is not None
        return f"{self.dialect}+pyodbc:///?odbc_connect={quote_plus(self.odbc.get_secret_value())}"

    @property
    def display(self) -> str:
        """The connection as it may be printed: passwords masked."""
        raw = self.url.get_secret_value() if self.url else (self.odbc.get_secret_value() if self.odbc else "")
        return mask_secrets(raw)

    @property
    def secrets(self) -> list[str]:
        """Secret substrings of this connection (for redaction of logs and reports)."""
        raw = self.url.get_secret_value() if self.url else (self.odbc.get_secret_value() if self.odbc else "")
        found = [m.group("pw") for m in _PASSWORD_IN_URL.finditer(raw)]
        found += [m.group(2).strip("{}") for m in _PASSWORD_IN_ODBC.finditer(raw)]
        from urllib.parse import unquote

        return [s for s in {*found, *(unquote(f) for f in found)} if s and s != "***"]


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs (`user:***@`) and ODBC strings (`PWD=***`)."""
    text = re.sub(r"([a-z0-9+]+://[^:/@\s]*):([^@\s]+)@", r"\1:***@", text, flags=re.I)
    return _PASSWORD_IN_ODBC.sub(lambda m: f"{m.group(1)}=***", text)


class RunSettings(Strict):
    """How syncs run."""

    #: rows per extraction chunk. Each row of a chunk is a tuple of Python objects until it is mapped, and
    #: the allocator keeps some of their memory after they are freed: 20,000 rows left a million-row sync
    #: 57 MB smaller than 50,000 did, for about 3% more extraction time.
    chunk_size: int = Field(default=20_000, ge=100, le=5_000_000)
    timezone: str = "Asia/Shanghai"
    entities: list[str] | None = None
    partition_rows: int = Field(default=80_000, ge=1_000)
    #: extract an entity's sources at the same time, one thread each (not when the target or store is SQLite):
    #: faster extraction for a second chunk in memory
    parallel_sources: bool = False
    lock_wait_seconds: float = Field(default=0, ge=0)
    retries: int = Field(default=3, ge=0, le=20)
    retry_backoff_seconds: float = Field(default=2.0, ge=0)
    max_quarantined_pct: float | None = Field(default=None, ge=0, le=100)
    max_quarantined_rows: int | None = Field(default=None, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}'; use an IANA name such as Asia/Shanghai") from None
        return value


class ProjectConfig(Strict):
    """The whole `erpoa.yaml`."""

    project: str = "erp-oa-sync"
    connections: dict[str, ConnectionConfig]
    mappings: Path = Path("mappings")
    expectations: Path = Path("expectations")
    reports: Path = Path("var/reports")
    run: RunSettings = Field(default_factory=RunSettings)
    notify: dict[str, Any] | list[dict[Any, Any]] = Field(
        default_factory=list, description="alert channels: `{channels: [...]}` or a bare list (see docs/airflow.md)"
    )
    config_path: Path | None = Field(default=None, exclude=True)

    def connection(self, name: str) -> ConnectionConfig:
        """The named connection; ConfigError naming the known ones when absent."""
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections))
            raise ConfigError(f"connection '{name}' is not defined in the project config; known: {known}") from None

    def secrets(self) -> list[str]:
        """Every secret of every connection, for redaction."""
        return sorted({s for c in self.connections.values() for s in c.secrets}, key=len, reverse=True)

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        base = self.config_path.parent if self.config_path else Path.cwd()
        return path if path.is_absolute() else base / path


def _interpolate(data: Any, smap: SourceMap, loc: tuple[str | int, ...], issues: list[ConfigIssue]) -> Any:
    if isinstance(data, dict):
        return {k: _interpolate(v, smap, (*loc, k), issues) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, smap, (*loc, i), issues) for i, v in enumerate(data)]
    if settings.has_variables(data):
        try:
            return settings.interpolate(data)
        except settings.MissingVariable as exc:
            issues.append(
                smap.issue(
                    loc,
                    f"environment variable {exc.name} is not set; export it (e.g. `export {exc.name}=...`) "
                    f"or write ${{{exc.name}:-default}}",
                )
            )
    return data


def _literal_passwords(data: Any, smap: SourceMap) -> list[ConfigIssue]:
    issues = []
    for name, conn in (data.get("connections") or {}).items() if isinstance(data, dict) else []:
        if not isinstance(conn, dict):
            continue
        for key in ("url", "odbc"):
            value = conn.get(key)
            if not isinstance(value, str):
                continue
            pw = _PASSWORD_IN_URL.match(value)
            odbc_pw = _PASSWORD_IN_ODBC.search(value)
            literal = (pw and not settings.has_variables(pw.group("pw"))) or (
                odbc_pw and odbc_pw.group(2).strip("{} ") and not settings.has_variables(odbc_pw.group(2))
            )
            if literal:
                issues.append(
                    smap.issue(
                        ("connections", name, key),
                        "a password is written in the file; put it in the environment and write "
                        f"${{{name.upper()}_PASSWORD}} instead",
                    )
                )
    return issues


def _unencoded_passwords(data: Any, smap: SourceMap) -> list[ConfigIssue]:
    """URLs that do not parse, or whose user:password part holds a raw '@' (a password taken as is).

    Checked once the environment is interpolated, so a problem is reported here, located,
    instead of in a driver error that would print the URL (and so the password) or, for a
    raw '@', the rest of the password as the host name. Messages never show the value.
    """
    from sqlalchemy.engine import make_url

    issues = []
    for name, conn in (data.get("connections") or {}).items() if isinstance(data, dict) else []:
        url = conn.get("url") if isinstance(conn, dict) else None
        if not isinstance(url, str) or settings.has_variables(url):
            continue
        try:
            make_url(url)
        except Exception:
            issues.append(
                smap.issue(
                    ("connections", name, "url"),
                    "not a valid SQLAlchemy URL (write dialect+driver://user:password@host:port/database); "
                    "the value is not shown because it may contain a password",
                )
            )
            continue
        netloc = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0] if "://" in url else ""
        if netloc.count("@") > 1:
            issues.append(
                smap.issue(
                    ("connections", name, "url"),
                    "the user:password part contains a raw '@'; URL-encode the password (in the environment "
                    "variable too): @ as %40, : as %3A, / as %2F",
                )
            )
    return issues


def load_project(path: Path | str) -> ProjectConfig:
    """Load and validate `erpoa.yaml`, reporting every problem at once."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            [ConfigIssue(str(path), None, None, "", "config file not found; run `erpoa demo` or pass --config PATH")]
        )
    data, smap = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", "the config must be a mapping with `connections:`")])
    issues = _literal_passwords(data, smap)
    connections = data.get("connections")
    if isinstance(connections, dict):
        missing = [name for name in REQUIRED_CONNECTIONS if name not in connections]
        if missing:
            issues.append(
                smap.issue(
                    ("connections",),
                    f"missing connection(s) {', '.join(missing)}; every project names erp, oa, target and recon",
                )
            )
    data = _interpolate(data, smap, (), issues)
    issues.extend(_unencoded_passwords(data, smap))
    try:
        config: ProjectConfig = validate_model(ProjectConfig, data, smap)
    except ConfigError as exc:
        raise ConfigError(sort_issues([*issues, *exc.issues])) from None
    if issues:
        raise ConfigError(sort_issues(issues))
    return config.model_copy(update={"config_path": path.resolve()})
