"""Buckets are stored with every mirrored and published row: the function must never change."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from etl.engine.tables import BUCKETS, bucket_of, bucket_range
from etl.mapping.transforms import STR

pytestmark = pytest.mark.unit

KEYS = ["QG2026000123|1", "000042", "市场部", "a|", ""]
#: What pandas' factorizing `hash_array` gave these keys when buckets were first stored.
STORED = [464, 634, 837, 20, 582]


@pytest.mark.parametrize("dtype", [STR, object], ids=["arrow text", "object"])
def test_buckets_of_keys_are_those_stored_by_earlier_versions(dtype: object) -> None:
    assert bucket_of(pd.Series(KEYS, dtype=dtype)).tolist() == STORED
    with_null = bucket_of(pd.Series([*KEYS, None], dtype=dtype))
    assert with_null.tolist() == [*STORED, 1023]  # a null key hashes apart


def test_repeated_keys_share_a_bucket_and_partitions_cover_every_bucket() -> None:
    keys = pd.Series([f"K{i % 500}" for i in range(5000)], dtype=STR)
    buckets = bucket_of(keys)
    assert buckets.groupby(keys).nunique().max() == 1
    assert buckets.between(0, BUCKETS - 1).all()
    ranges = [bucket_range(p, 7) for p in range(7)]
    assert ranges[0][0] == 0 and ranges[-1][1] == BUCKETS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
