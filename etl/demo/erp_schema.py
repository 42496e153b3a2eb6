"""Demo ERP schema in Yonyou U8 spelling (SQLAlchemy Core, portable types only).

Only the columns the synchroniser reads or writes are modelled. The tables,
their column names and their quirks (codes as strings, ``cDefine10`` holding
the OA request id, ...) follow U8 so the mapping layer meets what it would meet
on a real site.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
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

department = Table(
    "Department",
    metadata,
    Column("cDepCode", String(12), primary_key=True),
    Column("cDepName", String(100), nullable=False),
    Column("iDepGrade", SmallInteger, nullable=False),
    Column("bDepEnd", SmallInteger, nullable=False),
    Column("cDepLeader", String(20)),
    Column("dDepBeginDate", Date),
    Column("dDepEndDate", Date),
    Column("dModifyDate", DateTime),
)

person = Table(
    "hr_hi_person",
    metadata,
    Column("cPsn_Num", String(20), primary_key=True),
    Column("cPsn_Name", String(50), nullable=False),
    Column("cDept_num", String(12), ForeignKey("Department.cDepCode"), nullable=False),
    Column("rSex", String(2)),
    Column("cPsnMobilePhone", String(30)),
    Column("cPsnEmail", String(100)),
    Column("cPsnIDNum", String(30)),
    Column("rPersonType", String(2), nullable=False),
    Column("dEnterDate", Date),
    Column("dLastDate", Date),
    Column("dModifyDate", DateTime),
)

vendor = Table(
    "Vendor",
    metadata,
    Column("cVenCode", String(20), primary_key=True),
    Column("cVenName", String(100), nullable=False),
    Column("cVenAbbName", String(60)),
    Column("dModifyDate", DateTime),
)

inventory = Table(
    "Inventory",
    metadata,
    Column("cInvCode", String(20), primary_key=True),
    Column("cInvName", String(100), nullable=False),
    Column("cInvStd", String(100)),
    Column("cComUnitCode", String(10)),
    Column("dModifyDate", DateTime),
)

pu_appvouch = Table(
    "PU_AppVouch",
    metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("cCode", String(30), nullable=False, unique=True),
    Column("dDate", Date),
    Column("cDepCode", String(12)),
    Column("cPersonCode", String(20)),
    Column("cState", String(2)),
    Column("cMemo", String(255)),
    Column("dModifyDate", DateTime, index=True),
)

pu_appvouchs = Table(
    "PU_AppVouchs",
    metadata,
    Column("AutoID", Integer, primary_key=True, autoincrement=False),
    Column("ID", Integer, ForeignKey("PU_AppVouch.ID"), nullable=False),
    Column("ivouchrowno", Integer, nullable=False),
    Column("cInvCode", String(20)),
    Column("cVenCode", String(20)),
    Column("fQuantity", Numeric(18, 4)),
    Column("fUnitPrice", Numeric(18, 4)),
    Column("fMoney", Numeric(18, 2)),
    Column("dRequirDate", Date),
    Column("dModifyDate", DateTime),
    Index("ix_PU_AppVouchs_ID", "ID"),
    Index("ix_PU_AppVouchs_dModifyDate", "dModifyDate"),
)

po_pomain = Table(
    "PO_Pomain",
    metadata,
    Column("POID", Integer, primary_key=True, autoincrement=False),
    Column("cPOID", String(30), nullable=False, unique=True),
    Column("dPODate", Date),
    Column("cVenCode", String(20)),
    Column("cDepCode", String(12)),
    Column("cPersonCode", String(20)),
    Column("cState", String(2)),
    Column("cMemo", String(255)),
    Column("cDefine10", String(120)),
    Column("dModifyDate", DateTime),
)

po_podetails = Table(
    "PO_Podetails",
    metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("POID", Integer, ForeignKey("PO_Pomain.POID"), nullable=False),
    Column("ivouchrowno", Integer, nullable=False),
    Column("cInvCode", String(20)),
    Column("iQuantity", Numeric(18, 4)),
    Column("iUnitPrice", Numeric(18, 4)),
    Column("iSum", Numeric(18, 2)),
)

cm_contract = Table(
    "CM_Contract",
    metadata,
    Column("cContractID", String(40), primary_key=True),
    Column("strContractName", String(200), nullable=False),
    Column("strContractKind", String(30)),
    Column("cVenCode", String(20)),
    Column("dblTotalMoney", Numeric(18, 2)),
    Column("dtStartDate", Date),
    Column("dtEndDate", Date),
    Column("cDepCode", String(12)),
    Column("cPersonCode", String(20)),
    Column("strState", String(20)),
    Column("cOARequestID", String(30)),
    Column("dModifyDate", DateTime),
)

#: Tables in load order (parents first).
TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)
