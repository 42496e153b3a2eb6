"""Tables of the reconciliation store (SQLite, PostgreSQL or MariaDB), created and migrated by the tool.

`SCHEMA_VERSION` rises with every change; `migrate` brings an older store up to date.
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from etl.db.connect import byte_exact_tables

log = logging.getLogger("erpoa.store")

# 2: quarantine indexes by golden key and by source id; 3: erpoa_xref partitioned by entity on PostgreSQL;
# 4: erpoa_reconciliation and erpoa_difference_seen (which differences each reconciliation found);
# 5: erpoa_quarantine.src_id is TEXT (a merge or gate row holds the ids of all sources as JSON);
# 6: erpoa_published_fields (the fields of the mapping each entity was last published with);
# 7: erpoa_watermark(_pending).cursor_column (the column a watermark was taken from) and
# erpoa_watermark_pending.read_complete (the run read the source completely: its watermark replaces the one before)
SCHEMA_VERSION = 7
metadata = MetaData()

schema_version = Table("erpoa_schema_version", metadata, Column("version", Integer, primary_key=True))

runs = Table(
    "erpoa_run",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("trigger", String(20), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("mapping_version", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("entities", String(400), nullable=False),
    Column("message", Text),
    Column("host", String(100)),
    Column("pid", Integer),
)

entity_runs = Table(
    "erpoa_entity_run",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("entity", String(60), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("read_erp", BigInteger, default=0),
    Column("read_oa", BigInteger, default=0),
    Column("read_total", BigInteger, default=0),
    Column("inserted", BigInteger, default=0),
    Column("updated", BigInteger, default=0),
    Column("unchanged", BigInteger, default=0),
    Column("inactivated", BigInteger, default=0),
    Column("quarantined", BigInteger, default=0),
    Column("differences", BigInteger, default=0),
    Column("seconds_extract", Float, default=0),
    Column("seconds_merge", Float, default=0),
    Column("seconds_validate", Float, default=0),
    Column("seconds_publish", Float, default=0),
    Column("seconds_reconcile", Float, default=0),
    Column("seconds_total", Float, default=0),
    Column("message", Text),
    Column("updated_at", DateTime),
)

watermarks = Table(
    "erpoa_watermark",
    metadata,
    Column("entity", String(60), primary_key=True),
    Column("source", String(40), primary_key=True),
    Column("value", String(64)),
    Column("value_type", String(20)),
    Column("run_id", String(40)),
    Column("updated_at", DateTime),
    Column("cursor_column", String(128)),  # NULL: recorded before schema version 7
)

pending_watermarks = Table(
    "erpoa_watermark_pending",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("entity", String(60), primary_key=True),
    Column("source", String(40), primary_key=True),
    Column("value", String(64)),
    Column("value_type", String(20)),
    Column("cursor_column", String(128)),
    Column("read_complete", Boolean),
)

#: Columns added to tables that exist since they were created (schema version 7), by `_add_columns`.
ADDED_COLUMNS = (
    (watermarks, ("cursor_column",)),
    (pending_watermarks, ("cursor_column", "read_complete")),
)

# The fields of the mapping the last publish of each entity wrote for every record and those any publish wrote (JSON
# `{"fields": [...], "ever": [...]}`; the first rows were a list of the former), recorded with its watermarks: a
# mapped field whose target column exists but that is not among the former was mapped again after it had been
# removed, or its column was added by a replay or a killed run, and the entity is read completely to fill it
# (`etl.engine.extract.prepare`, `etl.store.repo.PublishedFields`). No row: published before version 6 (or never),
# nothing is known.
published_fields = Table(
    "erpoa_published_fields",
    metadata,
    Column("entity", String(60), primary_key=True),
    Column("field_names", Text, nullable=False),
    Column("run_id", String(40)),
    Column("updated_at", DateTime),
)

#: Characters of `erpoa_quarantine.src_id` that MariaDB's index holds (a source's own id is at most 255).
QUARANTINE_SRC_PREFIX = 255

quarantine = Table(
    "erpoa_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False),
    Column("entity", String(60), nullable=False),
    Column("source", String(40), nullable=False),
    Column("src_id", Text),
    Column("golden_key", String(512)),
    Column("stage", String(20), nullable=False),
    Column("field", String(100)),
    Column("rule", String(200), nullable=False),
    Column("value", Text),
    Column("reason", Text),
    Column("raw", Text),
    Column("status", String(20), nullable=False, default="open"),
    Column("created_at", DateTime),
    Column("resolved_run_id", String(40)),
    Column("resolved_at", DateTime),
    Index("ix_erpoa_quarantine_entity_status", "entity", "status"),
    Index("ix_erpoa_quarantine_run", "run_id", "entity"),
    # superseding an older finding looks it up by golden key or by source id, once per 500 ids
    Index("ix_erpoa_quarantine_key", "entity", "golden_key"),
    # MariaDB indexes a TEXT column by a prefix: lookups stay exact (the rows found are compared in full)
    Index("ix_erpoa_quarantine_src", "entity", "source", "src_id", mysql_length={"src_id": QUARANTINE_SRC_PREFIX}),
)

gaps = Table(
    "erpoa_gap",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("entity", String(60), primary_key=True),
    Column("source", String(40), primary_key=True),
    Column("field", String(100), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("code_table", String(100)),
    Column("policy", String(20)),
    Column("count", BigInteger),
)

gate_results = Table(
    "erpoa_gate",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False),
    Column("entity", String(60), nullable=False),
    Column("partition", Integer, nullable=False, default=0),
    Column("level", String(10), nullable=False),
    Column("expectation", String(200), nullable=False),
    Column("column", String(100)),
    Column("failed", BigInteger, default=0),
    Column("message", Text),
    Index("ix_erpoa_gate_run", "run_id", "entity"),
)

xref = Table(
    "erpoa_xref",
    metadata,
    Column("entity", String(60), primary_key=True),
    Column("source", String(40), primary_key=True),
    Column("src_id", String(255), primary_key=True),
    Column("golden_key", String(512), nullable=False),
    Column("first_run_id", String(40)),
    Column("last_run_id", String(40)),
    Column("active", Boolean, default=True),
    Column("detail", Text),
    Column("updated_at", DateTime),
    Index("ix_erpoa_xref_key", "entity", "golden_key"),
    # One partition per entity (created by its first load, see `etl.engine.publish`) and a default one.
    postgresql_partition_by="LIST (entity)",
)
XREF_DEFAULT = "erpoa_xref_default"

differences = Table(
    "erpoa_difference",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("diff_id", String(40), nullable=False),
    Column("entity", String(60), nullable=False),
    Column("class", String(30), nullable=False),
    Column("golden_key", String(512)),
    Column("field", String(100)),
    Column("erp_value", Text),
    Column("oa_value", Text),
    Column("target_value", Text),
    Column("detail", Text),
    Column("first_run_id", String(40)),
    Column("last_run_id", String(40)),
    Column("first_seen_at", DateTime),
    Column("last_seen_at", DateTime),
    Column("run_count", Integer, default=1),
    Column("present", Boolean, default=True),
    Column("status", String(20), nullable=False, default="open"),
    Column("signed_by", String(100)),
    Column("signed_at", DateTime),
    Column("note", Text),
    UniqueConstraint("diff_id", name="uq_erpoa_difference_diff_id"),
    Index("ix_erpoa_difference_entity", "entity", "status"),
)

# One row per reconciliation of an entity in a run, written with its `erpoa_difference_seen` rows:
# a run/entity without one predates schema version 4 (its presence is only known as first/last run).
reconciliations = Table(
    "erpoa_reconciliation",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("entity", String(60), primary_key=True),
    Column("present", BigInteger, nullable=False, default=0),
    Column("new", BigInteger, nullable=False, default=0),
    Column("reopened", BigInteger, nullable=False, default=0),
    Column("recorded_at", DateTime),
)

difference_seen = Table(
    "erpoa_difference_seen",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("diff_id", String(40), primary_key=True),
    Column("entity", String(60), nullable=False),
    Index("ix_erpoa_difference_seen_entity", "entity", "run_id"),
)

locks = Table(
    "erpoa_lock",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("host", String(100)),
    Column("pid", Integer),
    Column("acquired_at", DateTime),
)


def migrate(engine: Engine) -> None:
    """Create missing tables and record the schema version (idempotent)."""
    if engine.dialect.name == "mysql":
        collation = byte_exact_tables(engine, metadata.sorted_tables)
    metadata.create_all(engine, checkfirst=True)
    if engine.dialect.name == "mysql":
        _byte_exact_text(engine, collation)
    if engine.dialect.name == "postgresql":
        _partition_xref(engine)
    with engine.connect() as conn:
        current = conn.execute(select(schema_version.c.version)).scalar()
    widened = current is None or current >= 5 or _widen_quarantine_src_id(engine)
    added = current is None or current >= 7 or _add_columns(engine)
    if current is not None and current < SCHEMA_VERSION:
        for table in metadata.sorted_tables:  # indexes added since: create_all skips tables that exist
            for index in table.indexes:
                index.create(engine, checkfirst=True)
    with engine.begin() as conn:
        if current is None:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif current < SCHEMA_VERSION:
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION if widened and added else
                                                         4 if not widened else 6))


def _add_columns(engine: Engine) -> bool:
    """Schema version 7: add the `ADDED_COLUMNS` a store created before lacks (NULL in the rows it holds); False if
    one could not be added (the version then stays, the store reads and writes without it, and the next start tries
    again)."""
    done = True
    for table, names in ADDED_COLUMNS:
        for name in names:
            if has_column(engine, table, name):  # created with it, or another process added it meanwhile
                continue
            column = table.c[name]
            statement = (
                f"ALTER TABLE {engine.dialect.identifier_preparer.format_table(table)} ADD COLUMN "
                f"{engine.dialect.identifier_preparer.format_column(column)} {column.type.compile(engine.dialect)}"
            )
            try:
                with engine.begin() as conn:
                    conn.execute(text(statement))
            except SQLAlchemyError as exc:
                if has_column(engine, table, name):
                    continue
                log.warning(
                    "could not add %s.%s (%s); watermarks are kept without it until an administrator runs: %s",
                    table.name, name, type(getattr(exc, "orig", None) or exc).__name__, statement,
                )
                done = False
    return done


def has_column(engine: Engine | Connection, table: Table, name: str) -> bool:
    """Whether the store's `table` has the column `name` (a store of an older version may lack it)."""
    return name in {c["name"] for c in inspect(engine).get_columns(table.name, schema=table.schema)}


def _widen_quarantine_src_id(engine: Engine) -> bool:
    """Schema version 5: `erpoa_quarantine.src_id` from VARCHAR(255) to TEXT, rows and index kept; False if it
    could not be changed (the version then stays, and the next start tries again).

    SQLite does not enforce the length; MariaDB cannot index TEXT in full, so its index is rebuilt on a prefix.
    """
    name, index = quarantine.name, "ix_erpoa_quarantine_src"
    if engine.dialect.name == "postgresql":
        statement = f"ALTER TABLE {name} ALTER COLUMN src_id TYPE TEXT"
    elif engine.dialect.name == "mysql":
        statement = (
            f"ALTER TABLE `{name}` DROP INDEX `{index}`, MODIFY src_id TEXT NULL, "
            f"ADD INDEX `{index}` (entity, source, src_id({QUARANTINE_SRC_PREFIX}))"
        )
    else:
        return True
    if _src_id_is_text(engine):  # another process migrated it meanwhile
        return True
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except SQLAlchemyError as exc:
        if _src_id_is_text(engine):
            return True
        log.warning(
            "could not widen %s.src_id to TEXT (%s); quarantine rows whose source ids exceed 255 characters "
            "cannot be stored until an administrator runs: %s",
            name, type(getattr(exc, "orig", None) or exc).__name__, statement,
        )
        return False
    return True


def _src_id_is_text(engine: Engine) -> bool:
    columns = {c["name"]: c["type"] for c in inspect(engine).get_columns(quarantine.name)}
    return isinstance(columns.get("src_id"), Text)


def _byte_exact_text(engine: Engine, collation: str) -> None:
    """Convert store tables created with the server's default collation to `collation`.

    The default (`utf8mb4_general_ci` and the like) ignores case and trailing blanks: source ids
    'A1', 'a1' and 'A1 ' were one cross-reference row, and the link of one record overwrote another's.
    A binary collation can only tell more values apart, so no key that exists becomes a duplicate.
    """
    names = [t.name for t in metadata.sorted_tables]
    with engine.connect() as conn:
        stale = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                "AND table_name IN :names AND table_collation <> :collation"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": names, "collation": collation},
        ).scalars().all()
    for name in stale:
        statement = f"ALTER TABLE `{name}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"
        try:
            with engine.begin() as conn:
                conn.execute(text(statement))
        except SQLAlchemyError as exc:  # e.g. a store user without ALTER: the store still works as before
            log.warning(
                "could not convert the store table %s to a byte-exact collation (%s); ids that differ only in "
                "case or trailing blanks share its rows until an administrator runs: %s",
                name,
                type(getattr(exc, "orig", None) or exc).__name__,
                statement,
            )


def _partition_xref(engine: Engine) -> None:
    """Give the partitioned cross-reference its default partition; a table of schema version 2 becomes it, rows kept.

    The first load of an entity can then fill a partition of its own without indexes and build
    them after, instead of inserting every link into the indexes of a table holding all entities.
    Serialised with the same step of other processes (Airflow tasks open the store at once).
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('erpoa_xref partitions'))"))
        if xref_kind(conn) == "r":  # created by version 2, unpartitioned
            conn.execute(text(f"ALTER TABLE {xref.name} RENAME TO {XREF_DEFAULT}"))
            for index in conn.execute(
                text("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                     "WHERE i.indrelid = to_regclass(:t)"), {"t": XREF_DEFAULT}
            ).scalars().all():
                # The partitioned table's own key and index take the original names.
                conn.execute(text(f'ALTER INDEX "{index}" RENAME TO "{(XREF_DEFAULT + "_" + index)[:63]}"'))
            xref.create(conn)
            conn.execute(text(f"ALTER TABLE {xref.name} ATTACH PARTITION {XREF_DEFAULT} DEFAULT"))
        else:
            conn.execute(text(f"CREATE TABLE IF NOT EXISTS {XREF_DEFAULT} PARTITION OF {xref.name} DEFAULT"))


def xref_kind(conn: Connection) -> str | None:
    """PostgreSQL's `relkind` of the cross-reference: `p` partitioned, `r` a plain table, None missing."""
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": xref.name}).scalar()
    return None if kind is None else str(kind)


def is_initialised(engine: Engine) -> bool:
    """True when the store's tables exist."""
    return inspect(engine).has_table(runs.name)
