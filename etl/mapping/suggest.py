"""Unmapped source values and the code table entries closest to them (`erpoa mappings suggest`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date

import pandas as pd
import yaml
from rapidfuzz import fuzz, process

from etl.mapping import registry
from etl.mapping.codes import CodeTable, normalize_code
from etl.mapping.model import EntityMapping
from etl.mapping.registry import TransformContext
from etl.mapping.types import as_text


@dataclass
class Suggestion:
    """A source value no code table entry maps, how often it occurs, and the closest entries."""

    source: str
    field: str
    table: str
    value: str
    count: int
    candidates: list[tuple[str, str, float]] = dc_field(default_factory=list)  # (spelling, code, score)


def _lookups(mapping: EntityMapping, source: str) -> Iterator[tuple[str, int, str]]:
    for name, spec in mapping.sources[source].fields.items():
        for index, raw in enumerate(spec.transforms):
            tname, args = registry.split_spec(raw)
            if tname == "lookup":
                parsed = registry.parse_args(registry.get(tname), args)
                yield name, index, str(parsed.table)  # type: ignore[attr-defined]


def unmapped_values(
    raw: pd.DataFrame,
    mapping: EntityMapping,
    source: str,
    tables: Mapping[str, CodeTable],
    as_of: date,
    timezone: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """Values reaching each lookup of `source` that the code table does not map, with counts. Pure."""
    spec = mapping.sources[source]
    parts = []
    for name, index, table in _lookups(mapping, source):
        fspec = spec.fields[name]
        value = raw[fspec.columns] if len(fspec.columns) > 1 else raw[fspec.columns[0]]
        ctx = TransformContext(field=name, source=source, frame=raw, code_tables=tables, as_of=as_of, timezone=timezone)
        for tspec in fspec.transforms[:index]:
            tname, targs = registry.split_spec(tspec)
            tdef = registry.get(tname)
            value = tdef.fn(value, registry.parse_args(tdef, targs), ctx)
        text = as_text(value).dropna()
        known = tables[table].spellings(as_of)
        normalized = text.str.normalize("NFKC").str.replace(r"\s+", "", regex=True).str.casefold()
        missing = text[~normalized.isin(known.keys())]
        if missing.empty:
            continue
        counts = missing.value_counts()
        parts.append(
            pd.DataFrame(
                {"source": source, "field": name, "table": table, "value": counts.index, "count": counts.to_numpy()}
            )
        )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["source", "field", "table", "value", "count"])
    )


def suggest(unmapped: pd.DataFrame, tables: Mapping[str, CodeTable], limit: int = 3) -> list[Suggestion]:
    """Closest existing entries for each unmapped value (rapidfuzz; works on Chinese characters)."""
    out = []
    for row in unmapped.itertuples(index=False):
        targets = tables[row.table].suggestion_targets()
        choices = {spelling: normalize_code(spelling) for spelling in targets}
        query = normalize_code(str(row.value))
        matches = process.extract(query, choices, scorer=_score, limit=limit)
        candidates = [(spelling, targets[spelling], round(score, 1)) for _, score, spelling in matches if score > 0]
        out.append(Suggestion(row.source, row.field, row.table, str(row.value), int(row.count), candidates))
    return out


def _score(a: str, b: str, **_: object) -> float:
    # Chinese unit names share a short stem (市场部 / 市场营销中心): partial matches matter as much as whole ones.
    return max(fuzz.ratio(a, b), fuzz.partial_ratio(a, b) * 0.9, fuzz.token_set_ratio(a, b))


def yaml_snippet(suggestions: list[Suggestion]) -> str:
    """YAML a steward can paste under `entries:` of the code table (as synonyms of the best candidate)."""
    by_table: dict[str, dict[str, list[str]]] = {}
    for s in suggestions:
        code = s.candidates[0][1] if s.candidates else "NEW_CODE"
        values = by_table.setdefault(s.table, {}).setdefault(code, [])
        if s.value not in values:  # the same value unmapped in two fields that look up this table
            values.append(s.value)
    lines = []
    for table, codes in by_table.items():
        lines.append(f"# mappings/codes/{table}.yaml: add to the `synonyms:` of these entries (check each!)")
        entries = [{"code": code, "synonyms": values} for code, values in codes.items()]
        lines.append(yaml.safe_dump({"entries": entries}, allow_unicode=True, sort_keys=False).rstrip())
    return "\n".join(lines)
