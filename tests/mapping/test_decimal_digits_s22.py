"""Decimals of 16+ significant digits are never published changed: float64 keeps 15 exactly, so a value whose rounding
it would get wrong is quarantined (`decimal_digits`, or the type check for a decimal field without a `decimal`
transform); one it holds exactly (`9007199254740992`, `100.00`) is published as it is."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from etl.demo.generate import DemoSize
from etl.engine.pipeline import open_store, run_sync
from etl.mapping.model import CanonicalField
from etl.mapping.registry import TransformContext
from etl.mapping.transforms import DecimalArgs, decimal
from etl.mapping.types import coerce_series
from tests.helpers.project import execute_sql, make_project, urls_for

CONTRACTS = DemoSize(departments=8, employees=30, requisitions=10, contracts=15)

#: source value -> whether float64 holds its rounding to 2 places exactly
TWO_PLACES = {
    "98765432109876.53": False,  # was published as .55
    "1234567890123456.78": False,  # was published as .80
    "9999999999999999.99": False,  # was published as 10000000000000000.00
    "1234567890123.45": True,
    "100.00": True,
    "1.005": True,  # 1.01: half up
    "123456789012.123456": True,  # 18 digits, but rounded to 12345678901212 hundredths exactly
}


def _ctx() -> TransformContext:
    return TransformContext(field="amount", source="erp", frame=pd.DataFrame(), code_tables={}, as_of=None,
                            timezone="Asia/Shanghai", pii=False)


@pytest.mark.parametrize("kind", ["text", "Decimal"])
def test_a_value_float64_would_change_is_quarantined(kind: str) -> None:
    values = list(TWO_PLACES) if kind == "text" else [Decimal(v) for v in TWO_PLACES]
    ctx = _ctx()
    out = decimal(pd.Series([*values, None], dtype=object), DecimalArgs(scale=2), ctx)
    changed = [not kept for kept in TWO_PLACES.values()]
    rejected = np.zeros(len(values) + 1, dtype=bool)
    for rejection in ctx.rejections:
        assert rejection.rule == "decimal_digits"
        assert "significant digits; at most 15 are kept exactly" in rejection.reason, rejection.reason
        rejected |= rejection.mask.to_numpy()
    assert rejected.tolist() == [*changed, False]
    for value, kept, result in zip(TWO_PLACES, TWO_PLACES.values(), out, strict=False):
        if kept:
            exact = Decimal(value).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
            assert Decimal(repr(result)) == exact, value
        else:
            assert np.isnan(result), value
    reasons = " ".join(r.reason for r in ctx.rejections)
    assert "'98765432109876.53' has 16 significant digits" in reasons, reasons


def test_integers_beyond_two_to_the_53_are_quarantined_those_below_kept() -> None:
    ctx = _ctx()
    out = decimal(pd.Series(["9007199254740993", "9007199254740992", "1234567890123456"]), DecimalArgs(scale=0), ctx)
    assert [r.rule for r in ctx.rejections] == ["decimal_digits"]
    assert ctx.rejections[0].mask.tolist() == [True, False, False]
    assert out.tolist()[1:] == [9007199254740992.0, 1234567890123456.0]


def test_a_float_source_is_what_it_is() -> None:
    ctx = _ctx()
    out = decimal(pd.Series([1234567890123456.78, 2.5]), DecimalArgs(scale=2), ctx)
    assert not ctx.rejections and out.tolist() == [1234567890123456.8, 2.5]


def test_a_decimal_field_without_the_transform_fails_its_type_instead_of_changing() -> None:
    spec = CanonicalField(type="decimal", scale=2)
    values, bad = coerce_series(pd.Series([Decimal("1234567890123456.78"), Decimal("12.34"), None], dtype=object), spec)
    assert bad.tolist() == [True, False, False]
    assert values.tolist()[1] == 12.34


def _amounts(config: Any) -> dict[str, Any]:
    engine = create_engine(config.connection("target").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT contract_no, amount FROM md_contract")).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres),
                                     pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_a_sync_never_publishes_a_changed_amount(backend: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    config, _ = make_project(tmp_path / "project", urls_for(backend, request, tmp_path), size=CONTRACTS)
    erp = config.connection("erp").sqlalchemy_url()
    engine = create_engine(erp)
    with engine.connect() as conn:
        contracts = [r[0] for r in conn.execute(text('SELECT "cContractID" FROM "CM_Contract" ORDER BY 1'
                                                     if backend == "postgres" else
                                                     "SELECT cContractID FROM CM_Contract ORDER BY 1")).all()]
    engine.dispose()
    table = '"CM_Contract"' if backend == "postgres" else "CM_Contract"
    money, cid = ('"dblTotalMoney"', '"cContractID"') if backend == "postgres" else ("dblTotalMoney", "cContractID")
    changed, exact, fits = contracts[0], contracts[1], contracts[2]
    for contract, amount in ((changed, "98765432109876.53"), (exact, "9007199254740992.00"), (fits, "1234567.89")):
        execute_sql(erp, f"UPDATE {table} SET {money} = :a WHERE {cid} = :c", {"a": Decimal(amount), "c": contract})
    config.run.max_quarantined_pct = 100.0
    summary, _ = run_sync(config, full_refresh=True, entities=["department", "contract"])
    contract_result = next(e for e in summary.entities if e.entity == "contract")
    assert contract_result.status == "success", summary.message
    amounts = _amounts(config)
    assert Decimal(str(amounts[exact])) == Decimal("9007199254740992.00")
    assert Decimal(str(amounts[fits])) == Decimal("1234567.89")
    # the ERP record is quarantined (the golden record keeps the OA's amount): never the ERP's amount altered
    published = Decimal(str(amounts.get(changed, 0)))
    assert published == Decimal("98765432109876.53") or abs(published - Decimal("98765432109876.53")) > 1, published
    found = open_store(config).quarantine(entity="contract")
    digits = found[(found["rule"] == "decimal_digits") & (found["src_id"] == changed)]
    assert list(digits["field"]) == ["amount"], found[["src_id", "rule", "field"]]
    assert "16 significant digits" in digits["reason"].iloc[0]


@pytest.mark.unit
def test_the_type_check_says_why_a_date_or_number_was_refused() -> None:
    """A DATE column mapped without a parser (the contract's ERP `end_date: dtEndDate`) holding an ERP's
    9999-12-31 is not "not a valid date": the reason names the range and the `null_if` fix; a number the field
    cannot keep exactly says so, and text that is no number stays "not a valid decimal"."""
    from datetime import date

    from etl.mapping.apply import TOO_MANY_DIGITS, map_chunk
    from etl.mapping.loader import load_mappings
    from etl.mapping.types import RANGE_REASON

    mappings = load_mappings(Path(__file__).resolve().parents[2] / "mappings")
    contract = mappings.entity("contract")
    raw = pd.DataFrame({c: [None, None] for c in contract.sources["erp"].columns}, dtype=object)
    raw["cContractID"] = ["HT1", "HT2"]
    raw["dtEndDate"] = [date(9999, 12, 31), "2026-02-30"]
    mapped = map_chunk(raw, contract, "erp", mappings.code_tables, as_of=date(2026, 12, 6), fields=["end_date"])
    reasons = dict(zip(mapped.rejects["_src_id"], mapped.rejects["reason"], strict=True))
    assert reasons == {"HT1": RANGE_REASON, "HT2": "value is not a valid date"}
    assert "null_if" in RANGE_REASON

    field = CanonicalField(type="decimal", scale=2)
    contract.fields["plain_amount"] = field
    contract.sources["erp"].fields["plain_amount"] = type(contract.sources["erp"].fields["end_date"])(**{
        "from": "dblTotalMoney"})
    raw["dblTotalMoney"] = ["98765432109876.53", "lots"]
    mapped = map_chunk(raw, contract, "erp", mappings.code_tables, as_of=date(2026, 12, 6), fields=["plain_amount"])
    reasons = dict(zip(mapped.rejects["_src_id"], mapped.rejects["reason"], strict=True))
    assert reasons == {"HT1": TOO_MANY_DIGITS, "HT2": "value is not a valid decimal"}
