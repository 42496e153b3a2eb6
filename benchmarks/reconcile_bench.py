"""Benchmark of `etl.reconcile.compare.compare_entity`: two 1M-row canonical frames, ~120 planted differences.

    .venv/bin/python benchmarks/reconcile_bench.py [--rows 1000000] [--repeat 3]

Prints one JSON object: seconds per run (best and all), rows per second, peak
memory of the comparison (tracemalloc, a separate run) and the differences found
per class next to the planted records and the differences they make. Uses the `purchase` mapping of `mappings/`
(composite key, decimals with tolerance, dates, references) and also plants
spelling noise the comparison must ignore (whitespace, case, decimals within
tolerance).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etl.mapping.loader import load_mappings  # noqa: E402
from etl.mapping.model import EntityMapping  # noqa: E402
from etl.mapping.types import coerce, row_hash  # noqa: E402
from etl.reconcile.compare import compare_entity  # noqa: E402

PLANTED = {
    "only_in_erp": 20,
    "only_in_oa": 20,
    "field_mismatch": 40,
    "duplicate_key": 10,
    "mapping_gap": 10,
    "orphan_reference": 10,
    "target_drift": 10,
}
#: The differences the planted records make: the quarantined ones share one unmapped code (SZ01), one gap.
EXPECTED = {**PLANTED, "mapping_gap": 1}
NOISE = 1_000


def build(rows: int, seed: int = 7) -> tuple[EntityMapping, dict[str, pd.DataFrame], dict[str, object]]:
    """ERP, OA and target frames with the planted differences.

    The demo mapping may carry fields this generator does not fill (e.g. `request_year`, `compare:
    false`): they are left out of the mapping, which does not change what is compared.
    """
    mapping = load_mappings(REPO / "mappings").entity("purchase")
    rng = np.random.default_rng(seed)
    n = rows
    req = np.char.add("QG", np.char.zfill((np.arange(n) // 4).astype(str), 10))
    line = (np.arange(n) % 4 + 1).astype("int64")
    depts = np.array([f"D0{i}" for i in range(101, 131)], dtype=object)
    people = np.array([f"{i:06d}" for i in range(1, 5001)], dtype=object)
    qty = np.round(rng.uniform(1, 500, n), 4)
    price = np.round(rng.uniform(0.1, 9000, n), 2)
    base = pd.DataFrame(
        {
            "request_no": req.astype(object),
            "line_no": line,
            "item_code": np.char.add("I", rng.integers(1, 30000, n).astype(str)).astype(object),
            "supplier_code": np.char.add("V", rng.integers(1, 800, n).astype(str)).astype(object),
            "quantity": qty,
            "unit_price": price,
            "amount": np.round(qty * price, 2),
            "need_date": np.datetime64("2026-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]"),
            "department_code": depts[rng.integers(0, len(depts), n)],
            "requester_code": people[rng.integers(0, len(people), n)],
            "source_system": "ERP",
            "updated_at": np.datetime64("2026-06-01T00:00:00") + rng.integers(0, 10**7, n).astype("timedelta64[s]"),
        }
    )
    mapping = mapping.model_copy(update={"fields": {k: v for k, v in mapping.fields.items() if k in base.columns}})
    base = coerce(base, mapping.fields)
    base["_key"] = base["request_no"] + "|" + base["line_no"].astype(str)
    erp = base.assign(_src_id=np.arange(n).astype(str))
    oa = base.assign(_src_id=(np.arange(n) + 10_000_000).astype(str), source_system="OA")
    oa["source_system"] = oa["source_system"].astype("str")
    picks = rng.choice(np.arange(100, n - 100), size=2000, replace=False)
    take = iter(np.array_split(picks, 20))

    only_erp = next(take)[: PLANTED["only_in_erp"]]
    only_oa = next(take)[: PLANTED["only_in_oa"]]
    mism = next(take)[: PLANTED["field_mismatch"]]
    dups = next(take)[: PLANTED["duplicate_key"]]
    gaps = next(take)[: PLANTED["mapping_gap"]]
    orph = next(take)[: PLANTED["orphan_reference"]]
    drift = next(take)[: PLANTED["target_drift"]]
    noise = next(take)[:NOISE]

    # field mismatches: half amounts beyond tolerance, half supplier codes
    half = len(mism) // 2
    oa.loc[mism[:half], "amount"] = oa.loc[mism[:half], "amount"] + 1.0
    oa.loc[mism[half:], "supplier_code"] = "X" + oa.loc[mism[half:], "supplier_code"]
    # noise the comparison must not report: whitespace/case and decimals within tolerance
    quarter = len(noise) // 2
    oa.loc[noise[:quarter], "item_code"] = " " + oa.loc[noise[:quarter], "item_code"].str.lower() + "\u3000"
    oa.loc[noise[quarter:], "unit_price"] = oa.loc[noise[quarter:], "unit_price"] + 0.01
    # duplicates: a second ERP row with the same key
    dup_rows = erp.loc[dups].assign(_src_id=lambda f: "dup" + f["_src_id"])
    # mapping gaps: the OA record sits in quarantine (lookup) -> not in OA, not only_in_erp
    quarantine = pd.DataFrame(
        {
            "source": "oa",
            "src_id": oa.loc[gaps, "_src_id"].to_numpy(),
            "golden_key": oa.loc[gaps, "_key"].to_numpy(),
            "field": "department_code",
            "rule": "lookup:department",
            "value": "SZ01",
            "reason": "not in code table",
        }
    )
    # orphans: a department code nobody has
    erp.loc[orph, "department_code"] = "D9999"
    oa.loc[orph, "department_code"] = "D9999"

    target = oa.copy()
    target.loc[only_erp, :] = erp.loc[only_erp, :].to_numpy()
    target = coerce(target, mapping.fields)
    target["_presence"] = "erp+oa"
    target.loc[only_erp, "_presence"] = "erp"
    target.loc[only_oa, "_presence"] = "oa"
    target.loc[dups, "_presence"] = "oa"
    target.loc[gaps, "_presence"] = "erp"
    target.loc[gaps, list(mapping.fields)] = erp.loc[gaps, list(mapping.fields)].to_numpy()
    target = coerce(target, mapping.fields)
    target["_active"] = True
    target["_hash"] = row_hash(target, list(mapping.fields))
    # drift: somebody edited the target directly
    target.loc[drift, "amount"] = target.loc[drift, "amount"] + 100.0
    target = target.drop(columns="_src_id")

    erp = pd.concat([erp.drop(index=only_oa), dup_rows], ignore_index=True)
    oa = oa.drop(index=np.concatenate([only_erp, gaps])).reset_index(drop=True)
    oa.loc[oa["_key"].isin(set(base.loc[dups, "_key"])), "_presence"] = None
    oa = oa.drop(columns=["_presence"], errors="ignore")
    # As read from databases: keys are distinct string objects, rows in another order.
    oa = oa.assign(_key=(oa["request_no"] + "|" + oa["line_no"].astype("str")).astype("str"))
    oa = oa.sample(frac=1.0, random_state=3).reset_index(drop=True)
    target = target.assign(_key=(target["request_no"] + "|" + target["line_no"].astype("str")).astype("str"))
    target = target.sample(frac=1.0, random_state=4).reset_index(drop=True)
    refs = {"department.department_code": set(depts), "employee.employee_code": set(people)}
    frames = {"erp": erp, "oa": oa, "target": target, "quarantine": quarantine}
    return mapping, frames, {"reference_keys": refs}


def run(mapping: EntityMapping, frames: dict[str, pd.DataFrame], extra: dict[str, object]) -> pd.DataFrame:
    return compare_entity(
        mapping,
        frames["erp"],
        frames["oa"],
        frames["target"],
        quarantine=frames["quarantine"],
        reference_keys=extra["reference_keys"],  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    mapping, frames, extra = build(args.rows)
    build_seconds = time.perf_counter() - t0
    times = []
    diffs = pd.DataFrame()
    for _ in range(args.repeat):
        t = time.perf_counter()
        diffs = run(mapping, frames, extra)
        times.append(round(time.perf_counter() - t, 3))
    tracemalloc.start()
    run(mapping, frames, extra)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    found = diffs["class"].value_counts().to_dict()
    print(
        json.dumps(
            {
                "benchmark": "reconcile.compare_entity",
                "rows_per_side": args.rows,
                "fields": len(mapping.fields),
                "seconds_best": min(times),
                "seconds": times,
                "rows_per_second": round(2 * args.rows / min(times)),
                "peak_memory_mb": round(peak / 2**20, 1),
                "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "build_seconds": round(build_seconds, 2),
                "planted": PLANTED,
                "expected": EXPECTED,
                "noise_rows_not_differences": NOISE,
                "found": {k: int(v) for k, v in found.items()},
                "found_total": len(diffs),
                "python": platform.python_version(),
                "pandas": pd.__version__,
                "numpy": np.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
