"""The Great Expectations gate inside the merge stage.

The entity's suite (`expectations/<entity>.json`) runs on the golden rows a run
would insert or update. Failing rows are quarantined with the expectation that
caught them; batch-level failures are recorded and stop the publish (see
`etl.engine.publish.gate_decision`). The row-count band is a property of the
whole entity, not of the changed rows, so it is checked there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from etl.engine.context import SyncContext
from etl.mapping.model import EntityMapping

ROW_COUNT = "expect_table_row_count_to_be_between"


def threshold(ctx: SyncContext, mapping: EntityMapping, name: str) -> Any:
    """A limit of the entity's mapping (`quality.<name>`), or where it sets none, of `run:` in erpoa.yaml."""
    value = getattr(mapping.quality, name)
    return getattr(ctx.config.run, name) if value is None else value


def suite_path(ctx: SyncContext, mapping: EntityMapping) -> Path:
    folder = ctx.config.resolve(ctx.config.expectations)
    return folder / (mapping.quality.suite or f"{mapping.entity}.json")


def _row_count_expectations(ctx: SyncContext, mapping: EntityMapping) -> list[dict[str, Any]]:
    """The suite's row-count expectations as written in its file (the sync applies them itself, not GX)."""
    path = suite_path(ctx, mapping)
    if not path.exists():
        return []
    import json

    expectations = json.loads(path.read_text(encoding="utf-8-sig")).get("expectations", [])  # a BOM, as Notepad saves
    return [e for e in expectations if e.get("type") == ROW_COUNT]


def row_count_band(ctx: SyncContext, mapping: EntityMapping) -> tuple[float, float] | None:
    """The band of the suite's row-count expectation (`meta.relative_to_previous`) or of the mapping."""
    if mapping.quality.row_count_band:
        return mapping.quality.row_count_band
    for exp in _row_count_expectations(ctx, mapping):
        band = (exp.get("meta") or {}).get("relative_to_previous")
        if band:
            return float(band[0]), float(band[1])
    return None


def row_count_limits(ctx: SyncContext, mapping: EntityMapping) -> tuple[float | None, float | None]:
    """`min_value` / `max_value` of the suite's row-count expectation: fixed limits on a full read."""
    found = _row_count_expectations(ctx, mapping)
    kwargs = (found[0].get("kwargs") if found else None) or {}
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    return (None if low is None else float(low)), (None if high is None else float(high))


def _suite(ctx: SyncContext, mapping: EntityMapping) -> Any | None:
    cache: dict[str, Any] = ctx.__dict__.setdefault("_suites", {})
    if mapping.entity in cache:
        return cache[mapping.entity]
    path = suite_path(ctx, mapping)
    suite = None
    if path.exists():
        from etl.validate import load_suite, resolve_code_tables

        suite = load_suite(path, list(mapping.fields), ctx.mappings.code_tables)  # a wrong name: file:line
        suite.expectations = [e for e in suite.expectations if e.expectation_type != ROW_COUNT]
        domains = {name: sorted(table.codes) for name, table in ctx.mappings.code_tables.items()}
        suite = resolve_code_tables(suite, domains)
    cache[mapping.entity] = suite
    return suite


def _reference_keys(ctx: SyncContext, suite: Any, merging: str) -> dict[str, list[Any]]:
    """The values each `expect_column_values_to_exist_in_entity` of `suite` accepts: the referenced entity's
    active ones, as the `references:` check reads them (`build.active_values`: in a plan, what it publishes first)."""
    from etl.engine.build import active_values

    keys: dict[str, list[Any]] = {}
    for exp in suite.expectations:
        if exp.expectation_type != "expect_column_values_to_exist_in_entity":
            continue
        entity, named = exp.entity, exp.entity_column  # the expectation's own fields (GX 1.x keeps no kwargs)
        column = named or ctx.mapping(entity).key[0]
        values = active_values(ctx, entity, column, merging=merging).tolist()
        keys[f"{entity}.{named}" if named else entity] = values  # as `resolve_references` looks them up
    return keys


def run_gate(ctx: SyncContext, mapping: EntityMapping, rows: pd.DataFrame, partition: int) -> pd.DataFrame:
    """Validate `rows`; quarantine failing rows and record the outcome. Returns the quarantined rows."""
    suite = _suite(ctx, mapping)
    if suite is None or rows.empty:
        return pd.DataFrame(columns=["golden_key"])
    from etl.validate import resolve_references, validate_batch

    refs = _reference_keys(ctx, suite, mapping.entity)
    if refs:
        suite = resolve_references(suite, refs)
    frame = rows.reset_index(drop=True)
    result = validate_batch(frame[list(mapping.fields)], suite, mapping.key, pii_columns=mapping.pii_fields)
    if not ctx.dry_run:
        from etl.validate.datadocs import docs_json

        # Only the page's JSON stays until the run's Data Docs are built: GX's result objects of
        # every partition would make the memory of a sync grow with the table.
        docs = docs_json(_mask_gate_result(result, set(mapping.pii_fields)))
        ctx.__dict__.setdefault("gate_docs", []).append(docs)
    failures = result.row_failures
    records = [
        {"level": "batch", "expectation": f.expectation, "column": f.column, "failed": 0, "message": f.message}
        for f in result.batch_failures
    ]
    for (expectation, column), count in result.failure_counts().items():
        records.append({"level": "row", "expectation": expectation, "column": column, "failed": count,
                        "message": f"{count} row(s) quarantined"})
    if ctx.dry_run:
        ctx.planned_gate.extend({**r, "entity": mapping.entity} for r in records)
    else:
        ctx.store.add_gate(ctx.run_id, mapping.entity, partition, records)
    if failures.empty:
        return pd.DataFrame(columns=["golden_key"])
    pos = failures["row"].to_numpy()
    bad = pd.DataFrame({
        "source": frame["_presence"].astype("str").to_numpy()[pos],
        "src_id": frame["_ids"].astype("str").to_numpy()[pos],
        "golden_key": frame["_key"].to_numpy()[pos],
        "field": failures["column"].astype("str").to_numpy(),
        "rule": failures["expectation"].astype("str").to_numpy(),
        "value": failures["value"].to_numpy(),
        "reason": [f"failed {e} on {c}" for e, c in zip(failures["expectation"], failures["column"], strict=True)],
    })
    from etl.engine.build import quarantine_rows

    quarantine_rows(ctx, mapping.entity, bad, stage=f"gate{partition}")
    return bad


def _mask_gate_result(result: Any, pii: set[str]) -> Any:
    """What the Data Docs page of a gate result shows, with the values of `pii: true` fields masked.

    The result is cut to the page's samples first (`datadocs.trimmed`), then masked: only the
    samples are copied, not every failing value of the partition.
    """
    if not pii:
        return result
    import dataclasses

    from etl.logs import mask_personal
    from etl.validate.datadocs import trimmed

    failures = result.row_failures.copy()
    if not failures.empty:
        sel = failures["column"].isin(pii)
        failures.loc[sel, "value"] = failures.loc[sel, "value"].map(mask_personal)
    page = trimmed(dataclasses.replace(result, row_failures=failures))  # samples of failing rows from masked values
    for res in page.results:
        kwargs = res.expectation_config.kwargs if res.expectation_config is not None else {}
        if not {kwargs.get(k) for k in ("column", "column_A", "column_B")} & pii:
            continue
        values = res.result or {}
        for key in ("unexpected_list", "partial_unexpected_list"):
            if isinstance(values.get(key), list):
                values[key] = [mask_personal(v) for v in values[key]]
        if isinstance(values.get("partial_unexpected_counts"), list):
            values["partial_unexpected_counts"] = [
                {**c, "value": mask_personal(c.get("value"))} if isinstance(c, dict) else c
                for c in values["partial_unexpected_counts"]
            ]
    return page
