"""Benchmark of the mapping transforms: `map_chunk` for the purchase mapping's OA source on 1M messy rows.

    .venv/bin/python benchmarks/transforms_bench.py [--rows 1000000] [--chunk 100000] [--seed 7] [--no-single]

Generates (vectorised) raw rows shaped like the demo's OA requisition-line query
(the columns of `mappings/purchase.yaml` `sources.oa`) with the mess real forms
carry: request numbers with dashes, lower case and full-width digits, work codes
that lost their leading zeros, department spellings (codes, names, full-width,
lower case, a few unknown), amounts with thousands separators, currency signs
and accounting negatives, a few prices with a third decimal, a few impossible
dates. Runs the real `map_chunk` in chunks of `--chunk` rows, then once on all
rows as one chunk, and prints one JSON object: seconds, rows per second,
accepted/rejected rows and gaps, and memory (the process's peak RSS from
`resource.getrusage`, and the peak of Python allocations in a separate,
tracemalloc-instrumented run of one chunk).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.mapping.apply import MappedChunk, map_chunk  # noqa: E402
from etl.mapping.loader import MappingSet, load_mappings  # noqa: E402

AS_OF = date(2026, 3, 1)
_ASCII = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FULLWIDTH = str.maketrans(_ASCII, "".join(chr(ord(c) + 0xFEE0) for c in _ASCII))


def _pick(rng: np.random.Generator, n: int, choices: list[str], p: list[float]) -> np.ndarray:
    return np.asarray(choices, dtype=object)[rng.choice(len(choices), size=n, p=p)]


def _fmt(values: np.ndarray, spec: str) -> pd.Series:
    """Numbers formatted as text, vectorised through pandas (no per-row Python)."""
    return pd.Series(np.char.mod(spec, values), dtype=object)


def generate(rows: int, mappings: MappingSet, seed: int = 7) -> pd.DataFrame:
    """Raw OA requisition-line rows: the columns `sources.oa` of the purchase mapping reads, as text."""
    rng = np.random.default_rng(seed)
    n = rows
    columns = mappings.entity("purchase").sources["oa"].columns
    request = (np.arange(n) // 3).astype(np.int64) + 2026_000_000
    digits = pd.Series(request.astype(str))
    style = rng.choice(4, size=n, p=[0.85, 0.07, 0.05, 0.03])
    sqdh = ("QG" + digits).where(style == 0, "qg-" + digits.str.slice(0, 4) + "-" + digits.str.slice(4))
    sqdh = sqdh.where(style != 2, ("QG" + digits).str.translate(_FULLWIDTH))
    sqdh = sqdh.where(style != 3, " QG " + digits + " ")

    spellings = [s for e in mappings.code_tables["department"].entries for s in [e.code, e.name or "", *e.synonyms]]
    spellings = [s for s in spellings if s]
    known = np.asarray(spellings, dtype=object)[rng.integers(0, len(spellings), n)]
    dept = pd.Series(known)
    dept_style = rng.random(n)
    dept = dept.where(dept_style > 0.05, dept.str.translate(_FULLWIDTH))
    dept = dept.where((dept_style <= 0.05) | (dept_style > 0.10), dept.str.lower())
    dept = dept.where(dept_style < 0.998, _pick(rng, n, ["SZ01", "数字化转型办公室", "ZZ99"], [0.5, 0.3, 0.2]))
    dept = dept.where(dept_style < 0.9995, None)

    person = rng.integers(1, 20_000, n)
    work = pd.Series(np.char.zfill(person.astype(str), 6))
    work_style = rng.random(n)
    work = work.where(work_style > 0.15, pd.Series(person.astype(str)))  # lost leading zeros
    work = work.where((work_style <= 0.15) | (work_style > 0.20), work.str.translate(_FULLWIDTH))

    qty = np.round(rng.gamma(2.0, 40.0, n), 2)
    price = np.round(rng.uniform(0.5, 9000.0, n), 2)
    price_text = _fmt(price, "%.2f")
    excess = rng.random(n) < 0.003
    price_text[excess] = _fmt(price[excess] + 0.005, "%.3f").to_numpy()
    amount = np.round(qty * price, 2)
    amount_text = _fmt(amount, "%.2f")
    money_style = rng.random(n)
    thousands = amount_text.str.replace(r"(\d)(?=(\d{3})+\.)", r"\1,", regex=True)
    amount_text = amount_text.where(money_style > 0.10, thousands)
    amount_text = amount_text.where((money_style <= 0.10) | (money_style > 0.13), "¥" + amount_text)
    amount_text = amount_text.where((money_style <= 0.13) | (money_style > 0.14), "(" + amount_text + ")")

    days = rng.integers(0, 730, n).astype("timedelta64[D]") + np.datetime64("2025-01-01")
    need = pd.Series(days.astype(str))
    need = need.where(rng.random(n) > 0.001, "2026-02-30")
    need = need.where(rng.random(n) > 0.05, None)
    modified = pd.Series((days - np.timedelta64(7, "D")).astype(str)) + " " + "09:30:00"

    raw = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "sqdh": sqdh,
            "xh": pd.Series((np.arange(n) % 3 + 1).astype(str)),
            "wlbm": " " + pd.Series(np.char.zfill(rng.integers(1, 9000, n).astype(str), 7)),
            "gys": "v" + pd.Series(np.char.zfill(rng.integers(1, 400, n).astype(str), 4)),
            "sl": _fmt(qty, "%.2f"),
            "dj": price_text,
            "je": amount_text,
            "xqrq": need,
            "departmentcode": dept,
            "workcode": work,
            "modified": modified,
        }
    )
    missing = set(columns) - set(raw.columns)
    assert not missing, f"the purchase mapping reads columns the generator lacks: {missing}"
    return raw[columns].astype(object)


def run(raw: pd.DataFrame, mappings: MappingSet, chunk: int) -> tuple[float, dict[str, object]]:
    """Map `raw` in chunks; wall seconds and a summary: speed (wall and CPU) and outcome (rejections by rule)."""
    mapping = mappings.entity("purchase")
    accepted = rejected = 0
    rules: dict[str, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(raw), chunk):
        out: MappedChunk = map_chunk(raw.iloc[start : start + chunk], mapping, "oa", mappings.code_tables, as_of=AS_OF)
        accepted += len(out.rows)
        rejected += int(out.rejects["_src_id"].nunique()) if len(out.rejects) else 0
        for rule, count in out.rejects["rule"].value_counts().items():
            rules[str(rule)] = rules.get(str(rule), 0) + int(count)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    counts: dict[str, object] = {
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(raw) / seconds),
        "cpu_seconds": round(cpu, 2),
        "rows_per_cpu_s": round(len(raw) / cpu),
        "accepted": accepted,
        "rejected_rows": rejected,
        "rejections_by_rule": dict(sorted(rules.items())),
    }
    return seconds, counts


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def traced_peak_mb(raw: pd.DataFrame, mappings: MappingSet, rows: int) -> float:
    """Peak Python allocations (numpy and pandas buffers included) while mapping `rows` rows as one chunk."""
    part = raw.iloc[:rows]
    gc.collect()
    tracemalloc.start()
    try:
        run(part, mappings, rows)
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-single", action="store_true", help="skip the run with all rows as one chunk")
    args = parser.parse_args()

    mappings = load_mappings(REPO / "mappings")
    started = time.perf_counter()
    raw = generate(args.rows, mappings, args.seed)
    generated = time.perf_counter() - started
    rss_input = peak_rss_mb()
    map_chunk(raw.iloc[:1000], mappings.entity("purchase"), "oa", mappings.code_tables, as_of=AS_OF)  # warm up

    result: dict[str, object] = {
        "benchmark": "map_chunk purchase/oa",
        "rows": args.rows,
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "generate_seconds": round(generated, 2),
        "input_mb": round(raw.memory_usage(deep=True).sum() / 2**20, 1),
        "peak_rss_mb_after_generate": rss_input,
    }
    _, counts = run(raw, mappings, args.chunk)
    result[f"chunked_{args.chunk}"] = {**counts, "peak_rss_mb": peak_rss_mb()}
    result["traced_peak_mb_per_chunk"] = traced_peak_mb(raw, mappings, min(args.chunk, args.rows))
    if not args.no_single:
        _, counts = run(raw, mappings, args.rows)
        result["single_chunk"] = {**counts, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
