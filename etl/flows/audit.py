"""Compliance views and differences of the approval flows.

`gather` takes a read-only snapshot of one flow (approvals, links, forms, ERP
documents); `views` turns it into the four compliance views and `differences`
into `erpoa_difference` rows (entity = flow name) together with the changes
after creation (`approval_amended`, `approval_cancelled`, `approval_held`). `audit_views(config)`
is what the reconciliation report calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection

from etl import faults
from etl.config.project import ProjectConfig
from etl.db.connect import engine_for
from etl.errors import ConfigError
from etl.flows import connection_name, flows_folder, load_flows
from etl.flows.approval import bind_keys, frame, read_approvals, table
from etl.flows.contract_archive import checks_for
from etl.flows.model import FlowSpec
from etl.flows.purchase_order import (
    PROBLEM_COLUMNS,
    Checks,
    Document,
    FormColumnsError,
    Forms,
    build_documents,
    content_hashes,
    local_now,
    read_forms,
    read_links,
)
from etl.flows.writeback import missing_writeback_columns
from etl.frames import is_missing
from etl.mapping.types import as_text
from etl.store import schema as store_schema
from etl.store.repo import Store
from etl.yamlio import load_yaml

VIEWS = ("req_without_po", "po_without_req", "amount_mismatch", "contract_without_approval")
#: view -> `erpoa_difference.class` (a String(30) column: `audit_contract_without_approval` would not fit)
CLASSES = {
    "req_without_po": "audit_req_without_po",
    "po_without_req": "audit_po_without_req",
    "amount_mismatch": "audit_amount_mismatch",
    "contract_without_approval": "audit_contract_no_approval",
}
DIFF_COLUMNS = ["diff_id", "class", "golden_key", "field", "erp_value", "oa_value", "target_value", "detail"]
_IN = 500


class FlowViews(dict[str, pd.DataFrame]):
    """The views of one flow, and what differs between each amended request's form and its document now.

    `amended`: request id -> [{"field", "line", "erp", "oa"}]: the mapped values of the OA form as it is now
    against the ERP document the flow created (the form as it was at creation is only kept as a hash).
    `missing`: the numbers of linked documents the ERP no longer has (deleted or renumbered there).
    """

    amended: dict[str, list[dict[str, Any]]]
    missing: list[str]

    def __init__(self, *args: Any, amended: dict[str, list[dict[str, Any]]] | None = None,
                 missing: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.amended = amended or {}
        self.missing = missing or []


@dataclass
class FlowState:
    """What one flow sees of the OA and the ERP at one moment."""

    spec: FlowSpec
    approvals: pd.DataFrame
    links: pd.DataFrame
    forms: Forms
    docs: dict[str, Document]
    problems: pd.DataFrame
    hashes: pd.Series

    @property
    def approved(self) -> pd.Index:
        return self.approvals.index[self.approvals["state"] == "approved"]


def gather(config: ProjectConfig, spec: FlowSpec, code_tables: Mapping[str, Any], *, as_of: date,
           checks: Checks | None = None) -> FlowState:
    """Read approvals, links and the forms of approved or linked requests; map them (no writes)."""
    oa_conf = config.connection(spec.source.connection)
    erp_conf = config.connection(connection_name(config, spec.target.connection, spec.target.fallback_connection))
    with engine_for(oa_conf, read_only=True).connect() as conn:
        approvals = read_approvals(conn, spec.approval, schema=oa_conf.schema_, code_tables=code_tables, as_of=as_of)
    faults.point("flow.approvals_read")
    with engine_for(erp_conf, read_only=True).connect() as conn:
        links = read_links(conn, spec, erp_conf.schema_)
    wanted = sorted(set(approvals.index[approvals["state"].isin(["approved", "held"])]) | set(links.index))
    with engine_for(oa_conf, read_only=True).connect() as conn:
        writeback = missing_writeback_columns(conn, spec, oa_conf.schema_)
        try:
            forms = read_forms(conn, spec, wanted, oa_conf.schema_)
        except FormColumnsError as exc:
            raise located(config, FormColumnsError(spec.flow, [*exc.found, *writeback])) from None
        if writeback:
            raise located(config, FormColumnsError(spec.flow, writeback))
    hashes = content_hashes(spec, forms)
    docs, problems = build_documents(spec, forms, approvals, code_tables, as_of=as_of, timezone=config.run.timezone,
                                     checks=checks, hashes=hashes)
    return FlowState(spec, approvals, links, forms, docs, problems, hashes)


def located(config: ProjectConfig, exc: FormColumnsError) -> ConfigError:
    """`exc` with `file:line:col` of each key, read from the flow's file (as `erpoa flows check` reports)."""
    mappings = config.resolve(config.mappings)
    folder = flows_folder(config)
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []:
        try:
            display = str(path.relative_to(mappings.parent))
        except ValueError:
            display = str(path)
        try:
            data, smap = load_yaml(path, display=display)
        except ConfigError:
            continue
        if isinstance(data, dict) and data.get("flow", path.stem) == exc.flow:
            return ConfigError([smap.issue(loc, message) for loc, message in exc.found])
    return exc


def read_erp_documents(conn: Connection, spec: FlowSpec, links: pd.DataFrame,
                       schema: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every ERP document header (number, request_ref, id, compared columns) and the lines of linked ones."""
    th, tl = spec.target.header, spec.target.lines
    hcols = list(dict.fromkeys([th.number, th.request_ref, *([th.id] if th.id else []), *spec.audit.compare_header,
                                *sourced(spec.fields.header)]))
    heads = frame(conn, sa.select(*table(th.table, hcols, schema).c))
    heads["doc_no"] = as_text(heads[th.number])
    heads["request_ref"] = as_text(heads[th.request_ref]).str.strip(" ")  # as the adoption look-up trims
    lines = pd.DataFrame(columns=["doc_no", "row_no"])
    line_cols = list(dict.fromkeys([*spec.audit.compare_lines, *sourced(spec.fields.lines)]))
    if tl is not None and tl.row_no and line_cols and not links.empty:
        key = th.id or th.number
        linked = heads[heads["doc_no"].isin(links["doc_no"].astype(str))]
        owner = pd.Series(linked["doc_no"].to_numpy(), index=as_text(linked[key]).to_numpy())
        lt = table(tl.table, list(dict.fromkeys([tl.parent, tl.row_no, *line_cols])), schema)
        parents = bind_keys(conn, lt.c[tl.parent], owner.index)
        parts = [frame(conn, sa.select(*lt.c).where(lt.c[tl.parent].in_(parents[s:s + _IN])))
                 for s in range(0, len(parents), _IN)]
        if parts:
            lines = pd.concat(parts, ignore_index=True)
            lines["doc_no"] = as_text(lines[tl.parent]).map(owner)
            lines["row_no"] = pd.to_numeric(lines[tl.row_no], errors="coerce")
    return heads.set_index("doc_no", drop=False), lines


def sourced(fields: Mapping[str, Any]) -> list[str]:
    """The document columns a flow fills from the OA form (not constants)."""
    return [name for name, fspec in fields.items() if fspec.columns]


def _num(value: Any) -> float | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else float(number)


def amount_text(value: Any) -> str | None:
    """A number as an amount is read: at least two decimals (`10.00`, `55115.20`, `1.2345`), no float noise."""
    if is_missing(value):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not number.is_finite():
        return str(value)
    number = Decimal(str(round(float(number), 6))).normalize() if isinstance(value, float) else number.normalize()
    exponent = number.as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{number:.{places}f}"


def _same(oa: Any, erp: Any, tolerance: float) -> bool:
    """Whether a mapped OA value and the document's value agree (numbers within `tolerance`, text trimmed)."""
    blank_oa, blank_erp = (is_missing(v) or (isinstance(v, str) and not v.strip()) for v in (oa, erp))
    if blank_oa or blank_erp:
        return blank_oa == blank_erp
    a, b = _num(oa), _num(erp)
    if a is not None and b is not None and not isinstance(oa, str):
        return abs(a - b) <= tolerance
    if isinstance(oa, date | datetime) or isinstance(erp, date | datetime):
        return str(pd.Timestamp(oa).date()) == str(pd.Timestamp(erp).date())
    return str(oa).strip() == str(erp).strip()


def _shown(value: Any) -> Any:
    if is_missing(value):
        return None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return amount_text(value)
    if isinstance(value, datetime):
        return str(pd.Timestamp(value)) if pd.Timestamp(value).time() != datetime.min.time() else str(value.date())
    return str(value)


def amended_fields(state: FlowState, heads: pd.DataFrame, lines: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """What differs between each amended request's form now and the document the flow made of it.

    Amended: the form's content hash differs from the link's. Compared are the document columns the flow
    fills from the form (supplier, requester, department, memo, amounts, lines); the memo without the
    flag the flow puts in front of it.
    """
    spec, out = state.spec, {}
    prefixes = [p for p in (spec.changes.amended_prefix, spec.changes.cancelled_prefix) if p]
    memo = spec.flag_column
    tol = spec.audit.tolerance
    head_cols, line_cols = sourced(spec.fields.header), sourced(spec.fields.lines)
    for key, link in state.links.iterrows():
        rid, no = str(key), str(link["doc_no"])
        doc = state.docs.get(rid)
        if (doc is None or doc.header is None or no not in heads.index
                or state.hashes.get(rid) == link["content_hash"]):
            continue
        found: list[dict[str, Any]] = []
        for col in head_cols:
            erp = heads.at[no, col] if col in heads.columns else None
            if col == memo and isinstance(erp, str):
                for prefix in prefixes:
                    while erp.startswith(prefix):
                        erp = erp[len(prefix):]
            if not _same(doc.header.get(col), erp, tol):
                found.append({"field": col, "line": None, "erp": _shown(erp), "oa": _shown(doc.header.get(col))})
        if line_cols and "row_no" in lines.columns:
            erp_lines = lines[lines["doc_no"] == no].drop_duplicates("row_no").set_index("row_no")
            for i in range(1, max(len(doc.lines), len(erp_lines)) + 1):
                mine = doc.lines[i - 1] if i <= len(doc.lines) else None
                theirs = erp_lines.loc[i] if i in erp_lines.index else None
                if mine is None or theirs is None:
                    found.append({"field": None, "line": i, "erp": "present" if theirs is not None else None,
                                  "oa": "present" if mine is not None else None})
                    continue
                for col in line_cols:
                    erp = theirs.get(col)
                    if not _same(mine.get(col), erp, tol):
                        found.append({"field": col, "line": i, "erp": _shown(erp), "oa": _shown(mine.get(col))})
        out[rid] = found
    return out


def views(state: FlowState, heads: pd.DataFrame, lines: pd.DataFrame, *, now: datetime | None = None
          ) -> FlowViews:
    """The compliance views of one flow (each with a `flow` column), and what amended requests changed."""
    spec, appr, links = state.spec, state.approvals, state.links
    now = now or datetime.now()
    number = spec.source.header.number
    reasons = state.problems.groupby("request_id")["reason"].agg(lambda r: "; ".join(dict.fromkeys(r)))
    # a linked document the ERP no longer has (deleted or renumbered there) leaves the request without one
    noun = "PO" if spec.kind == "purchase_order" else "ERP document"
    gone = {str(rid): f"linked {noun} {link['doc_no']} no longer exists in the ERP" for rid, link in links.iterrows()
            if str(link["doc_no"]) not in heads.index}
    decided = appr["state"].isin(["approved", "held"])
    waiting = appr[decided & (~appr.index.isin(links.index) | appr.index.isin(list(gone)))]

    def column(name: str) -> Any:
        return waiting[name].to_numpy() if name in waiting.columns else [None] * len(waiting)

    def request_no(rid: str) -> Any:
        if number and rid in state.forms.headers.index:
            return state.forms.headers.at[rid, number]
        return links.at[rid, "request_no"] if rid in links.index and "request_no" in links.columns else None

    no_doc = pd.DataFrame({
        "flow": spec.flow,
        "request_id": waiting.index,
        "request_no": [request_no(r) for r in waiting.index],
        "state": waiting["state"].to_numpy(),
        "approved_at": waiting["approved_at"].to_numpy(),
        # a held request has no approval: it waits since it was archived
        "waiting_days": [(now - pd.Timestamp(t)).days if pd.notna(t) else None
                         for t in waiting["approved_at"].fillna(pd.Series(column("archived_at"), index=waiting.index))],
        "approver": waiting["approver"].to_numpy(),
        "archived_at": column("archived_at"),
        "archived_by": column("archived_by"),
        "reason": ["; ".join(p for p in (gone.get(r), waiting.at[r, "note"]) if isinstance(p, str) and p)
                   if r in gone or waiting.at[r, "state"] == "held" else reasons.get(r) or (
            "not created yet" if r in state.forms.headers.index else "form row not found") for r in waiting.index],
    })
    stray = _strays(spec, heads, links, appr)
    rows: list[dict[str, Any]] = []
    for rid, link in links.iterrows():
        doc, no = state.docs.get(str(rid)), str(link["doc_no"])
        if doc is None or doc.header is None or no not in heads.index:
            continue
        for col in spec.audit.compare_header:
            rows.append({"line": None, "column": col, "oa": _num(doc.header.get(col)), "erp": _num(heads.at[no, col]),
                         "doc_no": no, "request_id": rid})
        if spec.audit.compare_lines:
            erp = lines[lines["doc_no"] == no].set_index("row_no")
            for i in range(1, max(len(doc.lines), len(erp)) + 1):
                mine = doc.lines[i - 1] if i <= len(doc.lines) else {}
                for col in spec.audit.compare_lines:
                    rows.append({"line": i, "column": col, "oa": _num(mine.get(col)),
                                 "erp": _num(erp.at[i, col]) if i in erp.index else None, "doc_no": no,
                                 "request_id": rid})
    diff = pd.DataFrame(rows, columns=["doc_no", "request_id", "line", "column", "oa", "erp"])
    differs = (diff["oa"].isna() != diff["erp"].isna()) | ((diff["oa"] - diff["erp"]).abs() > spec.audit.tolerance)
    mismatch = diff[differs.fillna(False).astype(bool)]
    mismatch.insert(0, "flow", spec.flow)
    mismatch["difference"] = (mismatch["erp"] - mismatch["oa"]).round(4)
    kind_view = "po_without_req" if spec.kind == "purchase_order" else "contract_without_approval"
    numbers = links["doc_no"].dropna().astype(str) if "doc_no" in links else pd.Series(dtype=str)
    missing = sorted(set(numbers[~numbers.isin(heads.index)]))
    return FlowViews({"req_without_po": no_doc, kind_view: stray, "amount_mismatch": mismatch.reset_index(drop=True)},
                     amended=amended_fields(state, heads, lines), missing=missing)


def _strays(spec: FlowSpec, heads: pd.DataFrame, links: pd.DataFrame, appr: pd.DataFrame) -> pd.DataFrame:
    """Documents not linked to their request: no or an unknown request id, a request not approved, or a
    duplicate (a second document for a request already linked to another, e.g. keyed again by a buyer)."""
    unlinked = heads[~heads["doc_no"].isin(links["doc_no"].astype(str))]
    ref = unlinked["request_ref"].fillna("")
    ref_state = ref.map(appr["state"]).fillna("missing").where(ref != "", "none")
    linked_to = ref.map(links["doc_no"].astype(str)) if not links.empty else pd.Series(None, index=ref.index)
    orphan = unlinked[(ref_state != "approved") | linked_to.notna()]

    def reason(rid: str, state: str, other: Any) -> str:
        if pd.notna(other):
            return f"duplicate: OA request {rid} is already linked to {other}"
        if not rid:
            return "no OA request id"
        if state == "missing":
            return "OA request not found"
        return f"OA request {state}" + (f": {appr.at[rid, 'note']}" if pd.notna(appr.at[rid, "note"]) else "")

    return pd.DataFrame({
        "flow": spec.flow,
        "doc_no": orphan["doc_no"].to_numpy(),
        "request_ref": orphan["request_ref"].to_numpy(),
        "state": ref_state[orphan.index].to_numpy(),
        "reason": [reason(r, s, o) for r, s, o in zip(ref[orphan.index], ref_state[orphan.index],
                                                        linked_to[orphan.index], strict=True)],
    })


def changes(state: FlowState) -> pd.DataFrame:
    """Linked requests changed in the OA after their document was created: amended, cancelled or held."""
    rows = []
    for rid, link in state.links.iterrows():
        current = str(state.approvals["state"].get(rid, "missing"))
        if current == "approved" and rid not in state.forms.headers.index:
            current = "missing"
        if current != "approved":
            # held (force-archived without an approval, approval rows that disagree): for a person to look
            # at, not a withdrawal the ERP document is flagged for
            cls = "approval_held" if current == "held" else "approval_cancelled"
            rows.append({"request_id": rid, "doc_no": str(link["doc_no"]), "class": cls,
                         "state": current, "link_hash": link["content_hash"], "hash": state.hashes.get(rid)})
        elif state.hashes.get(rid) != link["content_hash"]:
            rows.append({"request_id": rid, "doc_no": str(link["doc_no"]), "class": "approval_amended",
                         "state": current, "link_hash": link["content_hash"], "hash": state.hashes.get(rid)})
    return pd.DataFrame(rows, columns=["request_id", "doc_no", "class", "state", "link_hash", "hash"])


def diff_id(entity: str, cls: str, ident: str | None, fld: str | None) -> str:
    """Stable identity of a difference (the formula of etl.reconcile.compare.diff_id)."""
    return hashlib.sha1("\x1f".join([entity, cls, ident or "", fld or ""]).encode("utf-8")).hexdigest()[:16]


def differences(spec: FlowSpec, changed: pd.DataFrame, found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """`erpoa_difference` rows for the changes and the audit views of one flow."""
    rows: list[dict[str, Any]] = []

    def text(value: Any) -> str | None:
        return None if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "" else str(value)

    def add(cls: str, key: str, fld: str | None, erp: Any, oa: Any, detail: dict[str, Any]) -> None:
        rows.append({"diff_id": diff_id(spec.flow, cls, key, fld), "class": cls, "golden_key": key, "field": fld,
                     "erp_value": text(erp), "oa_value": text(oa),
                     "target_value": None, "detail": json.dumps(detail, ensure_ascii=False, default=str)})

    amended = getattr(found, "amended", {})
    for r in changed.itertuples(index=False):
        what = "amended" if r[2] == "approval_amended" else r.state
        detail = {"oa_request_id": r.request_id, "state": r.state, "hash_at_creation": r.link_hash,
                  "hash_now": r.hash}
        if r[2] == "approval_amended" and str(r.request_id) in amended:
            detail["changed"] = amended[str(r.request_id)]
        add(r[2], r.doc_no, None, r.doc_no, f"{r.request_id} ({what})", detail)
    for r in found.get("req_without_po", pd.DataFrame()).itertuples(index=False):
        detail = {"state": r.state, "approved_at": text(r.approved_at), "approver": text(r.approver),
                  "reason": r.reason}
        archived_at, archived_by = text(getattr(r, "archived_at", None)), text(getattr(r, "archived_by", None))
        if archived_at or archived_by:
            detail.update(archived_at=archived_at, archived_by=archived_by)
        add(CLASSES["req_without_po"], r.request_id, None, None, r.request_no, detail)
    for name in ("po_without_req", "contract_without_approval"):
        for r in found.get(name, pd.DataFrame()).itertuples(index=False):
            add(CLASSES[name], r.doc_no, None, r.request_ref, r.state, {"reason": r.reason})
    for r in found.get("amount_mismatch", pd.DataFrame()).itertuples(index=False):
        fld = r.column if pd.isna(r.line) else f"line {int(r.line)}.{r.column}"
        add(CLASSES["amount_mismatch"], r.doc_no, fld, amount_text(r.erp), amount_text(r.oa),
            {"oa_request_id": r.request_id})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def erp_documents(config: ProjectConfig, spec: FlowSpec, links: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`read_erp_documents` through the flow's ERP connection (read-only)."""
    erp_conf = config.connection(connection_name(config, spec.target.connection, spec.target.fallback_connection))
    with engine_for(erp_conf, read_only=True).connect() as conn:
        return read_erp_documents(conn, spec, links, erp_conf.schema_)


def flow_views(config: ProjectConfig, spec: FlowSpec, code_tables: Mapping[str, Any], *, as_of: date,
               state: FlowState | None = None) -> tuple[FlowState, FlowViews]:
    """Snapshot (unless given) and views of one flow."""
    state = state or gather(config, spec, code_tables, as_of=as_of, checks=checks_for(spec))
    heads, lines = erp_documents(config, spec, state.links)
    # approval times are naive in `run.timezone`, and so are the days waiting since
    return state, views(state, heads, lines, now=local_now(config.run.timezone))


def open_problems(config: ProjectConfig, flow: str) -> pd.DataFrame:
    """The flow's open quarantine rows (problems found when publishing, e.g. a refused document)."""
    from etl.engine.pipeline import store_connection

    engine = engine_for(store_connection(config), read_only=True)
    if not sa.inspect(engine).has_table(store_schema.quarantine.name):
        return pd.DataFrame(columns=PROBLEM_COLUMNS)
    rows = Store(engine).quarantine(entity=flow, status="open")
    return rows.rename(columns={"src_id": "request_id"}).reindex(columns=PROBLEM_COLUMNS)


def audit_views(config: ProjectConfig, flows: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The compliance views of every enabled flow (read-only), one frame per view with a `flow` column."""
    flowset = load_flows(config)
    found: dict[str, list[pd.DataFrame]] = {name: [] for name in VIEWS}
    for spec in flowset.select(flows):
        today = local_now(config.run.timezone).date()
        state = gather(config, spec, flowset.code_tables, as_of=today, checks=checks_for(spec))
        state.problems = pd.concat([state.problems, open_problems(config, spec.flow)], ignore_index=True)
        _, got = flow_views(config, spec, flowset.code_tables, as_of=today, state=state)
        for name, part in got.items():
            found[name].append(part)
    return {name: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["flow"])
            for name, parts in found.items()}
