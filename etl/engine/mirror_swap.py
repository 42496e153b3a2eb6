"""A first load's mirror, built beside the merge and swapped in by the publish (PostgreSQL).

The mirror holds the last accepted row of every source record. On the first load of an
entity it is empty and the publish would copy every staged row into it and build its key
and indexes, in the publish transaction: at a million purchase lines that is the longer of
the publish's two streams (~6 s of server time), while the merge before it leaves a core
of the server mostly idle. So, when the mirror is empty, `build` fills a table of the
same shape, `erpoa_src_<entity>_next`, from the run's staged rows while the partitions are
merged (in the thread of `etl.engine.prebuild`), builds its key and indexes under temporary names and
vacuums it. The publish (`swap`) then removes the rows the merge set aside (`held`), drops
the empty mirror and renames the new table, its key and its indexes to the mirror's: the
same rows as the copy would have written, in the same transaction as the target's upsert.

Only a plain mirror is replaced: logged, owned by the user who syncs, without grants,
triggers, rules, views, foreign keys, row security, inheritance, publications, table
options or a tablespace of its own, and with no constraint besides its key and unique
ones. Anything else, and any doubt about the new table (left by a crash, built for
another run, an index missing), sends the publish down the usual copy; the new table is
then dropped. A run's `prepare` drops any new table an earlier run left behind.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import Column, Connection, Engine, MetaData, Table, delete, literal, select, text

from etl import faults
from etl.db.write import background_session, key_constraints, plain_indexes
from etl.engine.context import SyncContext
from etl.engine.tables import SET_ASIDE, finish_prebuilt, prebuilt_rows

#: `_status` of the staged rows the new mirror takes: accepted ones and those an attempt of the merge set
#: aside (which a later attempt may accept again); the swap removes those still set aside as `held`.
BUILT_STATUSES = ("ok", *SET_ASIDE)
_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .*)$")

# One query: is the mirror a plain, empty table that a new one may replace?
_PLAIN = """
SELECT c.relkind = 'r' AND c.relpersistence = 'p' AND c.relacl IS NULL AND c.reloptions IS NULL
   AND c.reltablespace = 0 AND NOT c.relrowsecurity AND NOT c.relhastriggers AND NOT c.relhasrules
   AND pg_get_userbyid(c.relowner) = current_user
   AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype NOT IN ('p', 'u'))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid AND d.classid = 'pg_rewrite'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = c.oid)
FROM pg_class c WHERE c.oid = to_regclass(:t)
"""


def next_table(mirror: Table) -> Table:
    """The new mirror's table: the mirror's columns under `<mirror>_next` (for statements; made by `build`)."""
    return Table(f"{mirror.name}_next", MetaData(schema=mirror.schema), *[Column(c.name, c.type) for c in mirror.c])


def temporary_name(name: str) -> str:
    """The name an index or constraint of the mirror has on the new table until the swap (at most 63 bytes)."""
    return f"{name[:40]}_next_{hashlib.md5(name.encode()).hexdigest()[:12]}"


def build(ctx: SyncContext, entity: str) -> int:
    """Fill `<mirror>_next` with the run's staged rows, build its key and indexes, vacuum it; returns its rows."""
    mapping = ctx.mapping(entity)
    engine = ctx.target_engine(mapping)
    mirror, stage = ctx.tables(mapping).mirror, ctx.tables(mapping).stage
    new = next_table(mirror)
    prep = engine.dialect.identifier_preparer
    name, new_name = prep.format_table(mirror), prep.format_table(new)
    fields = list(mapping.fields)
    with engine.begin() as conn:
        background_session(conn)
        conn.execute(text(f"DROP TABLE IF EXISTS {new_name}"))
        conn.execute(text(f"CREATE TABLE {new_name} (LIKE {name} INCLUDING DEFAULTS INCLUDING STORAGE)"))
        rows = select(
            stage.c._source,
            stage.c._src_id,
            stage.c._key,
            stage.c._bucket,
            literal(ctx.run_id),
            *[stage.c[f] for f in fields],
        ).where(stage.c._run == ctx.run_id, stage.c._status.in_(BUILT_STATUSES))
        inserted = conn.execute(
            new.insert()
            .from_select(["_source", "_src_id", "_key", "_bucket", "_run", *fields], rows)
            .execution_options(preserve_rowcount=True)
        ).rowcount
        for conname, definition in key_constraints(conn, name):
            conn.execute(text(f"ALTER TABLE {new_name} ADD CONSTRAINT {prep.quote(temporary_name(conname))} "
                              f"{definition}"))
        for _, index, definition in plain_indexes(conn, name):
            found = _INDEX_DEF.match(definition)
            if found is None:
                raise ValueError(f"unexpected index definition: {definition}")
            unique, rest = found.group(1) or "", found.group(2)
            conn.execute(text(f"CREATE {unique}INDEX {prep.quote(temporary_name(index))} ON {new_name} {rest}"))
    faults.point("mirror.next_loaded")
    finish_prebuilt(engine, new, ctx.run_id, int(inserted))
    faults.point("mirror.next_built")
    return int(inserted)


def swap(conn: Connection, ctx: SyncContext, entity: str) -> int | None:
    """In the publish transaction: make the new mirror the mirror; returns its rows, or None to copy as usual.

    The caller has found the mirror empty. None when there is no complete new mirror of this
    run, or the mirror is no longer plain or has other indexes than the new one; the new table
    is then dropped. Always None off PostgreSQL.
    """
    if conn.dialect.name != "postgresql":
        return None
    mapping = ctx.mapping(entity)
    mirror, stage = ctx.tables(mapping).mirror, ctx.tables(mapping).stage
    new = next_table(mirror)
    prep = conn.dialect.identifier_preparer
    name, new_name = prep.format_table(mirror), prep.format_table(new)
    built = prebuilt_rows(conn, new, ctx.run_id)
    if built is None or not _replaceable(conn, mirror):
        discard(conn, mirror)
        return None
    constraints = [conname for conname, _ in key_constraints(conn, name)]
    indexes = [(schema, index) for schema, index, _ in plain_indexes(conn, name)]
    have = {conname for conname, _ in key_constraints(conn, new_name)}
    have |= {index for _, index, _ in plain_indexes(conn, new_name)}
    if have != {temporary_name(n) for n in [*constraints, *(index for _, index in indexes)]}:
        discard(conn, mirror)
        return None
    removed = conn.execute(
        delete(new)
        .where(
            stage.c._run == ctx.run_id,
            stage.c._status == "held",
            new.c._source == stage.c._source,
            new.c._src_id == stage.c._src_id,
        )
        .execution_options(preserve_rowcount=True)
    ).rowcount
    conn.execute(text(f"DROP TABLE {name}"))
    conn.execute(text(f"ALTER TABLE {new_name} RENAME TO {prep.quote(mirror.name)}"))
    for conname in constraints:
        conn.execute(text(f"ALTER TABLE {name} RENAME CONSTRAINT {prep.quote(temporary_name(conname))} "
                          f"TO {prep.quote(conname)}"))
    for schema, index in indexes:
        conn.execute(text(f"ALTER INDEX {prep.quote(schema)}.{prep.quote(temporary_name(index))} "
                          f"RENAME TO {prep.quote(index)}"))
    conn.execute(text(f"COMMENT ON TABLE {name} IS NULL"))
    return built - int(removed or 0)


def discard(conn: Connection | Engine, mirror: Table) -> None:
    """Drop the new mirror of `mirror`, if there is one (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return
    statement = text(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.format_table(next_table(mirror))}")
    if isinstance(conn, Connection):
        conn.execute(statement)
        return
    with conn.begin() as c:
        c.execute(statement)


def can_build(ctx: SyncContext, entity: str) -> bool:
    """Whether `build` may make the entity's new mirror: PostgreSQL, not a dry run, an empty and plain mirror."""
    mapping = ctx.mapping(entity)
    engine = ctx.target_engine(mapping)
    return not ctx.dry_run and engine.dialect.name == "postgresql" and _replaceable(engine, ctx.tables(mapping).mirror)


def _replaceable(conn: Connection | Engine, mirror: Table) -> bool:
    """Whether `mirror` exists, is plain and holds no row."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return _replaceable(c, mirror)
    name = conn.dialect.identifier_preparer.format_table(mirror)
    if not conn.execute(text(_PLAIN), {"t": name}).scalar():
        return False
    return conn.execute(select(literal(1)).select_from(mirror).limit(1)).first() is None

