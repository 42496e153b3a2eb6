"""Report wording in Simplified Chinese (default) and English, and the rendering of difference details."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

LANGS = ("zh-CN", "en")

CLASS_LABELS = {
    "zh-CN": {
        "only_in_erp": "仅ERP存在",
        "only_in_oa": "仅OA存在",
        "field_mismatch": "字段不一致",
        "mapping_gap": "编码映射缺失",
        "duplicate_key": "业务键重复",
        "orphan_reference": "引用失效",
        "target_drift": "目标库偏移",
        "approval_amended": "审批后被修改",
        "approval_cancelled": "审批已撤销",
        "approval_held": "审批待核实",
        "audit_req_without_po": "已审批申请无ERP单据",
        "audit_po_without_req": "采购订单无请购",
        "audit_amount_mismatch": "金额不一致",
        "audit_contract_no_approval": "合同无审批",
    },
    "en": {
        "only_in_erp": "Only in ERP",
        "only_in_oa": "Only in OA",
        "field_mismatch": "Field mismatch",
        "mapping_gap": "Mapping gap",
        "duplicate_key": "Duplicate key",
        "orphan_reference": "Orphan reference",
        "target_drift": "Target drift",
        "approval_amended": "Amended after approval",
        "approval_cancelled": "Approval cancelled",
        "approval_held": "Approval on hold",
        "audit_req_without_po": "Approved request without ERP document",
        "audit_po_without_req": "PO without requisition",
        "audit_amount_mismatch": "Amount mismatch",
        "audit_contract_no_approval": "Contract without approval",
    },
}

#: Labels of the flows' stored classes that depend on the flow (entity). The stored class names stay
#: as they are: a difference's id is derived from its class, and a rename would lose every sign-off.
FLOW_CLASS_LABELS = {
    "zh-CN": {
        "contract_archive": {"audit_req_without_po": "已审批合同申请无ERP合同"},
        "purchase_order": {"audit_req_without_po": "请购无采购订单"},
    },
    "en": {
        "contract_archive": {"audit_req_without_po": "Approved contract request without ERP contract"},
        "purchase_order": {"audit_req_without_po": "Requisition without PO"},
    },
}

CLASS_HELP = {
    "zh-CN": {
        "only_in_erp": "记录在ERP中存在、在OA中不存在",
        "only_in_oa": "记录在OA中存在、在ERP中不存在",
        "field_mismatch": "两系统都有该记录，但字段值超出容差",
        "mapping_gap": "源值在统一编码表中没有对应条目",
        "duplicate_key": "同一业务键在一个系统中出现多次",
        "orphan_reference": "引用的编码在被引用实体中不存在或已停用",
        "target_drift": "目标库中的记录与两系统合并后的黄金记录不一致",
    },
    "en": {
        "only_in_erp": "The record exists in the ERP but not in the OA",
        "only_in_oa": "The record exists in the OA but not in the ERP",
        "field_mismatch": "Both systems have the record; a field differs beyond tolerance",
        "mapping_gap": "A source value has no entry in the unified code table",
        "duplicate_key": "One business key occurs more than once in a system",
        "orphan_reference": "A referenced code is missing or inactive in the referenced entity",
        "target_drift": "The target record differs from the golden record the sources give",
    },
}

#: Statuses of differences, quarantine rows, runs and entity runs (one `open` for differences and quarantine).
STATUS_LABELS = {
    "zh-CN": {
        "open": "待处理",
        "accepted": "已接受",
        "fixed": "已修复",
        "resolved": "已解决",
        "superseded": "已被取代",
        "vanished": "源记录已删除",
        "success": "成功",
        "partial": "部分成功",
        "failed": "失败",
        "running": "运行中",
        "planned": "计划（试运行）",
        "skipped": "已跳过",
        "not_reconciled": "从未对账",
    },
    "en": {
        "open": "Open",
        "accepted": "Accepted",
        "fixed": "Fixed",
        "resolved": "Resolved",
        "superseded": "Superseded",
        "vanished": "Gone from the source",
        "success": "Success",
        "partial": "Partial",
        "failed": "Failed",
        "running": "Running",
        "planned": "Planned (dry run)",
        "skipped": "Skipped",
        "not_reconciled": "Not reconciled",
    },
}

#: Approval states of an OA request (etl.flows.approval.STATES), quoted by the flows' difference details.
APPROVAL_STATES = {
    "zh-CN": {
        "approved": "已审批",
        "held": "待核实",
        "amended": "已修改",
        "rejected": "已驳回",
        "withdrawn": "已撤回",
        "running": "审批中",
        "deleted": "已删除",
        "missing": "不存在",
        "none": "无",
    },
    "en": {
        "approved": "approved",
        "held": "held",
        "amended": "amended",
        "rejected": "rejected",
        "withdrawn": "withdrawn",
        "running": "in approval",
        "deleted": "deleted",
        "missing": "missing",
        "none": "none",
    },
}

ENTITY_LABELS = {
    "zh-CN": {
        "department": "部门",
        "employee": "员工",
        "contract": "合同",
        "purchase": "请购明细",
        "contract_archive": "合同归档流程",
        "purchase_order": "采购订单流程",
    },
    "en": {
        "department": "Departments",
        "employee": "Employees",
        "contract": "Contracts",
        "purchase": "Requisition lines",
        "contract_archive": "Contract archive flow",
        "purchase_order": "Purchase order flow",
    },
}

FIELD_LABELS_ZH = {
    "name": "名称",
    "amount": "金额",
    "status": "状态",
    "kind": "类型",
    "department_code": "部门编码",
    "employee_code": "工号",
    "contract_no": "合同编号",
    "counterparty_code": "对方单位编码",
    "start_date": "开始日期",
    "end_date": "结束日期",
    "owner_code": "负责人工号",
    "oa_request_id": "OA流程号",
    "gender": "性别",
    "mobile": "手机号",
    "email": "邮箱",
    "id_number": "身份证号",
    "hire_date": "入职日期",
    "leave_date": "离职日期",
    "request_no": "请购单号",
    "line_no": "行号",
    "item_code": "物料编码",
    "supplier_code": "供应商编码",
    "quantity": "数量",
    "unit_price": "单价",
    "need_date": "需求日期",
    "requester_code": "申请人工号",
    "_presence": "来源标记",
    "_active": "有效标志",
    # compared columns of the approval flows (ERP document columns)
    "dblTotalMoney": "合同总金额",
    "iQuantity": "数量",
    "iSum": "价税合计",
    "iMoney": "金额",
    "iTaxPrice": "含税单价",
}

#: Document columns the approval flows fill from the OA form, as a buyer or an accountant names them.
FLOW_COLUMN_LABELS = {
    "zh-CN": {
        "cVenCode": "供应商",
        "cDepCode": "部门",
        "cPersonCode": "请购人",
        "cMemo": "备注",
        "cInvCode": "物料",
        "iQuantity": "数量",
        "iUnitPrice": "单价",
        "iTaxPrice": "含税单价",
        "iSum": "价税合计",
        "iMoney": "金额",
        "dArriveDate": "到货日期",
        "dblTotalMoney": "合同总金额",
        "strContractName": "合同名称",
        "strContractKind": "合同类型",
        "cCusCode": "客户",
        "dtStartDate": "开始日期",
        "dtEndDate": "结束日期",
    },
    "en": {
        "cVenCode": "supplier",
        "cDepCode": "department",
        "cPersonCode": "requester",
        "cMemo": "memo",
        "cInvCode": "item",
        "iQuantity": "quantity",
        "iUnitPrice": "unit price",
        "iTaxPrice": "unit price incl. tax",
        "iSum": "amount incl. tax",
        "iMoney": "amount",
        "dArriveDate": "arrival date",
        "dblTotalMoney": "contract total",
        "strContractName": "contract name",
        "strContractKind": "contract kind",
        "cCusCode": "customer",
        "dtStartDate": "start date",
        "dtEndDate": "end date",
    },
}

TEXT: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "主数据对账报告",
        "subtitle": "ERP ↔ OA 主数据同步 · 对账与差异签核",
        "project": "项目",
        "run": "运行编号",
        "started": "开始时间",
        "finished": "结束时间",
        "trigger": "触发方式",
        "mode": "模式",
        "run_status": "运行状态",
        "mapping_version": "映射版本",
        "generated": "报告生成时间",
        "datadocs": "数据质量文档 (Great Expectations Data Docs)",
        "kpis": "关键指标",
        "kpi_total": "本次差异",
        "kpi_total_sub": "本次运行存在的差异",
        "kpi_open": "待处理",
        "kpi_open_sub": "尚未签核",
        "kpi_accepted": "已接受",
        "kpi_accepted_sub": "已签核接受",
        "kpi_new": "本次新增",
        "kpi_new_sub": "首次发现于本次运行",
        "kpi_resolved": "已消除",
        "kpi_resolved_sub": "上次存在、本次不再出现",
        "kpi_quarantine": "隔离记录",
        "kpi_quarantine_sub": "仍待处理的隔离记录（含以往运行）",
        "sec_entities": "各实体概况",
        "sec_entities_note": "读取、发布与隔离数量来自本次运行；差异为本次运行存在的差异及其当前签核状态。",
        "sec_charts": "差异分布与趋势",
        "chart_by_class": "按类别和实体的差异",
        "chart_trend": "最近 {n} 次运行的差异趋势",
        "chart_by_class_note": "各实体的差异按类别堆叠；悬停查看数量。",
        "chart_trend_note": "每次运行时存在的差异数（按类别堆叠）；当前运行加粗显示。",
        "sec_differences": "差异明细",
        "sec_differences_note": "点击一行查看ERP、OA与目标库的字段值和签核信息。敏感字段已脱敏。",
        "sec_quarantine": "隔离记录",
        "sec_quarantine_note": "未能发布的源记录及原因（本次运行记录的、之前仍未处理的，"
        "以及本次运行关闭的：已解决或源记录已删除）。",
        "sec_gaps": "映射缺口",
        "sec_gaps_note": "按 pass/default 策略保留或替换的未映射源值；请补充统一编码表。",
        "entity": "实体",
        "status": "状态",
        "read_erp": "读取ERP",
        "read_oa": "读取OA",
        "inserted": "新增",
        "updated": "更新",
        "unchanged": "未变",
        "inactivated": "停用",
        "quarantined": "隔离",
        "diff_open": "差异待处理",
        "diff_accepted": "差异已接受",
        "diff_total": "差异合计",
        "seconds": "耗时(秒)",
        "class": "类别",
        "golden_key": "业务键",
        "field": "字段",
        "erp_value": "ERP值",
        "oa_value": "OA值",
        "target_value": "目标值",
        "detail": "说明",
        "first_seen": "首次发现",
        "last_seen": "最近发现",
        "run_count": "次数",
        "signed_by": "签核人",
        "signed_at": "签核时间",
        "note": "备注",
        "diff_id": "差异ID",
        "new": "新",
        "source": "来源",
        "src_id": "源记录ID",
        "rule": "规则",
        "value": "值",
        "reason": "原因",
        "run_id": "运行",
        "code_table": "编码表",
        "policy": "策略",
        "count": "行数",
        "all": "全部",
        "search": "搜索业务键、字段或值…",
        "showing": "显示 {shown} / {total} 条",
        "prev": "上一页",
        "next": "下一页",
        "page": "第 {page} / {pages} 页",
        "none": "无",
        "no_rows": "没有符合条件的记录",
        "record": "记录内容",
        "golden": "黄金记录值",
        "signoff_hint": "签核命令",
        "truncated": "仅显示前 {shown} 条，共 {total} 条；完整清单见 CSV / Excel。",
        "masked": "标有 * 的敏感字段（如手机号、身份证号）在所有报告输出中已脱敏。",
        "footer": "由 erp-oa-sync 生成。差异签核：erpoa reconcile accept|fix|reopen DIFF_ID --by 姓名。",
        "sheet_summary": "汇总",
        "sheet_quarantine": "隔离记录",
        "sheet_gaps": "映射缺口",
        "xls_title": "主数据对账报告",
        "by_class_entity": "差异按实体与类别",
        "runs_axis": "运行",
        "yes": "是",
        "no": "否",
        "refused_note": "；该记录未通过质量检查，尚未发布（见隔离记录）",
        "as_of": "状态、签核、备注以及隔离记录是否仍待处理，均为报告生成时（{at}）的当前状态，"
        "而非运行 {run} 当时的状态。",
        "from_run": "差异来自运行 {run}",
        "diff_from_run": "差异来自运行",
        "flow_read_oa": "审批",
        "flow_inserted": "生成",
        "flow_updated": "沿用",
        "flows_note": "审批流程行（{flows}）：读取OA为读取的OA审批数，新增为本次生成的ERP单据数，"
        "更新为沿用的已有ERP单据数（沿用时不修改单据）。",
    },
    "en": {
        "title": "Master Data Reconciliation Report",
        "subtitle": "ERP ↔ OA master data sync · reconciliation and sign-off",
        "project": "Project",
        "run": "Run",
        "started": "Started",
        "finished": "Finished",
        "trigger": "Trigger",
        "mode": "Mode",
        "run_status": "Run status",
        "mapping_version": "Mapping version",
        "generated": "Generated",
        "datadocs": "Data quality docs (Great Expectations Data Docs)",
        "kpis": "Headline figures",
        "kpi_total": "Differences",
        "kpi_total_sub": "present in this run",
        "kpi_open": "Open",
        "kpi_open_sub": "awaiting sign-off",
        "kpi_accepted": "Accepted",
        "kpi_accepted_sub": "signed off as accepted",
        "kpi_new": "New",
        "kpi_new_sub": "first seen in this run",
        "kpi_resolved": "Resolved",
        "kpi_resolved_sub": "present last run, gone now",
        "kpi_quarantine": "Quarantined",
        "kpi_quarantine_sub": "held-back records still open (all runs)",
        "sec_entities": "Entities",
        "sec_entities_note": "Read, published and quarantined figures are this run's; differences are those present "
        "in this run with their current sign-off status.",
        "sec_charts": "Differences by class and over time",
        "chart_by_class": "Differences by class and entity",
        "chart_trend": "Differences over the last {n} runs",
        "chart_by_class_note": "Each entity's differences stacked by class; hover for counts.",
        "chart_trend_note": "Differences present at each run, stacked by class; the current run in bold.",
        "sec_differences": "Differences",
        "sec_differences_note": "Click a row for the ERP, OA and target values and the sign-off record. "
        "Personal data is masked.",
        "sec_quarantine": "Quarantine",
        "sec_quarantine_note": "Source records that could not be published, with the reason "
        "(recorded by this run, still open from earlier runs, or closed by this run: resolved or gone from the "
        "source).",
        "sec_gaps": "Mapping gaps",
        "sec_gaps_note": "Unmapped source values kept (pass) or replaced (default); add them to the code tables.",
        "entity": "Entity",
        "status": "Status",
        "read_erp": "Read ERP",
        "read_oa": "Read OA",
        "inserted": "Inserted",
        "updated": "Updated",
        "unchanged": "Unchanged",
        "inactivated": "Inactivated",
        "quarantined": "Quarantined",
        "diff_open": "Open diffs",
        "diff_accepted": "Accepted diffs",
        "diff_total": "Differences",
        "seconds": "Seconds",
        "class": "Class",
        "golden_key": "Business key",
        "field": "Field",
        "erp_value": "ERP value",
        "oa_value": "OA value",
        "target_value": "Target value",
        "detail": "Detail",
        "first_seen": "First seen",
        "last_seen": "Last seen",
        "run_count": "Runs",
        "signed_by": "Signed by",
        "signed_at": "Signed at",
        "note": "Note",
        "diff_id": "Difference id",
        "new": "new",
        "source": "Source",
        "src_id": "Source id",
        "rule": "Rule",
        "value": "Value",
        "reason": "Reason",
        "run_id": "Run",
        "code_table": "Code table",
        "policy": "Policy",
        "count": "Rows",
        "all": "All",
        "search": "Search key, field or value…",
        "showing": "Showing {shown} of {total}",
        "prev": "Previous",
        "next": "Next",
        "page": "Page {page} of {pages}",
        "none": "None",
        "no_rows": "No matching rows",
        "record": "Record",
        "golden": "Golden value",
        "signoff_hint": "Sign-off command",
        "truncated": "Showing the first {shown} of {total}; the CSV and Excel files have them all.",
        "masked": "Fields marked * (personal data such as mobile and ID numbers) are masked in every report output.",
        "footer": "Generated by erp-oa-sync. Sign off: erpoa reconcile accept|fix|reopen DIFF_ID --by NAME.",
        "sheet_summary": "Summary",
        "sheet_quarantine": "Quarantine",
        "sheet_gaps": "Mapping gaps",
        "xls_title": "Master Data Reconciliation Report",
        "by_class_entity": "Differences by entity and class",
        "runs_axis": "Run",
        "yes": "yes",
        "no": "no",
        "refused_note": "; the record failed a quality check and is not published (see quarantine)",
        "as_of": "Status, sign-off, notes and whether quarantine rows are still open are as of when this report "
        "was generated ({at}), not as they were at run {run}.",
        "from_run": "differences from run {run}",
        "diff_from_run": "Differences from run",
        "flow_read_oa": "approvals",
        "flow_inserted": "created",
        "flow_updated": "adopted",
        "flows_note": "Approval flow rows ({flows}): Read OA counts the OA approvals read, Inserted the ERP "
        "documents created, Updated the existing ERP documents adopted (an adopted document is not changed).",
    },
}

_DETAILS = {
    "zh-CN": {
        "missing_in_oa": "OA中没有该记录（ERP记录 {src_id}）",
        "missing_in_erp": "ERP中没有该记录（OA记录 {src_id}）",
        "numeric": "差额 {delta}，超出容差 ±{tolerance}",
        "numeric_exact": "差额 {delta}",
        "missing_erp": "ERP中该字段为空",
        "missing_oa": "OA中该字段为空",
        "value": "两系统取值不同",
        "unmapped_quarantined": "编码表 {table} 中无此值，源记录已隔离（{src_ids}）",
        "unmapped_kept": "编码表 {table} 中无此值，按 pass 策略原样保留（{counts}）",
        "unmapped_defaulted": "编码表 {table} 中无此值，已按 default 策略替换为默认值（{counts}）",
        "duplicate_key": "同一业务键在 {sources} 中出现多次，均未合并",
        "orphan_reference": "引用 {ref} = {value} 不存在或已停用",
        "orphan_quarantined": "引用 {ref} = {value} 不存在，记录未发布（已隔离）",
        "missing_in_target": "{source} 中有该记录，但目标库中没有",
        "no_source_record": "目标库中为有效记录，但两系统均无来源记录",
        "value_drift": "目标库值与黄金记录值 {golden} 不一致",
        "presence_drift": "来源标记应为 {expected}",
        "active_drift": "有效标志应为 {expected}",
        "flow_no_document": "OA申请{state}（审批时间 {approved_at}，审批人 {approver}），尚无ERP单据：{reason}",
        "flow_archived_no_document": "OA申请{state}（未经审批，由 {archived_by} 于 {archived_at} 强制归档），"
        "尚无ERP单据：{reason}",
        "flow_unlinked": "ERP单据未关联到已审批的OA申请：{reason}",
        "flow_amount": "与OA申请 {oa_request_id} 的数值不一致",
        "flow_amended": "OA申请 {oa_request_id} 在生成ERP单据后被修改{changes}",
        "flow_cancelled": "生成ERP单据后，OA申请 {oa_request_id} 变为{state}",
    },
    "en": {
        "missing_in_oa": "No such record in the OA (ERP record {src_id})",
        "missing_in_erp": "No such record in the ERP (OA record {src_id})",
        "numeric": "Difference {delta}, beyond the tolerance ±{tolerance}",
        "numeric_exact": "Difference {delta}",
        "missing_erp": "Empty in the ERP",
        "missing_oa": "Empty in the OA",
        "value": "The systems hold different values",
        "unmapped_quarantined": "Not in code table {table}; the source record is quarantined ({src_ids})",
        "unmapped_kept": "Not in code table {table}; kept as is by policy pass ({counts})",
        "unmapped_defaulted": "Not in code table {table}; replaced by the default ({counts})",
        "duplicate_key": "The business key occurs more than once in {sources}; nothing was merged",
        "orphan_reference": "Reference {ref} = {value} does not exist or is inactive",
        "orphan_quarantined": "Reference {ref} = {value} does not exist; the record was not published (quarantined)",
        "missing_in_target": "The {source} has the record but the target does not",
        "no_source_record": "Active in the target, but neither system has a source record",
        "value_drift": "The target value differs from the golden value {golden}",
        "presence_drift": "Presence should be {expected}",
        "active_drift": "Active flag should be {expected}",
        "flow_no_document": "OA request {state} (at {approved_at}, by {approver}), no ERP document yet: {reason}",
        "flow_archived_no_document": "OA request {state} (not approved; force-archived by {archived_by} at "
        "{archived_at}), no ERP document yet: {reason}",
        "flow_unlinked": "ERP document not linked to an approved OA request: {reason}",
        "flow_amount": "Differs from OA request {oa_request_id}",
        "flow_amended": "OA request {oa_request_id} was changed after the ERP document was created{changes}",
        "flow_cancelled": "OA request {oa_request_id} became {state} after the ERP document was created",
    },
}


def lang_of(lang: str | None) -> str:
    """A supported language code (`zh-CN` unless English is asked for)."""
    if lang and lang.lower().startswith("en"):
        return "en"
    return "zh-CN"


def text(lang: str, key: str, **params: Any) -> str:
    """One label in `lang`, with `{params}` filled."""
    value = TEXT[lang_of(lang)].get(key, key)
    return value.format(**params) if params else value


def class_label(lang: str, cls: str, entity: str | None = None) -> str:
    """A difference class in `lang`; with `entity`, the flow's own wording of a shared audit class."""
    lang = lang_of(lang)
    flow = FLOW_CLASS_LABELS[lang].get(entity or "", {})
    return flow.get(cls) or CLASS_LABELS[lang].get(cls, cls)


def class_keys() -> list[str]:
    """Every known difference class: the reconciliation's and the approval flows'."""
    return list(CLASS_LABELS["en"])


def status_label(lang: str, status: str | None) -> str:
    """A difference, quarantine, run or entity-run status in `lang` (unknown ones as they are)."""
    return STATUS_LABELS[lang_of(lang)].get(status or "", status or "")


def run_status_label(lang: str, status: str | None) -> str:
    """A run's status (success, partial, failed, running, planned, …) in `lang`."""
    return status_label(lang, status)


def entity_label(lang: str, entity: str) -> str:
    label = ENTITY_LABELS[lang_of(lang)].get(entity)
    return f"{label} ({entity})" if label and lang_of(lang) == "zh-CN" else (label or entity)


def entity_short(lang: str, entity: str) -> str:
    """The entity's label for table cells: 部门 in Chinese, the entity name in English."""
    return ENTITY_LABELS["zh-CN"].get(entity, entity) if lang_of(lang) == "zh-CN" else entity


def field_label(lang: str, field: str | None) -> str:
    """`金额 amount` in Chinese, the field name in English."""
    if not field:
        return ""
    if lang_of(lang) == "zh-CN" and field in FIELD_LABELS_ZH:
        return f"{FIELD_LABELS_ZH[field]} {field}"
    line = _LINE_FIELD.fullmatch(field) if isinstance(field, str) else None
    if line and lang_of(lang) == "zh-CN":  # a flow's line column (`line 1.iSum`, etl.flows.audit.differences)
        return f"第{line[1]}行 {column_label(lang, line[2])}"
    return field


_LINE_FIELD = re.compile(r"line (\d+)\.(\w+)")


def _fmt_param(value: Any, lang: str) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.upper() if k in ('erp', 'oa') else k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return "/".join(str(v).upper() if v in ("erp", "oa") else str(v) for v in value)
    if isinstance(value, bool):
        return text(lang, "yes") if value else text(lang, "no")
    if value in ("erp", "oa"):
        return str(value).upper()
    return str(value)


def parse_detail(detail: str | None) -> dict[str, Any]:
    """The JSON object of a difference's `detail` ({} when empty or not JSON)."""
    if not detail:
        return {}
    try:
        value = json.loads(detail)
    except (TypeError, ValueError):
        return {"code": "", "text": str(detail)}
    return value if isinstance(value, dict) else {"code": "", "text": str(value)}


def _flow_code(data: dict[str, Any]) -> str:
    """The template of an approval flow's detail (etl.flows.audit.differences), which carries no `code`."""
    keys = set(data)
    if "hash_at_creation" in keys:
        return "flow_amended" if data.get("state") == "approved" else "flow_cancelled"
    if keys & {"approved_at", "approver"}:
        # a force-archived request names who archived it, never as its approver
        archived = data.get("archived_by") or data.get("archived_at")
        return "flow_archived_no_document" if archived and not data.get("approver") else "flow_no_document"
    if keys == {"oa_request_id"}:
        return "flow_amount"
    if keys == {"reason"}:
        return "flow_unlinked"
    return ""


def describe(
    detail: str | dict[str, Any] | None, lang: str, *, erp_value: str | None = None, oa_value: str | None = None
) -> str:
    """A difference's detail as one sentence in `lang`."""
    data = detail if isinstance(detail, dict) else parse_detail(detail)
    code = str(data.get("code") or "") or ("" if "code" in data else _flow_code(data))
    if code == "numeric" and not data.get("tolerance"):
        code = "numeric_exact"  # an exact comparison (integer without `tolerance`)
    if code.startswith("flow_"):
        data = {**data, "state": APPROVAL_STATES[lang_of(lang)].get(str(data.get("state")), data.get("state") or "")}
        if isinstance(data.get("reason"), str):
            data["reason"] = reason_text(lang, data["reason"])
        if code == "flow_amended":
            data["changes"] = _changes_text(lang, data.get("changed"))
        data.pop("changed", None)
    template = _DETAILS[lang_of(lang)].get(code)
    if template is None:
        if data.get("text"):
            return str(data["text"])
        return "; ".join(f"{k}: {_fmt_param(v, lang)}" for k, v in data.items() if k not in ("code", "record"))
    params = {k: "—" if v is None else _fmt_param(v, lang) for k, v in data.items() if k not in ("code", "record")}
    params.setdefault("src_id", (erp_value if code == "missing_in_oa" else oa_value) or "")
    for name in (
        "table",
        "counts",
        "src_ids",
        "sources",
        "ref",
        "value",
        "source",
        "golden",
        "expected",
        "delta",
        "tolerance",
        "state",
        "approved_at",
        "approver",
        "reason",
        "oa_request_id",
        "archived_at",
        "archived_by",
        "changes",
    ):
        params.setdefault(name, "")
    sentence = template.format(**params)
    return sentence + text(lang, "refused_note") if data.get("refused") else sentence


def column_label(lang: str, column: str | None) -> str:
    """A flow's document column for a reader: `供应商（cVenCode）`, `supplier (cVenCode)`."""
    if not column:
        return ""
    label = FLOW_COLUMN_LABELS[lang_of(lang)].get(column) or (
        FIELD_LABELS_ZH.get(column) if lang_of(lang) == "zh-CN" else None)
    if not label:
        return column
    return f"{label}（{column}）" if lang_of(lang) == "zh-CN" else f"{label} ({column})"


def _changes_text(lang: str, changed: Any) -> str:
    """`: supplier (cVenCode) 04004 in the ERP document, 02002 in the OA now; …` of an amended request."""
    zh = lang_of(lang) == "zh-CN"
    if not isinstance(changed, list):
        return ""  # recorded before the fields were compared: only the hashes are known
    if not changed:
        return "；映射后的字段与ERP单据一致" if zh else "; the mapped fields still match the ERP document"
    parts = []
    for item in changed:
        if not isinstance(item, dict):
            continue
        line, col = item.get("line"), item.get("field")
        where = (f"第{line}行" if zh else f"line {line}") if line is not None else ""
        if col is None:
            only = "仅OA申请有此行" if zh else "only in the OA request"
            if item.get("oa") is None:
                only = "仅ERP单据有此行" if zh else "only in the ERP document"
            parts.append(f"{where}：{only}" if zh else f"{where}: {only}")
            continue
        name = " ".join(p for p in (where, column_label(lang, str(col))) if p)
        erp, oa = item.get("erp"), item.get("oa")
        blank = "空" if zh else "empty"
        if zh:
            parts.append(f"{name}：ERP单据为 {blank if erp in (None, '') else erp}，OA现为 "
                         f"{blank if oa in (None, '') else oa}")
        else:
            parts.append(f"{name}: {blank if erp in (None, '') else erp} in the ERP document, "
                         f"{blank if oa in (None, '') else oa} in the OA now")
    return ("：" + "；".join(parts)) if zh else (": " + "; ".join(parts))


_TYPES_ZH = {"decimal": "数字", "integer": "整数", "date": "日期", "datetime": "日期时间", "boolean": "布尔值"}


def _field_zh(name: str) -> str:
    return column_label("zh-CN", name)


_REASONS_ZH: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"linked PO (.+) no longer exists in the ERP"), lambda m: f"关联的采购订单 {m[1]} 已不在ERP中"),
    (re.compile(r"linked ERP document (.+) no longer exists in the ERP"),
     lambda m: f"关联的ERP单据 {m[1]} 已不在ERP中"),
    (re.compile(r"not created yet"), lambda m: "尚未生成"),
    (re.compile(r"form row not found"), lambda m: "找不到OA表单记录"),
    (re.compile(r"the form has no lines"), lambda m: "表单没有明细行"),
    (re.compile(r"强制归档 \(force-archived by an administrator\)"), lambda m: "管理员强制归档，未经审批"),
    (re.compile(r"archived without an approval entry"), lambda m: "已归档，但没有审批记录"),
    (re.compile(r"(\d+) approval rows in (.+) disagree \(states (.*); approvers (.*)\): held until one row remains"),
     lambda m: f"{m[2]} 中有 {m[1]} 行审批记录互相矛盾（状态 {_states_zh(m[3])}；审批人 {m[4]}），只剩一行后才处理"),
    (re.compile(r"duplicate: OA request (.+) is already linked to (.+)"),
     lambda m: f"重复：OA申请 {m[1]} 已关联到 {m[2]}"),
    (re.compile(r"request number (.+) already has PO (.+) \(OA request (.+)\)"),
     lambda m: f"请购单号 {m[1]} 已有采购订单 {m[2]}（OA申请 {m[3]}）"),
    (re.compile(r"request number (.+) already has (?:contract|document) (.+) \(OA request (.+)\)"),
     lambda m: f"申请单号 {m[1]} 已有ERP单据 {m[2]}（OA申请 {m[3]}）"),
    (re.compile(r"no OA request id"), lambda m: "没有OA申请号"),
    (re.compile(r"OA request not found"), lambda m: "找不到该OA申请"),
    (re.compile(r"OA request (\w+): (.+)"),
     lambda m: f"OA申请{APPROVAL_STATES['zh-CN'].get(m[1], m[1])}：{reason_text('zh-CN', m[2])}"),
    (re.compile(r"OA request (\w+)"), lambda m: f"OA申请{APPROVAL_STATES['zh-CN'].get(m[1], m[1])}"),
    (re.compile(r"line (\d+): (.+)"), lambda m: f"第{m[1]}行：{reason_text('zh-CN', m[2])}"),
    (re.compile(r"(\w+) is required but empty"), lambda m: f"{_field_zh(m[1])}为必填项，但为空"),
    (re.compile(r"(\w+) must be positive"), lambda m: f"{_field_zh(m[1])}必须大于0"),
    (re.compile(r"(\w+) must be non-negative"), lambda m: f"{_field_zh(m[1])}不能为负数"),
    (re.compile(r"not a valid (\w+)"), lambda m: f"不是有效的{_TYPES_ZH.get(m[1], m[1])}"),
    (re.compile(r"(\w+) (.+) not found in the ERP's (.+)"),
     lambda m: f"{_field_zh(m[1])} {m[2]} 在ERP的 {m[3]} 中不存在"),
    (re.compile(r"the ERP refused the document: (.+)"), lambda m: f"ERP拒绝了该单据：{m[1]}"),
    (re.compile(r"number (.+) is already used by another ERP document"),
     lambda m: f"单号 {m[1]} 已被另一张ERP单据占用"),
    (re.compile(r"(\w+) (\S+) is before (\w+) (\S+)"),
     lambda m: f"{_field_zh(m[1])} {m[2]} 早于{_field_zh(m[3])} {m[4]}"),
]


def _states_zh(states: str) -> str:
    return ", ".join(APPROVAL_STATES["zh-CN"].get(s.strip(), s.strip()) for s in states.split(","))


def reason_text(lang: str, reason: str | None) -> str:
    """A flow's reason (audit view or quarantine, written in English) in `lang`; unknown parts as they are."""
    if not reason:
        return reason or ""
    if lang_of(lang) != "zh-CN":
        return reason
    whole = _reason_zh(reason)
    if whole is not None:
        return whole
    return "；".join(_reason_zh(part) or part for part in reason.split("; "))


def _reason_zh(reason: str) -> str | None:
    for pattern, render in _REASONS_ZH:
        found = pattern.fullmatch(reason.strip())
        if found:
            return render(found)
    return None


_STATE_VALUE = re.compile(r"(.+) \((\w+)\)")


def flow_value(lang: str, cls: str | None, value: Any) -> Any:
    """A flow difference's OA value in `lang`: `100001（已驳回）` for `100001 (rejected)`, `无` for `none`."""
    if not isinstance(value, str):
        return value
    states = APPROVAL_STATES[lang_of(lang)]
    if str(cls).startswith("approval_"):
        found = _STATE_VALUE.fullmatch(value)
        if found and found[2] in states:
            state = states[found[2]]
            return f"{found[1]}（{state}）" if lang_of(lang) == "zh-CN" else f"{found[1]} ({state})"
        return value
    if cls in ("audit_po_without_req", "audit_contract_no_approval"):
        return states.get(value, value)
    return value
