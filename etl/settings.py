"""The environment behind `erpoa.yaml`: its `${VAR}` references are resolved here and nowhere else.

`${VAR}` and `${VAR:-default}` in configuration values are resolved here, so that
passwords live in the environment (or Airflow Connections), never in YAML. A password
must be a `${VAR}` alone, without a default (checked by `etl.config.project`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingVariable(LookupError):
    """An interpolated variable is not set and has no default."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


def environ() -> Mapping[str, str]:
    """The process environment (read in this module only)."""
    return os.environ


def getenv(name: str, default: str | None = None) -> str | None:
    """One environment variable."""
    return os.environ.get(name, default)


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Replace `${VAR}` / `${VAR:-default}` in `value`; raises MissingVariable."""
    env = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingVariable(name)

    return _VAR.sub(replace, value)


def has_variables(value: Any) -> bool:
    """True when `value` is text that contains `${...}` references."""
    return isinstance(value, str) and bool(_VAR.search(value))


def variables_in(value: str) -> list[str]:
    """Names referenced as `${VAR}` in `value`."""
    return [m.group(1) for m in _VAR.finditer(value)]
