"""The mapping language: one `mappings/<entity>.yaml` per entity, loaded into strict models.

See docs/mapping.md for every key with examples. Cross-file checks (code tables
exist, referenced entities exist, no cycles) live in `etl.mapping.loader`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

FieldType = Literal["string", "integer", "decimal", "date", "datetime", "boolean"]
#: Han characters: the unified block and its extensions (A, and B onwards in the supplementary planes), 〇, and the
#: compatibility ideographs.
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: A plain identifier (quoted in every statement, never spliced): it may start with a digit (`2024_单据`).
IDENT = re.compile(rf"^[A-Za-z0-9_{_HAN}][A-Za-z0-9_$#{_HAN}]{{0,127}}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
RESERVED_PREFIX = "_"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


QUERY_HINT = "use `query:` for anything more complex"


def check_identifier(value: str, what: str, *, hint: str | None = QUERY_HINT) -> str:
    """Table and column names from YAML must be plain identifiers (they are quoted, never spliced).

    `hint` ends the message where the key's context offers a way out (a source's `query:`); None where it has none.
    """
    parts = value.split(".")
    if len(parts) > 2 or not all(IDENT.match(p) for p in parts):
        message = f"{what} '{value}' is not a plain identifier (letters, digits, _ ; optionally schema.table)"
        raise ValueError(f"{message}; {hint}" if hint else message)
    return value


def parse_duration(value: Any) -> timedelta:
    """`10m`, `2h`, `1d`, `30s` or a number of seconds -> timedelta."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        match = _DURATION.match(str(value))
        if match:
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ValueError(f"'{value}' is too long a duration") from None
    raise ValueError(f"'{value}' is not a duration; write e.g. 30s, 10m, 2h or 1d")


#: The size of a `string` field's target column when the field sets no `length:`.
DEFAULT_LENGTH = 255


class CanonicalField(Strict):
    """A field of the golden record, with its declared type."""

    type: FieldType = "string"
    scale: int | None = Field(default=None, ge=0, le=10)
    length: int | None = Field(default=None, ge=1, le=4000)
    nullable: bool = True
    pii: bool = False
    description: str | None = None
    references: str | None = Field(default=None, description="entity.field this field points to")
    on_missing_reference: Literal["quarantine", "fail"] = "quarantine"
    tolerance: float | None = Field(default=None, ge=0, description="numeric tolerance when reconciling")
    compare: bool = True

    @property
    def max_length(self) -> int:
        """The most characters a `string` value may have: `length:`, else the target column's default size."""
        return self.length or DEFAULT_LENGTH

    @model_validator(mode="after")
    def _scale_for_decimals(self) -> CanonicalField:
        if self.type == "decimal" and self.scale is None:
            raise ValueError("a decimal field needs `scale:` (digits after the point), e.g. scale: 2")
        if self.type != "decimal" and self.scale is not None:
            raise ValueError(f"`scale` applies to decimal fields only; this field is {self.type}")
        if self.references is not None and not re.match(r"^\w+\.\w+$", self.references):
            raise ValueError(f"references '{self.references}' must be written entity.field, e.g. department.code")
        return self


class SourceField(Strict):
    """How one source feeds one canonical field."""

    from_: str | list[str] | None = Field(default=None, alias="from")
    transforms: list[str | dict[str, Any]] = Field(default_factory=list)

    @field_validator("from_")
    @classmethod
    def _columns_are_identifiers(cls, value: str | list[str] | None) -> str | list[str] | None:
        for column in [value] if isinstance(value, str) else value or []:
            check_identifier(column, "column")
        return value

    @property
    def columns(self) -> list[str]:
        """The source columns this field reads."""
        if self.from_ is None:
            return []
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)


class ApprovalSpec(Strict):
    """When an OA record counts as approved (approval-driven flows)."""

    field: str = Field(description="canonical field holding the approval state")
    approved: list[str]
    rejected: list[str] = Field(default_factory=list)


#: The longest `overlap:` (a window reaching before the year 1 failed the read).
MAX_OVERLAP = timedelta(days=366)


class SourceSpec(Strict):
    """Where one system's records come from and how they map."""

    connection: str | None = None
    table: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    query: str | None = None
    filter: str | None = None
    id: list[str] = Field(description="source id column(s), kept in the cross-reference")
    cursor: str | None = None
    overlap: timedelta = Field(default=timedelta(minutes=10))
    sweep: bool = Field(default=True, description="detect vanished records with a keys-only sweep")
    fields: dict[str, SourceField]
    approval: ApprovalSpec | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("overlap", mode="before")
    @classmethod
    def _overlap(cls, value: Any) -> timedelta:
        overlap = parse_duration(value)
        if overlap < timedelta(0):
            raise ValueError(f"overlap {value!r} is negative: it is a window before the watermark; give e.g. 10m")
        if overlap > MAX_OVERLAP:
            raise ValueError(
                f"overlap {value!r} is longer than {MAX_OVERLAP.days} days; for a complete read run "
                "`erpoa sync <entity> --full-refresh`"
            )
        return overlap

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand_fields(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"from": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("table", "schema_", "cursor")
    @classmethod
    def _identifiers(cls, value: str | None) -> str | None:
        return check_identifier(value, "name") if value is not None else None

    @field_validator("id")
    @classmethod
    def _id_identifiers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one id column")
        return [check_identifier(v, "id column") for v in value]

    @field_validator("query")
    @classmethod
    def _read_only_query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        head = value.lstrip().split(None, 1)[0].lower() if value.strip() else ""
        if head not in {"select", "with"}:
            raise ValueError("`query` must be a read-only SELECT (or WITH ... SELECT) statement")
        if ";" in value.strip().rstrip(";"):
            raise ValueError("`query` must be one statement; remove the ';'")
        return value.strip().rstrip(";")

    @model_validator(mode="after")
    def _table_or_query(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table:` (with optional `filter:`) or `query:`")
        if self.query is not None and self.filter is not None:
            raise ValueError("`filter` applies to `table:` sources; put the condition into the query")
        return self

    @property
    def columns(self) -> list[str]:
        """Every source column read: ids, cursor, mapped columns (in order, unique)."""
        cols = [*self.id, *([self.cursor] if self.cursor else [])]
        for spec in self.fields.values():
            cols.extend(spec.columns)
        return list(dict.fromkeys(cols))


Priority = list[str] | Literal["most_recent"]


class Survivorship(Strict):
    """Which source wins, per field: a priority list or `most_recent`."""

    default: Priority = Field(default_factory=lambda: ["erp", "oa"])
    fields: dict[str, Priority] = Field(default_factory=dict)
    recency_field: str | None = Field(
        default=None, description="canonical datetime field telling when each source last changed the record"
    )

    def rule(self, field: str) -> Priority:
        """The rule for `field`."""
        return self.fields.get(field, self.default)


class TargetSpec(Strict):
    """Where golden records are published."""

    table: str
    connection: str = "target"
    key: list[str] | None = None

    @field_validator("table")
    @classmethod
    def _table_identifier(cls, value: str) -> str:
        return check_identifier(value, "table", hint=None)  # a target has no `query:`


class DeletionSpec(Strict):
    """How records that vanished or were deactivated at the sources are inactivated."""

    status_field: str | None = None
    inactive_values: list[str] = Field(default_factory=list)
    set_status: str | None = Field(default=None, description="value written to status_field on inactivation")


class QualitySpec(Strict):
    """Quality gate settings for the entity."""

    suite: str | None = None
    max_quarantined_pct: float | None = Field(default=None, ge=0, le=100)
    max_quarantined_rows: int | None = Field(default=None, ge=0)
    max_vanished_pct: float | None = Field(default=None, ge=0, le=100)
    pct_min_rows: int | None = Field(default=None, ge=0)
    row_count_band: tuple[float, float] | None = None

    @field_validator("row_count_band")
    @classmethod
    def _band_in_order(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        # an inverted band would refuse every full refresh; the suite's `meta.relative_to_previous` says the same
        if value is not None and not 0 <= value[0] <= value[1]:
            raise ValueError(f"must be [low, high] with 0 <= low <= high, got [{value[0]:g}, {value[1]:g}]")
        return value


def _field_name(name: str) -> str:
    if name.startswith(RESERVED_PREFIX) or not re.match(r"^[a-z][a-z0-9_]{0,62}$", name):
        raise ValueError(f"field name '{name}' must be lower-case letters, digits and _ and not start with _")
    return name


# Checked as a key of `fields:`, so that pydantic locates a bad name at the key, not at `fields:`.
FieldName = Annotated[str, AfterValidator(_field_name)]


class EntityMapping(Strict):
    """One entity's mapping file."""

    entity: str
    description: str | None = None
    version: str | None = None
    key: list[str]
    fields: dict[FieldName, CanonicalField]
    sources: dict[str, SourceSpec]
    survivorship: Survivorship = Field(default_factory=Survivorship)
    target: TargetSpec
    depends_on: list[str] = Field(default_factory=list)
    deletion: DeletionSpec = Field(default_factory=DeletionSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    partition_rows: int | None = Field(default=None, ge=1000)

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("entity")
    @classmethod
    def _entity_name(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]{0,40}$", value):
            raise ValueError(f"entity name '{value}' must be lower-case letters, digits and _ (e.g. employee)")
        return value

    @property
    def target_key(self) -> list[str]:
        return self.target.key or self.key

    @property
    def references(self) -> dict[str, tuple[str, str]]:
        """field -> (entity, field) for fields that reference another entity."""
        out = {}
        for name, spec in self.fields.items():
            if spec.references:
                entity, other = spec.references.split(".")
                out[name] = (entity, other)
        return out

    @property
    def dependencies(self) -> list[str]:
        """Entities that must be synced before this one."""
        deps = [*self.depends_on, *(e for e, _ in self.references.values())]
        return [d for d in dict.fromkeys(deps) if d != self.entity]

    @property
    def pii_fields(self) -> list[str]:
        return [name for name, spec in self.fields.items() if spec.pii]
