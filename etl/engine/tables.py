"""The tables an entity uses in the target database.

- the target table (`target.table` of the mapping): golden records, one per key,
  with bookkeeping columns `_key`, `_bucket`, `_active`, `_presence`, `_hash`,
  `_run_id`, `_mapping_version`, `_updated_at`;
- `erpoa_src_<entity>`: the mirror, the last accepted canonical row of every source record;
- `erpoa_ids_<entity>`: hashes of the mirror's ids, for the deletion sweep (`etl.engine.idhashes`);
- `erpoa_stage_<entity>`: canonical rows extracted by a run (run-scoped);
- `erpoa_gold_<entity>`: golden records a run built, with the action to publish.

`EntityTables.compare` checks tables that exist against the mapping, which may have changed since
they were created: `EntityTables.evolve` applies what is safe, the rest is refused (`SchemaDiff`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.schema import CreateIndex

from etl.db import ddl
from etl.db.connect import byte_exact_tables
from etl.db.write import plain_indexes, refresh_statistics
from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.types import as_text, coerce_series

BUCKETS = 1024
#: `_status` of staged rows a merge refused (see `etl.engine.build._mark_stage_rejected`).
SET_ASIDE = ("held", "duplicate")
KEY_LEN = 255
_PREBUILT = "erpoa: built for run {run} with {rows} rows"
_PREBUILT_MARK = re.compile(r"^erpoa: built for run (\S+) with (\d+) rows$")
META_TARGET = ["_key", "_bucket", "_active", "_presence", "_hash", "_run_id", "_mapping_version", "_updated_at"]


def stageable(src_id: str) -> bool:
    """Whether a source id fits the stage's (and the mirror's) `_src_id`: a longer one is quarantined at the
    extraction (`id_too_long`) and never staged, so its absence from the stage says nothing."""
    return len(src_id) <= KEY_LEN


def sql_type(spec: CanonicalField) -> Any:
    """The column type of a canonical field."""
    types: dict[str, Any] = {
        "string": String(spec.max_length),
        "integer": BigInteger(),
        "decimal": Numeric(20, spec.scale or 0),
        "date": Date(),
        "datetime": DateTime(),
        "boolean": Boolean(),
    }
    return types[spec.type]


def _code(length: int) -> Any:
    """A bookkeeping text column (key, source id, run, status), compared byte for byte on every dialect.

    On PostgreSQL in the "C" collation: its byte order is what the MariaDB/MySQL tables' binary
    collation and SQLite give, and it lets the server sort with `memcmp` and abbreviated keys
    instead of the locale's `strcoll`. Equality is the same in every deterministic collation, so
    these columns still join with those of tables created before.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _field_columns(mapping: EntityMapping, *, key_not_null: bool = False) -> list[Any]:
    return [
        Column(name, sql_type(spec), nullable=not (key_not_null and name in mapping.target_key))
        for name, spec in mapping.fields.items()
    ]


Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaChange:
    """A safe change to a kept table (target or mirror) whose mapping changed, applied before the run writes."""

    table: str
    column: str
    kind: Literal["add", "widen", "nullable"]
    #: The DDL to run; None when the dialect needs none (a wider text column on SQLite).
    statement: str | None
    #: The column's new type, as the dialect spells it.
    type_sql: str

    def note(self, *, planned: bool = False) -> str:
        """What the change does, for the log and the run's message (`planned`: in a plan, what it would do)."""
        verb = {"add": "add column", "widen": "widen column", "nullable": "let column"}[self.kind]
        done = {"add": "added column", "widen": "widened column", "nullable": "let column"}[self.kind]
        what = f"{self.table}.{self.column}"
        tail = {"add": "", "widen": f" to {self.type_sql}", "nullable": " take NULL (no longer mapped)"}[self.kind]
        return f"{'would ' + verb if planned else done} {what}{tail}"


@dataclass(frozen=True)
class Refusal:
    """A difference between a kept table and the mapping that is not applied automatically, at `loc` of the
    mapping file, with the fix."""

    loc: Loc
    message: str


@dataclass
class SchemaDiff:
    """How the entity's existing tables differ from its mapping (`EntityTables.compare`)."""

    changes: list[SchemaChange] = field(default_factory=list)
    #: Work tables (stage, gold) whose columns differ: dropped and created again.
    rebuild: list[Table] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    #: Per kept table, the mapping's columns it does not have yet.
    absent: dict[str, set[str]] = field(default_factory=dict)

    @property
    def complete_read(self) -> bool:
        """Whether columns are added to kept data: the entity's existing rows need their values, from a
        complete read of its sources."""
        return any(c.kind == "add" for c in self.changes)


@dataclass
class EntityTables:
    """SQLAlchemy tables of one entity in the target (or work) database."""

    mapping: EntityMapping
    metadata: MetaData
    target: Table
    mirror: Table
    ids: Table
    stage: Table
    gold: Table

    @classmethod
    def build(cls, mapping: EntityMapping, schema: str | None = None, dialect: str | None = None) -> EntityTables:
        """The entity's tables in `schema`; `dialect` (the target's) only orders the mirror's key (`mirror_key`)."""
        md = MetaData(schema=schema)
        e = mapping.entity
        # Keys are compared byte for byte on every dialect ('abc' and 'ABC' are two keys).
        opts: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
        target = Table(
            mapping.target.table,
            md,
            *[
                Column(
                    name,
                    sql_type(spec),
                    primary_key=name in mapping.target_key,
                    nullable=name not in mapping.target_key,
                )
                for name, spec in mapping.fields.items()
            ],
            Column("_key", _code(KEY_LEN), nullable=False, unique=True),
            Column("_bucket", Integer, nullable=False),
            Column("_active", Boolean, nullable=False),
            Column("_presence", String(40)),
            Column("_hash", BigInteger, nullable=False),
            Column("_run_id", String(40)),
            Column("_mapping_version", String(20)),
            Column("_updated_at", DateTime),
            **opts,
        )
        mirror = Table(
            f"erpoa_src_{e}",
            md,
            Column("_source", _code(40), nullable=False),
            Column("_src_id", _code(KEY_LEN), nullable=False),
            Column("_key", _code(KEY_LEN), nullable=False),
            Column("_bucket", Integer, nullable=False),
            Column("_run", _code(40)),
            PrimaryKeyConstraint(*mirror_key(dialect)),
            *_field_columns(mapping),
            Index(f"ix_erpoa_src_{e}_key", "_key"),
            Index(f"ix_erpoa_src_{e}_bucket", "_bucket"),
            **opts,
        )
        ids = Table(
            f"erpoa_ids_{e}",
            md,
            Column("_source", _code(40), nullable=False),
            Column("_run", _code(40), nullable=False),
            Column("_kind", _code(10), nullable=False),
            Column("_hashes", LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False),
            Index(f"ix_erpoa_ids_{e}", "_source", "_kind"),
            **opts,
        )
        stage = Table(
            f"erpoa_stage_{e}",
            md,
            Column("_run", _code(40), nullable=False),
            Column("_source", _code(40), nullable=False),
            Column("_src_id", _code(KEY_LEN), nullable=False),
            Column("_status", _code(10), nullable=False),
            Column("_key", _code(KEY_LEN)),
            Column("_bucket", Integer),
            *_field_columns(mapping),
            # Without `_run`: `prepare` leaves the rows of one run only, so it would select nothing
            # and only make every entry longer (tables created before keep their older indexes).
            Index(f"ix_erpoa_stage_{e}_bucket", "_bucket"),
            # The id first: every lookup gives both columns, and a sort that compares `_source` first
            # (two or three values) cannot settle on a short prefix of it: twice as slow to build.
            Index(f"ix_erpoa_stage_{e}_id", "_src_id", "_source"),
            **opts,
        )
        # The few rows a merge set aside, found without visiting a partition's staged rows: each
        # merge of a partition first returns them to `ok` (a rerun of it must see them again).
        Index(
            f"ix_erpoa_stage_{e}_held",
            stage.c._bucket,
            postgresql_where=stage.c._status.in_(SET_ASIDE),
            sqlite_where=stage.c._status.in_(SET_ASIDE),
        ).ddl_if(dialect=("postgresql", "sqlite"))  # type: ignore[arg-type]  # a tuple is documented; the hint says str
        gold = Table(
            f"erpoa_gold_{e}",
            md,
            Column("_run", _code(40), nullable=False),
            Column("_key", _code(KEY_LEN), nullable=False),
            Column("_bucket", Integer, nullable=False),
            Column("_action", _code(12), nullable=False),
            Column("_active", Boolean),
            Column("_presence", String(40)),
            Column("_hash", BigInteger),
            Column("_ids", Text),
            *_field_columns(mapping),
            Index(f"ix_erpoa_gold_{e}_run", "_run", "_action"),
            Index(f"ix_erpoa_gold_{e}_key", "_run", "_key"),
            **opts,
        )
        return cls(mapping, md, target, mirror, ids, stage, gold)

    def compare(self, engine: Engine, *, work: bool = True) -> SchemaDiff:
        """Compare the entity's tables in `engine`'s database with the mapping (a few catalogue queries).

        Kept tables (target, mirror): a new field is a column to add, a longer `length:` one to widen;
        a column no longer mapped stays (made nullable if it was NOT NULL). A type, scale or key change
        and a shorter length are refused, with the migration for an administrator. With `work`, the stage
        and gold tables whose columns differ are to be rebuilt (they hold one run's rows, which a rerun
        writes again). Tables that do not exist yet are not compared: `create` makes them.
        """
        with ddl.catalogue(engine) as inspector:
            return self._compare(inspector, engine.dialect, work)

    def _compare(self, inspector: Any, dialect: Dialect, work: bool) -> SchemaDiff:
        diff = SchemaDiff()
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for table in (self.target, self.mirror):
            columns = _reflect(inspector, table)
            if columns is not None:
                found[table.name] = columns
                key = inspector.get_pk_constraint(table.name, schema=table.schema)["constrained_columns"] or []
                if table is self.target and key and set(key) != set(self.mapping.target_key):
                    diff.refused.append(self._key_refusal(key))
                elif not any(r.loc in (("key",), ("target", "key")) for r in diff.refused):
                    refusal = self._key_text_refusal(inspector.bind, table, columns)
                    if refusal is not None:
                        diff.refused.append(refusal)
                self._compare_kept(inspector, dialect, table, columns, set(key), diff)
        for name, spec in self.mapping.fields.items():
            problem = _field_problem(dialect, self, name, spec, found)
            if problem is not None:
                diff.refused.append(problem)
        if work:
            for table in (self.stage, self.gold):
                columns = _reflect(inspector, table)
                if columns is not None and _work_differs(dialect.name, table, columns, self.mapping.fields):
                    diff.rebuild.append(table)
        return diff

    def _compare_kept(
        self,
        inspector: Any,
        dialect: Dialect,
        table: Table,
        columns: dict[str, dict[str, Any]],
        key: set[str],
        diff: SchemaDiff,
    ) -> None:
        """The safe changes of kept `table` (reflected as `columns`) into `diff`; refusals are `_field_problem`'s,
        but for a longer column that a view uses, which PostgreSQL cannot widen (`_view_refusal`)."""
        name = dialect.identifier_preparer.format_table(table)
        for column in self.mapping.fields:
            reflected = columns.get(column)
            if reflected is None:
                diff.absent.setdefault(table.name, set()).add(column)
                added = ddl.add_column(dialect, name, column, table.c[column].type)
                diff.changes.append(
                    SchemaChange(table.name, column, "add", added, ddl.type_sql(table.c[column].type, dialect))
                )
                continue
            want = ddl.column_kind(table.c[column].type, dialect.name)
            have = ddl.column_kind(reflected["type"], dialect.name)
            if want.family == have.family == "string" and have.length is not None and (want.length or 0) > have.length:
                assert want.length is not None
                widened = ddl.widen_string(
                    dialect, name, column, reflected["type"], want.length, bool(reflected["nullable"])
                )
                views = ddl.dependent_views(inspector.bind, name, column) if widened is not None else []
                if views:
                    diff.refused.append(self._view_refusal(table, column, reflected, want.length, views, dialect))
                elif widened is not None:
                    diff.changes.append(SchemaChange(table.name, column, "widen", widened, f"VARCHAR({want.length})"))
        kept = {c.name for c in table.c}
        for column, reflected in columns.items():
            if column in kept or reflected["nullable"] or reflected.get("default") is not None:
                continue
            if column in key:
                continue  # a key column: a key change, refused by `compare`
            relaxed = ddl.drop_not_null(dialect, name, column, reflected["type"])
            if relaxed is None:
                diff.refused.append(
                    Refusal(
                        ("fields",),
                        f"the column {table.name}.{column} is no longer mapped but NOT NULL without a default, so no "
                        f"row could be written, and SQLite cannot let it take NULL: map the field again, or rename "
                        f"{table.name} (e.g. to {table.name}_old) and run `erpoa sync {self.mapping.entity} "
                        "--full-refresh` to build it anew",
                    )
                )
            else:
                diff.changes.append(SchemaChange(table.name, column, "nullable", relaxed, ""))

    def _view_refusal(
        self, table: Table, column: str, reflected: dict[str, Any], length: int, views: list[str], dialect: Dialect
    ) -> Refusal:
        """A longer `length:` of a column that views use: PostgreSQL refuses to change its type while they exist."""
        role = "target" if table is self.target else "mirror"
        first = views[0].rsplit(" ", 1)[-1]
        before = ddl.column_kind(reflected["type"], dialect.name).length
        return Refusal(
            ("fields", column, "length"),
            f"the {role} column {table.name}.{column} is {ddl.type_sql(reflected['type'], dialect)}, the field's "
            f"length is now {length}, but PostgreSQL cannot widen a column that a view uses, and "
            f"{', '.join(views)} use(s) it; nothing was written. Save the view definitions (e.g. SELECT "
            f"pg_get_viewdef('{first}'::regclass, true)), drop the view(s), run `erpoa sync {self.mapping.entity}` "
            f"and create them again; or set the length back to {before}",
        )

    def _key_refusal(self, key: list[str]) -> Refusal:
        mapping = self.mapping
        loc: Loc = ("target", "key") if mapping.target.key else ("key",)
        return Refusal(
            loc,
            f"the primary key of the target table {self.target.name} is ({', '.join(key)}), the mapping's key is "
            f"now ({', '.join(mapping.target_key)}); nothing was written. A key change is not applied automatically: "
            f"set the key back, or {self._rebuild_fix()}",
        )

    def _key_text_refusal(self, conn: Connection, table: Table, columns: Mapping[str, Any]) -> Refusal | None:
        """The refusal of a changed `key:` that the primary key does not show (`target.key:` set apart, or the
        key's fields reordered): the business keys (`_key`) that kept `table` holds are not the mapping's key
        of their rows. Read from a few rows; None when one of them agrees, or the table has none.

        Left unchecked, every record would move to a key in the new form: its old golden record inactivated
        and the same primary key written anew, and an incremental run, which re-keys only the records it reads,
        would build two golden records of one primary key.
        """
        key = self.mapping.key
        if "_key" not in columns:
            return None
        if any(name not in columns for name in key):
            old = None  # a key field the table has no column for
        elif any(self.mapping.fields[name].type not in ("string", "integer") for name in key):
            return None  # the text of other types may differ between a source and a column read back
        else:
            rows = conn.execute(
                select(table.c._key, *[table.c[name] for name in key]).where(table.c._key.is_not(None)).limit(20)
            ).all()
            if not rows:
                return None
            frame = pd.DataFrame([tuple(r) for r in rows], columns=["_key", *key], dtype=object)
            for name in key:
                frame[name] = coerce_series(frame[name], self.mapping.fields[name])[0]
            built = key_text(frame, key)
            if (built == frame["_key"]).fillna(False).any():
                return None
            old = (str(frame["_key"].iloc[0]), str(built.iloc[0]))
        example = f" (e.g. '{old[0]}', where the key gives '{old[1]}')" if old is not None else ""
        return Refusal(
            ("key",),
            f"the business keys that {table.name} holds were built from other fields than the mapping's key "
            f"({', '.join(key)}){example}; nothing was written. A key change is not applied automatically: "
            f"set the key back, or {self._rebuild_fix()}",
        )

    def _rebuild_fix(self) -> str:
        """How to start the entity's kept tables anew, keeping the old ones aside."""
        # A renamed table keeps its indexes' names, which the new tables need (PostgreSQL and SQLite name
        # indexes per schema or database): copy the rows aside, then drop.
        target = self.target.name
        return (
            f"keep a copy (CREATE TABLE {target}_old AS SELECT * FROM {target}), drop {target}, "  # noqa: S608 (advice text)
            f"{self.mirror.name} and {self.ids.name}, and run `erpoa sync {self.mapping.entity} --full-refresh` "
            "to build them anew from the sources"
        )

    def evolve(self, engine: Engine, diff: SchemaDiff) -> None:
        """Apply `diff` (without refusals): drop the work tables to rebuild (`create` makes them again) and run
        the kept tables' changes, in one transaction where the dialect's DDL is transactional."""
        if diff.rebuild:
            with engine.begin() as conn:
                for table in diff.rebuild:
                    table.drop(conn, checkfirst=True)
        statements = [c.statement for c in diff.changes if c.statement]
        if statements:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(text(statement))

    def without_columns(self, absent: Mapping[str, Collection[str]]) -> None:
        """Let target and mirror name only the columns they have (a plan, which changes no table): the reads
        of a missing column give NULL (`etl.engine.build`), as the column would hold once added."""
        self.target = _copy_without(self.target, absent.get(self.target.name, ()))
        self.mirror = _copy_without(self.mirror, absent.get(self.mirror.name, ()))

    def create(self, engine: Engine, *, work_only: bool = False) -> None:
        """Create missing tables (all, or only stage and gold for a separate work database)."""
        tables = [self.stage, self.gold] if work_only else [self.target, self.mirror, self.ids, self.stage, self.gold]
        if engine.dialect.name == "mysql":
            byte_exact_tables(engine, tables)
        self.metadata.create_all(engine, tables=tables, checkfirst=True)
        if engine.dialect.name == "postgresql":
            _unlogged(engine, [self.stage, self.gold])


def _reflect(inspector: Any, table: Table) -> dict[str, dict[str, Any]] | None:
    """The columns of `table` in the database by name (as `Inspector.get_columns` gives them); None when absent."""
    try:
        return {c["name"]: c for c in inspector.get_columns(table.name, schema=table.schema)}
    except NoSuchTableError:
        return None


def _work_differs(
    dialect: str, table: Table, columns: dict[str, dict[str, Any]], fields: Mapping[str, CanonicalField]
) -> bool:
    """Whether a work table's columns (names, and the fields' kinds) differ from what `build` makes."""
    if set(columns) != {c.name for c in table.c}:
        return True
    return any(
        ddl.column_kind(table.c[name].type, dialect) != ddl.column_kind(columns[name]["type"], dialect)
        for name in fields
    )


def _field_problem(
    dialect: Dialect,
    tables: EntityTables,
    name: str,
    spec: CanonicalField,
    found: Mapping[str, dict[str, dict[str, Any]]],
) -> Refusal | None:
    """The refusal of field `name` when a kept table (`found`, reflected) has its column of another type or
    scale, or longer; None when every difference is safe."""
    loc: Loc | None = None
    clash = []
    for table in (tables.target, tables.mirror):
        reflected = found.get(table.name, {}).get(name)
        if reflected is None:
            continue
        want = ddl.column_kind(table.c[name].type, dialect.name)
        have = ddl.column_kind(reflected["type"], dialect.name)
        if want.family != have.family:
            here: Loc = ("fields", name, "type")
        elif want.family == "decimal" and want.scale != have.scale:
            here = ("fields", name, "scale")
        elif want.family == "string" and want.length is not None and (have.length or 0) > want.length:
            here = ("fields", name, "length")
        else:
            continue
        loc = loc or here
        clash.append((table, reflected, have))
    if loc is None:
        return None
    table, reflected, have = clash[0]
    role = "target" if table is tables.target else "mirror"
    shown = ddl.type_sql(reflected["type"], dialect)
    prep = dialect.identifier_preparer
    statements = [
        ddl.retype(
            dialect, prep.format_table(t), name, t.c[name].type, bool(r["nullable"]), was_boolean=h.family == "boolean",
            converts=loc[-1] == "type",
        )
        for t, r, h in clash
    ]
    migrate = "; ".join(s for s in statements if s is not None) if all(statements) else None
    entity = tables.mapping.entity
    head = f"the {role} column {table.name}.{name} is {shown}"
    rebuild = tables._rebuild_fix()
    if loc[-1] == "length":
        fix = f"have an administrator shorten the longer values and run {migrate}" if migrate else rebuild
        return Refusal(
            loc,
            f"{head}, the field's length is now {spec.length}; nothing was written. A shorter column is not applied "
            f"automatically (longer values would not fit): set the length back to {have.length} or more, or {fix}",
        )
    now = f"scale is now {spec.scale}" if loc[-1] == "scale" else f"type is now {spec.type}"
    convert = (
        f"have an administrator convert the column ({migrate}) and run `erpoa sync {entity} --full-refresh`, or "
        if migrate
        else ""
    )
    return Refusal(
        loc,
        f"{head}, the field's {now}; nothing was written. A type change is not applied automatically: set it back, "
        f"or {convert}{rebuild}",
    )


def _copy_without(table: Table, names: Collection[str]) -> Table:
    """`table` without the columns `names` (for reads only: no index, no constraint besides the key)."""
    if not names:
        return table
    return Table(
        table.name,
        MetaData(schema=table.schema),
        *[
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in table.columns
            if c.name not in names
        ],
    )


def _unlogged(engine: Engine, tables: list[Table]) -> None:
    """Make PostgreSQL work tables UNLOGGED (no write-ahead log), tables created before this included.

    Staging and gold rows live for one run and are rebuilt by a rerun, so they need no crash
    recovery: without WAL, loading a run's rows into them costs the server far less. After a
    server crash PostgreSQL empties them, which a rerun (a new run id) never reads anyway.
    """
    prep = engine.dialect.identifier_preparer
    names = {prep.format_table(t): t for t in tables}
    with engine.begin() as conn:
        logged = [
            name
            for name in names
            if conn.execute(
                text("SELECT relpersistence FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}
            ).scalar()
            == "p"
        ]
        for name in logged:
            conn.execute(text(f"ALTER TABLE {name} SET UNLOGGED"))


def start_bulk_load(conn: Connection, table: Table) -> None:
    """Empty a PostgreSQL work table and drop its indexes, before a run stages all its rows into it.

    The caller has checked that the table holds no rows of the run. Inserting each staged row
    into the stage's two indexes cost the server more than writing the row itself; one sort per
    index once everything is staged (`build_indexes`) costs a fraction of that. TRUNCATE also
    gives back the space of earlier runs at once, where DELETE would leave it to VACUUM.
    """
    prep = conn.dialect.identifier_preparer
    truncate(conn, table)
    # Older versions' indexes too: `build_indexes` makes today's.
    for schema, index, _ in plain_indexes(conn, prep.format_table(table)):
        conn.execute(text(f"DROP INDEX {prep.quote(schema)}.{prep.quote(index)}"))


def truncate(conn: Connection, table: Table) -> None:
    """Empty a PostgreSQL table at once (the space comes back without VACUUM)."""
    conn.execute(text(f"TRUNCATE {conn.dialect.identifier_preparer.format_table(table)}"))


def mirror_key(dialect: str | None) -> tuple[str, str]:
    """The column order of the mirror's primary key for a target of `dialect`.

    On PostgreSQL the id comes first: its index sort abbreviates only the first column to a
    short prefix, and with `_source` first (two or three values) every comparison went on to
    the full texts (twice as long to build, in the first publish). The sweep then reads a
    source's ids from the whole index, in its order (~0.03 s more per 800,000 ids). On MariaDB
    the key orders the rows themselves (InnoDB) and `_source` first keeps each source's rows
    together. Mirrors created before keep their key: both orders serve every lookup.
    """
    return ("_src_id", "_source") if dialect == "postgresql" else ("_source", "_src_id")


def build_indexes(engine: Engine, table: Table) -> None:
    """Create the indexes of `table` that are missing (after `start_bulk_load` and the load).

    On PostgreSQL the server decides (`CREATE INDEX IF NOT EXISTS`): looking each index up
    first read the catalog for every index of the table, about 0.05 s an index, paid by every
    incremental run. Each of these tables' indexes is made on PostgreSQL (none has a `ddl_if`
    that leaves it out), which a direct `CreateIndex` would not check.
    """
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for index in table.indexes:
            if postgres:
                conn.execute(CreateIndex(index, if_not_exists=True))
            else:
                index.create(conn, checkfirst=True)


def has_run_rows(conn: Connection, table: Table, run_id: str) -> bool:
    """Whether `table` (stage or gold) holds any row of `run_id`."""
    return conn.execute(select(table.c._run).where(table.c._run == run_id).limit(1)).first() is not None


def holds_run(conn: Connection, table: Table, run_id: str) -> bool:
    """Whether the gold table holds rows of `run_id`, read from any one row.

    It holds the rows of one run at a time (`extract.prepare` empties it or deletes the other
    runs' rows), so one row tells; on PostgreSQL the table has no index during a run, and
    `has_run_rows` would read every row of the last run to find none of this one.
    """
    first = conn.execute(select(table.c._run).limit(1)).first()
    return first is not None and first[0] == run_id


def finish_prebuilt(engine: Engine, table: Table, run_id: str, rows: int) -> None:
    """Vacuum a table built beside a merge (PostgreSQL), then mark it complete for `run_id` with `rows` rows.

    The mark (the table's comment) is what `prebuilt_rows` reads: a table left half built by a
    crash, or built for another run, has none for this run.
    """
    refresh_statistics(engine, table, vacuum=True)
    name = engine.dialect.identifier_preparer.format_table(table)
    with engine.begin() as conn:
        conn.execute(text(f"COMMENT ON TABLE {name} IS '{_PREBUILT.format(run=run_id, rows=rows)}'"))


def prebuilt_rows(conn: Connection, table: Table, run_id: str) -> int | None:
    """The rows of `table` when `finish_prebuilt` marked it complete for `run_id`; None otherwise (or missing)."""
    name = conn.dialect.identifier_preparer.format_table(table)
    mark = conn.execute(text("SELECT obj_description(to_regclass(:t), 'pg_class')"), {"t": name}).scalar()
    found = _PREBUILT_MARK.match(mark or "")
    return int(found.group(2)) if found is not None and found.group(1) == run_id else None


def mirrored_records(engine: Engine, mirror: Table, source: str) -> pd.DataFrame:
    """The mirror's records of `source`: `_src_id`, `_key`, `_bucket`."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(mirror.c._src_id, mirror.c._key, mirror.c._bucket).where(mirror.c._source == source)
        ).all()
    return pd.DataFrame(rows, columns=["_src_id", "_key", "_bucket"])


def table_exists(engine: Engine, table: Table) -> bool:
    """Whether `table` exists in `engine`'s database (in its schema)."""
    return inspect(engine).has_table(table.name, schema=table.schema)


def bucket_of(keys: pd.Series) -> pd.Series:
    """Stable bucket (0..BUCKETS-1) of each key; partitions are bucket ranges.

    pandas' `hash_array` first factorizes the values by default, which only pays when they repeat:
    keys rarely do, and each value hashes the same either way except nulls (hashed apart when
    factorized), so only a column with nulls takes that route.
    """
    hashed = pd.util.hash_array(keys.to_numpy(dtype=object), categorize=bool(keys.isna().any()))
    return pd.Series((hashed % np.uint64(BUCKETS)).astype("int64"), index=keys.index)


def bucket_range(partition: int, partitions: int) -> tuple[int, int]:
    """[lo, hi) bucket range of a partition."""
    lo = partition * BUCKETS // partitions
    hi = (partition + 1) * BUCKETS // partitions
    return lo, hi


def key_text(frame: pd.DataFrame, key: list[str]) -> pd.Series:
    """The golden key as text: key fields joined with `|`."""
    out = as_text(frame[key[0]])
    for name in key[1:]:
        out = out + "|" + as_text(frame[name]).fillna("")
    return out
