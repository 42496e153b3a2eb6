"""`mappings check --against-db`: every referenced source table and column exists, with compatible types."""

from __future__ import annotations

from sqlalchemy import inspect

from etl.config.project import ProjectConfig
from etl.db.connect import engine_for
from etl.db.extract import probe_columns
from etl.errors import ConfigIssue, ErpOaError
from etl.mapping.loader import MappingSet

_COMPATIBLE = {
    "integer": ("INT", "NUMERIC", "DECIMAL", "NUMBER", "BIGINT", "SMALLINT", "TINYINT", "CHAR", "TEXT", "STRING"),
    "decimal": ("NUMERIC", "DECIMAL", "FLOAT", "DOUBLE", "REAL", "MONEY", "INT", "CHAR", "TEXT"),
    "date": ("DATE", "TIME", "CHAR", "TEXT"),
    "datetime": ("DATE", "TIME", "CHAR", "TEXT"),
    "boolean": ("BOOL", "BIT", "INT", "CHAR"),
}


def check_against_db(config: ProjectConfig, mappings: MappingSet) -> list[ConfigIssue]:
    """Issues for missing tables/columns and type mismatches, located in the mapping files."""
    issues: list[ConfigIssue] = []
    for name, mapping in mappings.entities.items():
        smap = mappings.source_maps[name]
        for source, spec in mapping.sources.items():
            conn = config.connection(spec.connection or source)
            try:
                columns = probe_columns(conn, spec, source)
            except ErpOaError as exc:
                issues.append(smap.issue(("sources", source, "table" if spec.table else "query"), str(exc)))
                continue
            lower = {c.lower(): c for c in columns}
            types = _column_types(conn, spec) if spec.table and conn.kind == "url" else {}
            for field, fspec in spec.fields.items():
                for col in fspec.columns:
                    if col.lower() not in lower:
                        issues.append(
                            smap.issue(
                                ("sources", source, "fields", field, "from"),
                                f"column '{col}' not found in {spec.table or 'the query'}; "
                                f"columns there: {', '.join(columns)}",
                            )
                        )
                        continue
                    canonical = mapping.fields.get(field)
                    sql_type = types.get(lower[col.lower()], "")
                    if (
                        canonical
                        and sql_type
                        and not fspec.transforms
                        and canonical.type in _COMPATIBLE
                        and not any(t in sql_type.upper() for t in _COMPATIBLE[canonical.type])
                    ):
                        issues.append(
                            smap.issue(
                                ("sources", source, "fields", field, "from"),
                                f"column '{col}' is {sql_type} but field '{field}' is {canonical.type}; "
                                "add a transform that converts it or fix the field type",
                            )
                        )
            for col in [*spec.id, *([spec.cursor] if spec.cursor else [])]:
                if col.lower() not in lower:
                    issues.append(
                        smap.issue(
                            ("sources", source),
                            f"column '{col}' (id/cursor) not found; columns there: {', '.join(columns)}",
                        )
                    )
    return issues


def _column_types(conn: object, spec: object) -> dict[str, str]:
    table = getattr(spec, "table", None)
    schema = getattr(spec, "schema_", None)
    try:
        insp = inspect(engine_for(conn, read_only=True))  # type: ignore[arg-type]
        return {c["name"]: str(c["type"]) for c in insp.get_columns(str(table), schema=schema)}
    except Exception:
        return {}
