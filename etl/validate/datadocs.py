"""Render GX Data Docs (static HTML) for validation results.

The site is built by GX's own ``SiteBuilder`` in an ephemeral context whose only Data
Docs site is a filesystem store at `out_dir`; the results go through an in-memory
validation results store. Nothing is written outside `out_dir` and no network access
is needed to build it. Viewing is another matter: GX's page templates link Bootstrap,
jQuery and fonts from public CDNs, so offline the pages are readable but unstyled.

For a :class:`~etl.validate.gate.GateResult` the pages show the failing rows by business
key (a sample of :data:`SAMPLE_ROWS` per expectation), not by row position, and long
unexpected lists are cut to that sample so big batches render quickly. A sync keeps each
partition's result only as that page's JSON (:func:`docs_json`): a few kilobytes instead of
GX's result objects, which held about 0.8 MB per partition until the run ended.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.expectation_validation_result import (
    ExpectationValidationResult,
    expectationSuiteValidationResultSchema,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from etl.validate.gate import GateResult, ephemeral_context

SAMPLE_ROWS = 200
RUN_NAME = "erp-oa-sync"


Result = ExpectationSuiteValidationResult | GateResult | str


def build_data_docs(results: Sequence[Result], out_dir: str | Path) -> Path:
    """Write the Data Docs site for `results` into `out_dir`; return its ``index.html``.

    A result is GX's own, a gate's, or the JSON of either that :func:`docs_json` made.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "site_section_builders": {"expectations": "None", "profiling": "None"},
    }
    context = ephemeral_context(data_docs_sites={"local_site": site})
    run_id = RunIdentifier(run_name=RUN_NAME)
    used: set[str] = set()
    identifiers = []
    for item in results:
        suite_result = _for_docs(item, run_id)
        batch = _unique(str(suite_result.batch_id or suite_result.suite_name), used)
        identifier = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_result.suite_name),
            run_id=run_id,
            batch_identifier=batch,
        )
        context.validation_results_store.set(identifier, suite_result)
        identifiers.append(identifier)
    context.build_data_docs(site_names=["local_site"])
    # GX logs rendering errors and carries on; a page it could not render is missing
    for identifier in identifiers:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name="local_site")
        if not urls or not urls[0].get("site_url"):
            raise RuntimeError(f"GX could not render the Data Docs page of {identifier.to_tuple()}")
    index = out / "index.html"
    if not index.is_file():
        raise RuntimeError(f"GX did not write {index}")
    return index


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}-{n}"
    used.add(candidate)
    return candidate


def docs_json(item: ExpectationSuiteValidationResult | GateResult) -> str:
    """What the Data Docs page of `item` shows, as JSON: failing values cut to samples, rows by key."""
    return json.dumps(trimmed(item).to_json_dict(), ensure_ascii=False)


def trimmed(item: Result) -> ExpectationSuiteValidationResult:
    """What a Data Docs page shows of `item`: failing values cut to samples, failing rows by key.

    A new result: its `result` dicts are copies, so values can be replaced in them without touching
    `item` (lists inside them other than the cut ones are shared, to be replaced, not mutated).
    """
    if isinstance(item, str):
        loaded = expectationSuiteValidationResultSchema.load(json.loads(item))
        assert isinstance(loaded, ExpectationSuiteValidationResult)
        return loaded
    gate = item if isinstance(item, GateResult) else None
    source = gate.results if gate is not None else item
    assert isinstance(source, ExpectationSuiteValidationResult)
    return ExpectationSuiteValidationResult(
        success=source.success,
        results=[_trim(res, gate) for res in source.results],
        suite_name=source.suite_name,
        suite_parameters=source.suite_parameters,
        statistics=source.statistics,
        meta=source.meta,
        batch_id=source.batch_id,
    )


def _for_docs(item: Result, run_id: RunIdentifier) -> ExpectationSuiteValidationResult:
    source = trimmed(item)
    meta = dict(source.meta or {})
    asset = (meta.get("active_batch_definition") or {}).get("data_asset_name") or source.suite_name
    # the page header reads these; batch.validate() (unlike a Checkpoint) does not set them
    meta.setdefault("run_id", run_id)
    meta.setdefault("validation_time", run_id.run_time)
    meta.setdefault("batch_kwargs", {"data_asset_name": asset})
    source.meta = meta
    return source


def _trim(res: ExpectationValidationResult, gate: GateResult | None) -> ExpectationValidationResult:
    result: dict[str, Any] = dict(res.result or {})
    for key in ("unexpected_list", "unexpected_index_list"):
        if isinstance(result.get(key), list):
            result[key] = result[key][:SAMPLE_ROWS]
    # Only expectations that failed rows have a sample to show (most have none: no frame lookups for them).
    if gate is not None and res.expectation_config is not None and result.get("unexpected_index_list"):
        samples = _key_samples(gate, res.expectation_config.type, res.expectation_config.kwargs)
        if samples:
            result["unexpected_index_list"] = samples
            result["partial_unexpected_index_list"] = samples[:20]
            result["unexpected_index_column_names"] = list(gate.key_columns)
    return ExpectationValidationResult(
        success=res.success,
        expectation_config=res.expectation_config,
        result=result,
        meta=res.meta,
        exception_info=res.exception_info,
    )


def _key_samples(gate: GateResult, etype: str, kwargs: dict) -> list[dict[str, Any]]:
    """A sample of failing rows as GX renders them: {domain column: value, key: ...}."""
    failures = gate.row_failures
    if failures.empty:
        return []
    columns = [kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)]
    label = ",".join(columns or [str(c) for c in kwargs.get("column_list") or []])
    mine = failures[(failures["expectation"] == etype) & (failures["column"] == label)].head(SAMPLE_ROWS)
    if not label or label in gate.key_columns:
        # GX groups the sample by its non-key columns; keep the value apart from the key
        label = f"{label} value".strip()
    records = []
    for record in mine[[*gate.key_columns, "value"]].to_dict("records"):
        record[label] = record.pop("value")
        records.append({k: None if _missing(v) else str(v) for k, v in record.items()})
    return records


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
