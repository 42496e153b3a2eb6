"""`erpoa.yaml`: named connections, folders and run settings, loaded into strict models.

Connection values may reference the environment as `${VAR}`; a password written
literally in a URL is accepted only from the environment, never from the file.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from etl import settings
from etl.errors import ConfigError, ConfigIssue
from etl.logs import SECRET_KEY_WORDS, mask_url_passwords
from etl.yamlio import Loc, SourceMap, issues_from_validation, load_yaml, sort_issues, validate_model

REQUIRED_CONNECTIONS = ("erp", "oa", "target", "recon")
READ_ONLY_STORE = (
    "the reconciliation store is written by every run (runs, quarantine, watermarks); "
    "remove `read_only: true` from the recon connection"
)
# The password as SQLAlchemy reads it: from the first ':' after the user name to the first '@'.
_PASSWORD_IN_URL = re.compile(r"^(?P<scheme>[a-z0-9+.-]+://)(?P<user>[^:/@]*):(?P<pw>[^@]+)@", re.I)
# ... and up to the last '@' before the host: the whole password when it holds a raw '@'.
_WHOLE_PASSWORD_IN_URL = re.compile(r"^[a-z0-9+.-]+://[^:/@]*:(?P<pw>.*)@[^@]*$", re.I | re.S)
# A `${VAR}` reference is not a secret: leave it readable (e.g. in the examples of messages). A braced value ends
# at its closing '}' (`}}` is an escaped one); an unbraced one at ';'. A value masked already (`PWD=***` of a
# connection's `display` inside a message) is left as it is, or the rest of the message would be masked with it.
_PASSWORD_IN_ODBC = re.compile(
    r"(?i)\b(PWD|PASSWORD)\s*=\s*(?!\{?\$\{[A-Za-z_]\w*\})(\*\*\*(?=[;)\s\"',\]]|$)|\{(?:[^}]|\}\})*\}|[^;]*)"
)
#: keys of `connect_args` (and of a URL's query) whose values are secrets: password, passwd, pwd, sslpassword ...
SECRET_KEY = re.compile(rf"(?i){SECRET_KEY_WORDS}")
_ONE_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# The password of a URL or ODBC string as written in the file, `${...}` references kept whole (a default may hold
# '@', ';' or '}'): SQLAlchemy takes the URL's password up to the first '@'.
_REF = r"\$\{[^}]*\}"
_TEMPLATE_URL_PASSWORD = re.compile(
    rf"^[a-z0-9+.-]+://(?:{_REF}|[^:/$]|\$(?!\{{))*:(?P<pw>(?:{_REF}|[^@$]|\$(?!\{{))*)@", re.I
)
_TEMPLATE_ODBC_PASSWORD = re.compile(
    rf"(?i)(?:^|;)\s*(?:PWD|PASSWORD)\s*=\s*(?P<pw>\{{(?:{_REF}|[^}}$]|\$(?!\{{))*\}}|(?:{_REF}|[^;$]|\$(?!\{{))*)"
)
_SECRET_VARIABLE_NAME = re.compile(r"(?i)pass|pwd|(?:^|_)pw(?:$|_)|secret|token")


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

    @field_validator("url")
    @classmethod
    def _mysql_charset(cls, value: SecretStr | None) -> SecretStr | None:
        """MariaDB/MySQL's `utf8` is utf8mb3: it reads a 4-byte character (emoji, 𠮷) as '?' and cannot write one."""
        raw = value.get_secret_value() if value is not None else ""
        if not raw.lower().startswith(("mysql", "mariadb")) or "?" not in raw:
            return value
        query = dict(parse_qsl(raw.split("?", 1)[1].split("#", 1)[0]))
        charset = next((v for k, v in query.items() if k.lower() == "charset"), None)
        if charset is not None and charset.lower() != "utf8mb4":
            raise ValueError(
                f"charset={charset} cannot hold 4-byte characters (emoji, rare name characters such as 𠮷): a source "
                "would read them as '?' and a target refuses them; use charset=utf8mb4 (or leave charset out)"
            )
        return value

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
        whole = _WHOLE_PASSWORD_IN_URL.match(raw) if self.url is not None else None
        if whole and whole.group("pw"):  # the password as written, blanks and quotes included
            raw = raw[: whole.start("pw")] + "***" + raw[whole.end("pw") :]
        return mask_secrets(raw)

    @property
    def secrets(self) -> list[str]:
        """Secret substrings of this connection (for redaction of logs and reports).

        The URL's password both as SQLAlchemy reads it (up to the first '@') and whole (up to the
        last '@' before the host), `?password=`-like query values, ODBC `PWD=` values and the
        values of password-like `connect_args` keys; each also URL-decoded.
        """
        raw = self.url.get_secret_value() if self.url else (self.odbc.get_secret_value() if self.odbc else "")
        found = [m.group("pw") for m in (_PASSWORD_IN_URL.match(raw), _WHOLE_PASSWORD_IN_URL.match(raw)) if m]
        if self.url is not None:
            found += _query_passwords(raw)
        # An ODBC string inside a URL (`?odbc_connect=...PWD%3D...`) is URL-encoded.
        for text in {raw, unquote_plus(raw)}:
            for m in _PASSWORD_IN_ODBC.finditer(text):
                value = m.group(2)
                found += [value[1:-1], value[1:-1].replace("}}", "}")] if value.startswith("{") else [value]
        found += [str(value) for _, value in _secret_values(self.connect_args, ()) if value not in (None, "")]
        # ... and in the forms a URL gives them (an ODBC string's `Secret;pw` as `Secret%3Bpw`).
        found += [quote_plus(unquote(f), safe="") for f in found] + [quote(unquote(f), safe="") for f in found]
        return [s for s in {*found, *(unquote(f) for f in found)} if s and s != "***"]


def mask_secrets(text: str) -> str:
    """Mask passwords in URLs (`user:***@`) and ODBC strings (`PWD=***`)."""
    return _PASSWORD_IN_ODBC.sub(lambda m: f"{m.group(1)}=***", mask_url_passwords(text))


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
    #: a run that is not a full refresh refuses an entity when one source lost more than this % of the records
    #: the target holds from it (a source cut short by a broken view or filter would inactivate them)
    max_vanished_pct: float | None = Field(default=50, ge=0, le=100)
    #: the % limits judge at least this many rows (rows read; a source's records): in a read of eight, one bad
    #: row is 12.5%
    pct_min_rows: int = Field(default=0, ge=0)

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

    @property
    def config_path(self) -> Path | None:
        """The file this config was loaded from (None when built in memory).

        Not a field, so that it is neither accepted in `erpoa.yaml` nor listed among its keys;
        `load_project` sets it with `model_copy(update={"config_path": path})`.
        """
        path = self.__dict__.get("config_path")
        return path if isinstance(path, Path) else None

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


def _interpolate(
    data: Any,
    smap: SourceMap,
    loc: tuple[str | int, ...],
    issues: list[ConfigIssue],
    secret_names: frozenset[str] = frozenset(),
    unset_ok: bool = False,
) -> Any:
    if isinstance(data, dict):
        return {k: _interpolate(v, smap, (*loc, k), issues, secret_names, unset_ok) for k, v in data.items()}
    if isinstance(data, list):
        return [_interpolate(v, smap, (*loc, i), issues, secret_names, unset_ok) for i, v in enumerate(data)]
    if settings.has_variables(data):
        try:
            return settings.interpolate(data)
        except settings.MissingVariable as exc:
            if unset_ok:
                return _placeholder(data, loc)
            hint = f"export it (e.g. `export {exc.name}=...`)"
            if exc.name in secret_names or _SECRET_VARIABLE_NAME.search(exc.name):
                # A default would be a password written in the file, which is refused.
                hint += "; a password has no default: set it in the environment (or an Airflow Connection)"
            else:
                hint += f" or write ${{{exc.name}:-default}}"
            issues.append(smap.issue(loc, f"environment variable {exc.name} is not set; {hint}"))
    return data


def _password_parts(value: str) -> list[str]:
    """The passwords of a URL or ODBC string as written (before `${VAR}`s are resolved).

    The URL's user:password part, its query's password-like parameters (`?password=`), and
    ODBC `PWD=` / `PASSWORD=` values (braces removed); the same inside a `${VAR:-default}`'s default.
    """
    parts: list[str] = []
    url = _TEMPLATE_URL_PASSWORD.match(value)
    if url and url.group("pw"):
        parts.append(url.group("pw"))
    odbc_texts = [value]
    if "://" in value:
        parts += _query_passwords(value)
        # An ODBC string inside the URL (`?odbc_connect=...PWD%3D...`) is URL-encoded.
        odbc_texts += [unquote_plus(v) for k, _, v in _query_pairs(value) if k.lower() == "odbc_connect"]
    for odbc in (m for text in odbc_texts for m in _TEMPLATE_ODBC_PASSWORD.finditer(text)):
        pw = odbc.group("pw").strip()
        pw = pw[1:-1] if pw.startswith("{") and pw.endswith("}") else pw
        if pw:
            parts.append(pw)
    for default in re.findall(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", value):
        parts += _password_parts(default)
    return parts


def _query_passwords(url: str) -> list[str]:
    """The values of a URL's password-like query parameters (`?password=...`), as written."""
    return [value for key, sep, value in _query_pairs(url) if sep and value and SECRET_KEY.search(key)]


def _query_pairs(url: str) -> list[tuple[str, str, str]]:
    """A URL's query as written: (key, '=', value) per parameter."""
    if "?" not in url:
        return []
    return [pair.partition("=") for pair in url.split("?", 1)[1].split("#", 1)[0].split("&")]


def _secret_values(data: Any, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], Any]]:
    """(location, value) of every secret-named key of `connect_args`, nested mappings included."""
    found: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and SECRET_KEY.search(key) and not isinstance(value, dict | list):
                found.append(((*loc, key), value))
            else:
                found += _secret_values(value, (*loc, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _secret_values(value, (*loc, index))
    return found


def _password_problem(value: Any) -> str | None:
    """Why `value`, a password as written in the file, is not allowed (None when it is one `${VAR}` alone)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or re.sub(r"\$\{[^}]*\}", "", value).strip():
        return "literal"
    if _ONE_VARIABLE.fullmatch(value.strip()) or re.fullmatch(r"\$\{[A-Za-z_]\w*:-\}", value.strip()):
        return None  # `${VAR:-}`: an empty default holds no password
    names = settings.variables_in(value)
    if ":-" in value:
        return (
            f"a password must not have a default (`${{{names[0]}:-...}}`): the default would be a password "
            f"written in the file; write ${{{names[0]}}} alone and set {names[0]} in the environment"
        )
    return f"a password must come from one variable; write ${{{names[0]}}} alone, holding the whole password"


def _literal_passwords(data: Any, smap: SourceMap) -> tuple[list[ConfigIssue], frozenset[str]]:
    """Passwords written in the file, and the names of the variables that hold passwords.

    A password (URL user:password, `?password=`, ODBC `PWD=`, a password-like key of `connect_args`)
    must be exactly `${VAR}`: no literal text around it and no `${VAR:-default}`, which would put the
    password in the file. Messages never show the value.
    """
    issues: list[ConfigIssue] = []
    secret_names: set[str] = set()
    for name, conn in (data.get("connections") or {}).items() if isinstance(data, dict) else []:
        if not isinstance(conn, dict):
            continue
        env_name = f"{str(name).upper()}_PASSWORD"
        checks: list[tuple[tuple[str | int, ...], Any]] = []
        for key in ("url", "odbc"):
            value = conn.get(key)
            if isinstance(value, str):
                checks += [(("connections", name, key), part) for part in _password_parts(value)]
        checks += _secret_values(conn.get("connect_args"), ("connections", name, "connect_args"))
        for loc, value in checks:
            if isinstance(value, str):
                secret_names.update(settings.variables_in(value))
            problem = _password_problem(value)
            if problem == "literal":
                problem = (
                    f"a password is written in the file; put it in the environment and write ${{{env_name}}} "
                    "instead (the whole password, with no text around it)"
                )
            if problem:
                issues.append(smap.issue(loc, problem))
    return issues, frozenset(secret_names)


def _unencoded_passwords(data: Any, smap: SourceMap) -> list[ConfigIssue]:
    """URLs that do not parse, or whose user:password part holds a raw '@' (a password taken as is).

    Checked once the environment is interpolated, so a problem is reported here, located,
    instead of in a driver error that would print the URL (and so the password) or, for a
    raw '@', the rest of the password as the host name. Messages never show the value.
    """
    issues = []
    for name, conn in (data.get("connections") or {}).items() if isinstance(data, dict) else []:
        url = conn.get("url") if isinstance(conn, dict) else None
        if not isinstance(url, str) or settings.has_variables(url):
            continue
        problem = url_problem(url, str(name))
        if problem:
            issues.append(smap.issue(("connections", name, "url"), problem))
    return issues


def url_problem(url: str, name: str = "erp") -> str | None:
    """Why a resolved SQLAlchemy URL cannot be used safely, or None; the message never shows the URL.

    SQLAlchemy takes the password up to the first '@': a raw '@' in it (after a '/', '?' or ':'
    too) leaves the rest of the password in the host, port, database or query, where a driver
    error would print it.
    """
    from sqlalchemy.engine import make_url

    raw_at = (
        "the user:password part contains a raw '@' (the URL would split there and print the rest of the "
        "password as the host name); percent-encode the password in the environment variable (@ as %40, "
        "/ as %2F, : as %3A, % as %25), or put the whole URL, encoded, in the environment: "
        f"url: \"${{{name.upper()}_URL}}\""
    )
    netloc = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0] if "://" in url else ""
    if netloc.count("@") > 1:  # before parsing: a raw '@' followed by a ':' (`p@ss:word`) makes a bad port
        return raw_at
    try:
        parsed = make_url(url)
    except Exception:
        if "://" in url and url.split("://", 1)[1].count("@") > 1:  # `p@ss:x/y`: the '@' is before a '/'
            return raw_at
        return (
            "not a valid SQLAlchemy URL (write dialect+driver://user:password@host:port/database); "
            "the value is not shown because it may contain a password"
        )
    rest = [parsed.host, parsed.database, *parsed.query.keys(), *map(str, parsed.query.values())]
    if parsed.password is not None and any("@" in str(part or "") for part in rest):
        return raw_at
    return None


class _Placeholders(dict[str, str]):
    """The environment with a stand-in for every unset variable (`load_project(..., unset_ok=True)`)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return "unset"


def _placeholder(value: str, loc: tuple[str | int, ...]) -> str:
    """`value` with its unset variables stood in for: a whole URL by an in-memory SQLite one."""
    if loc and loc[-1] == "url" and settings.variables_in(value) and value.strip().startswith("${"):
        name = settings.variables_in(value)[0]
        if value.strip() == f"${{{name}}}" and name not in settings.environ():
            return "sqlite://"
    return settings.interpolate(value, _Placeholders(settings.environ()))


def _notify_issues(raw: Any, smap: SourceMap) -> list[ConfigIssue]:
    """The `notify:` section checked as the alerts read it, located; found when the config loads, not when a
    failed run is about to be reported (and exit with this error's code instead of its own)."""
    if not raw:
        return []
    from etl.notify.config import ChannelConfig, NotifyConfig

    parts: list[tuple[Loc, type[BaseModel], Any]] = (
        [(("notify", i), ChannelConfig, item) for i, item in enumerate(raw)]  # a bare list of channels
        if isinstance(raw, list)
        else [(("notify",), NotifyConfig, raw)]
    )
    issues: list[ConfigIssue] = []
    for base, model, value in parts:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc, smap, model, base))
    if not issues:
        try:
            NotifyConfig.model_validate(raw)  # across channels (distinct names)
        except ValidationError as exc:
            issues.extend(smap.issue(("notify",), str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors())
    return issues


def load_project(path: Path | str, *, unset_ok: bool = False) -> ProjectConfig:
    """Load and validate `erpoa.yaml`, reporting every problem at once.

    `unset_ok`: for checks that connect to nothing (`mappings check`, `expectations check`), an unset
    `${VAR}` is stood in for instead of being an error, so that they run without the production secrets.
    Such a config must not be used to connect.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            [ConfigIssue(str(path), None, None, "", "config file not found; run `erpoa demo` or pass --config PATH")]
        )
    if path.is_dir():
        raise ConfigError(
            [ConfigIssue(str(path), None, None, "", f"is a folder, not a config file; pass the file: "
                         f"--config {path / 'erpoa.yaml'}")]
        )
    try:
        data, smap = load_yaml(path)
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(str(path), None, None, "", f"cannot read the config file ({exc.strerror or exc}); "
                         "check the path and its permissions")]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", "the config must be a mapping with `connections:`")])
    issues, secret_names = _literal_passwords(data, smap)
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
    data = _interpolate(data, smap, (), issues, secret_names, unset_ok)
    issues.extend(_unencoded_passwords(data, smap))
    try:
        config: ProjectConfig = validate_model(ProjectConfig, data, smap)
    except ConfigError as exc:
        raise ConfigError(sort_issues([*issues, *exc.issues])) from None
    issues.extend(_notify_issues(config.notify, smap))
    recon = config.connections.get("recon")
    if recon is not None and recon.read_only:
        issues.append(smap.issue(("connections", "recon", "read_only"), READ_ONLY_STORE))
    if issues:
        raise ConfigError(sort_issues(issues))
    connections = {name: _sqlite_beside(conn, path.resolve().parent) for name, conn in config.connections.items()}
    return config.model_copy(update={"config_path": path.resolve(), "connections": connections})


def sqlite_file(database: str | None) -> Path | None:
    """The file a SQLite URL's database part names; None for an in-memory database or a `file:` URI (opened as
    written)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_beside(conn: ConnectionConfig, folder: Path) -> ConnectionConfig:
    """`conn` with a relative SQLite file made relative to the config file's folder, like `mappings:` and the other
    paths of erpoa.yaml: read from the working directory, a sync started elsewhere (cron) made new, empty files."""
    if conn.url is None or not conn.url.get_secret_value().startswith("sqlite"):
        return conn
    from sqlalchemy.engine import make_url

    url = make_url(conn.url.get_secret_value())
    file = sqlite_file(url.database)
    if file is None or file.expanduser().is_absolute():
        return conn
    absolute = url.set(database=str(folder / file))
    return conn.model_copy(update={"url": SecretStr(absolute.render_as_string(hide_password=False))})
