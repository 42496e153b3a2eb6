"""The flow language: one `mappings/flows/<flow>.yaml` per approval-driven flow, loaded into strict models.

A flow reads approved OA requests (see `approval`), maps each request's form
(header and optional lines) with the transform language of the entity mappings,
and creates exactly one ERP document per request. docs/approvals.md describes
every key; checks across files live in `etl.flows.load_flows`; `apply_fields` applies
the field specs to OA rows.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

import pandas as pd
from pydantic import Field, field_validator, model_validator

from etl.mapping.model import QUERY_HINT, CanonicalField, FieldType, Strict, check_identifier

FLOW_KINDS = ("purchase_order", "contract_archive")
_PREFIX = re.compile(r"^[A-Za-z0-9_\-]{0,12}$")


class Named(Strict):
    """A model whose `identifiers` fields are table/column names: plain identifiers only (they are quoted).

    `identifier_hint` ends the message of a bad name where the model offers a way out (only the form's header
    has a `query:`).
    """

    identifiers: ClassVar[tuple[str, ...]] = ()
    identifier_hint: ClassVar[str | None] = None

    @model_validator(mode="after")
    def _plain_names(self) -> Named:
        for attr in self.identifiers:
            value = getattr(self, attr)
            for name in value if isinstance(value, list | dict) else [value]:
                if name is not None:
                    check_identifier(str(name), attr.replace("_", " "), hint=self.identifier_hint)
        return self


class ExistsSpec(Named):
    """`exists:` of a field: its value must be one of the distinct values of an ERP column (read once per run)."""

    table: str
    column: str
    connection: str | None = Field(default=None, description="default: the flow's ERP target connection")

    identifiers = ("table", "column")

    @property
    def key(self) -> str:
        """The name under which a run passes this column's values to `apply_fields` (see `known_values`)."""
        return f"exists:{self.connection or ''}:{self.table}.{self.column}"


class FieldSpec(Strict):
    """One ERP column filled from the OA form: source column(s), transforms, type and checks."""

    from_: str | list[str] | None = Field(default=None, alias="from")
    transforms: list[str | dict[str, Any]] = Field(default_factory=list)
    type: FieldType = "string"
    scale: int | None = Field(default=None, ge=0, le=10)
    length: int | None = Field(default=None, ge=1, le=4000)
    required: bool = False
    check: Literal["positive", "non_negative"] | None = None
    exists: ExistsSpec | None = None

    @field_validator("from_")
    @classmethod
    def _columns(cls, value: str | list[str] | None) -> str | list[str] | None:
        for column in [value] if isinstance(value, str) else value or []:
            check_identifier(column, "column", hint=None)
        return value

    @model_validator(mode="after")
    def _typed(self) -> FieldSpec:
        self.canonical()  # the same scale rules as the entity mappings
        if self.check and self.type not in ("integer", "decimal"):
            raise ValueError(f"`check: {self.check}` applies to integer and decimal fields, not {self.type}")
        return self

    @property
    def columns(self) -> list[str]:
        """The source columns this field reads."""
        if self.from_ is None:
            return []
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)

    def canonical(self) -> CanonicalField:
        """The field as a canonical field (for type coercion)."""
        return CanonicalField(type=self.type, scale=self.scale, length=self.length)


def _shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({"from": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


class FieldsSpec(Strict):
    """ERP column -> FieldSpec, for the document header and its lines."""

    header: dict[str, FieldSpec]
    lines: dict[str, FieldSpec] = Field(default_factory=dict)

    @field_validator("header", "lines", mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _shorthand(value)


class UsersSpec(Named):
    """Where approver ids are resolved to a code and a name (e-cology: HrmResource)."""

    table: str = "HrmResource"
    id: str = "id"
    code: str = "workcode"
    name: str = "lastname"
    code_transforms: list[str | dict[str, Any]] = Field(default_factory=list)

    identifiers = ("table", "id", "code", "name")


class LogTypes(Strict):
    """e-cology `workflow_requestlog.logtype` codes."""

    submit: list[str] = Field(default_factory=lambda: ["2"])
    approve: list[str] = Field(default_factory=lambda: ["0"])
    reject: list[str] = Field(default_factory=lambda: ["3"])
    withdraw: list[str] = Field(default_factory=lambda: ["7"])
    force_archive: list[str] = Field(default_factory=lambda: ["e"])


class EcologyApproval(Named):
    """Weaver e-cology: archived (`currentnodetype`), not deleted, no rejection/withdrawal since the last submit."""

    engine: Literal["ecology"]
    workflow_id: list[int]
    requestbase: str = "workflow_requestbase"
    requestlog: str = "workflow_requestlog"
    archived_nodetypes: list[str] = Field(default_factory=lambda: ["3"])
    logtypes: LogTypes = Field(default_factory=LogTypes)
    force_archived: Literal["hold", "approve"] = "hold"
    users: UsersSpec | None = Field(default_factory=UsersSpec)

    identifiers = ("requestbase", "requestlog")

    @field_validator("workflow_id", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class FlowableApproval(Named):
    """Flowable/Activiti: a finished process instance whose outcome variable says approve."""

    engine: Literal["flowable"]
    process_key: str
    outcome_variable: str = "outcome"
    approve_values: list[str] = Field(default_factory=lambda: ["approve", "approved", "同意"])
    procinst_table: str = "ACT_HI_PROCINST"
    varinst_table: str = "ACT_HI_VARINST"
    taskinst_table: str = "ACT_HI_TASKINST"
    users: UsersSpec | None = None

    identifiers = ("procinst_table", "varinst_table", "taskinst_table")


class StatusFieldApproval(Named):
    """A status column (of the form or of the request table) says approved, rejected, withdrawn, deleted."""

    engine: Literal["status_field"]
    table: str
    key: str = Field(description="column holding the OA request id")
    field: str
    approved: list[str] = Field(min_length=1)
    rejected: list[str] = Field(default_factory=list)
    withdrawn: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    deleted_column: str | None = Field(default=None, description="a flag column; non-zero means deleted")
    where: dict[str, str | int] = Field(default_factory=dict, description="equality filters, e.g. workflowid: 12")
    approved_at: list[str] = Field(default_factory=list, description="date column, optionally followed by a time")
    approver: str | None = None
    users: UsersSpec | None = None

    identifiers = ("table", "key", "field", "deleted_column", "approver", "approved_at", "where")

    @field_validator("approved_at", mode="before")
    @classmethod
    def _one_or_two(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _date_and_time(self) -> StatusFieldApproval:
        if len(self.approved_at) > 2:
            raise ValueError("`approved_at` is one datetime column, or a date column and a time column")
        return self


Approval = Annotated[EcologyApproval | FlowableApproval | StatusFieldApproval, Field(discriminator="engine")]


class HeaderSource(Named):
    """The OA form's main table (or a SELECT joining it to people and departments)."""

    table: str | None = None
    query: str | None = None
    id: str = "id"
    request_id: str = "requestid"
    number: str | None = Field(default=None, description="the form's own number, shown in reports")

    identifiers = ("table", "id", "request_id", "number")
    identifier_hint = QUERY_HINT

    @field_validator("query")
    @classmethod
    def _select_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        head = value.lstrip().split(None, 1)[0].lower() if value.strip() else ""
        if head not in {"select", "with"} or ";" in value.strip().rstrip(";"):
            raise ValueError("`query` must be one read-only SELECT statement")
        return value.strip().rstrip(";")

    @model_validator(mode="after")
    def _table_or_query(self) -> HeaderSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table:` or `query:`")
        return self


class LinesSource(Named):
    """The form's detail table (`*_dt1`)."""

    table: str
    id: str = "id"
    parent: str = "mainid"
    order_by: str | None = None

    identifiers = ("table", "id", "parent", "order_by")


class SourceSpec(Strict):
    """Where the forms are read (always through a read-only engine)."""

    connection: str = "oa"
    header: HeaderSource
    lines: LinesSource | None = None


class TargetHeader(Named):
    """The ERP document table and the columns the flow fills itself."""

    table: str
    number: str = Field(description="document number column (docno rule, or mapped under fields.header)")
    request_ref: str = Field(description="column that carries the OA request id (U8: cDefine10 / cOARequestID)")
    id: str | None = Field(default=None, description="numeric key allocated as max+1 under the flow lock")
    date: str | None = None
    modified: str | None = None
    memo: str | None = None
    amount: str | None = Field(default=None, description="header amount column (else the sum of line amounts)")

    identifiers = ("table", "number", "request_ref", "id", "date", "modified", "memo", "amount")

    @property
    def system_columns(self) -> list[str]:
        return [c for c in (self.id, self.request_ref, self.date, self.modified) if c]


class TargetLines(Named):
    """The ERP document's line table."""

    table: str
    id: str
    parent: str
    row_no: str | None = None
    quantity: str | None = None
    amount: str | None = None

    identifiers = ("table", "id", "parent", "row_no", "quantity", "amount")

    @property
    def system_columns(self) -> list[str]:
        return [c for c in (self.id, self.parent, self.row_no) if c]


class LinkSpec(Named):
    """The link table in the ERP database: one row per OA request, written in the document's transaction."""

    table: str
    number_column: str = "doc_no"

    identifiers = ("table", "number_column")


class TargetSpec(Strict):
    """Where documents are created: a read-write ERP connection."""

    connection: str = "erp_write"
    fallback_connection: str | None = Field(default=None, description="used when `connection` is not configured")
    header: TargetHeader
    lines: TargetLines | None = None
    link: LinkSpec


class DocNoRule(Strict):
    """Document numbers: prefix + date + zero-padded sequence, e.g. PO202611240001."""

    prefix: str = ""
    date_format: str = "%Y%m%d"
    width: int = Field(default=4, ge=1, le=10)
    date: Literal["today", "approved"] = "today"

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("prefix: up to 12 letters, digits, '-' or '_'")
        return value

    @field_validator("date_format")
    @classmethod
    def _digits_only(cls, value: str) -> str:
        if value and not date(2026, 11, 24).strftime(value).isdigit():
            raise ValueError(f"date_format {value!r} must render digits only, e.g. %Y%m%d or %y%m")
        return value


class WritebackSpec(Named):
    """The ERP number written back to the OA form (through a write connection, never the read-only source)."""

    enabled: bool = True
    connection: str = "oa_write"
    fallback_connection: str | None = Field(default=None, description="used when `connection` is not configured")
    table: str
    key: str = "requestid"
    field: str
    status_field: str | None = None
    status_value: str | None = None
    batch: int = Field(default=200, ge=1, le=5000)

    identifiers = ("table", "key", "field", "status_field")

    @model_validator(mode="after")
    def _status_pair(self) -> WritebackSpec:
        if (self.status_field is None) != (self.status_value is None):
            raise ValueError("give both `status_field` and `status_value`, or neither")
        return self


class ChangesSpec(Named):
    """What happens when an approved request changes after its document exists: reported, optionally flagged."""

    flag_column: str | None = Field(default=None, description="default: target.header.memo")
    amended_prefix: str | None = "[OA已变更]"
    cancelled_prefix: str | None = "[OA已撤销]"
    flag_length: int = Field(default=255, ge=10)
    hash_header: list[str] | None = Field(default=None, description="form columns hashed (default: the mapped ones)")
    hash_lines: list[str] | None = Field(default=None, description="line columns hashed (default: the mapped ones)")

    identifiers = ("flag_column", "hash_header", "hash_lines")


class AuditSpec(Strict):
    """What the compliance views compare between the OA request and its ERP document."""

    compare_header: list[str] = Field(default_factory=list)
    compare_lines: list[str] = Field(default_factory=list)
    tolerance: float = Field(default=0.005, ge=0)


class FlowSpec(Strict):
    """One flow file."""

    flow: str
    kind: Literal["purchase_order", "contract_archive"]
    description: str | None = None
    enabled: bool = True
    source: SourceSpec
    approval: Approval
    target: TargetSpec
    docno: DocNoRule | None = None
    fields: FieldsSpec
    writeback: WritebackSpec | None = None
    changes: ChangesSpec = Field(default_factory=ChangesSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    period: list[str] | None = Field(
        default=None, min_length=2, max_length=2,
        description="[start, end] mapped header columns: a document ending before it starts is held")

    @field_validator("flow")
    @classmethod
    def _flow_name(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]{0,40}$", value):
            raise ValueError(f"flow name '{value}' must be lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlowSpec:
        if (self.source.lines is None) != (self.target.lines is None):
            raise ValueError("give `lines` under both `source` and `target`, or under neither")
        if self.target.lines is None and self.fields.lines:
            raise ValueError("`fields.lines` needs `source.lines` and `target.lines`")
        if self.kind == "purchase_order" and self.target.lines is None:
            raise ValueError("a purchase_order flow needs `lines` (the requisition's detail table)")
        mapped_number = self.target.header.number in self.fields.header
        if self.docno is not None and mapped_number:
            raise ValueError(f"the number column '{self.target.header.number}' is both mapped and numbered by docno")
        if self.docno is None and not mapped_number:
            raise ValueError(
                f"say how documents are numbered: a `docno:` rule, or map '{self.target.header.number}' "
                "under fields.header"
            )
        return self

    @property
    def flag_column(self) -> str | None:
        return self.changes.flag_column or self.target.header.memo

    @property
    def hash_columns(self) -> tuple[list[str], list[str]]:
        """(header, line) source columns whose content identifies an approved request's version."""
        header = self.changes.hash_header
        lines = self.changes.hash_lines
        if header is None:
            header = sorted({c for f in self.fields.header.values() for c in f.columns})
        if lines is None:
            lines = sorted({c for f in self.fields.lines.values() for c in f.columns})
        return list(header), list(lines)


# --------------------------------------------------------------------------- applying fields

PROBLEM_COLUMNS = ["row", "field", "rule", "value", "reason"]
#: The column `purchase_order.read_forms` adds to line rows (the owning request id): line problems name their line.
LINE_OWNER = "_request_id"
Reason: TypeAlias = str | pd.Series


def apply_transforms(value: Any, specs: list[Any], ctx: Any) -> Any:
    """Run YAML transform specs over a series (the registry's functions, as `map_chunk` does)."""
    from etl.mapping import registry

    for raw_spec in specs:
        name, args = registry.split_spec(raw_spec)
        tdef = registry.get(name)
        value = tdef.fn(value, registry.parse_args(tdef, args), ctx)
    return value


def known_values(code_tables: Any, check: ExistsSpec) -> set[str] | None:
    """The values an `exists:` check accepts, as the run passed them among the code tables (None: not checked)."""
    getter = getattr(code_tables, "get", None)
    return getter(check.key) if getter is not None else None


def _text(series: pd.Series, *, strip: bool = False) -> pd.Series:
    """Values as text (stripped with `strip`), NULL as None: never the text "nan"."""
    from etl.mapping.types import as_text

    text = as_text(series)
    text = text.str.strip() if strip else text
    return text.astype(object).where(text.notna(), None)


def _unknown_codes(name: str, fspec: FieldSpec, typed: pd.Series, flagged: pd.Series,
                   code_tables: Any) -> tuple[pd.Series, str, Reason] | None:
    """The `exists:` check of a field: non-empty values missing from the ERP column."""
    check = fspec.exists
    known = None if check is None else known_values(code_tables, check)
    if check is None or known is None:
        return None
    text = _text(typed, strip=True)
    missing = text.notna() & ~text.isin(known) & ~flagged
    reason = f"{name} " + text.map(repr).astype(str) + f" not found in the ERP's {check.table}.{check.column}"
    return missing, f"unknown_{name}", reason


def _masks(name: str, fspec: FieldSpec, raw: pd.DataFrame, typed: pd.Series, bad: pd.Series, ctx: Any,
           code_tables: Any) -> list[tuple[pd.Series, str, Reason]]:
    """(rows, rule, reason) of every problem of one field."""
    masks: list[tuple[pd.Series, str, Reason]] = [
        (bad, f"type:{fspec.type}", f"not a valid {fspec.type}"),
        *((r.mask.reindex(raw.index, fill_value=False), r.rule, r.reason) for r in ctx.rejections)]
    flagged = pd.Series(False, index=raw.index)
    for mask, _, _ in masks:
        flagged |= mask.astype(bool)
    if fspec.required:
        masks.append((typed.isna() & ~flagged, "required", f"{name} is required but empty"))
    if fspec.check is not None:
        numbers = pd.to_numeric(typed, errors="coerce")
        failed = numbers <= 0 if fspec.check == "positive" else numbers < 0
        must = fspec.check.replace("_", "-")
        masks.append((failed.fillna(False).astype(bool), fspec.check, f"{name} must be {must}"))
    unknown = _unknown_codes(name, fspec, typed, flagged, code_tables)
    if unknown is not None:
        masks.append(unknown)
    return masks


def _line_numbers(raw: pd.DataFrame) -> pd.Series | None:
    """1-based position of each line within its request (the document's row number); None for header rows."""
    if LINE_OWNER not in raw.columns:
        return None
    return raw.groupby(LINE_OWNER, sort=False).cumcount() + 1


def _problems(name: str, raw: pd.DataFrame, source_text: pd.Series, masks: list[tuple[pd.Series, str, Reason]],
              lines: pd.Series | None) -> list[pd.DataFrame]:
    """One problem row per (row, rule); a line's field and reason name the line (`lines[2].iQuantity`)."""
    found = []
    for found_mask, rule, reason in masks:
        hit = found_mask.astype(bool).to_numpy()
        if not hit.any():
            continue
        why = list(reason[hit]) if isinstance(reason, pd.Series) else [reason] * int(hit.sum())
        field: Any = name
        if lines is not None:
            numbers = lines[hit].astype(str).to_numpy()
            field = [f"lines[{n}].{name}" for n in numbers]
            why = [f"line {n}: {r}" for n, r in zip(numbers, why, strict=True)]
        found.append(pd.DataFrame({"row": raw.index[hit], "field": field, "rule": rule,
                                   "value": source_text[hit].to_numpy(), "reason": why}))
    return found


def apply_fields(
    raw: pd.DataFrame, fields: dict[str, FieldSpec], code_tables: Any, *, as_of: date, timezone: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map `raw` (index kept) to the ERP columns of `fields`.

    Returns the typed values and one problem row per (row, field, rule): transform
    rejections, type errors, `required` values missing, failed `check`s and values
    an `exists:` check does not find (when the run passed the ERP column's values
    in `code_tables` under `ExistsSpec.key`). An empty value is None, never "nan";
    on line rows (those carrying `LINE_OWNER`) the field reads `lines[<row>].<column>`.
    """
    from etl.mapping.registry import TransformContext
    from etl.mapping.types import coerce_series

    out: dict[str, pd.Series] = {}
    problems: list[pd.DataFrame] = []
    lines = _line_numbers(raw)
    for name, fspec in fields.items():
        cols = fspec.columns
        value: Any = raw[cols] if len(cols) > 1 else raw[cols[0]] if cols else pd.Series(
            [None] * len(raw), index=raw.index, dtype=object)
        ctx = TransformContext(field=name, source="oa", frame=raw, code_tables=code_tables, as_of=as_of,
                               timezone=timezone)
        value = apply_transforms(value, fspec.transforms, ctx)
        typed, bad = coerce_series(value, fspec.canonical(), timezone)
        masks = _masks(name, fspec, raw, typed, bad, ctx, code_tables)
        source_text = _text(raw[cols[0]]) if cols else _text(typed)
        problems.extend(_problems(name, raw, source_text, masks, lines))
        out[name] = typed
    values = pd.DataFrame(out, index=raw.index)
    found = pd.concat(problems, ignore_index=True) if problems else pd.DataFrame(columns=PROBLEM_COLUMNS)
    return values, found
