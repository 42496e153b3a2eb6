"""Demo OA schema in Weaver e-cology spelling (SQLAlchemy Core, portable types only).

e-cology keeps dates and times as ``'YYYY-MM-DD'`` / ``'HH:MM:SS'`` strings and
references people and departments by integer id; the demo keeps that, and adds a
real ``modified`` datetime where the synchroniser needs an incremental cursor.
Form detail tables (``*_dt1``) carry no timestamp: they follow their main row.
Requester columns (``sqr``) carry no foreign key, as in e-cology, which is how a
form can point at a person who does not exist.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
)

metadata = MetaData()

#: e-cology workflow ids used by the demo.
WORKFLOW_PURCHASE_REQUISITION = 12
WORKFLOW_CONTRACT = 15

hrm_department = Table(
    "HrmDepartment",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("departmentcode", String(30)),
    Column("departmentname", String(100), nullable=False),
    Column("departmentmark", String(60)),
    Column("supdepid", Integer),
    Column("subcompanyid1", Integer),
    Column("canceled", String(1)),
    Column("modified", DateTime),
)

hrm_resource = Table(
    "HrmResource",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("workcode", String(30)),
    Column("lastname", String(60), nullable=False),
    Column("departmentid", Integer, ForeignKey("HrmDepartment.id")),
    Column("sex", String(1)),
    Column("mobile", String(30)),
    Column("email", String(100)),
    Column("certificatenum", String(30)),
    Column("status", String(2), nullable=False),
    Column("startdate", String(10)),
    Column("enddate", String(10)),
    Column("lastmoddate", String(10)),
    Column("lastmodtime", String(8)),
    Column("modified", DateTime),
)

requestbase = Table(
    "workflow_requestbase",
    metadata,
    Column("requestid", Integer, primary_key=True, autoincrement=False),
    Column("workflowid", Integer, nullable=False),
    Column("requestname", String(200)),
    Column("requestmark", String(60)),
    Column("creater", Integer),
    Column("createdate", String(10)),
    Column("createtime", String(8)),
    Column("currentnodetype", String(1)),
    Column("status", String(30)),
    Column("deleted", SmallInteger, nullable=False),
    Column("lastoperator", Integer),
    Column("lastoperatedate", String(10)),
    Column("lastoperatetime", String(8)),
    Column("modified", DateTime, index=True),
)

requestlog = Table(
    "workflow_requestlog",
    metadata,
    Column("logid", Integer, primary_key=True, autoincrement=False),
    Column("requestid", Integer, ForeignKey("workflow_requestbase.requestid"), nullable=False),
    Column("nodeid", Integer),
    Column("operator", Integer),
    Column("operatedate", String(10)),
    Column("operatetime", String(8)),
    Column("logtype", String(1)),
    Column("remark", String(500)),
    Index("ix_workflow_requestlog_requestid", "requestid"),
)

form_requisition = Table(
    "formtable_main_12",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("requestid", Integer, ForeignKey("workflow_requestbase.requestid"), nullable=False),
    Column("sqdh", String(30)),
    Column("sqr", Integer),
    Column("sqbm", Integer),
    Column("sqrq", String(10)),
    Column("gys", String(20)),
    Column("hjje", Numeric(18, 2)),
    Column("bz", String(500)),
    Column("erp_po_no", String(30)),
    Column("modified", DateTime, index=True),
    Index("ix_formtable_main_12_requestid", "requestid"),
)

form_requisition_lines = Table(
    "formtable_main_12_dt1",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("mainid", Integer, ForeignKey("formtable_main_12.id"), nullable=False),
    Column("xh", Integer),
    Column("wlbm", String(20)),
    Column("wlmc", String(100)),
    Column("sl", Numeric(18, 4)),
    Column("dj", Numeric(18, 4)),
    Column("je", Numeric(18, 2)),
    Column("xqrq", String(10)),
    Index("ix_formtable_main_12_dt1_mainid", "mainid"),
)

form_contract = Table(
    "formtable_main_15",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("requestid", Integer, ForeignKey("workflow_requestbase.requestid"), nullable=False),
    Column("htbh", String(40)),
    Column("htmc", String(200)),
    Column("htlx", String(30)),
    Column("xdf", String(20)),
    Column("htje", Numeric(18, 2)),
    Column("qsrq", String(10)),
    Column("jsrq", String(10)),
    Column("sqr", Integer),
    Column("sqbm", Integer),
    Column("erp_contract_no", String(40)),
    Column("modified", DateTime),
)

#: Tables in load order (parents first).
TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)
