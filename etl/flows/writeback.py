"""After the ERP commit: the document number back into the OA form, and the link into the store's xref.

Neither keeps state of its own. The write-back queue is *derived* on every run:
link rows (ERP) whose number the OA form field does not show yet. A failed or
interrupted write-back is therefore retried by the next run and never lost. The
cross-reference is likewise rebuilt from the link table (idempotent upserts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from etl import faults
from etl.errors import driver_detail, is_transient_db_error
from etl.flows.approval import as_keys, bind_keys, frame, numeric_column, table
from etl.flows.model import FlowSpec
from etl.flows.purchase_order import column_names
from etl.mapping.loader import unknown_message
from etl.mapping.types import as_text
from etl.store.repo import Store
from etl.yamlio import Loc

log = logging.getLogger("erpoa.flows")
_IN = 500
XREF_CHUNK = 500


@dataclass
class WritebackResult:
    """What one write-back pass did; `pending` is what is left for the next run."""

    written: int = 0
    pending: int = 0
    error: str | None = None


def missing_writeback_columns(conn: Connection, spec: FlowSpec, schema: str | None = None) -> list[tuple[Loc, str]]:
    """(key path, message) for the write-back table or each of its columns (key, field, status) the OA lacks.

    Read with the OA source's connection before anything is written, so that a misspelt column is a
    configuration error of the run rather than a write-back that fails on every run after the ERP commit.
    """
    wb = spec.writeback
    if wb is None or not wb.enabled:
        return []
    t = table(wb.table, [], schema)
    try:
        present = column_names(conn, t)
    except sa.exc.SQLAlchemyError as exc:
        if is_transient_db_error(exc):
            raise
        conn.rollback()
        return [(("writeback", "table"), f"table '{wb.table}' cannot be read in the OA ({driver_detail(exc)}); "
                                         "check the name and the schema")]
    wanted = [("key", wb.key), ("field", wb.field), *([("status_field", wb.status_field)] if wb.status_field else [])]
    return [(("writeback", key), f"{wb.table}: {unknown_message('column', column, present)}")
            for key, column in wanted if column not in present]


def pending_writebacks(
    conn: Connection, spec: FlowSpec, links: pd.DataFrame, schema: str | None = None
) -> pd.DataFrame:
    """Links whose OA form does not carry the document number (and status) yet: request_id, doc_no."""
    wb = spec.writeback
    empty = pd.DataFrame(columns=["request_id", "doc_no"])
    if wb is None or not wb.enabled or links.empty:
        return empty
    columns = [wb.key, wb.field, *([wb.status_field] if wb.status_field else [])]
    t = table(wb.table, columns, schema)
    ids = bind_keys(conn, t.c[wb.key], links.index.astype(str).tolist())
    parts = [frame(conn, sa.select(*t.c).where(t.c[wb.key].in_(ids[s:s + _IN]))) for s in range(0, len(ids), _IN)]
    forms = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    forms.index = as_text(forms[wb.key])
    forms = forms[~forms.index.duplicated(keep="last")]
    present = links[links.index.isin(forms.index)]
    shown = as_text(forms[wb.field]).reindex(present.index)
    todo = shown.isna() | (shown != present["doc_no"].astype(str))
    if wb.status_field:
        todo |= as_text(forms[wb.status_field]).reindex(present.index).fillna("") != str(wb.status_value)
    out = present.loc[todo.to_numpy(), ["doc_no"]].assign(request_id=present.index[todo.to_numpy()])
    return out.reset_index(drop=True)[["request_id", "doc_no"]]


def write_back(engine: Engine, spec: FlowSpec, pending: pd.DataFrame, schema: str | None = None) -> WritebackResult:
    """Write the pending numbers in batches; stops at the first failure and reports it (retried next run)."""
    wb = spec.writeback
    result = WritebackResult(pending=len(pending))
    if wb is None or pending.empty:
        return result
    t = table(wb.table, [wb.key, wb.field, *([wb.status_field] if wb.status_field else [])], schema)
    status = {wb.status_field: wb.status_value} if wb.status_field else {}
    faults.point("flow.writeback_begin")
    rows = list(pending.itertuples(index=False))
    numeric: bool | None = None
    for start in range(0, len(rows), wb.batch):
        batch = rows[start:start + wb.batch]
        try:
            with engine.begin() as conn:
                numeric = numeric_column(conn, t.c[wb.key]) if numeric is None else numeric
                for row in batch:
                    values = {wb.field: str(row.doc_no), **status}
                    key = as_keys([str(row.request_id)], numeric)
                    conn.execute(sa.update(t).where(t.c[wb.key].in_(key)).values(values))
                    faults.point("flow.writeback_row")
        except Exception as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            result.error = f"write-back to {wb.table}.{wb.field} failed: {reason}"
            log.error("%s: %s (%d pending, retried next run)", spec.flow, result.error, result.pending)
            return result
        result.written += len(batch)
        result.pending -= len(batch)
    faults.point("flow.writeback_done")
    return result


def xref_frame(spec: FlowSpec, links: pd.DataFrame) -> pd.DataFrame:
    """Two xref rows per link (source oa: request id, source erp: document number), keyed by the number."""
    if links.empty:
        return pd.DataFrame(columns=["source", "src_id", "golden_key", "detail"])
    number = spec.target.link.number_column
    details = [
        json.dumps({
            "oa_request_id": str(r["oa_request_id"]),
            "request_no": None if pd.isna(r.get("request_no")) else r.get("request_no"),
            number: str(r["doc_no"]),
            "approved_at": None if pd.isna(r.get("approved_at")) else str(pd.Timestamp(r["approved_at"])),
            "approver": None if pd.isna(r.get("approver")) else r.get("approver"),
            "approver_name": None if pd.isna(r.get("approver_name")) else r.get("approver_name"),
            "amount": None if pd.isna(r.get("amount")) else float(r["amount"]),
            "origin": r.get("origin"),
            "linked_at": None if pd.isna(r.get("created_at")) else str(pd.Timestamp(r["created_at"])),
        }, ensure_ascii=False)
        for _, r in links.iterrows()
    ]
    keys = links["doc_no"].astype(str).to_numpy()
    return pd.concat([
        pd.DataFrame({"source": "oa", "src_id": links["oa_request_id"].astype(str).to_numpy(), "golden_key": keys,
                      "detail": details}),
        pd.DataFrame({"source": "erp", "src_id": keys, "golden_key": keys, "detail": details}),
    ], ignore_index=True)


def sync_xref(store: Store, spec: FlowSpec, links: pd.DataFrame, run_id: str) -> int:
    """Upsert the links into `erpoa_xref` (entity = flow name), chunk by chunk; returns rows written."""
    rows = xref_frame(spec, links)
    written = 0
    for start in range(0, len(links), XREF_CHUNK):
        ids = set(links["oa_request_id"].astype(str).iloc[start:start + XREF_CHUNK])
        keys = set(links["doc_no"].astype(str).iloc[start:start + XREF_CHUNK])
        part = rows[((rows["source"] == "oa") & rows["src_id"].isin(ids)) |
                    ((rows["source"] == "erp") & rows["src_id"].isin(keys))]
        written += store.upsert_xref(spec.flow, run_id, part)
        faults.point("flow.xref_chunk")
    return written
