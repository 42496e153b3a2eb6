"""Purchase requisition -> purchase order: OA forms mapped into ERP documents, created exactly once.

This is the document machinery of every flow (the contract flow is the same
without lines). `build_documents` maps approved forms; `publish_document` creates
one document in one ERP transaction: target locks, link/`request_ref` look-up,
number and ids, header, lines, link row - so a crash anywhere leaves either
nothing or the document *and* its link, and a rerun finds the link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from etl import faults
from etl.errors import ConfigError, ConfigIssue, DataError
from etl.flows import docno
from etl.flows.approval import bind_keys, frame, table
from etl.flows.model import FieldSpec, FlowSpec, apply_fields
from etl.mapping.loader import unknown_message
from etl.yamlio import Loc, dotted

REQ = "_request_id"
LINK_COLUMNS = ["oa_request_id", "doc_no", "request_no", "content_hash", "origin", "approved_at", "approver",
                "approver_name", "amount", "created_at", "run_id"]
PROBLEM_COLUMNS = ["request_id", "field", "rule", "value", "reason"]
_IN = 500
Checks = Callable[[FlowSpec, pd.DataFrame], pd.DataFrame]


class FormColumnsError(ConfigError):
    """Columns the flow file names that the OA forms do not have; `found` holds (key path, message) pairs.

    Raised without the file's line numbers (the spec does not keep them): see `etl.flows.audit.located`.
    """

    def __init__(self, flow: str, found: list[tuple[Loc, str]]) -> None:
        self.flow = flow
        self.found = found
        super().__init__([ConfigIssue(f"flow '{flow}'", None, None, dotted(loc), message) for loc, message in found])


@dataclass
class Forms:
    """Raw OA forms: headers indexed by request id (text), lines carrying it in `_request_id`."""

    headers: pd.DataFrame
    lines: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Document:
    """One request's form, mapped: `header` is None when it does not map cleanly (see `problems`)."""

    request_id: str
    request_no: str | None
    header: dict[str, Any] | None
    lines: list[dict[str, Any]]
    content_hash: str
    approved_at: datetime | None = None
    approver: str | None = None
    approver_name: str | None = None
    amount: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """True when the document can be created."""
        return self.header is not None


def link_table(spec: FlowSpec, metadata: sa.MetaData, schema: str | None = None) -> sa.Table:
    """The flow's link table in the ERP database (one row per OA request)."""
    name = f"{schema}.{spec.target.link.table}" if schema else spec.target.link.table
    if name in metadata.tables:
        return metadata.tables[name]
    return sa.Table(
        spec.target.link.table,
        metadata,
        sa.Column("oa_request_id", sa.String(30), primary_key=True),
        sa.Column(spec.target.link.number_column, sa.String(40), nullable=False, index=True),
        sa.Column("request_no", sa.String(60)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("approved_at", sa.DateTime),
        sa.Column("approver", sa.String(60)),
        sa.Column("approver_name", sa.String(60)),
        sa.Column("amount", sa.Numeric(18, 2)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("run_id", sa.String(40)),
        schema=schema,
    )


def ensure_erp_tables(engine: Engine, spec: FlowSpec, schema: str | None = None) -> tuple[sa.Table, sa.Table]:
    """Create the link and lock tables when missing; returns (link, lock)."""
    metadata = sa.MetaData()
    link, lock = link_table(spec, metadata, schema), docno.lock_table(metadata, schema)
    metadata.create_all(engine, checkfirst=True)
    for key in docno.lock_keys(spec):
        docno.ensure_lock_row(engine, lock, key)
    return link, lock


def read_links(conn: Connection, spec: FlowSpec, schema: str | None = None) -> pd.DataFrame:
    """Every link row, indexed by OA request id; the number column is renamed `doc_no`."""
    link = link_table(spec, sa.MetaData(), schema)
    if not sa.inspect(conn).has_table(link.name, schema=schema):
        return pd.DataFrame(columns=LINK_COLUMNS).set_index("oa_request_id", drop=False)
    rows = frame(conn, sa.select(link)).rename(columns={spec.target.link.number_column: "doc_no"})
    rows["oa_request_id"] = rows["oa_request_id"].astype(str)
    return rows.set_index("oa_request_id", drop=False)


def _source(source_sql: str, column: str) -> sa.Subquery:
    """`(source_sql) q`, whose `column` can be compared (it is quoted by the dialect)."""
    return sa.text(source_sql).columns(sa.column(column)).subquery("q")


def column_names(conn: Connection, source: sa.FromClause) -> list[str]:
    """The column names of a source (no rows are read)."""
    return list(conn.execute(sa.select(sa.literal_column("*")).select_from(source).where(sa.false())).keys())


def _rows_in(conn: Connection, source: sa.Subquery, column: str, values: list[str]) -> pd.DataFrame:
    """Rows of `source` whose `column` is one of `values`, bound as the column compares them."""
    if not values:
        return pd.DataFrame()
    keys = bind_keys(conn, source.c[column], values)
    stmt: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(source)
    parts = [frame(conn, stmt.where(source.c[column].in_(keys[s:s + _IN]))) for s in range(0, len(keys), _IN)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _read_columns(spec: FlowSpec, part: str) -> list[tuple[Loc, str]]:
    """(key path, column) of every form column the flow reads from its header or lines source."""
    src = spec.source.header if part == "header" else spec.source.lines
    own = ["id", "request_id", "number"] if part == "header" else ["id", "parent", "order_by"]
    out: list[tuple[Loc, str]] = [(("source", part, k), getattr(src, k)) for k in own if getattr(src, k)]
    fields = spec.fields.header if part == "header" else spec.fields.lines
    for name, fspec in fields.items():
        many = isinstance(fspec.from_, list)
        out += [(("fields", part, name, "from", *([i] if many else [])), c) for i, c in enumerate(fspec.columns)]
    hashed = spec.changes.hash_header if part == "header" else spec.changes.hash_lines
    out += [(("changes", f"hash_{part}", i), c) for i, c in enumerate(hashed or [])]
    return out


def _check_columns(spec: FlowSpec, part: str, present: list[str], label: str) -> list[tuple[Loc, str]]:
    """A problem per column read from `part` that the source lacks, with a did-you-mean from `present`."""
    return [(loc, f"{label}: {unknown_message('column', column, present)}")
            for loc, column in _read_columns(spec, part) if column not in present]


def _from(conn: Connection, name: str, schema: str | None) -> str:
    if "." in name:
        schema, name = name.split(".", 1)
    prep = conn.dialect.identifier_preparer
    # identifiers are checked plain names, quoted by the dialect
    return f"SELECT * FROM {prep.quote_schema(schema) + '.' if schema else ''}{prep.quote(name)}"  # noqa: S608


def read_forms(conn: Connection, spec: FlowSpec, request_ids: list[str], schema: str | None = None) -> Forms:
    """The OA forms (header and lines) of the given requests, read-only.

    Every column the flow reads (ids, number, order, mapped and hashed columns) is checked first:
    FormColumnsError (a ConfigError) names each one a source lacks.
    """
    h, src = spec.source.header, spec.source.lines
    head = _source(h.query or _from(conn, str(h.table), schema), h.request_id)
    body = None if src is None else _source(_from(conn, src.table, schema), src.parent)
    missing = _check_columns(spec, "header", column_names(conn, head), h.table or "the header query")
    if src is not None and body is not None:
        missing += _check_columns(spec, "lines", column_names(conn, body), src.table)
    if missing:
        raise FormColumnsError(spec.flow, missing)
    headers = _rows_in(conn, head, h.request_id, sorted(set(request_ids)))
    if headers.empty:
        return Forms(headers=pd.DataFrame(columns=[h.id, h.request_id]).set_index(pd.Index([], dtype=object)))
    headers.index = headers[h.request_id].astype(str)
    headers = headers[~headers.index.duplicated(keep="last")]
    lines = pd.DataFrame()
    if src is not None and body is not None:
        lines = _rows_in(conn, body, src.parent, [str(v) for v in headers[h.id]])
        if not lines.empty:
            owner = pd.Series(headers.index, index=headers[h.id].astype(str))
            lines[REQ] = lines[src.parent].astype(str).map(owner)
            lines = lines.sort_values([REQ, *([src.order_by] if src.order_by else []), src.id], kind="stable")
            lines = lines.reset_index(drop=True)
    return Forms(headers=headers, lines=lines)


def _canon(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return "\x00"
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return format(Decimal(str(value)).normalize(), "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def content_hashes(spec: FlowSpec, forms: Forms) -> pd.Series:
    """sha256 per request over its raw OA columns (`changes.hash_*`, default the mapped ones), lines in order."""
    hcols, lcols = spec.hash_columns
    text = {rid: "\x1f".join(_canon(row.get(c)) for c in hcols) for rid, row in forms.headers.iterrows()}
    if lcols and not forms.lines.empty:
        for rid, part in forms.lines.groupby(REQ, sort=False):
            text[rid] += "".join("\x1e" + "\x1f".join(_canon(v) for v in row) for row in part[lcols].itertuples(
                index=False))
    return pd.Series({rid: hashlib.sha256(t.encode()).hexdigest() for rid, t in text.items()}, dtype=object)


def _python(value: Any, fspec: FieldSpec) -> Any:
    """A mapped value as the driver wants it (Decimal for decimals, date for dates, None for nulls)."""
    if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)):
        return None
    if fspec.type == "decimal":
        return Decimal(str(round(float(value), fspec.scale or 0)))
    if fspec.type == "integer":
        return int(value)
    if fspec.type == "date":
        return pd.Timestamp(value).date()
    if fspec.type == "datetime":
        return pd.Timestamp(value).to_pydatetime()
    if fspec.type == "boolean":
        return bool(value)
    return str(value)


def map_forms(spec: FlowSpec, forms: Forms, code_tables: Mapping[str, Any], *, as_of: date,
              timezone: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(header values by request id, line values with `_request_id`, problems by request id)."""
    hv, hp = apply_fields(forms.headers, spec.fields.header, code_tables, as_of=as_of, timezone=timezone)
    problems = [hp.rename(columns={"row": "request_id"})]
    lv = pd.DataFrame(columns=[REQ])
    if spec.fields.lines and not forms.lines.empty:
        lv, lp = apply_fields(forms.lines, spec.fields.lines, code_tables, as_of=as_of, timezone=timezone)
        lv[REQ] = forms.lines[REQ]
        problems.append(lp.assign(row=forms.lines[REQ].reindex(lp["row"]).to_numpy()).rename(
            columns={"row": "request_id"}))
    if spec.target.lines is not None:
        bare = forms.headers.index.difference(pd.Index(lv[REQ].unique()))
        problems.append(pd.DataFrame({"request_id": bare, "field": "lines", "rule": "no_lines",
                                      "value": None, "reason": "the form has no lines"}))
    found = pd.concat([p for p in problems if not p.empty], ignore_index=True) if any(
        not p.empty for p in problems) else pd.DataFrame(columns=PROBLEM_COLUMNS)
    return hv, lv, found.reindex(columns=PROBLEM_COLUMNS)


def build_documents(spec: FlowSpec, forms: Forms, approvals: pd.DataFrame, code_tables: Mapping[str, Any], *,
                    as_of: date, timezone: str, checks: Checks | None = None, hashes: pd.Series | None = None
                    ) -> tuple[dict[str, Document], pd.DataFrame]:
    """A Document per form (`header` None where mapping failed) and the mapping problems."""
    hv, lv, problems = map_forms(spec, forms, code_tables, as_of=as_of, timezone=timezone)
    if checks is not None:
        problems = pd.concat([problems, checks(spec, hv)], ignore_index=True)
    hashes = content_hashes(spec, forms) if hashes is None else hashes
    reasons = problems.groupby("request_id")["reason"].agg(list).to_dict() if not problems.empty else {}
    number = spec.source.header.number
    amount_col = spec.target.header.amount
    line_amount = spec.target.lines.amount if spec.target.lines else None
    line_groups = dict(tuple(lv.groupby(REQ, sort=False))) if not lv.empty else {}
    approvals = approvals[~approvals.index.duplicated(keep="last")]  # read_approvals collapses; others may not
    docs: dict[str, Document] = {}
    for rid in forms.headers.index:
        bad = reasons.get(rid, [])
        header = None if bad else {c: _python(hv.at[rid, c], f) for c, f in spec.fields.header.items()}
        lines = [] if bad else [{c: _python(row[c], f) for c, f in spec.fields.lines.items()}
                                for _, row in line_groups.get(rid, pd.DataFrame()).iterrows()]
        amount = (header.get(amount_col) if header and amount_col else
                  sum((ln.get(line_amount) or 0) for ln in lines) if header and line_amount else None)
        appr = approvals.loc[rid] if rid in approvals.index else None
        docs[rid] = Document(
            request_id=rid,
            request_no=None if number is None else _python(forms.headers.at[rid, number], FieldSpec()),
            header=header,
            lines=lines,
            content_hash=str(hashes.get(rid, "")),
            approved_at=None if appr is None or pd.isna(appr["approved_at"]) else pd.Timestamp(
                appr["approved_at"]).to_pydatetime(),
            approver=None if appr is None else _python(appr["approver"], FieldSpec()),
            approver_name=None if appr is None else _python(appr["approver_name"], FieldSpec()),
            amount=None if amount is None else round(float(amount), 2),
            problems=list(dict.fromkeys(bad)),
        )
    return docs, problems


_SA_TYPES: dict[str, Any] = {"string": sa.String(), "integer": sa.Integer(), "date": sa.Date(),
                             "datetime": sa.DateTime(), "boolean": sa.Boolean()}


def _typed(name: str, types: dict[str, Any], schema: str | None) -> sa.TableClause:
    """A lightweight table whose columns carry types (drivers such as sqlite3 need Decimal converted)."""
    if "." in name:
        schema, name = name.split(".", 1)
    return sa.table(name, *(sa.column(c, t) for c, t in types.items()), schema=schema)


def _types(fields: Mapping[str, FieldSpec], extra: dict[str, Any]) -> dict[str, Any]:
    out = {c: sa.Numeric(18, f.scale or 0) if f.type == "decimal" else _SA_TYPES[f.type] for c, f in fields.items()}
    return {**out, **extra}


class Published(NamedTuple):
    """What `publish_document` did: the outcome, the document number, and for `duplicate` the other request."""

    outcome: str
    number: str
    other_request: str | None = None


def local_now(timezone: str) -> datetime:
    """Now in the project timezone, naive and to the second (canonical datetimes are naive in `run.timezone`)."""
    return datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)


def publish_document(engine: Engine, spec: FlowSpec, doc: Document, *, run_id: str, day: date,
                     schema: str | None = None, attempts: int = 3, timezone: str = "UTC") -> Published:
    """Create `doc` in the ERP unless its request already has a document; returns (outcome, number, other).

    Outcomes: `created`, `adopted` (a document carrying the request id existed:
    linked, not duplicated), `linked` (the link existed), `duplicate` (another
    request with the same request number is linked already: `number` is its
    document, `other_request` its id), `conflict` (a mapped number is taken by
    another document) and `unmapped` (no document exists and the form does not
    map): the last three write nothing. Timestamps written (the document's
    `modified` column, the link's `created_at`) are naive in `timezone`.
    """
    for attempt in range(attempts):
        try:
            return _publish_once(engine, spec, doc, run_id=run_id, day=day, schema=schema, timezone=timezone)
        except sa.exc.IntegrityError as exc:  # a writer outside the flows took the id or number first
            if attempt == attempts - 1:
                raise DataError(f"{spec.flow}: request {doc.request_id}: {str(exc.orig).splitlines()[0]}") from None
    raise AssertionError("unreachable")


def _publish_once(engine: Engine, spec: FlowSpec, doc: Document, *, run_id: str, day: date,
                  schema: str | None, timezone: str) -> Published:
    th, tl = spec.target.header, spec.target.lines
    metadata = sa.MetaData()
    link, lock = link_table(spec, metadata, schema), docno.lock_table(metadata, schema)
    keycol = spec.target.link.number_column
    head = table(th.table, [th.number, th.request_ref, *([th.id] if th.id else [])], schema)
    with engine.begin() as conn:
        docno.take_locks(conn, lock, spec, run_id)
        faults.point("flow.doc_locked")
        linked = conn.execute(sa.select(link.c[keycol]).where(link.c.oa_request_id == doc.request_id)).scalar()
        if linked is not None:
            return Published("linked", str(linked))
        stamp = local_now(timezone)
        link_row = {"oa_request_id": doc.request_id, "request_no": doc.request_no, "content_hash": doc.content_hash,
                    "approved_at": doc.approved_at, "approver": doc.approver, "approver_name": doc.approver_name,
                    "amount": None if doc.amount is None else Decimal(str(doc.amount)), "created_at": stamp,
                    "run_id": run_id}
        same_request = _request_ref(head.c[th.request_ref]) == doc.request_id
        existing = conn.execute(sa.select(head.c[th.number]).where(same_request).order_by(head.c[th.number])
                                ).scalars().first()
        if existing is not None:
            conn.execute(link.insert().values(**link_row, origin="adopted", **{keycol: str(existing)}))
            faults.point("flow.doc_link_inserted")
            return Published("adopted", str(existing))
        other = _same_number(conn, link, keycol, doc)
        if other is not None:
            return Published("duplicate", str(other[1]), str(other[0]))
        if doc.header is None:
            return Published("unmapped", "")
        if spec.docno is not None:
            mine = conn.execute(sa.select(link.c[keycol]).where(link.c[keycol].like(docno.stem(spec.docno, day) + "%"))
                                ).scalars()
            number = docno.next_number(conn, head.c[th.number], spec.docno, day, reserved=list(mine))
        else:
            number = str(doc.header[th.number])
            if conn.execute(sa.select(head.c[th.number]).where(head.c[th.number] == number)).first():
                return Published("conflict", number)
        header = {**doc.header, th.number: number, th.request_ref: doc.request_id}
        header.update({c: v for c, v in ((th.date, day), (th.modified, stamp)) if c})
        if th.id:
            header[th.id] = docno.next_id(conn, head.c[th.id])
        system = {th.number: sa.String(), th.request_ref: sa.String(), **({th.id: sa.Integer()} if th.id else {}),
                  **({th.date: sa.Date()} if th.date else {}), **({th.modified: sa.DateTime()} if th.modified else {})}
        conn.execute(_typed(th.table, _types(spec.fields.header, system), schema).insert().values(header))
        faults.point("flow.doc_header_inserted")
        if tl is not None and doc.lines:
            first = docno.next_id(conn, table(tl.table, [tl.id], schema).c[tl.id])
            parent = header[th.id] if th.id else number
            rows = [{**line, tl.id: first + i, tl.parent: parent, **({tl.row_no: i + 1} if tl.row_no else {})}
                    for i, line in enumerate(doc.lines)]
            system = {tl.id: sa.Integer(), tl.parent: sa.Integer() if th.id else sa.String(),
                      **({tl.row_no: sa.Integer()} if tl.row_no else {})}
            conn.execute(_typed(tl.table, _types(spec.fields.lines, system), schema).insert(), rows)
            faults.point("flow.doc_lines_inserted")
        conn.execute(link.insert().values(**link_row, origin="created", **{keycol: number}))
        faults.point("flow.doc_link_inserted")
    faults.point("flow.doc_committed")
    return Published("created", number)


def _same_number(conn: Connection, link: sa.Table, keycol: str, doc: Document) -> tuple[str, str] | None:
    """(request id, document) of another request linked under `doc`'s request number, the lowest id first.

    Exactly-once is per request id; a second approved request carrying a number that already has a document
    (a copied requisition) is held for a person rather than given a second document. Numbers are compared
    without leading or trailing blanks.
    """
    number = (doc.request_no or "").strip()
    if not number:
        return None
    found = conn.execute(sa.select(link.c.oa_request_id, link.c[keycol])
                         .where(_request_ref(link.c.request_no) == number, link.c.oa_request_id != doc.request_id)
                         .order_by(link.c.oa_request_id)).first()
    return None if found is None else (str(found[0]), str(found[1]))


def _request_ref(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """The request column as the audit reads it: text without leading or trailing blanks (' 100007' is 100007).

    LTRIM(RTRIM()) rather than TRIM: SQL Server has TRIM only since 2017.
    """
    return sa.func.ltrim(sa.func.rtrim(sa.cast(column, sa.String(120))))


def flag_document(engine: Engine, spec: FlowSpec, number: str, prefix: str, schema: str | None = None) -> bool:
    """Prefix the document's flag column (e.g. cMemo `[OA已变更]`) once; True when it changed now."""
    column = spec.flag_column
    if column is None:
        return False
    th = spec.target.header
    head = table(th.table, [th.number, column], schema)
    with engine.begin() as conn:
        current = conn.execute(sa.select(head.c[column]).where(head.c[th.number] == number)).first()
        if current is None or str(current[0] or "").startswith(prefix):
            return False
        flagged = (prefix + str(current[0] or ""))[: spec.changes.flag_length]
        conn.execute(sa.update(head).where(head.c[th.number] == number).values({column: flagged}))
    return True
