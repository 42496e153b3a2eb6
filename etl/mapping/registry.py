"""The transform registry: how a transform is declared, validated and applied.

A transform is one small pure function ``fn(series, args, ctx) -> series`` plus a
pydantic model of its arguments, registered under a name with `@transform`:

    class PadArgs(TransformArgs):
        width: int

    @transform("pad_zeros", PadArgs, shorthand="width")
    def pad_zeros(s: pd.Series, args: PadArgs, ctx: TransformContext) -> pd.Series: ...

In YAML a transform is written as a bare name (``- trim``), as ``{name: scalar}``
(the scalar fills the `shorthand` argument: ``- pad_zeros: 6``) or as
``{name: {arg: value}}``. Functions must be vectorized: no per-row Python.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd

    from etl.mapping.codes import CodeTable


class TransformArgs(BaseModel):
    """Base of every transform's argument model: strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(TransformArgs):
    """For transforms that take no arguments."""


@dataclass
class Rejection:
    """Rows a transform could not map: `mask` marks them in the input series."""

    mask: pd.Series
    rule: str
    reason: str


@dataclass
class Gap:
    """Values a lookup did not map but kept (policy `pass`) or defaulted: reported, not rejected."""

    values: pd.Series
    table: str
    policy: str


@dataclass
class TransformContext:
    """What a transform may read besides its input: never I/O, only in-memory data.

    `frame` is the raw source chunk (for transforms that combine columns),
    `code_tables` the governed code tables by name, `as_of` the date that selects
    which code table entries are valid, `timezone` the project timezone, `pii` whether the field
    holds personal data (a reason then quotes no raw value).
    """

    field: str
    source: str
    frame: pd.DataFrame
    code_tables: Mapping[str, CodeTable]
    as_of: date
    timezone: str = "Asia/Shanghai"
    pii: bool = False
    rejections: list[Rejection] = dc_field(default_factory=list)
    gaps: list[Gap] = dc_field(default_factory=list)

    def reject(self, mask: pd.Series, rule: str, reason: str) -> None:
        """Send the rows under `mask` to quarantine with `rule` and a human `reason`."""
        if bool(mask.any()):
            self.rejections.append(Rejection(mask=mask, rule=rule, reason=reason))


TransformFn = Callable[["pd.Series", Any, TransformContext], "pd.Series"]


@dataclass(frozen=True)
class TextPlace:
    """`Annotated` marker of a transform argument that reads YAML scalars as text, by `convert` (see `scalar_place`)."""

    convert: Callable[[Any], Any]


@dataclass(frozen=True)
class TransformDef:
    """A registered transform."""

    name: str
    fn: TransformFn
    args: type[TransformArgs]
    shorthand: str | None
    doc: str
    multi_column: bool = False


REGISTRY: dict[str, TransformDef] = {}


def transform(
    name: str, args: type[TransformArgs] = NoArgs, *, shorthand: str | None = None, multi_column: bool = False
) -> Callable[[TransformFn], TransformFn]:
    """Register `fn` as transform `name` with argument model `args`.

    `shorthand` names the argument a scalar fills (``pad_zeros: 6``). A
    `multi_column` transform receives a DataFrame of the field's `from` columns.
    """

    def register(fn: TransformFn) -> TransformFn:
        if name in REGISTRY:
            raise ValueError(f"transform {name!r} registered twice")
        REGISTRY[name] = TransformDef(
            name=name, fn=fn, args=args, shorthand=shorthand, doc=(fn.__doc__ or "").strip(), multi_column=multi_column
        )
        return fn

    return register


def split_spec(spec: Any) -> tuple[str, Any]:
    """Split a YAML transform spec into (name, raw arguments)."""
    if isinstance(spec, str):
        return spec, None
    if isinstance(spec, dict) and len(spec) == 1:
        name, raw = next(iter(spec.items()))
        return str(name), raw
    raise ValueError("a transform is a name (`- trim`) or a one-key mapping (`- pad_zeros: 6`)")


def parse_args(tdef: TransformDef, raw: Any) -> TransformArgs:
    """Build the argument model from YAML; raises pydantic.ValidationError or ValueError."""
    if raw is None:
        return tdef.args()
    if isinstance(raw, dict):
        return tdef.args.model_validate(raw)
    if tdef.shorthand is None:
        raise ValueError(f"transform '{tdef.name}' takes no scalar argument; write it as a mapping of arguments")
    return tdef.args.model_validate({tdef.shorthand: raw})


def scalar_place(
    tdef: TransformDef, raw: Any, rel: tuple[str | int, ...], *, key: bool = False
) -> tuple[Callable[[Any], Any], bool] | None:
    """What the arguments `raw` of `tdef` make of the YAML scalar at `rel` (its location inside `raw`; `key`: the
    key of a mapping there): (the conversion to text, whether numbers become text too), or None where a boolean
    or number is taken as such.

    A text argument (``null_if`` values, ``map_values`` keys) turns ``no`` into 'false'; a ``map_values`` value
    keeps any scalar but lands in a text field as often as not, so both count; a lone value (``default``) is
    checked for booleans only, since a number there is usually meant.
    """
    if isinstance(raw, dict):
        if not rel or not isinstance(rel[0], str):
            return None
        name, rest = rel[0], rel[1:]
    elif tdef.shorthand is not None:
        name, rest = tdef.shorthand, rel
    else:
        return None
    fld = tdef.args.model_fields.get(name)
    if fld is None:
        return None
    marks = [m for m in fld.metadata if isinstance(m, TextPlace)]
    if marks and not rest and not key:
        return marks[0].convert, True
    return _place(fld.annotation, rest, key, nested=False)


def _place(
    annotation: Any, rest: tuple[str | int, ...], key: bool, *, nested: bool
) -> tuple[Callable[[Any], Any], bool] | None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        marks = [m for m in args[1:] if isinstance(m, TextPlace)]
        if marks and not rest and not key:
            return marks[0].convert, True
        return _place(args[0], rest, key, nested=nested)
    if origin is list and rest and isinstance(rest[0], int):
        return _place(args[0], rest[1:], key, nested=nested)
    if origin is dict and rest:
        if len(rest) == 1 and key:
            return _place(args[0], (), False, nested=True)
        return _place(args[1], rest[1:], key, nested=True)
    if origin in (typing.Union, types.UnionType):
        if not rest and not key and str in args and bool in args:
            return str, nested
        return next((p for a in args if (p := _place(a, rest, key, nested=nested)) is not None), None)
    return None


def known_transforms() -> list[str]:
    """Names of all registered transforms, sorted."""
    _load_builtins()
    return sorted(REGISTRY)


def get(name: str) -> TransformDef:
    """The registered transform `name`; KeyError when unknown."""
    _load_builtins()
    return REGISTRY[name]


def _load_builtins() -> None:
    import etl.mapping.transforms  # noqa: F401  (registers the built-in transforms)
