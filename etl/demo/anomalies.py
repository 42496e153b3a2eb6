"""The messiness planted in the demo systems, and the manifest that lists it.

The helpers here spell the same value the way each system would; the manifest
names every planted anomaly in raw source terms (ERP codes, OA ids, form
numbers) so tests can find them in the databases.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from typing import Any

_FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})

#: Kinds of OA workcode spelling, relative to the ERP's six-digit ``cPsn_Num``.
WORKCODE_KINDS = ("exact", "lost_zeros", "extra_zeros", "full_width", "spaces")


def to_fullwidth(text: str) -> str:
    """Return ``text`` with ASCII characters replaced by their full-width forms."""
    return text.translate(_FULLWIDTH)


def canonical_workcode(raw: str | None) -> str | None:
    """Return the ERP spelling (six digits) of an OA workcode as the demo plants them.

    NFKC folds full-width digits and the ideographic space; zeros are then
    stripped and the code padded back to six digits.
    """
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text.isdigit():
        return text
    return text.lstrip("0").zfill(6)


def erp_requisition_no(oa_no: str) -> str:
    """``'QG-2026-000123'`` (OA ``sqdh``) -> ``'QG2026000123'`` (ERP ``cCode``)."""
    return oa_no.replace("-", "")


def workcode_variant(number: int, kind: str, pick: int) -> str:
    """Spell employee ``number`` as an OA workcode of the given kind.

    ``pick`` (any int) chooses among the sub-variants of a kind, so callers can
    draw it from their own random generator.
    """
    padded = f"{number:06d}"
    if kind == "exact":
        return padded
    if kind == "lost_zeros":
        return str(number)
    if kind == "extra_zeros":
        return f"{number:07d}" if pick % 2 else "00" + padded
    if kind == "full_width":
        return to_fullwidth(f"{number:05d}" if pick % 2 else padded)
    if kind == "spaces":
        return (" " + str(number), str(number) + " ", padded + "\u3000", "\u3000" + str(number))[pick % 4]
    raise ValueError(f"unknown workcode kind: {kind}")


#: Kinds of name mismatch between the systems: (kind, erp spelling, oa spelling) makers.
NAME_KINDS = ("oa_trailing_space", "oa_ideographic_space", "erp_inner_space", "fullwidth_suffix")


def name_variant(name: str, kind: str) -> tuple[str, str]:
    """Return ``(erp_name, oa_name)`` for a person called ``name`` with the given mismatch."""
    if kind == "oa_trailing_space":
        return name, name + " "
    if kind == "oa_ideographic_space":
        return name, "\u3000" + name
    if kind == "erp_inner_space":
        return name[0] + " " + name[1:], name
    if kind == "fullwidth_suffix":
        return name + "(A)", name + "（Ａ）"
    raise ValueError(f"unknown name kind: {kind}")


@dataclass
class DemoManifest:
    """Everything planted in one demo build, in raw source terms.

    Employee codes are ERP ``cPsn_Num`` spellings (six digits) unless a field says
    OA ids; requisitions are OA ``sqdh`` numbers unless it says ERP ``cCode``;
    contracts are contract numbers (``htbh`` = ``cContractID``).
    """

    seed: int
    size: dict[str, int]
    #: one entry per unit present in both systems: erp_code, erp_name, oa_id, oa_code, oa_name, grade
    department_mapping: list[dict[str, Any]] = field(default_factory=list)
    #: OA department with no ERP counterpart: oa_id, code, name
    unmapped_oa_department: dict[str, Any] = field(default_factory=dict)
    #: ERP department with dDepEndDate set, still active in OA: erp_code, erp_name, oa_id, oa_code, oa_name
    abolished_erp_department: dict[str, Any] = field(default_factory=dict)
    employees_only_in_erp: list[str] = field(default_factory=list)
    employees_only_in_oa: list[str] = field(default_factory=list)
    #: code, oa_ids, workcodes (raw OA spellings)
    duplicate_oa_workcodes: list[dict[str, Any]] = field(default_factory=list)
    #: OA status '5' while ERP still says rPersonType '10' and dLastDate null
    departed_in_oa_active_in_erp: list[str] = field(default_factory=list)
    #: ERP rPersonType '20' with dLastDate while OA still says active
    departed_in_erp_active_in_oa: list[str] = field(default_factory=list)
    #: kind (see WORKCODE_KINDS) -> codes whose primary OA row uses that spelling
    workcode_variants: dict[str, list[str]] = field(default_factory=dict)
    #: code, kind, erp_name, oa_name
    name_variants: list[dict[str, Any]] = field(default_factory=list)
    #: erp_mobile, erp_email, oa_mobile, oa_email -> codes missing that value on that side
    missing_contacts: dict[str, list[str]] = field(default_factory=dict)
    #: code, oa_id, oa_department_id of the employee filed under the unmapped OA department
    employee_in_unmapped_department: dict[str, Any] = field(default_factory=dict)
    #: code, value of the malformed ID number (same in both systems)
    invalid_id_number: dict[str, Any] = field(default_factory=dict)
    #: codes whose OA certificatenum ends in a lower-case 'x' where the ERP has 'X'
    id_number_lowercase_x: list[str] = field(default_factory=list)
    #: approved, rejected, withdrawn, running, deleted -> OA request ids (workflow 12)
    requisition_requests: dict[str, list[int]] = field(default_factory=dict)
    #: same for contracts (workflow 15)
    contract_requests: dict[str, list[int]] = field(default_factory=dict)
    #: request ids archived by an administrator (logtype 'e'), a subset of approved
    force_archived_requests: list[int] = field(default_factory=list)
    #: approved (archived, not deleted) OA requisitions without a PU_AppVouch copy
    requisitions_missing_in_erp: list[str] = field(default_factory=list)
    #: requestid, sqdh, sqr (an HrmResource id that does not exist)
    requisition_unknown_requester: dict[str, Any] = field(default_factory=dict)
    #: sqdh, ccode, line_no, field ('quantity'|'amount'), oa, erp
    requisition_line_differences: list[dict[str, Any]] = field(default_factory=list)
    #: sqdh, line_no, dt1_id, sl
    negative_quantity_lines: list[dict[str, Any]] = field(default_factory=list)
    #: sqdh, line_no, dt1_id, dj (unit price with four decimals where two are the rule)
    over_precise_price_lines: list[dict[str, Any]] = field(default_factory=list)
    contracts_missing_in_erp: list[str] = field(default_factory=list)
    #: htbh, oa, erp
    contract_amount_differences: list[dict[str, Any]] = field(default_factory=list)
    erp_contract_without_oa_request: str = ""
    contract_end_before_start: str = ""
    #: cPOID, requestid, sqdh of POs raised from OA requisitions (cDefine10 set)
    purchase_orders_from_oa: list[dict[str, Any]] = field(default_factory=list)
    purchase_orders_without_oa_request: list[str] = field(default_factory=list)
    #: 'erp' / 'oa' -> table -> rows loaded
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as plain JSON-serialisable data."""
        return dataclasses.asdict(self)
