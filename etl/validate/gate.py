"""Validate a staged batch with Great Expectations and split the failures.

Write-audit-publish: :func:`validate_batch` runs a suite against the staged DataFrame
and returns

* **row failures**: one row per (input row, broken row-level expectation) with the
  business key, the expectation type, the column(s) and the offending value, for the
  caller to quarantine;
* **batch failures**: expectations about the batch as a whole, which no quarantine can
  fix (the caller refuses to publish).

:func:`gate_decision` turns a :class:`GateResult` and quarantine thresholds into a
publish / do-not-publish decision with reasons.

Classification
    Column map, column pair map and multicolumn map expectations are **row-level**:
    GX reports the failing rows in ``unexpected_index_list``. Everything else (table
    expectations such as row count or column set, column aggregates such as mean or
    distinct values) is **batch-level**. ``"meta": {"level": "batch"}`` on an
    expectation forces batch-level: its failing rows are not quarantined, the batch
    fails instead. An expectation that raised (missing column, incomparable types) is
    always a batch failure, since its rows cannot be identified.

    Every unexpected row of a row-level expectation is reported, even when ``mostly``
    lets the expectation itself succeed: ``mostly`` only changes GX's verdict (and the
    Data Docs); how many quarantined rows are acceptable is :func:`gate_decision`'s job.

Uniqueness
    ``expect_column_values_to_be_unique`` and ``expect_compound_columns_to_be_unique``
    are row-level: GX flags *every* row of a duplicated value (pandas
    ``duplicated(keep=False)``), so all copies are quarantined. None of the copies is
    known to be the right one and publishing one arbitrary copy would be
    non-deterministic. Since duplicated (or null) keys cannot tell rows apart,
    ``row_failures`` also carries ``row``, the position of the row in the input frame.

Row count band
    When ``previous_row_count`` is given (and positive) and the suite has an
    ``expect_table_row_count_to_be_between`` whose ``meta`` holds
    ``{"relative_to_previous": [low, high]}``, its ``min_value``/``max_value`` are
    replaced at run time by ``floor(previous * low)`` and ``ceil(previous * high)``.
    ``row_count_band`` overrides the factors in the suite; when the suite has no such
    expectation, a band given here adds one. Without a previous count (first run) the
    bounds written in the suite file apply.

Date bounds
    ``min_value``/``max_value`` dates on datetime columns are rewritten to full ISO
    datetimes (in the column's time zone), and to plain dates on columns of
    ``datetime.date`` objects, before validation: GX parses ``"2000-01-01"`` into a
    ``datetime.date``, which pandas refuses to compare with ``datetime64`` values.

Speed
    GX is asked for the failing row *positions* only (no ``unexpected_index_column_names``):
    GX builds the key dicts of that option row by row in Python (about 65 µs per failing
    row and expectation), while the keys and offending values are fetched here
    vectorised, by position. The frame is validated with a fresh RangeIndex so positions
    and GX index labels are the same thing. Naive datetime columns reach GX in
    nanoseconds when they fit (``_gx_frame``), the only unit GX compares vectorised, and
    GX's md5 fingerprint of every batch is switched off (``HASH_THRESHOLD``).

GX runs in an ephemeral context with in-memory stores, without progress bars and
without Data Docs sites, so nothing is written to disk.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    Expectation,
    MulticolumnMapExpectation,
)
from great_expectations.expectations.registry import get_expectation_impl

from etl.errors import ConfigError, ConfigIssue
from etl.logs import mask_personal
from etl.validate.custom import RUNTIME_VALUE_SET
from etl.validate.expectation_memo import memoized_configurations

# GX fingerprints every pandas batch it loads (md5 over hash_pandas_object) for result
# metadata only, twice per validation; on object columns such as Decimals that is
# seconds per million rows. A threshold of 0 skips it for every frame.
pandas_execution_engine.HASH_THRESHOLD = 0

ROW_COUNT = "expect_table_row_count_to_be_between"
ROW_FAILURE_COLUMNS = ("expectation", "column", "value", "row")
_ROW_LEVEL = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,  # a string listing every failing index
    "partial_unexpected_count": 20,
}
#: The first pass: counts and samples, no failing positions (GX builds fewer metrics for it).
_COUNTS_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 20}


@dataclass(frozen=True)
class BatchFailure:
    """An expectation about the whole batch that failed (or could not be evaluated)."""

    expectation: str
    column: str | None
    message: str


@dataclass
class GateResult:
    """Outcome of validating one batch.

    Attributes:
        row_failures: key columns + ``expectation``, ``column`` (comma-joined for
            column pair / multicolumn expectations), ``value`` (offending value as
            text, ``col=value`` pairs for several columns, NA for null) and ``row``
            (position in the validated frame); one row per (row, expectation).
        batch_failures: failed batch-level expectations.
        evaluated: rows validated.
        failed_rows: distinct input rows with at least one row failure (the distinct
            keys when the key is unique and not null).
        success: no row failure and no batch failure.
        results: the GX validation result (for Data Docs). Its ``unexpected_index_list``
            holds row positions, not keys.
        seconds: wall time of the validation.
        key_columns: the business key used.
        expectations_evaluated: number of expectations run.
    """

    row_failures: pd.DataFrame
    batch_failures: list[BatchFailure]
    evaluated: int
    failed_rows: int
    success: bool
    results: ExpectationSuiteValidationResult
    seconds: float
    key_columns: tuple[str, ...] = ()
    expectations_evaluated: int = 0

    def failure_counts(self) -> dict[tuple[str, str], int]:
        """Failing rows per (expectation, column), largest first."""
        if self.row_failures.empty:
            return {}
        counts = self.row_failures.groupby(["expectation", "column"], sort=False).size()
        return {key: int(n) for key, n in counts.sort_values(ascending=False, kind="stable").items()}


@dataclass(frozen=True)
class Decision:
    """Whether to publish a validated batch, and why (or why not)."""

    publish: bool
    reasons: list[str] = field(default_factory=list)


def ephemeral_context(data_docs_sites: dict | None = None) -> Any:
    """A quiet in-memory GX context: no progress bars, no analytics, nothing on disk."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=data_docs_sites or {},
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate_batch(
    df: pd.DataFrame,
    suite: ExpectationSuite,
    key_columns: Sequence[str],
    *,
    previous_row_count: int | None = None,
    row_count_band: tuple[float, float] | None = None,
    pii_columns: Sequence[str] = (),
) -> GateResult:
    """Validate `df` against `suite` and return its row and batch failures.

    The messages of batch failures on `pii_columns` quote their sample values masked.

    Code tables and references must already be injected (`resolve_code_tables`,
    `resolve_references`). The suite and the frame are not modified.

    Raises:
        ConfigError: a key column is missing or clashes with a result column, or a
            run-time ``value_set`` was not resolved.
    """
    started = time.perf_counter()
    keys = list(key_columns)
    _check_inputs(df, suite, keys)
    frame = df.reset_index(drop=True)
    runtime_suite = _runtime_suite(suite, frame, previous_row_count, row_count_band)

    context = ephemeral_context()
    batch = (
        context.data_sources.add_pandas("erp_oa_sync")
        .add_dataframe_asset(name=suite.name)
        .add_batch_definition_whole_dataframe("staged")
        .get_batch(batch_parameters={"dataframe": _gx_frame(frame)})
    )
    results = _validate(batch, runtime_suite)
    # GX's context, data source and batch hold the frame in reference cycles, which only a full
    # collection frees: left to the collector's own schedule, a partition's rows stayed resident
    # for several partitions more (+100 MB peak on a 1M-row sync).
    del batch, context
    gc.collect()

    parts: list[pd.DataFrame] = []
    batch_failures: list[BatchFailure] = []
    for res in results.results:
        rows, failure = _classify(res, frame, keys, frozenset(pii_columns))
        if rows is not None:
            parts.append(rows)
        if failure is not None:
            batch_failures.append(failure)
    row_failures = _concat(parts, frame, keys)
    failed_rows = int(row_failures["row"].nunique())
    batch_failures.sort(key=lambda f: (f.expectation, f.column or ""))
    return GateResult(
        row_failures=row_failures,
        batch_failures=batch_failures,
        evaluated=len(frame),
        failed_rows=failed_rows,
        success=not batch_failures and failed_rows == 0,
        results=results,
        seconds=time.perf_counter() - started,
        key_columns=tuple(keys),
        expectations_evaluated=len(results.results),
    )


def _validate(batch: Any, suite: ExpectationSuite) -> ExpectationSuiteValidationResult:
    """Validate for counts first; the row-level expectations with unexpected rows again, for their positions.

    Most batches pass every expectation, and the counts alone cost GX about half of what the
    failing positions of every expectation do (0.09 against 0.16 s for an 80,000-row
    partition with the 21 expectations of the purchase suite).
    """
    with memoized_configurations():
        return _validate_twice(batch, suite)


def _validate_twice(batch: Any, suite: ExpectationSuite) -> ExpectationSuiteValidationResult:
    results = batch.validate(suite, result_format=dict(_COUNTS_FORMAT))
    again = [i for i, res in enumerate(results.results) if _wants_rows(res)]
    if again:
        subset = ExpectationSuite(
            name=suite.name,
            expectations=[results.results[i].expectation_config.to_domain_obj() for i in again],
            suite_parameters=dict(suite.suite_parameters or {}),
            meta=dict(suite.meta or {}),
        )
        complete = batch.validate(subset, result_format=dict(_RESULT_FORMAT))
        redone = [res.expectation_config for res in complete.results]
        if redone != [results.results[i].expectation_config for i in again]:
            return batch.validate(suite, result_format=dict(_RESULT_FORMAT))  # not in order: all at once
        for i, res in zip(again, complete.results, strict=True):
            results.results[i] = res  # the same verdict: only its result holds more
    return results


def _wants_rows(res: ExpectationValidationResult) -> bool:
    """Whether a result of the counts pass has unexpected rows whose positions the gate needs."""
    config = res.expectation_config
    if config is None or _exception_message(res.exception_info) is not None or not _quarantines_rows(config):
        return False
    return bool((res.result or {}).get("unexpected_count"))


def gate_decision(
    result: GateResult,
    total_rows: int,
    max_quarantined_pct: float | None,
    max_quarantined_rows: int | None,
) -> Decision:
    """Decide whether to publish: no batch failure and quarantine within thresholds.

    `max_quarantined_pct` is a percentage of `total_rows` (``1.0`` = 1 %); a threshold
    of None is not checked, so with both None any number of quarantined rows is
    accepted. Thresholds are exceeded when strictly greater. `reasons` lists what
    blocked publishing first, then every broken row-level expectation with its count.
    """
    reasons: list[str] = []
    publish = True
    for failure in result.batch_failures:
        publish = False
        where = f" on {failure.column}" if failure.column else ""
        reasons.append(f"batch check {failure.expectation}{where} failed: {failure.message}")

    quarantined = result.failed_rows
    pct = 100.0 * quarantined / total_rows if total_rows else 0.0
    share = f"{quarantined:,} of {total_rows:,} rows ({pct:.2f} %)"
    if max_quarantined_pct is not None and pct > max_quarantined_pct:
        publish = False
        reasons.append(f"{share} quarantined, more than the allowed {max_quarantined_pct:g} %")
    if max_quarantined_rows is not None and quarantined > max_quarantined_rows:
        publish = False
        reasons.append(f"{share} quarantined, more than the allowed {max_quarantined_rows:,} rows")
    for (expectation, column), count in result.failure_counts().items():
        reasons.append(f"{expectation} on {column}: {count:,} row{'' if count == 1 else 's'}")
    return Decision(publish=publish, reasons=reasons)


# --- preparation -----------------------------------------------------------------------


def _check_inputs(df: pd.DataFrame, suite: ExpectationSuite, keys: list[str]) -> None:
    issues = []
    if not keys:
        issues.append(ConfigIssue(suite.name, None, None, "key", "a business key is required"))
    missing = [k for k in keys if k not in df.columns]
    if missing:
        issues.append(ConfigIssue(suite.name, None, None, "key", f"key columns not in the batch: {', '.join(missing)}"))
    clashing = [k for k in keys if k in ROW_FAILURE_COLUMNS]
    if clashing:
        issues.append(
            ConfigIssue(suite.name, None, None, "key", f"key columns clash with result columns: {', '.join(clashing)}")
        )
    for i, exp in enumerate(suite.expectations):
        if exp.expectation_type in RUNTIME_VALUE_SET and getattr(exp, "value_set", None) is None:
            issues.append(
                ConfigIssue(
                    suite.name,
                    None,
                    None,
                    f"expectations[{i}].kwargs.value_set",
                    f"{exp.expectation_type} needs its value_set injected before validation "
                    "(resolve_code_tables / resolve_references)",
                )
            )
    if issues:
        raise ConfigError(issues)


def _gx_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame GX sees: naive datetimes in nanoseconds where they fit.

    pandas 3 parses dates to ``datetime64[us]``; GX compares only ``datetime64[ns]`` (and
    tz-aware) columns vectorised and maps a Python function over any other unit, 150x
    slower. Dates outside 1677..2262 (such as 9999-12-31) keep their unit.
    """
    out = frame
    for position, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind == "M" and dtype != np.dtype("datetime64[ns]"):
            try:
                converted = frame.iloc[:, position].astype("datetime64[ns]")
            except (OverflowError, ValueError):
                continue
            if out is frame:
                out = frame.copy(deep=False)
            out.isetitem(position, converted)
    return out


def _runtime_suite(
    suite: ExpectationSuite,
    frame: pd.DataFrame,
    previous_row_count: int | None,
    row_count_band: tuple[float, float] | None,
) -> ExpectationSuite:
    expectations: list[Expectation] = []
    banded = False
    for exp in suite.expectations:
        update: dict[str, Any] = {"id": None}
        if exp.expectation_type == ROW_COUNT:
            band = row_count_band or (exp.meta or {}).get("relative_to_previous")
            if band is not None:
                banded = True
                update.update(_band_bounds(previous_row_count, band))
        update.update(_date_bounds(exp, frame))
        expectations.append(exp.copy(update=update))
    bounds = _band_bounds(previous_row_count, row_count_band) if row_count_band else {}
    if not banded and bounds:
        expectations.append(
            gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=bounds["min_value"],
                max_value=bounds["max_value"],
                meta={"relative_to_previous": list(row_count_band or ()), "level": "batch"},
            )
        )
    return ExpectationSuite(
        name=suite.name,
        expectations=expectations,
        suite_parameters=dict(suite.suite_parameters or {}),
        meta=dict(suite.meta or {}),
    )


def _band_bounds(previous: int | None, band: Sequence[float]) -> dict[str, int]:
    if previous is None or previous <= 0:
        return {}
    low, high = band
    return {"min_value": math.floor(previous * low), "max_value": math.ceil(previous * high)}


def _date_bounds(exp: Expectation, frame: pd.DataFrame) -> dict[str, str]:
    """Rewrite date bounds as strings GX parses into the column's kind of value."""
    column = getattr(exp, "column", None)
    if not isinstance(column, str) or column not in frame.columns:
        return {}
    bounds = {k: getattr(exp, k, None) for k in ("min_value", "max_value")}
    bounds = {k: v for k, v in bounds.items() if isinstance(v, dt.date | str)}
    if not bounds:
        return {}
    series = frame[column]
    is_datetime = pd.api.types.is_datetime64_any_dtype(series.dtype)
    if not is_datetime:
        first = series.first_valid_index()
        sample = series.loc[first] if first is not None else None
        if not isinstance(sample, dt.date) or isinstance(sample, dt.datetime):
            return {}
    tz = getattr(series.dtype, "tz", None)
    out = {}
    for key, value in bounds.items():
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            continue
        if not is_datetime:
            # pydantic turns a date-only string into a date, any time part into a datetime
            out[key] = stamp.date().isoformat()
            continue
        if tz is not None:
            stamp = stamp.tz_localize(tz) if stamp.tzinfo is None else stamp.tz_convert(tz)
        elif stamp.tzinfo is not None:
            stamp = stamp.tz_convert(None)
        out[key] = stamp.isoformat()
    return out


# --- results ---------------------------------------------------------------------------


def _classify(
    res: ExpectationValidationResult, frame: pd.DataFrame, keys: list[str], pii: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame | None, BatchFailure | None]:
    config = res.expectation_config
    assert config is not None
    etype = config.type
    columns = _domain_columns(config.kwargs)
    column_text = ",".join(columns) or None
    error = _exception_message(res.exception_info)
    if error is not None:
        return None, BatchFailure(etype, column_text, f"could not be evaluated: {error}")
    result = res.result or {}
    if _quarantines_rows(config):
        positions = result.get("unexpected_index_list")
        if positions:
            return _row_failures(frame, keys, etype, columns, positions), None
        if res.success or not result.get("unexpected_count"):
            return None, None
    if res.success:
        return None, None
    return None, BatchFailure(etype, column_text, _describe(config.kwargs, result, pii=bool(pii & set(columns))))


def _quarantines_rows(config: Any) -> bool:
    """Whether the failing rows of an expectation are quarantined (row-level, not forced to batch level)."""
    return (config.meta or {}).get("level") != "batch" and _is_row_level(config.type)


def _is_row_level(expectation_type: str) -> bool:
    try:
        return issubclass(get_expectation_impl(expectation_type), _ROW_LEVEL)
    except Exception:
        return False


def _domain_columns(kwargs: dict) -> list[str]:
    if isinstance(kwargs.get("column"), str):
        return [kwargs["column"]]
    if "column_A" in kwargs and "column_B" in kwargs:
        return [str(kwargs["column_A"]), str(kwargs["column_B"])]
    if isinstance(kwargs.get("column_list"), list):
        return [str(c) for c in kwargs["column_list"]]
    return []


def _exception_message(info: Any) -> str | None:
    """GX reports exceptions flat, or nested per metric when a metric failed."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "unknown error")
    return None


def _describe(kwargs: dict, result: dict, *, pii: bool = False) -> str:
    """A batch failure's message; with `pii` (a personal data column) the values it quotes are masked."""
    show = _masked_repr if pii else repr
    expected = ", ".join(
        f"{k}={v!r}"
        for k, v in kwargs.items()
        if k not in ("batch_id", "column", "column_A", "column_B", "column_list", "value_set") and v is not None
    )
    suffix = f" (expected {expected})" if expected else ""
    if "observed_value" in result:
        return f"observed {show(result['observed_value'])}{suffix}"
    if result.get("unexpected_count") is not None:
        sample = ", ".join(show(v) for v in (result.get("partial_unexpected_list") or [])[:5])
        return f"{result['unexpected_count']:,} of {result.get('element_count', 0):,} values unexpected{suffix}" + (
            f"; e.g. {sample}" if sample else ""
        )
    return f"failed{suffix}"


def _masked_repr(value: Any) -> str:
    if isinstance(value, list | tuple):
        return repr([mask_personal(v) if isinstance(v, str) else v for v in value])
    return repr(mask_personal(value)) if isinstance(value, str) else repr(value)


def _row_failures(
    frame: pd.DataFrame, keys: list[str], etype: str, columns: list[str], positions: list
) -> pd.DataFrame:
    pos = np.asarray(positions, dtype=np.int64)
    out = frame[keys].take(pos).reset_index(drop=True)
    out["expectation"] = etype
    out["column"] = ",".join(columns)
    out["value"] = _values_as_text(frame, columns, pos)
    out["row"] = pos
    return out


def _values_as_text(frame: pd.DataFrame, columns: list[str], pos: np.ndarray) -> pd.Series:
    texts = [_column_text(frame[c].take(pos)) for c in columns]
    if not texts:
        values: list[str | None] = [None] * len(pos)
    elif len(texts) == 1:
        values = texts[0]
    else:
        values = [
            ", ".join(f"{c}={'null' if v is None else v}" for c, v in zip(columns, row, strict=True))
            for row in zip(*texts, strict=True)
        ]
    return pd.Series(values, dtype="string")


def _column_text(series: pd.Series) -> list[str | None]:
    """Values as text, vectorised for the common dtypes (nulls become None)."""
    dtype = series.dtype
    missing = series.isna().to_numpy()
    if isinstance(dtype, pd.StringDtype):
        values = series.to_numpy(dtype=object)
    elif pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        values = series.astype(str).to_numpy(dtype=object)
    elif isinstance(dtype, np.dtype) and dtype.kind == "M":
        midnight = (series == series.dt.normalize()).to_numpy()
        values = series.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        if not midnight[~missing].all():
            values[~midnight] = [_text(v) for v in series[~midnight]]
    else:
        return [_text(v) for v in series.to_numpy(dtype=object)]
    values[missing] = None
    return values.tolist()


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else repr(float(value))
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None and value == value.normalize():
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _concat(parts: list[pd.DataFrame], frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if not parts:
        empty = frame[keys].iloc[0:0].reset_index(drop=True)
        empty["expectation"] = pd.Series(dtype="string")
        empty["column"] = pd.Series(dtype="string")
        empty["value"] = pd.Series(dtype="string")
        empty["row"] = pd.Series(dtype="int64")
        return empty
    out = pd.concat(parts, ignore_index=True)
    out["expectation"] = out["expectation"].astype("string")
    out["column"] = out["column"].astype("string")
    return out.sort_values(["row", "expectation", "column"], kind="stable", ignore_index=True)
