"""The pure comparison: planted differences of every class are found once and classified right; spelling the
mapping unifies and differences within tolerance are not differences."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from etl.engine.merge import merge
from etl.mapping.model import CanonicalField, EntityMapping
from etl.mapping.types import coerce, row_hash
from etl.reconcile.compare import (
    CLASSES,
    COLUMNS,
    compare_entity,
    diff_id,
    normalise_text,
    tolerance_of,
    values_equal,
)
from etl.report.build import mask_value

pytestmark = pytest.mark.unit

# Both systems feed every field (a field only one system feeds is never compared).
COMPARED = {f: f for f in ("name", "amount", "fee", "start_date", "department_code", "mobile", "status", "updated_at")}
MAPPING = EntityMapping.model_validate(
    {
        "entity": "contract",
        "key": "contract_no",
        "fields": {
            "contract_no": {"type": "string", "nullable": False},
            "name": {"type": "string"},
            "amount": {"type": "decimal", "scale": 2, "tolerance": 0.01},
            "fee": {"type": "decimal", "scale": 2},
            "start_date": {"type": "date"},
            "department_code": {"type": "string", "references": "department.department_code"},
            "mobile": {"type": "string", "pii": True},
            "status": {"type": "string"},
            "updated_at": {"type": "datetime", "compare": False},
        },
        "sources": {
            "erp": {"table": "CM_Contract", "id": "cid", "fields": {"contract_no": "cid", **COMPARED}},
            "oa": {"table": "contracts", "id": "id", "fields": {"contract_no": "htbh", **COMPARED}},
        },
        "deletion": {"status_field": "status", "inactive_values": ["terminated"]},
        "target": {"table": "md_contract"},
    }
)
FIELDS = list(MAPPING.fields)
REFS = {"department.department_code": {"D01", "D02"}}


def _row(key: str, **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "contract_no": key,
        "name": f"Contract {key}",
        "amount": 1000.0,
        "fee": 10.0,
        "start_date": "2026-01-01",
        "department_code": "D01",
        "mobile": "13812341234",
        "status": "effective",
        "updated_at": "2026-03-01 10:00:00",
    }
    base.update(values)
    return base


def _frame(rows: list[dict[str, object]], source: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["_key"] = frame["contract_no"]
    frame["_src_id"] = [f"{source}-{i}" for i in range(len(frame))]
    return coerce(frame, MAPPING.fields)


def _q(source: str, src_id: str, key: str | None, field: str, rule: str, value: str | None, stage: str) -> dict:
    return {
        "source": source,
        "src_id": src_id,
        "golden_key": key,
        "field": field,
        "rule": rule,
        "value": value,
        "reason": "planted",
        "stage": stage,
    }


def _golden(erp: pd.DataFrame, oa: pd.DataFrame) -> pd.DataFrame:
    """The target as a correct publish leaves it."""
    golden = merge({"erp": erp, "oa": oa}, MAPPING).golden
    golden["_active"] = ~golden["status"].isin(["terminated"])
    golden["_hash"] = row_hash(golden, FIELDS)
    return golden.drop(columns=["_ids"])


def _planted() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    erp_rows = [
        _row("K-SAME"),
        # tolerated: within tolerance, spelling the comparison unifies, a field that is not compared
        _row("K-TOL", amount=200.00, fee=5.00, name="Alpha  Trading ", updated_at="2026-01-01 00:00:00"),
        _row("K-WIDTH", name="ＡＢＣ Ltd"),
        _row("K-ONLY-ERP"),
        _row("K-AMOUNT", amount=865200.60),
        _row("K-NAME", name="Alpha"),
        _row("K-DATE", start_date="2026-02-01"),
        _row("K-NULL", mobile=None),
        _row("K-DUP-ERP"),
        _row("K-DUP-ERP", name="second row, same key"),
        _row("K-ORPHAN", department_code="D99"),
        _row("K-DRIFT"),
        _row("K-PRESENCE"),
        _row("K-GAP-HELD"),
        _row("K-REFUSED-BOTH", amount=1.0),
    ]
    oa_rows = [
        _row("K-SAME"),
        _row("K-TOL", amount=200.01, fee=5.004, name="alpha trading", updated_at="2026-06-01 00:00:00"),
        _row("K-WIDTH", name="abc ltd"),
        _row("K-ONLY-OA"),
        _row("K-AMOUNT", amount=957289.56),
        _row("K-NAME", name="Beta"),
        _row("K-DATE"),
        _row("K-NULL"),
        _row("K-DUP-ERP"),
        _row("K-ORPHAN", department_code="D99"),
        _row("K-DRIFT"),
        _row("K-PRESENCE"),
        _row("K-DUP-OA"),
        _row("K-REFUSED-BOTH", amount=2.0),
    ]
    erp, oa = _frame(erp_rows, "erp"), _frame(oa_rows, "oa")
    target = _golden(erp[erp["_key"] != "K-DUP-ERP"], oa[oa["_key"] != "K-DUP-ERP"])
    target = target[target["_key"] != "K-REFUSED-BOTH"]
    # target drift: edited in the target, a record nobody has, a presence that lies, a mirrored key not published
    target.loc[target["_key"] == "K-DRIFT", "name"] = "edited by hand"
    ghost = target[target["_key"] == "K-SAME"].assign(_key="K-GHOST", contract_no="K-GHOST")
    target = pd.concat([target, ghost], ignore_index=True)
    target.loc[target["_key"] == "K-PRESENCE", "_presence"] = "erp"
    erp = pd.concat([erp, _frame([_row("K-UNPUBLISHED")], "erp-x")], ignore_index=True)
    oa = pd.concat([oa, _frame([_row("K-UNPUBLISHED")], "oa-x")], ignore_index=True)
    quarantine = pd.DataFrame(
        [
            # OA record of K-GAP-HELD: its department does not map -> mapping_gap, not only_in_erp
            _q("oa", "77", "K-GAP-HELD", "department_code", "lookup:department", "SZ01", "map"),
            # an unmapped key: no golden key can be derived
            _q("oa", "19", None, "contract_no", "lookup:contract", "XX-1", "map"),
            # duplicates the merge set aside
            _q("oa", "31", "K-DUP-OA", "contract_no", "duplicate_key", "K-DUP-OA", "merge0"),
            _q("oa", "32", "K-DUP-OA", "contract_no", "duplicate_key", "K-DUP-OA", "merge0"),
            # golden records the reference check or the quality gate refused: never published, never mirrored
            _q(
                "erp+oa",
                "{}",
                "K-REF-Q",
                "department_code",
                "reference:department.department_code",
                "D77",
                "integrity0",
            ),
            _q("erp+oa", '{"erp":"e9","oa":"o9"}', "K-REFUSED-BOTH", "amount", "expect_between", "2.0", "gate0"),
            _q("oa", '{"oa":"171"}', "K-REFUSED-OA", "requester", "expect_not_null", None, "gate0"),
        ]
    )
    gaps = pd.DataFrame(
        [
            {
                "source": "erp",
                "field": "status",
                "value": "草稿",
                "code_table": "contract_status",
                "policy": "pass",
                "count": 3,
            }
        ]
    )
    return erp, oa, target, quarantine, gaps


EXPECTED = {
    ("only_in_erp", "K-ONLY-ERP", None),
    ("only_in_oa", "K-ONLY-OA", None),
    ("only_in_oa", "K-REFUSED-OA", None),
    ("field_mismatch", "K-AMOUNT", "amount"),
    ("field_mismatch", "K-NAME", "name"),
    ("field_mismatch", "K-DATE", "start_date"),
    ("field_mismatch", "K-NULL", "mobile"),
    ("mapping_gap", None, "department_code"),
    ("mapping_gap", None, "contract_no"),
    ("mapping_gap", None, "status"),
    ("duplicate_key", "K-DUP-ERP", "contract_no"),
    ("duplicate_key", "K-DUP-OA", "contract_no"),
    ("orphan_reference", "K-ORPHAN", "department_code"),
    ("orphan_reference", "K-REF-Q", "department_code"),
    ("target_drift", "K-DRIFT", "name"),
    ("target_drift", "K-GHOST", None),
    ("target_drift", "K-PRESENCE", "_presence"),
    ("target_drift", "K-UNPUBLISHED", None),
}


def _found(diffs: pd.DataFrame) -> list[tuple[object, object, object]]:
    return list(zip(diffs["class"], diffs["golden_key"], diffs["field"], strict=True))


def test_every_planted_difference_found_once_and_classified() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert list(diffs.columns) == COLUMNS
    found = _found(diffs)
    assert len(found) == len(set(found)), "a difference was reported twice"
    assert set(found) == EXPECTED
    assert set(diffs["class"]) == set(CLASSES)
    assert diffs["diff_id"].is_unique


def test_tolerances_and_unified_spelling_are_not_differences() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    keys = set(diffs["golden_key"].dropna())
    assert not keys & {"K-SAME", "K-TOL", "K-WIDTH"}
    assert "updated_at" not in set(diffs["field"].dropna())


def test_a_field_not_compared_is_no_target_drift() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    edited = target["_key"].isin(["K-DRIFT", "K-SAME"])  # K-SAME: only the timestamp differs
    target.loc[edited, "updated_at"] = pd.Timestamp("2030-01-01 08:00:00")
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    drift = diffs[diffs["class"] == "target_drift"]
    assert "updated_at" not in set(drift["field"].dropna())
    assert "K-SAME" not in set(diffs["golden_key"].dropna())
    assert ("K-DRIFT", "name") in set(zip(drift["golden_key"], drift["field"], strict=True))


def test_values_and_details_are_shown_as_text() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    amount = diffs[(diffs["golden_key"] == "K-AMOUNT")].iloc[0]
    assert (amount["erp_value"], amount["oa_value"], amount["target_value"]) == ("865200.60", "957289.56", "865200.60")
    detail = json.loads(amount["detail"])
    assert detail == {"code": "numeric", "delta": "-92088.96", "tolerance": "0.01"}
    only = diffs[diffs["class"] == "only_in_erp"].iloc[0]
    assert json.loads(only["detail"])["record"]["name"] == "Contract K-ONLY-ERP"
    drift = diffs[(diffs["class"] == "target_drift") & (diffs["field"] == "name")].iloc[0]
    assert drift["target_value"] == "edited by hand"
    assert json.loads(drift["detail"])["golden"] == "Contract K-DRIFT"
    dup = diffs[diffs["golden_key"] == "K-DUP-OA"].iloc[0]
    assert dup["oa_value"] == "31, 32"


def test_ids_are_stable_and_depend_on_identity_only() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    first = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    oa.loc[oa["_key"] == "K-AMOUNT", "amount"] = 1.0  # still a difference, other values
    second = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert set(first["diff_id"]) == set(second["diff_id"])
    assert diff_id("contract", "field_mismatch", "K-AMOUNT", "amount") in set(first["diff_id"])


def test_refused_golden_records_are_neither_compared_nor_drift() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert "K-REFUSED-BOTH" not in set(diffs["golden_key"])
    refused = diffs[diffs["golden_key"] == "K-REFUSED-OA"].iloc[0]
    assert refused["oa_value"] == "171" and json.loads(refused["detail"])["refused"] is True
    # a fresh extraction sees the refused OA record itself: same difference, same id
    fresh_oa = pd.concat([oa, _frame([_row("K-REFUSED-OA")], "oa-fresh")], ignore_index=True)
    fresh = compare_entity(MAPPING, erp, fresh_oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert set(fresh["diff_id"]) == set(diffs["diff_id"])


def test_quarantined_record_is_not_also_missing_on_its_side() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine.iloc[:0], gaps=gaps, reference_keys=REFS)
    assert ("only_in_erp", "K-GAP-HELD", None) in set(_found(diffs))
    diffs = compare_entity(MAPPING, erp, oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert ("only_in_erp", "K-GAP-HELD", None) not in set(_found(diffs))


def test_nothing_to_compare() -> None:
    empty = pd.DataFrame(columns=["_key", "_src_id", *FIELDS])
    diffs = compare_entity(MAPPING, empty, empty, pd.DataFrame(columns=["_key", *FIELDS]))
    assert diffs.empty and list(diffs.columns) == COLUMNS


def test_identical_sources_and_correct_target_have_no_differences() -> None:
    rows = [_row(f"K{i}", amount=float(i)) for i in range(50)]
    erp, oa = _frame(rows, "erp"), _frame(rows, "oa")
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, oa), reference_keys=REFS)
    assert diffs.empty


def test_a_field_only_one_system_feeds_is_not_compared() -> None:
    erp_only = MAPPING.model_copy(
        update={
            "sources": {
                "erp": MAPPING.sources["erp"],
                "oa": MAPPING.sources["oa"].model_copy(
                    update={"fields": {k: v for k, v in MAPPING.sources["oa"].fields.items() if k != "fee"}}
                ),
            }
        }
    )
    rows = [_row(f"K{i}") for i in range(5)]
    erp, oa = _frame(rows, "erp"), _frame(rows, "oa")
    oa["fee"] = None
    diffs = compare_entity(erp_only, erp, oa, _golden(erp, oa), reference_keys=REFS)
    assert not ((diffs["class"] == "field_mismatch") & (diffs["field"] == "fee")).any()
    assert (
        not compare_entity(MAPPING, erp, oa, _golden(erp, oa), reference_keys=REFS)
        .query("`class` == 'field_mismatch' and field == 'fee'")
        .empty
    )


def test_values_equal_rules() -> None:
    dec = CanonicalField(type="decimal", scale=2)
    assert tolerance_of(dec) == pytest.approx(0.005)
    assert tolerance_of(CanonicalField(type="decimal", scale=2, tolerance=0.01)) == 0.01
    a = pd.Series([100.0, 100.00, None, 1.0, 1e12 + 0.01])
    b = pd.Series([100.00, 100.01, None, None, 1e12 + 0.02])
    assert values_equal(a, b, dec).tolist() == [True, False, True, False, False]
    tol = CanonicalField(type="decimal", scale=2, tolerance=0.01)
    assert values_equal(pd.Series([100.00, 1e12]), pd.Series([100.01, 1e12 + 0.01]), tol).tolist() == [True, True]
    text = CanonicalField(type="string")
    s1 = pd.Series(["abc ", "\u3000Name", "ＡＢＣ", "a", None], dtype="str")
    s2 = pd.Series(["ABC", "name", "abc", "b", None], dtype="str")
    assert values_equal(s1, s2, text).tolist() == [True, True, True, False, True]
    assert normalise_text(" 刘 倩萍\u3000") == "刘倩萍"
    ints = CanonicalField(type="integer")
    assert values_equal(
        pd.Series([1, None, 3], dtype="Int64"), pd.Series([1, None, 4], dtype="Int64"), ints
    ).tolist() == [
        True,
        True,
        False,
    ]
    dates = CanonicalField(type="date")
    d1 = pd.Series(pd.to_datetime(["2026-01-01", None]))
    d2 = pd.Series(pd.to_datetime(["2026-01-01", None]))
    assert values_equal(d1, d2, dates).tolist() == [True, True]


def test_uncoerced_input_is_made_canonical() -> None:
    erp, oa, target, quarantine, gaps = _planted()
    raw_oa = oa.astype(object).assign(amount=oa["amount"].map(lambda v: f"{v:.3f}" if pd.notna(v) else None))
    diffs = compare_entity(MAPPING, erp, raw_oa, target, quarantine=quarantine, gaps=gaps, reference_keys=REFS)
    assert set(_found(diffs)) == EXPECTED


def test_vectorised_on_a_larger_frame() -> None:
    n = 20_000
    rows = pd.DataFrame(
        {
            "contract_no": [f"C{i:07d}" for i in range(n)],
            "name": "x",
            "amount": np.arange(n) * 1.0,
            "fee": 1.0,
            "start_date": "2026-01-01",
            "department_code": "D02",
            "mobile": None,
            "status": "effective",
            "updated_at": "2026-01-01",
        }
    )
    erp = _frame(rows.to_dict("records"), "erp")
    oa = erp.sample(frac=1.0, random_state=1).reset_index(drop=True)
    oa.loc[oa["_key"] == "C0000042", "amount"] = 1.5
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, erp), reference_keys=REFS)
    assert _found(diffs) == [("field_mismatch", "C0000042", "amount")]


def test_mask_value() -> None:
    assert mask_value("13812341234") == "138****1234"
    assert mask_value("330106199005283671") == "3301**********3671"
    assert mask_value("zhangsan@example.com") == "z***@example.com"
    assert mask_value(None) is None
    assert mask_value("ab") == "**"


# --------------------------------------------------------------------------- edge cases


def _pairs(erp_rows: list[dict[str, object]], oa_rows: list[dict[str, object]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _frame(erp_rows, "erp"), _frame(oa_rows, "oa")


def _mismatches(diffs: pd.DataFrame) -> set[tuple[object, object]]:
    rows = diffs[diffs["class"] == "field_mismatch"]
    return set(zip(rows["golden_key"], rows["field"], strict=True))


def test_blank_text_is_no_value_like_null() -> None:
    text = CanonicalField(type="string")
    left = pd.Series(["   ", "\u3000\t", "", None, " x ", "  "], dtype="str")
    right = pd.Series([None, "", None, " ", None, "y"], dtype="str")
    assert values_equal(left, right, text).tolist() == [True, True, True, True, False, False]
    erp, oa = _pairs(
        [
            _row("K-SPACES", name="   "),
            _row("K-IDEO", name="\u3000 "),
            _row("K-REAL", name=" x "),
            _row("K-VS", name=" "),
        ],
        [_row("K-SPACES", name=None), _row("K-IDEO", name=""), _row("K-REAL", name=None), _row("K-VS", name="Beta")],
    )
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, oa), reference_keys=REFS)
    assert _mismatches(diffs) == {("K-REAL", "name"), ("K-VS", "name")}
    details = {k: json.loads(d)["code"] for k, d in zip(diffs["golden_key"], diffs["detail"], strict=True)}
    assert details == {"K-REAL": "missing_oa", "K-VS": "missing_erp"}


def test_one_unmapped_code_is_one_difference_with_its_counts() -> None:
    # Three OA records whose department SZ01 (however spelled) is not in the table, each quarantined by two
    # lookups of that table (the code and the name), and the ERP keeping the code in 4 rows (policy pass).
    held = [
        _q("oa", str(i), f"K-HELD-{i}", f, "lookup:department", v, "map")
        for i, v in enumerate(["SZ01", " sz01", "ＳＺ01"])
        for f in ("department_code", "name")
    ]
    held.append(_q("oa", "9", None, "department_code", "lookup:department", "XX9", "map"))
    gaps = pd.DataFrame(
        [
            {"source": "erp", "field": f, "value": "SZ01", "code_table": "department", "policy": "pass", "count": 4}
            for f in ("department_code", "name")
        ]
        + [{"source": "erp", "field": "status", "value": "SZ01", "code_table": "status", "policy": "pass", "count": 2}]
    )
    erp, oa = _pairs([_row("K1")], [_row("K1")])
    diffs = compare_entity(
        MAPPING, erp, oa, _golden(erp, oa), quarantine=pd.DataFrame(held), gaps=gaps, reference_keys=REFS
    )
    gap = diffs[diffs["class"] == "mapping_gap"]
    assert len(gap) == 3, "one difference per (code table, code), not per record or field"
    assert gap["golden_key"].isna().all() and gap["diff_id"].is_unique
    sz01 = gap[gap["diff_id"] == diff_id("contract", "mapping_gap", "department=sz01", None)].iloc[0]
    assert (sz01["field"], sz01["erp_value"], sz01["oa_value"]) == ("name", "SZ01", " sz01, SZ01, ＳＺ01")
    detail = json.loads(sz01["detail"])
    assert detail == {
        "code": "unmapped_quarantined",
        "table": "department",
        "counts": {"erp": 4, "oa": 3},
        "src_ids": {"oa": "0, 1, 2"},
        "fields": ["name", "department_code"],
    }
    assert set(gap["field"]) == {"name", "department_code", "status"}
    # The identity is the table and the code: more records affected, still the same difference.
    more = pd.DataFrame([*held, _q("oa", "7", "K-HELD-7", "department_code", "lookup:department", "sz01", "map")])
    again = compare_entity(MAPPING, erp, oa, _golden(erp, oa), quarantine=more, gaps=gaps, reference_keys=REFS)
    assert set(again.loc[again["class"] == "mapping_gap", "diff_id"]) == set(gap["diff_id"])


def test_date_field_compares_the_day_and_datetime_the_time() -> None:
    dates, stamps = CanonicalField(type="date"), CanonicalField(type="datetime")
    with_time = pd.Series(pd.to_datetime(["2024-03-01 00:00", "2024-03-01 13:45", "2024-03-02 00:00"]))
    midnight = pd.Series(pd.to_datetime(["2024-03-01", "2024-03-01", "2024-03-01"]))
    assert values_equal(with_time, midnight, dates).tolist() == [True, True, False]
    assert values_equal(with_time, midnight, stamps).tolist() == [True, False, False]
    erp, oa = _pairs([_row("K-TIME"), _row("K-DAY")], [_row("K-TIME"), _row("K-DAY")])
    # as a DATETIME column reads: already datetime64, carrying the time of day
    erp["start_date"] = pd.Series(pd.to_datetime(["2026-01-01 13:45:00", "2026-01-02 00:00:00"])).astype(
        "datetime64[ns]"
    )
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, oa), reference_keys=REFS)
    assert _mismatches(diffs) == {("K-DAY", "start_date")}
    day = diffs[diffs["class"] == "field_mismatch"].iloc[0]
    assert (day["erp_value"], day["oa_value"]) == ("2026-01-02", "2026-01-01")


def test_amounts_near_1e13_keep_their_cents() -> None:
    cents = CanonicalField(type="decimal", scale=2)
    tol = CanonicalField(type="decimal", scale=2, tolerance=0.01)
    a = pd.Series([12345678901234.56, 12345678901234.56, 12345678901234.56, 65432109876543.21, 0.29])
    b = pd.Series([12345678901234.57, 12345678901234.56, 12345678901234.58, 65432109876543.22, 0.0])
    assert values_equal(a, b, cents).tolist() == [False, True, False, False, False]
    assert values_equal(a, b, tol).tolist() == [True, True, False, True, False]
    assert values_equal(a, b, CanonicalField(type="decimal", scale=2, tolerance=0.29)).tolist() == [True] * 5
    erp, oa = _pairs(
        [_row("K-FEE", fee="12345678901234.56"), _row("K-AMT", amount="12345678901234.56"), _row("K-EQ")],
        [_row("K-FEE", fee="12345678901234.57"), _row("K-AMT", amount="12345678901234.58"), _row("K-EQ")],
    )
    erp.loc[erp["_key"] == "K-EQ", "amount"] = 12345678901234.56
    oa.loc[oa["_key"] == "K-EQ", "amount"] = 12345678901234.57  # within amount's tolerance 0.01
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, oa), reference_keys=REFS)
    assert _mismatches(diffs) == {("K-FEE", "fee"), ("K-AMT", "amount")}
    fee = diffs[diffs["field"] == "fee"].iloc[0]
    assert (fee["erp_value"], fee["oa_value"]) == ("12345678901234.56", "12345678901234.57")
    assert json.loads(fee["detail"]) == {"code": "numeric", "delta": "-0.01", "tolerance": "0.005"}
    amount = diffs[diffs["field"] == "amount"].iloc[0]
    assert json.loads(amount["detail"])["delta"] == "-0.02"


def test_masked_codes_of_a_personal_field_are_not_merged() -> None:
    """The quarantine keeps a `pii: true` field's values masked: two codes may share the mask ('S**1')."""
    held = [_q("oa", str(i), f"K-P-{i}", "mobile", "lookup:phones", "138****1234", "map") for i in (1, 2)]
    held.append(_q("oa", "3", "K-P-3", "department_code", "lookup:department", "SZ01", "map"))
    held.append(_q("oa", "4", "K-P-4", "department_code", "lookup:department", "SZ01", "map"))
    erp, oa = _pairs([_row("K1")], [_row("K1")])
    diffs = compare_entity(MAPPING, erp, oa, _golden(erp, oa), quarantine=pd.DataFrame(held), reference_keys=REFS)
    gap = diffs[diffs["class"] == "mapping_gap"]
    phones = gap[gap["field"] == "mobile"]
    assert len(phones) == 2 and phones["diff_id"].is_unique  # one per record: the codes cannot be told apart
    assert [json.loads(d)["counts"] for d in phones["detail"]] == [{"oa": 1}, {"oa": 1}]
    assert len(gap[gap["field"] == "department_code"]) == 1  # plain codes still one gap per code
