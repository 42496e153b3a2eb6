"""When an OA request counts as approved, read from the workflow engine or a status field.

`read_approvals` returns one row per request id (text): `state` (approved, held,
rejected, withdrawn, running, deleted), and for approved and held requests the
approval time and the approver (code and name) from the last approving entry, and
the time and person of a 强制归档 (`archived_at`, `archived_by`, `archived_by_name`).
A force-archive is never taken for an approval, unless `force_archived: approve` says so.
Only `approved` requests ever publish; `held` ones (e-cology 强制归档 with
`force_archived: hold`, archived without any approval entry, or several approval
rows of one request that disagree) are reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection

from etl.flows.model import (
    Approval,
    EcologyApproval,
    FlowableApproval,
    StatusFieldApproval,
    UsersSpec,
    apply_transforms,
)
from etl.mapping.registry import TransformContext
from etl.mapping.types import as_text

COLUMNS = ["request_id", "state", "approved_at", "approver", "approver_name", "archived_at", "archived_by",
           "archived_by_name", "note"]
STATES = ("approved", "held", "rejected", "withdrawn", "running", "deleted", "missing")
_IN = 500


def table(name: str, columns: list[str], schema: str | None = None) -> sa.TableClause:
    """A lightweight table; `schema.table` names carry their own schema."""
    if "." in name:
        schema, name = name.split(".", 1)
    return sa.table(name, *(sa.column(c) for c in columns), schema=schema)


def frame(conn: Connection, stmt: Any) -> pd.DataFrame:
    """Rows of a statement as a frame (column names as selected)."""
    result = conn.execute(stmt)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def numeric_column(conn: Connection, column: sa.ColumnElement[Any]) -> bool:
    """True when `column` holds numbers: the type of one stored value, read once.

    That works for tables and SELECT sources alike on every dialect (PostgreSQL refuses both
    `varchar = integer` and `integer = varchar`, so ids must be bound with the column's own type).
    """
    sample = conn.execute(sa.select(column).where(column.is_not(None)).limit(1)).scalar()
    return isinstance(sample, int | float | Decimal) and not isinstance(sample, bool)


def as_keys(values: Iterable[str], numeric: bool) -> list[Any]:
    """Ids (text) as a numeric or a text column compares them; ids that are no number match no numeric column."""
    if not numeric:
        return [str(v) for v in values]
    return [int(v) for v in (str(v).strip() for v in values) if v.lstrip("-").isdigit()]


def bind_keys(conn: Connection, column: sa.ColumnElement[Any], values: Iterable[str]) -> list[Any]:
    """Ids (text) bound as `column` compares them (see `numeric_column`)."""
    return as_keys(values, numeric_column(conn, column))


def read_approvals(conn: Connection, spec: Approval, *, schema: str | None = None,
                   code_tables: Mapping[str, Any] | None = None, as_of: date | None = None) -> pd.DataFrame:
    """Approval state of every request of the flow's workflow, indexed by request id (text)."""
    if isinstance(spec, EcologyApproval):
        out = _ecology(conn, spec, schema)
    elif isinstance(spec, FlowableApproval):
        out = _flowable(conn, spec, schema)
    else:
        out = _status_field(conn, spec, schema)
    undecided = ~out["state"].isin(["approved", "held"])
    out["approved_at"] = pd.to_datetime(out["approved_at"], errors="coerce").mask(undecided)
    out["approver_id"] = out["approver_id"].astype(object).mask(undecided, None)
    if "archived_at" not in out:
        out["archived_at"], out["archived_by_id"] = pd.NaT, None
    out["archived_at"] = pd.to_datetime(out["archived_at"], errors="coerce").mask(undecided)
    out["archived_by_id"] = out["archived_by_id"].astype(object).mask(undecided, None)
    out = _collapse(out, getattr(spec, "table", "the approval source"))
    out = _with_users(conn, out, spec.users, schema, code_tables or {}, as_of or date.today())
    return out.reindex(columns=COLUMNS).set_index("request_id", drop=False)


def _collapse(out: pd.DataFrame, where: str) -> pd.DataFrame:
    """One row per request: the latest (by approval time) of duplicate rows.

    Duplicates that disagree (state or approver) while one of them approves hold the request, with a note
    saying why: publishing on one of two contradicting rows would be a guess.
    """
    if not out["request_id"].duplicated().any():
        return out
    rows = out.assign(_by=as_text(out["approver_id"]).fillna("")).sort_values(
        ["request_id", "approved_at", "state", "_by"], na_position="first", kind="stable")
    groups = rows.groupby("request_id", sort=False)
    disagree = (groups["state"].nunique() > 1) | (groups["_by"].nunique() > 1)
    approves = groups["state"].agg(lambda s: bool((s == "approved").any()))
    held = disagree[disagree & approves].index
    latest = rows.drop_duplicates("request_id", keep="last").set_index("request_id", drop=False)
    for rid in held:
        part = rows[rows["request_id"] == rid]
        states = ", ".join(sorted(set(part["state"])))
        approvers = ", ".join(sorted({a or "-" for a in part["_by"]}))
        latest.at[rid, "state"] = "held"
        latest.at[rid, "note"] = (f"{len(part)} approval rows in {where} disagree (states {states}; approvers "
                                  f"{approvers}): held until one row remains")
    return latest.drop(columns="_by").reset_index(drop=True)


def _stamp(day: pd.Series, time: pd.Series | None = None) -> pd.Series:
    text = as_text(day).str.strip()
    if time is not None:
        text = text + " " + as_text(time).fillna("00:00:00").str.strip()
    return pd.to_datetime(text, errors="coerce", format="mixed")


def _ecology(conn: Connection, spec: EcologyApproval, schema: str | None) -> pd.DataFrame:
    rb = table(spec.requestbase, ["requestid", "workflowid", "currentnodetype", "deleted"], schema)
    lg = table(spec.requestlog, ["logid", "requestid", "operator", "operatedate", "operatetime", "logtype"], schema)
    base = frame(conn, sa.select(rb.c.requestid, rb.c.currentnodetype, rb.c.deleted)
                 .where(rb.c.workflowid.in_(spec.workflow_id)))
    logs = frame(conn, sa.select(lg.c.requestid, lg.c.logid, lg.c.operator, lg.c.operatedate, lg.c.operatetime,
                                 lg.c.logtype)
                 .select_from(lg.join(rb, rb.c.requestid == lg.c.requestid))
                 .where(rb.c.workflowid.in_(spec.workflow_id)))
    base["request_id"] = as_text(base["requestid"])
    logs["request_id"] = as_text(logs["requestid"])
    logs["at"] = _stamp(logs["operatedate"], logs["operatetime"])
    logs["logtype"] = as_text(logs["logtype"]).str.strip()
    logs = logs.sort_values(["request_id", "at", "logid"], kind="stable").reset_index(drop=True)
    logs["pos"] = logs.groupby("request_id").cumcount()
    types = spec.logtypes
    last_submit = logs[logs["logtype"].isin(types.submit)].groupby("request_id")["pos"].max()
    since = logs[logs["pos"] > logs["request_id"].map(last_submit).fillna(-1)]

    def last_of(kinds: list[str]) -> pd.DataFrame:
        return since[since["logtype"].isin(kinds)].groupby("request_id").last()

    approve, force = last_of(types.approve), last_of(types.force_archive)
    undone = last_of([*types.reject, *types.withdraw])
    # a return (退回) to an intermediate node is followed by approvals without a new submit: only a
    # rejection or withdrawal after the last approval undoes the request
    undone = undone[undone["pos"] > approve["pos"].reindex(undone.index).fillna(-1)]
    last_any = logs.groupby("request_id")["logtype"].last()
    rid = base["request_id"]
    deleted = pd.to_numeric(base["deleted"], errors="coerce").fillna(0).astype(int) != 0
    archived = as_text(base["currentnodetype"]).str.strip().isin(spec.archived_nodetypes)
    last_type = rid.map(last_any)
    undo_type = rid.map(undone["logtype"]) if not undone.empty else pd.Series(pd.NA, index=base.index)
    has_approve, has_force = rid.isin(approve.index), rid.isin(force.index)
    forced_ok = has_force & ~has_approve & (spec.force_archived == "approve")
    state = pd.Series("running", index=base.index, dtype=object)
    state[last_type.isin(types.reject)] = "rejected"
    state[last_type.isin(types.withdraw)] = "withdrawn"
    state[archived] = "held"
    state[archived & (has_approve | forced_ok)] = "approved"
    state[archived & undo_type.isin(types.reject)] = "rejected"
    state[archived & undo_type.isin(types.withdraw)] = "withdrawn"
    state[deleted] = "deleted"
    # the administrator who force-archived is the approver only where the flow says a force-archive approves
    chosen = pd.concat([force.loc[force.index.difference(approve.index)], approve]) if (
        spec.force_archived == "approve") else approve
    note = pd.Series(None, index=base.index, dtype=object)
    note[archived & has_force & ~has_approve] = "强制归档 (force-archived by an administrator)"
    note[archived & ~has_force & ~has_approve] = "archived without an approval entry"
    return pd.DataFrame({
        "request_id": rid,
        "state": state,
        "approved_at": rid.map(chosen["at"]) if not chosen.empty else pd.NaT,
        "approver_id": rid.map(chosen["operator"]) if not chosen.empty else None,
        "archived_at": rid.map(force["at"]) if not force.empty else pd.NaT,
        "archived_by_id": rid.map(force["operator"]) if not force.empty else None,
        "note": note,
    })


def _flowable(conn: Connection, spec: FlowableApproval, schema: str | None) -> pd.DataFrame:
    up = spec.procinst_table.split(".")[-1].isupper()

    def c(name: str) -> str:  # Flowable spells columns in the case of its tables
        return name if up else name.lower()

    pi = table(spec.procinst_table, [c(n) for n in ("ID_", "BUSINESS_KEY_", "PROC_DEF_ID_", "START_TIME_",
                                                   "END_TIME_", "DELETE_REASON_")], schema)
    vi = table(spec.varinst_table, [c(n) for n in ("PROC_INST_ID_", "NAME_", "TEXT_")], schema)
    ti = table(spec.taskinst_table, [c(n) for n in ("PROC_INST_ID_", "ASSIGNEE_", "END_TIME_")], schema)
    procs = frame(conn, sa.select(*pi.c).where(pi.c[c("PROC_DEF_ID_")].like(f"{spec.process_key}:%")))
    procs.columns = [str(k).upper() for k in procs.columns]
    procs = procs.sort_values("START_TIME_", kind="stable").groupby("BUSINESS_KEY_").last().reset_index()
    ids = procs["ID_"].astype(str).tolist()
    outcome = pd.Series(dtype=object)
    tasks = pd.DataFrame(columns=["PROC_INST_ID_", "ASSIGNEE_", "END_TIME_"])
    for start in range(0, len(ids), _IN):
        part = ids[start:start + _IN]
        got = frame(conn, sa.select(vi.c[c("PROC_INST_ID_")], vi.c[c("TEXT_")])
                    .where(vi.c[c("NAME_")] == spec.outcome_variable, vi.c[c("PROC_INST_ID_")].in_(part)))
        outcome = pd.concat([outcome, pd.Series(got.iloc[:, 1].to_numpy(), index=got.iloc[:, 0].astype(str))])
        done = frame(conn, sa.select(*ti.c).where(ti.c[c("END_TIME_")].is_not(None),
                                                  ti.c[c("PROC_INST_ID_")].in_(part)))
        done.columns = [str(k).upper() for k in done.columns]
        tasks = pd.concat([tasks, done], ignore_index=True) if not done.empty else tasks
    tasks["PROC_INST_ID_"] = tasks["PROC_INST_ID_"].astype(str)
    last_task = tasks.sort_values("END_TIME_", kind="stable").groupby("PROC_INST_ID_").last()
    pid = procs["ID_"].astype(str)
    verdict = as_text(pid.map(outcome)).str.strip().str.lower()
    state = pd.Series("rejected", index=procs.index, dtype=object)
    state[verdict.isin([v.lower() for v in spec.approve_values])] = "approved"
    state[procs["END_TIME_"].isna()] = "running"
    state[procs["DELETE_REASON_"].notna()] = "withdrawn"
    finished = pd.to_datetime(pid.map(last_task["END_TIME_"]), errors="coerce")
    return pd.DataFrame({
        "request_id": as_text(procs["BUSINESS_KEY_"]),
        "state": state,
        "approved_at": finished.fillna(pd.to_datetime(procs["END_TIME_"], errors="coerce")),
        "approver_id": pid.map(last_task["ASSIGNEE_"]),
        "note": None,
    })


def _status_field(conn: Connection, spec: StatusFieldApproval, schema: str | None) -> pd.DataFrame:
    cols = list(dict.fromkeys([spec.key, spec.field, *spec.approved_at, *([spec.approver] if spec.approver else []),
                               *([spec.deleted_column] if spec.deleted_column else []), *spec.where]))
    t = table(spec.table, cols, schema)
    stmt = sa.select(*(t.c[k] for k in cols if k not in spec.where))
    for column, value in spec.where.items():
        stmt = stmt.where(t.c[column] == value)
    rows = frame(conn, stmt)
    status = as_text(rows[spec.field]).str.strip()
    state = pd.Series("running", index=rows.index, dtype=object)
    for name, values in (("withdrawn", spec.withdrawn), ("rejected", spec.rejected), ("approved", spec.approved),
                         ("deleted", spec.deleted)):
        state[status.isin(values)] = name
    if spec.deleted_column:
        state[pd.to_numeric(rows[spec.deleted_column], errors="coerce").fillna(0) != 0] = "deleted"
    at = pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns]")
    if spec.approved_at:
        at = _stamp(rows[spec.approved_at[0]], rows[spec.approved_at[1]] if len(spec.approved_at) > 1 else None)
    return pd.DataFrame({
        "request_id": as_text(rows[spec.key]),
        "state": state,
        "approved_at": at,
        "approver_id": rows[spec.approver] if spec.approver else None,
        "note": None,
    })


def _with_users(conn: Connection, out: pd.DataFrame, users: UsersSpec | None, schema: str | None,
                code_tables: Mapping[str, Any], as_of: date) -> pd.DataFrame:
    """approver_id -> approver (normalised code, else `oa:<id>`) and approver_name; archived_by_id likewise."""
    empty = pd.Series(None, index=out.index, dtype=object)
    ids = {role: as_text(out[f"{role}_id"]) if f"{role}_id" in out else empty for role in ("approver", "archived_by")}
    for role, found in ids.items():
        out[role] = ("oa:" + found).where(found.notna(), None)
        out[f"{role}_name"] = None
    wanted = sorted(set(ids["approver"].dropna().tolist()) | set(ids["archived_by"].dropna().tolist()))
    if users is None or not wanted:
        return out
    t = table(users.table, [users.id, users.code, users.name], schema)
    keys = bind_keys(conn, t.c[users.id], wanted)
    if not keys:
        return out
    parts = [frame(conn, sa.select(t.c[users.id], t.c[users.code], t.c[users.name])
                   .where(t.c[users.id].in_(keys[s:s + _IN])))
             for s in range(0, len(keys), _IN)]
    people = pd.concat(parts, ignore_index=True)
    people.index = as_text(people[users.id])
    ctx = TransformContext(field="approver", source="oa", frame=people, code_tables=code_tables, as_of=as_of)
    codes = as_text(apply_transforms(people[users.code], users.code_transforms, ctx))
    for role, found in ids.items():
        code = found.map(codes)
        out[role] = code.where(code.notna() & (code != ""), out[role])
        out[f"{role}_name"] = found.map(as_text(people[users.name]))
    return out
