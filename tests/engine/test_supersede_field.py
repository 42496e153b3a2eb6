"""A finding is superseded only by the same problem found again: same rule, same record and same field.

A golden record failing `expect_column_values_to_be_between` on `amount` and on `quantity` has two gate findings;
when a later run finds only the `quantity` one again (the amount was fixed, or its expectation removed), the
`amount` finding must not be marked superseded by the `quantity` one: no newer `amount` finding exists.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import create_engine

from etl.store.repo import Store

BETWEEN = "expect_column_values_to_be_between"


def _store(url: str) -> Store:
    store = Store(create_engine(url))
    store.migrate()
    return store


def _gate(key: str, *fields: str | None) -> pd.DataFrame:
    """Gate findings of one golden record, one per field, as the gate writes them (the sources' ids as JSON)."""
    return pd.DataFrame(
        {
            "source": ["erp+oa"] * len(fields),
            "src_id": ['{"erp": "362", "oa": "484"}'] * len(fields),
            "golden_key": [key] * len(fields),
            "field": list(fields),
            "rule": [BETWEEN] * len(fields),
            "reason": ["out of range"] * len(fields),
        }
    )


def _statuses(store: Store) -> dict[tuple[str, str | None], str]:
    rows = store.quarantine(entity="purchase", status=None)
    return {(r.run_id, None if pd.isna(r.field) else r.field): r.status for r in rows.itertuples()}


def _fixed_field_is_not_superseded(url: str) -> None:
    store = _store(url)
    store.add_quarantine("r1", "purchase", _gate("QG1|5", "amount", "quantity"), stage="gate0")
    store.add_quarantine("r2", "purchase", _gate("QG1|5", "quantity"), stage="gate0")
    assert _statuses(store) == {
        ("r1", "amount"): "open",  # was "superseded" by r2's quantity finding
        ("r1", "quantity"): "superseded",
        ("r2", "quantity"): "open",
    }
    store.engine.dispose()


def _same_field_and_no_field_still_supersede(url: str) -> None:
    store = _store(url)
    store.add_quarantine("r1", "purchase", _gate("QG2|1", None, "amount"), stage="gate0")
    store.add_quarantine("r2", "purchase", _gate("QG2|1", None, "amount"), stage="gate0")
    assert _statuses(store) == {
        ("r1", None): "superseded",  # NULL field = NULL field
        ("r1", "amount"): "superseded",
        ("r2", None): "open",
        ("r2", "amount"): "open",
    }
    store.engine.dispose()


def _source_record_findings_match_on_field_too(url: str) -> None:
    """The per-source-record path (mapping findings, keyed by source and src_id) matches on the field as well."""
    store = _store(url)

    def found(*fields: str) -> pd.DataFrame:
        return pd.DataFrame(
            {"source": "erp", "src_id": "000123", "field": list(fields), "rule": "lookup:department", "reason": "x"}
        )

    store.add_quarantine("r1", "purchase", found("department_code", "cost_center"), stage="map")
    store.add_quarantine("r2", "purchase", found("cost_center"), stage="map")
    assert _statuses(store) == {
        ("r1", "department_code"): "open",
        ("r1", "cost_center"): "superseded",
        ("r2", "cost_center"): "open",
    }
    store.engine.dispose()


CASES = [_fixed_field_is_not_superseded, _same_field_and_no_field_still_supersede,
         _source_record_findings_match_on_field_too]


@pytest.mark.sqlite
@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_supersede_matches_the_field_on_sqlite(tmp_path, case) -> None:
    case(f"sqlite:///{tmp_path / 'recon.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_supersede_matches_the_field_on_postgres(pg_url: str, case) -> None:
    case(pg_url)


@pytest.mark.mariadb
@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_supersede_matches_the_field_on_mariadb(mariadb_url: str, case) -> None:
    case(mariadb_url)
