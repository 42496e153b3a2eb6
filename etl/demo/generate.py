"""Realistic demo ERP (Yonyou U8 style) and OA (Weaver e-cology style) systems.

Both systems are derived from one shared "truth" in :func:`generate_demo`, so they
correspond the way a real site does - same people, units, requisitions and
contracts - while each spells them its own way and carries the planted
anomalies listed in the returned :class:`~etl.demo.anomalies.DemoManifest`.

The large tables (requisitions, their lines, workflow rows and logs) are built
column-wise with numpy; master data is small and built row by row.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.demo import erp_schema, oa_schema
from etl.demo.anomalies import (
    NAME_KINDS,
    WORKCODE_KINDS,
    DemoManifest,
    name_variant,
    workcode_variant,
)

# --------------------------------------------------------------------------- vocabulary
# fmt: off

SURNAMES = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"),
    ("林", "lin"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
    ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"),
    ("彭", "peng"), ("曾", "zeng"), ("肖", "xiao"), ("田", "tian"), ("董", "dong"), ("袁", "yuan"),
    ("潘", "pan"), ("于", "yu"), ("蒋", "jiang"), ("蔡", "cai"), ("余", "yu"), ("杜", "du"),
    ("叶", "ye"), ("程", "cheng"), ("苏", "su"), ("魏", "wei"), ("吕", "lv"), ("丁", "ding"),
    ("任", "ren"), ("沈", "shen"), ("姚", "yao"), ("卢", "lu"), ("姜", "jiang"), ("崔", "cui"),
    ("钟", "zhong"), ("谭", "tan"), ("陆", "lu"), ("汪", "wang"), ("范", "fan"), ("金", "jin"),
]
GIVEN_MALE = [
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("勇", "yong"), ("杰", "jie"),
    ("涛", "tao"), ("斌", "bin"), ("超", "chao"), ("明", "ming"), ("刚", "gang"), ("平", "ping"),
    ("辉", "hui"), ("鹏", "peng"), ("华", "hua"), ("飞", "fei"), ("鑫", "xin"), ("波", "bo"),
    ("宇", "yu"), ("浩", "hao"), ("凯", "kai"), ("健", "jian"), ("俊", "jun"), ("帆", "fan"),
    ("旭", "xu"), ("宁", "ning"), ("龙", "long"), ("阳", "yang"), ("建", "jian"), ("国", "guo"),
    ("志", "zhi"), ("文", "wen"), ("海", "hai"), ("东", "dong"), ("亮", "liang"), ("成", "cheng"),
    ("峰", "feng"), ("晨", "chen"), ("博", "bo"), ("子", "zi"), ("天", "tian"), ("振", "zhen"),
]
GIVEN_FEMALE = [
    ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("艳", "yan"),
    ("娟", "juan"), ("霞", "xia"), ("燕", "yan"), ("玲", "ling"), ("婷", "ting"), ("雪", "xue"),
    ("琳", "lin"), ("慧", "hui"), ("颖", "ying"), ("倩", "qian"), ("洁", "jie"), ("佳", "jia"),
    ("欣", "xin"), ("悦", "yue"), ("璐", "lu"), ("晶", "jing"), ("莉", "li"), ("萍", "ping"),
    ("红", "hong"), ("梅", "mei"), ("兰", "lan"), ("瑶", "yao"), ("雨", "yu"), ("婧", "jing"),
    ("思", "si"), ("怡", "yi"), ("嘉", "jia"), ("诗", "shi"), ("梦", "meng"), ("秀", "xiu"),
]
MOBILE_PREFIXES = ["130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "158",
                   "159", "166", "177", "180", "181", "186", "187", "188", "189", "199"]
ID_REGIONS = ["320505", "320582", "320583", "320211", "330106", "330212", "310115", "310112",
              "340104", "370202", "110105", "440305", "420106", "510107", "410105", "362201"]

# ERP parent code -> (ERP name, OA code, OA name)
DEPT_PARENTS = {
    "01": ("营销中心", "YX00", "营销体系"),
    "02": ("财务与审计", "CW00", "财务审计体系"),
    "03": ("综合管理", "ZH00", "综合管理体系"),
    "04": ("供应链", "GY00", "供应链体系"),
    "05": ("制造", "ZZ00", "制造体系"),
    "06": ("技术质量", "JS00", "技术质量体系"),
    "08": ("区域业务", "QY00", "区域业务体系"),
}
# (ERP parent, ERP code, ERP name, OA code, OA name, OA mark, head-count weight)
DEPT_UNITS = [
    ("01", "0101", "市场部", "SC01", "市场营销中心", "市场", 6.0),
    ("02", "0201", "财务部", "CW01", "财务中心", "财务", 5.0),
    ("01", "0102", "销售部", "XS01", "销售中心", "销售", 10.0),
    ("03", "0301", "人力资源部", "RL01", "人力资源中心", "人力", 3.0),
    ("04", "0401", "采购部", "CG01", "采购中心", "采购", 5.0),
    ("05", "0501", "生产一部", "SCB1", "第一生产事业部", "生产一", 25.0),
    ("06", "0601", "研发中心", "YF01", "技术研发中心", "研发", 10.0),
    ("04", "0402", "仓储部", "CC01", "仓储物流部", "仓储", 6.0),
    ("05", "0502", "生产二部", "SCB2", "第二生产事业部", "生产二", 20.0),
    ("06", "0602", "质量部", "ZL01", "质量管理部", "质量", 5.0),
    ("03", "0302", "行政部", "XZ01", "行政管理部", "行政", 3.0),
    ("02", "0202", "审计部", "SJ01", "内部审计部", "审计", 2.0),
    ("03", "0303", "信息部", "XX01", "信息技术部", "信息", 3.0),
]
DEPT_ABOLISHED = ("05", "0503", "生产三部", "SCB3", "第三生产事业部", "生产三", 0.0)
DEPT_UNMAPPED = ("SZ01", "数字化转型办公室", "数字化")
EXTRA_REGIONS = ["华东", "华南", "华北", "华中", "西南", "西北", "东北"]
EXTRA_FUNCTIONS = [("销售部", "销售中心"), ("服务部", "客户服务中心"), ("仓储部", "物流仓储中心"),
                   ("办事处", "联络处"), ("工程部", "工程服务中心"), ("商务部", "商务中心")]

CITIES = ["苏州", "无锡", "常州", "昆山", "宁波", "温州", "杭州", "南京", "上海", "东莞", "佛山", "深圳",
          "青岛", "天津", "合肥", "厦门", "台州", "嘉兴", "绍兴", "泰州"]
VENDOR_BRANDS = ["精工", "恒达", "鑫源", "华宇", "永盛", "宏泰", "瑞丰", "金诚", "力拓", "新锐", "东方",
                 "博远", "信达", "众合", "汇通", "天成", "长虹", "凯瑞", "国泰", "正和", "德力", "中联",
                 "华立", "盛达", "联创", "旭日", "宝丰", "通达", "振华", "安顺"]
UNIT_CODES = {"个": "01", "套": "02", "条": "03", "米": "04", "包": "05", "支": "06", "双": "07",
              "顶": "08", "副": "09", "卷": "10", "千克": "11", "台": "12", "块": "13"}
# (code, label used in contract names, industry used in vendor names, items)
# item: (name, specs, unit, price low, price high, typical quantity)
CATEGORIES: list[tuple[str, str, str, list[tuple[str, list[str], str, float, float, int]]]] = [
    ("01", "五金件", "五金制品", [
        ("六角螺栓", ["M6*20", "M8*30", "M10*40", "M12*50", "M16*60"], "个", 0.3, 3.0, 200),
        ("不锈钢螺母", ["M6", "M8", "M10", "M12"], "个", 0.1, 1.0, 300),
        ("平垫圈", ["Φ6", "Φ8", "Φ10", "Φ12"], "个", 0.05, 0.5, 500),
        ("内六角螺钉", ["M4*12", "M5*16", "M6*20"], "个", 0.2, 1.5, 200),
        ("膨胀螺栓", ["M8*80", "M10*100", "M12*120"], "套", 1.0, 5.0, 50),
    ]),
    ("02", "传动件", "传动机械", [
        ("深沟球轴承", ["6204-2RS", "6205-2RS", "6206-2RS", "6305-ZZ"], "套", 15.0, 80.0, 20),
        ("同步带", ["HTD-5M-800", "HTD-8M-1200"], "条", 30.0, 200.0, 10),
        ("梅花联轴器", ["GR-28", "GR-38", "GR-48"], "个", 60.0, 300.0, 6),
        ("滚子链条", ["08B-1", "10A-1", "12A-1"], "米", 20.0, 80.0, 15),
    ]),
    ("03", "电气元件", "电气", [
        ("交流接触器", ["CJX2-1810", "CJX2-3210", "CJX2-6511"], "个", 40.0, 300.0, 10),
        ("小型断路器", ["DZ47-63 C16", "DZ47-63 C32", "DZ47-63 C63"], "个", 10.0, 60.0, 20),
        ("电力电缆", ["YJV 3*4+1*2.5", "YJV 3*16+1*10"], "米", 15.0, 120.0, 100),
        ("中间继电器", ["MY2NJ DC24V", "MY4NJ AC220V"], "个", 15.0, 50.0, 20),
        ("接近开关", ["LJ12A3-4-Z/BX", "LJ18A3-8-Z/BX"], "个", 10.0, 40.0, 10),
    ]),
    ("04", "办公用品", "办公用品", [
        ("A4复印纸", ["70g 500张/包", "80g 500张/包"], "包", 20.0, 35.0, 40),
        ("中性笔", ["0.5mm 黑色", "0.5mm 红色"], "支", 1.0, 3.0, 100),
        ("文件夹", ["A4 双强力夹"], "个", 5.0, 15.0, 30),
        ("硒鼓", ["HP CF226A", "HP 388A"], "个", 150.0, 600.0, 4),
        ("订书机", ["12号"], "个", 10.0, 30.0, 5),
    ]),
    ("05", "劳保用品", "劳保用品", [
        ("劳保手套", ["棉纱 600g", "丁腈浸胶"], "双", 2.0, 10.0, 200),
        ("安全帽", ["ABS V型"], "顶", 20.0, 60.0, 20),
        ("防护眼镜", ["防冲击"], "副", 10.0, 40.0, 20),
        ("工作服", ["夏季短袖", "冬季棉服"], "套", 80.0, 300.0, 30),
        ("安全鞋", ["防砸防刺穿"], "双", 120.0, 350.0, 20),
    ]),
    ("06", "包装材料", "包装材料", [
        ("瓦楞纸箱", ["五层 600*400*400", "三层 400*300*300"], "个", 3.0, 15.0, 500),
        ("缠绕膜", ["宽50cm 2.5kg"], "卷", 25.0, 60.0, 40),
        ("木托盘", ["1200*1000"], "个", 60.0, 150.0, 30),
        ("打包带", ["PP 1608"], "卷", 40.0, 90.0, 20),
    ]),
    ("07", "原材料", "金属材料", [
        ("冷轧钢板", ["Q235 1.5mm", "SPCC 2.0mm"], "千克", 4.0, 8.0, 2000),
        ("铝型材", ["6063-T5 4040", "6063-T5 3030"], "米", 15.0, 60.0, 200),
        ("圆钢", ["45# Φ30", "40Cr Φ50"], "千克", 5.0, 10.0, 1000),
        ("紫铜排", ["T2 5*50"], "千克", 60.0, 90.0, 100),
    ]),
    ("08", "IT设备", "信息技术", [
        ("笔记本电脑", ["ThinkPad E14 i5/16G/512G", "ThinkPad T14 i7/32G/1T"], "台", 4500.0, 9000.0, 3),
        ("显示器", ["Dell P2422H 23.8英寸"], "台", 900.0, 1600.0, 5),
        ("交换机", ["H3C S5130S-28S-EI"], "台", 2000.0, 5000.0, 2),
        ("激光打印机", ["HP M405dn"], "台", 1800.0, 3000.0, 2),
        ("固态硬盘", ["1TB NVMe"], "块", 400.0, 900.0, 5),
    ]),
]
CONTRACT_KINDS = ["采购合同", "框架协议", "年度供货协议", "设备采购合同", "维保服务合同"]
MEMOS = ["", "生产急需", "月度常规采购", "备品备件补充", "新项目试制用料", "日常领用", "设备维修用", None]
REJECT_REMARKS = ["金额超预算，请核实后重新提交", "请补充比价单", "供应商不在合格名录内", "数量有误，请修改",
                  "请走框架协议采购"]
# fmt: on


__all__ = [
    "DemoData",
    "DemoManifest",
    "DemoSize",
    "build_demo",
    "create_erp",
    "create_oa",
    "generate_demo",
    "size_for_rows",
]

#: column name -> numpy array or list, all of one length
Columns = dict[str, Any]

EMAIL_DOMAIN = "hengtai.example.com"
_YEAR_END = np.datetime64("2026-12-31T23:59:59", "s")
_DAY = 86_400
# request status categories (the manifest keys)
APPROVED, REJECTED, WITHDRAWN, RUNNING = 0, 1, 2, 3
_STATUS_TEXT = np.array(["归档", "退回", "撤回", "审批中"], dtype=object)
_NODE_TYPE = np.array(["3", "0", "0", "1"], dtype=object)
_INSERT_CHUNK = 20_000
_RENDER_CHUNK = 50_000
_CLOCK = np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(_DAY)])


@dataclass(frozen=True)
class DemoSize:
    """How big the demo systems are.

    ``departments`` counts the leaf units present in both systems (the ERP-abolished
    one included); parent units and the OA-only unit come on top.
    """

    departments: int = 12
    employees: int = 200
    requisitions: int = 300
    contracts: int = 60


def size_for_rows(rows: int) -> DemoSize:
    """Return a size whose purchase entity (requisition lines) has about ``rows`` rows.

    ``rows / 3`` requisitions (they average about 2.4 lines per source, so about 0.8 ``rows`` purchase lines);
    employees scale with ``rows / 50`` (at least
    200), contracts with ``rows / 200`` (at least 60), departments with employees.
    """
    rows = max(int(rows), 3)
    employees = max(200, rows // 50)
    return DemoSize(
        departments=max(12, min(employees // 150, 300)),
        employees=employees,
        requisitions=max(1, round(rows / 3)),
        contracts=max(60, rows // 200),
    )


@dataclass
class DemoData:
    """The generated rows of both systems (column-wise) and the manifest."""

    erp: dict[str, Columns] = field(default_factory=dict)
    oa: dict[str, Columns] = field(default_factory=dict)
    manifest: DemoManifest = field(default_factory=lambda: DemoManifest(seed=0, size={}))


# --------------------------------------------------------------------------- helpers


def _dates(ts: np.ndarray) -> np.ndarray:
    """datetime64 -> 'YYYY-MM-DD' strings, as e-cology stores dates."""
    days = ts.astype("datetime64[D]")
    if not len(days):
        return np.empty(0, dtype="<U10")
    # few distinct days: format each once
    lo = days.min()
    span = np.arange(lo, days.max() + 1)
    return np.datetime_as_string(span, unit="D").astype("<U10")[(days - lo).astype(np.int64)]


def _times(ts: np.ndarray) -> np.ndarray:
    """datetime64 -> 'HH:MM:SS' strings."""
    secs = (ts.astype("datetime64[s]") - ts.astype("datetime64[D]")).astype(np.int64)
    return _CLOCK[secs]


def _concat(*parts: Any) -> np.ndarray:
    """Element-wise string concatenation of arrays and scalars."""
    out = np.asarray(parts[0]).astype(str)
    for part in parts[1:]:
        out = np.char.add(out, np.asarray(part).astype(str))
    return out


def _zfill(values: np.ndarray, width: int) -> np.ndarray:
    return np.char.zfill(np.asarray(values).astype(str), width)


def _check_id_digit(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def _rows_to_columns(rows: list[dict[str, Any]], names: Sequence[str]) -> Columns:
    return {name: [row.get(name) for row in rows] for name in names}


# --------------------------------------------------------------------------- the truth


@dataclass
class _Person:
    number: int
    name: str
    male: bool
    unit: int
    enter: dt.date
    state: str  # active | departed | retired
    leave: dt.date | None
    id_number: str
    mobile: str
    email: str
    oa_id: int = 0


@dataclass
class _Unit:
    parent: str
    erp_code: str
    erp_name: str
    oa_code: str
    oa_name: str
    oa_mark: str
    weight: float
    abolished: bool = False
    oa_id: int = 0
    leader: int | None = None  # index into people


class _Generator:
    """Builds both systems from one random stream; see :func:`generate_demo`."""

    def __init__(self, size: DemoSize, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.rnd = random.Random(seed)
        self.data = DemoData(manifest=DemoManifest(seed=seed, size=asdict(size)))
        self.m = self.data.manifest

    # -- master data -----------------------------------------------------------------

    def units(self) -> None:
        n_leaf = max(2, self.size.departments)
        base = [_Unit(*u) for u in DEPT_UNITS[: n_leaf - 1]]
        extra = n_leaf - 1 - len(base)
        for k in range(extra):
            region = EXTRA_REGIONS[k % len(EXTRA_REGIONS)]
            func, oa_func = EXTRA_FUNCTIONS[(k // len(EXTRA_REGIONS)) % len(EXTRA_FUNCTIONS)]
            lap = k // (len(EXTRA_REGIONS) * len(EXTRA_FUNCTIONS))
            suffix = str(lap + 1) if lap else ""
            parent = f"{8 + k // 99:02d}"
            base.append(
                _Unit(
                    parent,
                    f"{parent}{k % 99 + 1:02d}",
                    f"{region}{func}{suffix}",
                    f"QY{k + 1:03d}",
                    f"{region}区域{oa_func}{suffix}",
                    f"{region}{func[:2]}{suffix}",
                    4.0,
                )
            )
        self.unit_list = [*base, _Unit(*DEPT_ABOLISHED, abolished=True)]
        parents = sorted({u.parent for u in self.unit_list})
        self.parents = {
            p: DEPT_PARENTS.get(p, (f"区域业务{int(p) - 7}部", f"QYT{int(p) - 7}", f"区域业务体系{int(p) - 7}"))
            for p in parents
        }
        oa_id = 1
        self.parent_oa_id: dict[str, int] = {}
        for p in parents:
            self.parent_oa_id[p] = oa_id
            oa_id += 1
        for u in self.unit_list:
            u.oa_id = oa_id
            oa_id += 1
        self.unmapped_oa_id = oa_id

    def people(self) -> None:
        n = max(20, self.size.employees)
        rnd = self.rnd
        numbers = sorted(rnd.sample(range(1, min(999_999, n * 13 // 10 + 20)), n))
        weights = [u.weight for u in self.unit_list]
        sur_w = [1.0 / (i + 4) for i in range(len(SURNAMES))]
        emails: dict[str, int] = {}
        start = dt.date(2008, 1, 1)
        span = (dt.date(2026, 10, 31) - start).days
        self.people_list: list[_Person] = []
        for number in numbers:
            male = rnd.random() < 0.55
            sur, sur_py = rnd.choices(SURNAMES, sur_w)[0]
            given_pool = GIVEN_MALE if male else GIVEN_FEMALE
            given = rnd.sample(given_pool, 1 if rnd.random() < 0.4 else 2)
            name = sur + "".join(g for g, _ in given)
            handle = sur_py + "".join(p for _, p in given)
            emails[handle] = emails.get(handle, 0) + 1
            if emails[handle] > 1:
                handle += str(emails[handle])
            enter = start + dt.timedelta(days=int(span * rnd.betavariate(2.0, 1.3)))
            roll = rnd.random()
            state = "departed" if roll < 0.08 else "retired" if roll < 0.10 else "active"
            leave = None
            if state != "active":
                first = max(enter + dt.timedelta(days=60), dt.date(2024, 1, 1))
                leave = first + dt.timedelta(days=rnd.randrange(max(1, (dt.date(2026, 11, 20) - first).days)))
            birth = enter - dt.timedelta(days=rnd.randrange(22 * 365, 45 * 365))
            birth = min(birth, dt.date(2004, 6, 30))
            seq = rnd.randrange(0, 100) * 10 + rnd.randrange(1 if male else 0, 10, 2)
            body = f"{rnd.choice(ID_REGIONS)}{birth:%Y%m%d}{seq:03d}"
            self.people_list.append(
                _Person(
                    number=number,
                    name=name,
                    male=male,
                    unit=rnd.choices(range(len(self.unit_list)), weights)[0],
                    enter=enter,
                    state=state,
                    leave=leave,
                    id_number=body + _check_id_digit(body),
                    mobile=rnd.choice(MOBILE_PREFIXES) + f"{rnd.randrange(10**8):08d}",
                    email=f"{handle}@{EMAIL_DOMAIN}",
                )
            )
        self._plant_people_anomalies()

    def _plant_people_anomalies(self) -> None:
        rnd, people, m = self.rnd, self.people_list, self.m
        n = len(people)
        few = max(3, n // 100)
        taken: set[int] = set()

        def pick(pool: list[int], k: int) -> list[int]:
            free = [i for i in pool if i not in taken]
            chosen = sorted(rnd.sample(free, min(k, len(free))))
            taken.update(chosen)
            return chosen

        everyone = list(range(n))
        active = [i for i in everyone if people[i].state == "active"]
        recent = [i for i in active if people[i].enter >= dt.date(2026, 6, 1)] or active
        departed = [i for i in everyone if people[i].state == "departed"]
        self.only_erp = pick(everyone, few)
        self.only_oa = pick(recent, few)
        self.oa_departed_only = pick(departed, few)
        self.erp_departed_only = pick(active, 1)
        self.duplicates = pick(active, 3 + n // 5000)
        self.in_unmapped = pick(active, 1)[0]
        self.invalid_id = pick(active, 1)[0]
        # leaders approve requests: the longest-serving clean active person of each unit
        # (the abolished unit has weight 0: it was merged away and nobody is filed under it)
        for i in sorted(active, key=lambda i: people[i].enter):
            unit = self.unit_list[people[i].unit]
            if unit.leader is None and i not in taken:
                unit.leader = i
                taken.add(i)
        self.requester_pool = [i for i in active if i not in taken] + [
            u.leader for u in self.unit_list if u.leader is not None
        ]

        bad = people[self.invalid_id]
        bad.id_number = bad.id_number[:-1]
        m.invalid_id_number = {"code": f"{bad.number:06d}", "value": bad.id_number}

        both = [i for i in everyone if i not in set(self.only_erp) | set(self.only_oa)]
        self.name_kind = {i: rnd.choice(NAME_KINDS) for i in rnd.sample(both, min(len(both), max(5, n * 6 // 100)))}
        self.workcode_kind = {
            i: rnd.choices(WORKCODE_KINDS, (20, 50, 10, 10, 10))[0] for i in everyone if i not in self.only_erp
        }
        self.missing = {
            key: set(rnd.sample(both, min(len(both), max(2, n // 80))))
            for key in ("erp_mobile", "erp_email", "oa_mobile", "oa_email")
        }
        with_x = [i for i in both if people[i].id_number.endswith("X")]
        self.lower_x = set(rnd.sample(with_x, min(len(with_x), max(2, n // 200))))

    def master_tables(self) -> None:
        rnd, people, m = self.rnd, self.people_list, self.m
        code = [f"{p.number:06d}" for p in people]
        only_erp, only_oa = set(self.only_erp), set(self.only_oa)

        # OA ids follow hiring order, duplicates were opened later
        oa_order = sorted((i for i in range(len(people)) if i not in only_erp), key=lambda i: people[i].enter)
        for oa_id, i in enumerate(oa_order, start=2):
            people[i].oa_id = oa_id
        oa_rows: list[dict[str, Any]] = []
        erp_rows: list[dict[str, Any]] = []
        for i, p in enumerate(people):
            unit = self.unit_list[p.unit]
            erp_name, oa_name = name_variant(p.name, self.name_kind[i]) if i in self.name_kind else (p.name,) * 2
            erp_state, oa_state = p.state, p.state
            if i in self.oa_departed_only:
                erp_state = "active"
            if i in self.erp_departed_only:
                erp_state = "departed"
                p.leave = dt.date(2026, 10, 31)
            if i not in only_oa:
                erp_mod = _rand_ts(rnd, p.leave if erp_state != "active" else None)
                if i in self.oa_departed_only and p.leave is not None:
                    erp_mod = _rand_ts(rnd, None, before=p.leave)
                erp_rows.append(
                    {
                        "cPsn_Num": code[i],
                        "cPsn_Name": erp_name,
                        "cDept_num": unit.erp_code,
                        "rSex": "1" if p.male else "2",
                        "cPsnMobilePhone": None if i in self.missing["erp_mobile"] else p.mobile,
                        "cPsnEmail": None if i in self.missing["erp_email"] else p.email,
                        "cPsnIDNum": p.id_number,
                        "rPersonType": {"active": "10", "departed": "20", "retired": "30"}[erp_state],
                        "dEnterDate": p.enter,
                        "dLastDate": p.leave if erp_state != "active" else None,
                        "dModifyDate": erp_mod,
                    }
                )
            if i not in only_erp:
                kind = self.workcode_kind[i]
                oa_rows.append(
                    self._oa_person(
                        p, p.oa_id, workcode_variant(p.number, kind, rnd.randrange(8)), oa_name, oa_state, i
                    )
                )
        next_id = len(oa_order) + 2
        for i in self.duplicates:
            p = people[i]
            other = rnd.choice([k for k in WORKCODE_KINDS if k != self.workcode_kind[i]])
            row = self._oa_person(p, next_id, workcode_variant(p.number, other, rnd.randrange(8)), p.name, "active", i)
            row["status"] = rnd.choice(["7", "1"])
            oa_rows.append(row)
            m.duplicate_oa_workcodes.append(
                {
                    "code": code[i],
                    "oa_ids": [p.oa_id, next_id],
                    "workcodes": [oa_rows[self._oa_index(oa_rows, p.oa_id)]["workcode"], row["workcode"]],
                }
            )
            next_id += 1
        self.max_oa_person_id = next_id - 1

        m.employees_only_in_erp = [code[i] for i in self.only_erp]
        m.employees_only_in_oa = [code[i] for i in self.only_oa]
        m.departed_in_oa_active_in_erp = [code[i] for i in self.oa_departed_only]
        m.departed_in_erp_active_in_oa = [code[i] for i in self.erp_departed_only]
        m.workcode_variants = {
            k: sorted(code[i] for i, kk in self.workcode_kind.items() if kk == k) for k in WORKCODE_KINDS
        }
        m.name_variants = [
            {
                "code": code[i],
                "kind": k,
                "erp_name": name_variant(people[i].name, k)[0],
                "oa_name": name_variant(people[i].name, k)[1],
            }
            for i, k in sorted(self.name_kind.items())
        ]
        m.missing_contacts = {k: sorted(code[i] for i in v) for k, v in self.missing.items()}
        m.id_number_lowercase_x = sorted(code[i] for i in self.lower_x)
        u = people[self.in_unmapped]
        m.employee_in_unmapped_department = {
            "code": code[self.in_unmapped],
            "oa_id": u.oa_id,
            "oa_department_id": self.unmapped_oa_id,
        }
        erp_rows.sort(key=lambda r: r["cPsn_Num"])
        self.data.erp["hr_hi_person"] = _rows_to_columns(erp_rows, erp_schema.person.c.keys())
        self.data.oa["HrmResource"] = _rows_to_columns(oa_rows, oa_schema.hrm_resource.c.keys())
        self._department_tables()

    @staticmethod
    def _oa_index(rows: list[dict[str, Any]], oa_id: int) -> int:
        return next(k for k, r in enumerate(rows) if r["id"] == oa_id)

    def _oa_person(self, p: _Person, oa_id: int, workcode: str, name: str, state: str, i: int) -> dict[str, Any]:
        rnd = self.rnd
        if state == "departed":
            status = "5"
        elif state == "retired":
            status = "6"
        elif p.enter >= dt.date(2026, 9, 1):
            status = rnd.choice(["0", "0", "0", "3"])
        else:
            status = "2" if rnd.random() < 0.01 else "1"
        enddate = p.leave.isoformat() if state != "active" and p.leave else None
        modified = _rand_ts(rnd, p.leave if state != "active" else None)
        mobile: str | None = p.mobile
        if i in self.missing["oa_mobile"]:
            mobile = rnd.choice([None, ""])
        email: str | None = p.email
        if i in self.missing["oa_email"]:
            email = rnd.choice([None, ""])
        return {
            "id": oa_id,
            "workcode": workcode,
            "lastname": name,
            "departmentid": self.unmapped_oa_id if i == self.in_unmapped else self.unit_list[p.unit].oa_id,
            "sex": "0" if p.male else "1",
            "mobile": mobile,
            "email": email,
            "certificatenum": p.id_number.lower() if i in self.lower_x else p.id_number,
            "status": status,
            "startdate": p.enter.isoformat(),
            "enddate": enddate,
            "lastmoddate": modified.date().isoformat(),
            "lastmodtime": modified.strftime("%H:%M:%S"),
            "modified": modified,
        }

    def _department_tables(self) -> None:
        rnd, m, people = self.rnd, self.m, self.people_list
        erp_rows: list[dict[str, Any]] = []
        oa_rows: list[dict[str, Any]] = []
        for p, (erp_name, oa_code, oa_name) in self.parents.items():
            begin = dt.date(2008, 1, 1)
            erp_rows.append(
                {
                    "cDepCode": p,
                    "cDepName": erp_name,
                    "iDepGrade": 1,
                    "bDepEnd": 0,
                    "cDepLeader": None,
                    "dDepBeginDate": begin,
                    "dDepEndDate": None,
                    "dModifyDate": _rand_ts(rnd),
                }
            )
            oa_rows.append(
                {
                    "id": self.parent_oa_id[p],
                    "departmentcode": oa_code,
                    "departmentname": oa_name,
                    "departmentmark": oa_name[:2],
                    "supdepid": 0,
                    "subcompanyid1": 1,
                    "canceled": None,
                    "modified": _rand_ts(rnd),
                }
            )
            m.department_mapping.append(
                {
                    "erp_code": p,
                    "erp_name": erp_name,
                    "oa_id": self.parent_oa_id[p],
                    "oa_code": oa_code,
                    "oa_name": oa_name,
                    "grade": 1,
                }
            )
        for u in self.unit_list:
            leader = None if u.leader is None else f"{people[u.leader].number:06d}"
            begin = dt.date(2008 + rnd.randrange(12), rnd.randrange(1, 13), 1)
            erp_rows.append(
                {
                    "cDepCode": u.erp_code,
                    "cDepName": u.erp_name,
                    "iDepGrade": 2,
                    "bDepEnd": 1,
                    "cDepLeader": leader,
                    "dDepBeginDate": begin,
                    "dDepEndDate": dt.date(2026, 6, 30) if u.abolished else None,
                    "dModifyDate": dt.datetime(2026, 6, 30, 17, 42, 5) if u.abolished else _rand_ts(rnd),
                }
            )
            oa_rows.append(
                {
                    "id": u.oa_id,
                    "departmentcode": u.oa_code,
                    "departmentname": u.oa_name,
                    "departmentmark": u.oa_mark,
                    "supdepid": self.parent_oa_id[u.parent],
                    "subcompanyid1": 1,
                    "canceled": rnd.choice([None, "0"]),
                    "modified": _rand_ts(rnd),
                }
            )
            entry = {
                "erp_code": u.erp_code,
                "erp_name": u.erp_name,
                "oa_id": u.oa_id,
                "oa_code": u.oa_code,
                "oa_name": u.oa_name,
                "grade": 2,
            }
            m.department_mapping.append(entry)
            if u.abolished:
                m.abolished_erp_department = {k: v for k, v in entry.items() if k != "grade"}
        code, name, mark = DEPT_UNMAPPED
        oa_rows.append(
            {
                "id": self.unmapped_oa_id,
                "departmentcode": code,
                "departmentname": name,
                "departmentmark": mark,
                "supdepid": self.parent_oa_id.get("03", 0),
                "subcompanyid1": 1,
                "canceled": None,
                "modified": dt.datetime(2026, 3, 2, 9, 15, 0),
            }
        )
        m.unmapped_oa_department = {"oa_id": self.unmapped_oa_id, "code": code, "name": name}
        self.data.erp["Department"] = _rows_to_columns(erp_rows, erp_schema.department.c.keys())
        self.data.oa["HrmDepartment"] = _rows_to_columns(oa_rows, oa_schema.hrm_department.c.keys())

    def catalog(self) -> None:
        """Vendors and materials; each vendor supplies one material category."""
        rnd = self.rnd
        inv: dict[str, list[Any]] = {k: [] for k in ("code", "name", "std", "unit", "cat", "price", "qty", "dec")}
        for ci, (cat_code, _label, _industry, items) in enumerate(CATEGORIES):
            for ii, (name, specs, unit, low, high, qty_scale) in enumerate(items, start=1):
                for si, spec in enumerate(specs, start=1):
                    inv["code"].append(f"{cat_code}{ii:02d}{si:03d}")
                    inv["name"].append(name)
                    inv["std"].append(spec)
                    inv["unit"].append(UNIT_CODES[unit])
                    inv["cat"].append(ci)
                    inv["price"].append(round(rnd.uniform(low, high), 2))
                    inv["qty"].append(qty_scale)
                    inv["dec"].append(unit in ("千克", "米"))
        self.inv = {k: np.asarray(v) for k, v in inv.items()}
        n_cat = len(CATEGORIES)
        n_vendors = max(40, min(400, self.size.requisitions // 1500))
        combos = [(c, b) for c in CITIES for b in VENDOR_BRANDS]
        chosen = rnd.sample(combos, n_vendors)
        ven: dict[str, list[Any]] = {k: [] for k in ("code", "name", "abb", "cat")}
        per_cat = [0] * n_cat
        for k, (city, brand) in enumerate(chosen):
            ci = k % n_cat
            per_cat[ci] += 1
            ven["code"].append(f"{CATEGORIES[ci][0]}{per_cat[ci]:03d}")
            ven["name"].append(f"{city}{brand}{CATEGORIES[ci][2]}有限公司")
            ven["abb"].append(f"{city}{brand}")
            ven["cat"].append(ci)
        self.ven = {k: np.asarray(v) for k, v in ven.items()}
        self.data.erp["Vendor"] = {
            "cVenCode": self.ven["code"],
            "cVenName": self.ven["name"],
            "cVenAbbName": self.ven["abb"],
            "dModifyDate": [_rand_ts(rnd) for _ in chosen],
        }
        self.data.erp["Inventory"] = {
            "cInvCode": self.inv["code"],
            "cInvName": self.inv["name"],
            "cInvStd": self.inv["std"],
            "cComUnitCode": self.inv["unit"],
            "dModifyDate": [_rand_ts(rnd) for _ in inv["code"]],
        }

    # -- transactions ----------------------------------------------------------------------

    def _statuses(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Status category per request and the deleted flag; every kind occurs at least once."""
        cat = self.rng.choice(4, size=n, p=[0.82, 0.05, 0.04, 0.09])
        deleted = (cat != APPROVED) & (self.rng.random(n) < 0.3)
        if n >= 5:
            slots = self.rng.permutation(n)[:5]
            cat[slots] = [REJECTED, WITHDRAWN, RUNNING, RUNNING, APPROVED]
            deleted[slots] = [False, False, False, True, False]
        return cat, deleted

    def _create_times(self, n: int) -> np.ndarray:
        day = np.datetime64("2026-01-04", "D") + self.rng.integers(0, 321, n)
        weekday = (day.astype(np.int64) + 3) % 7
        day = day + np.where(weekday == 5, 2, np.where(weekday == 6, 1, 0))
        secs = self.rng.integers(30_600, 64_800, n)
        return np.sort(day.astype("datetime64[s]") + secs)

    def _requesters(self, n: int) -> np.ndarray:
        return np.asarray(self.requester_pool)[self.rng.integers(0, len(self.requester_pool), n)]

    def transactions(self) -> None:
        people = self.people_list
        self.p_oa = np.array([p.oa_id for p in people])
        self.p_code = np.array([f"{p.number:06d}" for p in people])
        self.p_name = np.array([p.name for p in people])
        self.p_oa_dept = np.array([self.unit_list[p.unit].oa_id for p in people])
        self.p_erp_dept = np.array([self.unit_list[p.unit].erp_code for p in people])
        self.approvers = np.array([people[u.leader].oa_id for u in self.unit_list if u.leader is not None])

        n_req, n_con = max(1, self.size.requisitions), max(1, self.size.contracts)
        req = {"ts": self._create_times(n_req), "who": self._requesters(n_req)}
        con = {"ts": self._create_times(n_con), "who": self._requesters(n_con)}
        req["cat"], req["deleted"] = self._statuses(n_req)
        con["cat"], con["deleted"] = self._statuses(n_con)
        # e-cology numbers requests of all workflows from one sequence, in creation order
        order = np.argsort(np.concatenate([req["ts"], con["ts"]]), kind="stable")
        rid = np.empty(n_req + n_con, dtype=np.int64)
        rid[order] = 100_001 + np.arange(n_req + n_con)
        req["rid"], con["rid"] = rid[:n_req], rid[n_req:]
        req_base = self._workflow_rows(req, oa_schema.WORKFLOW_PURCHASE_REQUISITION, "采购申请")
        con_base = self._workflow_rows(con, oa_schema.WORKFLOW_CONTRACT, "合同审批")
        self._requisitions(req, req_base)
        self._contracts(con, con_base)
        base = {k: np.concatenate([req_base[k], con_base[k]]) for k in req_base if k != "_log"}
        order = np.argsort(base["requestid"], kind="stable")
        self.data.oa["workflow_requestbase"] = {k: v[order] for k, v in base.items()}
        logs = {k: np.concatenate([req_base["_log"][k], con_base["_log"][k]]) for k in req_base["_log"]}
        order = np.lexsort((logs["_t"], logs["requestid"]))
        logs = {k: v[order] for k, v in logs.items()}
        t = logs.pop("_t")
        logs["operatedate"], logs["operatetime"] = _dates(t), _times(t)
        logs["logid"] = np.arange(1, len(t) + 1)
        self.data.oa["workflow_requestlog"] = {c.name: logs[c.name] for c in oa_schema.requestlog.columns}
        for key, part in (("requisition_requests", req), ("contract_requests", con)):
            cat, deleted, ids = part["cat"], part["deleted"], part["rid"]
            setattr(
                self.m,
                key,
                {
                    name: sorted(ids[(cat == c) & ~deleted].tolist())
                    for name, c in (
                        ("approved", APPROVED),
                        ("rejected", REJECTED),
                        ("withdrawn", WITHDRAWN),
                        ("running", RUNNING),
                    )
                }
                | {"deleted": sorted(ids[deleted].tolist())},
            )

    def _workflow_rows(self, part: dict[str, np.ndarray], workflow_id: int, title: str) -> dict[str, Any]:
        """workflow_requestbase rows and their workflow_requestlog rows for one workflow."""
        rng = self.rng
        n = len(part["ts"])
        cat = part["cat"]
        forced = (cat == APPROVED) & (rng.random(n) < 0.02)
        if not forced.any() and (cat == APPROVED).sum() >= 10:
            forced[np.flatnonzero(cat == APPROVED)[0]] = True
        part["forced"] = forced
        approvals = np.select(
            [cat == APPROVED, cat == REJECTED, cat == WITHDRAWN],
            [rng.integers(1, 4, n), rng.integers(0, 2, n), np.zeros(n, dtype=np.int64)],
            rng.integers(0, 3, n),
        )
        approvals = np.where(forced, 0, approvals)
        counts = 1 + approvals + ((cat == REJECTED) | (cat == WITHDRAWN) | forced)
        req_ix = np.repeat(np.arange(n), counts)
        starts = np.cumsum(counts) - counts
        pos = np.arange(len(req_ix)) - starts[req_ix]
        last = pos == counts[req_ix] - 1
        lcat = cat[req_ix]
        logtype = np.full(len(req_ix), "0", dtype=object)
        logtype[last & (lcat == REJECTED)] = "3"
        logtype[last & (lcat == WITHDRAWN)] = "7"
        logtype[last & forced[req_ix]] = "e"
        logtype[pos == 0] = "2"
        gaps = rng.integers(600, 2 * _DAY, len(req_ix))
        gaps[pos == 0] = 0
        csum = np.cumsum(gaps)
        t = part["ts"][req_ix] + (csum - csum[starts][req_ix]).astype("timedelta64[s]")
        creator = self.p_oa[part["who"]]
        operator = self.approvers[rng.integers(0, len(self.approvers), len(req_ix))]
        operator = np.where((pos == 0) | (logtype == "7"), creator[req_ix], operator)
        remark = np.full(len(req_ix), "", dtype=object)
        remark[logtype == "0"] = rng.choice(
            np.array(["同意", "同意。", "", "情况属实，同意"], dtype=object), int((logtype == "0").sum())
        )
        remark[logtype == "3"] = rng.choice(np.array(REJECT_REMARKS, dtype=object), int((logtype == "3").sum()))
        remark[logtype == "e"] = "管理员强制归档"
        node_base = workflow_id * 100
        nodeid = node_base + 1 + np.minimum(pos, 3) + np.where(logtype == "e", 4 - np.minimum(pos, 3), 0)
        last_t, last_op = t[last], operator[last]
        deleted = part["deleted"]
        modified = np.minimum(
            last_t
            + np.where(deleted, rng.integers(_DAY, 10 * _DAY, n), rng.integers(1, 90, n)).astype("timedelta64[s]"),
            _YEAR_END,
        )
        part["done"] = last_t
        name = _concat(title, "-", self.p_name[part["who"]], "-", _dates(part["ts"]))
        return {
            "requestid": part["rid"],
            "workflowid": np.full(n, workflow_id),
            "requestname": name,
            "requestmark": np.full(n, "", dtype=object),  # filled by the form builders
            "creater": creator,
            "createdate": _dates(part["ts"]),
            "createtime": _times(part["ts"]),
            "currentnodetype": _NODE_TYPE[cat],
            "status": _STATUS_TEXT[cat],
            "deleted": deleted.astype(np.int64),
            "lastoperator": np.where(deleted, creator, last_op),
            "lastoperatedate": _dates(np.where(deleted, modified, last_t)),
            "lastoperatetime": _times(np.where(deleted, modified, last_t)),
            "modified": modified,
            "_log": {
                "requestid": part["rid"][req_ix],
                "nodeid": nodeid,
                "operator": operator,
                "logtype": logtype,
                "remark": remark,
                "_t": t,
            },
        }

    def _requisitions(self, req: dict[str, Any], base: dict[str, Any]) -> None:
        """OA purchase requisition forms and lines (workflow 12), with the bad lines planted."""
        rng, m, inv, ven = self.rng, self.m, self.inv, self.ven
        n = len(req["ts"])
        seq = _zfill(np.arange(1, n + 1), max(6, len(str(n))))
        req["sqdh"], req["ccode"] = _concat("QG-2026-", seq), _concat("QG2026", seq)
        base["requestmark"] = req["sqdh"]
        # a requisition buys one category, from a vendor of that category
        n_cat = len(CATEGORIES)
        cat_ix = rng.integers(0, n_cat, n)
        req["vendor"] = _pick_within(rng, ven["cat"], cat_ix, n_cat)
        n_lines = rng.integers(1, 6, n)
        line_req = req["line_req"] = np.repeat(np.arange(n), n_lines)
        req["xh"] = np.arange(len(line_req)) - (np.cumsum(n_lines) - n_lines)[line_req] + 1
        mat = req["mat"] = _pick_within(rng, inv["cat"], cat_ix[line_req], n_cat)
        n_l = len(line_req)
        raw_qty = rng.lognormal(np.log(inv["qty"][mat].astype(float)), 0.6)
        qty = np.where(inv["dec"][mat], np.round(raw_qty, 2), np.maximum(1, np.round(raw_qty)))
        price = np.round(inv["price"][mat] * rng.uniform(0.95, 1.05, n_l), 2)
        approved = req["approved"] = (req["cat"] == APPROVED) & ~req["deleted"]
        approved_ix = np.flatnonzero(approved)
        # an approved form whose requester account no longer exists
        unknown = req["unknown"] = int(approved_ix[rng.integers(0, len(approved_ix))]) if len(approved_ix) else 0
        candidates = np.flatnonzero(approved[line_req] & (line_req != unknown))
        k_bad = max(2, round(n_l * 0.0005))
        bad = req["bad"] = rng.choice(candidates, size=min(len(candidates), 2 * k_bad), replace=False)
        negative, precise = np.sort(bad[:k_bad]), np.sort(bad[k_bad:])
        qty[negative] = -qty[negative]
        # two more decimals, the last one non-zero, so the price really has four
        tail = rng.integers(0, 10, len(precise)) * 10 + rng.integers(1, 10, len(precise))
        price[precise] = np.round(price[precise] + tail / 10_000, 4)
        req["qty"], req["price"], req["amount"] = qty, price, np.round(qty * price, 2)
        req["need"] = req["ts"][line_req].astype("datetime64[D]") + rng.integers(7, 46, n_l)
        sqr = self.p_oa[req["who"]].copy()
        sqr[unknown] = self.max_oa_person_id + 1_000 + int(rng.integers(1, 900))
        req["memo"] = rng.choice(np.array(MEMOS, dtype=object), n)
        sqdh, xh, line_ids = req["sqdh"], req["xh"], np.arange(1, n_l + 1)
        self.data.oa["formtable_main_12"] = {
            "id": np.arange(1, n + 1),
            "requestid": req["rid"],
            "sqdh": sqdh,
            "sqr": sqr,
            "sqbm": self.p_oa_dept[req["who"]],
            "sqrq": _dates(req["ts"]),
            "gys": ven["code"][req["vendor"]],
            "hjje": np.round(np.bincount(line_req, weights=req["amount"], minlength=n), 2),
            "bz": req["memo"],
            "erp_po_no": np.full(n, None, dtype=object),
            "modified": base["modified"],
        }
        self.data.oa["formtable_main_12_dt1"] = {
            "id": line_ids,
            "mainid": line_req + 1,
            "xh": xh,
            "wlbm": inv["code"][mat],
            "wlmc": inv["name"][mat],
            "sl": qty,
            "dj": price,
            "je": req["amount"],
            "xqrq": _dates(req["need"]),
        }
        m.requisition_unknown_requester = {
            "requestid": int(req["rid"][unknown]),
            "sqdh": str(sqdh[unknown]),
            "sqr": int(sqr[unknown]),
        }
        m.negative_quantity_lines = [
            {"sqdh": str(sqdh[line_req[i]]), "line_no": int(xh[i]), "dt1_id": int(line_ids[i]), "sl": float(qty[i])}
            for i in negative
        ]
        m.over_precise_price_lines = [
            {"sqdh": str(sqdh[line_req[i]]), "line_no": int(xh[i]), "dt1_id": int(line_ids[i]), "dj": float(price[i])}
            for i in precise
        ]
        m.force_archived_requests = sorted(req["rid"][req["forced"]].tolist())
        self._erp_requisitions(req)

    def _erp_requisitions(self, req: dict[str, Any]) -> None:
        """PU_AppVouch(s): the ERP's copies of most approved requisitions, a few lines differing."""
        rng, m = self.rng, self.m
        n = len(req["ts"])
        line_req, xh, qty, price, amount = req["line_req"], req["xh"], req["qty"], req["price"], req["amount"]
        eligible = np.setdiff1d(np.flatnonzero(req["approved"]), [req["unknown"]])
        k_miss = min(len(eligible), max(2, round(0.03 * len(eligible))))
        copied = np.zeros(n, dtype=bool)
        copied[eligible] = True
        copied[rng.choice(eligible, size=k_miss, replace=False)] = False
        m.requisitions_missing_in_erp = sorted(str(s) for s in req["sqdh"][~copied & req["approved"]])
        erp_id = np.cumsum(copied)  # 1-based ERP ID of each copied header
        erp_mod = np.minimum(req["done"] + rng.integers(300, 3 * _DAY, n).astype("timedelta64[s]"), _YEAR_END)
        hdr = np.flatnonzero(copied)
        self.data.erp["PU_AppVouch"] = {
            "ID": erp_id[hdr],
            "cCode": req["ccode"][hdr],
            "dDate": req["ts"][hdr].astype("datetime64[D]"),
            "cDepCode": self.p_erp_dept[req["who"][hdr]],
            "cPersonCode": self.p_code[req["who"][hdr]],
            "cState": np.where(rng.random(len(hdr)) < 0.1, "2", "1"),
            "cMemo": req["memo"][hdr],
            "dModifyDate": erp_mod[hdr],
        }
        lines = np.flatnonzero(copied[line_req])
        erp_qty, erp_amount = qty[lines].copy(), amount[lines].copy()
        clean = np.flatnonzero(~np.isin(lines, req["bad"]))
        k_diff = min(len(clean), max(3, round(0.002 * len(lines))))
        diff = np.sort(rng.choice(clean, size=k_diff, replace=False))
        by_qty, by_amount = diff[: (k_diff + 1) // 2], diff[(k_diff + 1) // 2 :]
        erp_qty[by_qty] += rng.integers(1, 21, len(by_qty))
        erp_amount[by_qty] = np.round(erp_qty[by_qty] * price[lines[by_qty]], 2)
        # someone retyped the amount: off by 1-10 %, never by zero
        delta = np.maximum(0.01, np.round(erp_amount[by_amount] * rng.uniform(0.01, 0.1, len(by_amount)), 2))
        erp_amount[by_amount] = np.round(erp_amount[by_amount] + delta * rng.choice([-1, 1], len(by_amount)), 2)
        for ix, fld, erp_vals, oa_vals in (
            (by_qty, "quantity", erp_qty, qty),
            (by_amount, "amount", erp_amount, amount),
        ):
            for j in ix:
                i = lines[j]
                m.requisition_line_differences.append(
                    {
                        "sqdh": str(req["sqdh"][line_req[i]]),
                        "ccode": str(req["ccode"][line_req[i]]),
                        "line_no": int(xh[i]),
                        "field": fld,
                        "oa": float(oa_vals[i]),
                        "erp": float(erp_vals[j]),
                    }
                )
        m.requisition_line_differences.sort(key=lambda d: (d["sqdh"], d["line_no"]))
        self.data.erp["PU_AppVouchs"] = {
            "AutoID": np.arange(1, len(lines) + 1),
            "ID": erp_id[line_req[lines]],
            "ivouchrowno": xh[lines],
            "cInvCode": self.inv["code"][req["mat"][lines]],
            "cVenCode": self.ven["code"][req["vendor"][line_req[lines]]],
            "fQuantity": erp_qty,
            "fUnitPrice": price[lines],
            "fMoney": erp_amount,
            "dRequirDate": req["need"][lines],
            "dModifyDate": erp_mod[line_req[lines]],
        }
        tainted = np.unique(line_req[np.concatenate([req["bad"], lines[diff]])])
        self._purchase_orders(req, np.setdiff1d(hdr, tainted))

    def _purchase_orders(self, req: dict[str, Any], usable: np.ndarray) -> None:
        """A handful of POs already raised in the ERP: most from clean ERP requisitions, two keyed in directly."""
        rng, rnd, m = self.rng, self.rnd, self.m
        sources = np.sort(rng.choice(usable, size=min(8, len(usable)), replace=False))
        heads: list[dict[str, Any]] = []
        details: list[dict[str, Any]] = []
        per_month: dict[str, int] = {}

        def po_number(day: dt.date) -> str:
            key = f"{day:%Y%m}"
            per_month[key] = per_month.get(key, 0) + 1
            return f"PO{key}{per_month[key]:04d}"

        for poid, r in enumerate(sources, start=1):
            ready = (req["done"][r] + np.timedelta64(int(rng.integers(_DAY, 5 * _DAY)), "s")).astype(dt.datetime)
            ready = min(ready, dt.datetime(2026, 12, 31, 12, 0))
            cpo = po_number(ready.date())
            heads.append(
                {
                    "POID": poid,
                    "cPOID": cpo,
                    "dPODate": ready.date(),
                    "cVenCode": str(self.ven["code"][req["vendor"][r]]),
                    "cDepCode": str(self.p_erp_dept[req["who"][r]]),
                    "cPersonCode": str(self.p_code[req["who"][r]]),
                    "cState": "1",
                    "cMemo": req["memo"][r],
                    "cDefine10": str(int(req["rid"][r])),
                    "dModifyDate": ready,
                }
            )
            m.purchase_orders_from_oa.append(
                {"cPOID": cpo, "requestid": int(req["rid"][r]), "sqdh": str(req["sqdh"][r])}
            )
            for line_no, i in enumerate(np.flatnonzero(req["line_req"] == r), start=1):
                details.append(
                    {
                        "POID": poid,
                        "ivouchrowno": line_no,
                        "cInvCode": str(self.inv["code"][req["mat"][i]]),
                        "iQuantity": float(req["qty"][i]),
                        "iUnitPrice": float(req["price"][i]),
                        "iSum": float(req["amount"][i]),
                    }
                )
        for k in range(2):
            poid = len(heads) + 1
            day = dt.date(2026, 11, 3 + 7 * k)
            who = self.requester_pool[rnd.randrange(len(self.requester_pool))]
            ven_ix = rnd.randrange(len(self.ven["code"]))
            cpo = po_number(day)
            heads.append(
                {
                    "POID": poid,
                    "cPOID": cpo,
                    "dPODate": day,
                    "cVenCode": str(self.ven["code"][ven_ix]),
                    "cDepCode": str(self.p_erp_dept[who]),
                    "cPersonCode": str(self.p_code[who]),
                    "cState": "1",
                    "cMemo": "紧急采购，ERP直接录入",
                    "cDefine10": None,
                    "dModifyDate": dt.datetime.combine(day, dt.time(10 + k, 12, 40)),
                }
            )
            m.purchase_orders_without_oa_request.append(cpo)
            same_cat = np.flatnonzero(self.inv["cat"] == self.ven["cat"][ven_ix])
            for line_no in range(1, rnd.randint(1, 3) + 1):
                mi = int(same_cat[rnd.randrange(len(same_cat))])
                q, p = float(rnd.randint(5, 50)), float(self.inv["price"][mi])
                details.append(
                    {
                        "POID": poid,
                        "ivouchrowno": line_no,
                        "cInvCode": str(self.inv["code"][mi]),
                        "iQuantity": q,
                        "iUnitPrice": p,
                        "iSum": round(q * p, 2),
                    }
                )
        for k, d in enumerate(details, start=1):
            d["ID"] = k
        self.data.erp["PO_Pomain"] = _rows_to_columns(heads, erp_schema.po_pomain.c.keys())
        self.data.erp["PO_Podetails"] = _rows_to_columns(details, erp_schema.po_podetails.c.keys())

    def _contracts(self, con: dict[str, np.ndarray], base: dict[str, Any]) -> None:
        rng, m, ven = self.rng, self.m, self.ven
        n = len(con["ts"])
        width = max(4, len(str(n + 1)))
        htbh = _concat("HT2026", _zfill(np.arange(1, n + 1), width))
        base["requestmark"] = htbh
        vendor = rng.integers(0, len(ven["code"]), n)
        kind = rng.choice(np.array(CONTRACT_KINDS, dtype=object), n)
        label = np.array([c[1] for c in CATEGORIES], dtype=object)[ven["cat"][vendor]]
        htmc = _concat(ven["abb"][vendor], label, kind)
        htje = np.round(np.exp(rng.normal(np.log(200_000), 1.0, n)), 2)
        start = con["ts"].astype("datetime64[D]") + rng.integers(3, 31, n)
        end = start + rng.choice([364, 729, 1094], n)
        approved = (con["cat"] == APPROVED) & ~con["deleted"]
        approved_ix = np.flatnonzero(approved)
        backwards = int(approved_ix[rng.integers(0, len(approved_ix))]) if len(approved_ix) else 0
        end[backwards] = start[backwards] - rng.integers(30, 200)
        who = con["who"]
        self.data.oa["formtable_main_15"] = {
            "id": np.arange(1, n + 1),
            "requestid": con["rid"],
            "htbh": htbh,
            "htmc": htmc,
            "htlx": kind,
            "xdf": ven["code"][vendor],
            "htje": htje,
            "qsrq": _dates(start),
            "jsrq": _dates(end),
            "sqr": self.p_oa[who],
            "sqbm": self.p_oa_dept[who],
            "erp_contract_no": np.full(n, None, dtype=object),
            "modified": base["modified"],
        }
        eligible = np.setdiff1d(approved_ix, [backwards])
        k_miss = min(len(eligible), max(2, round(0.08 * len(eligible))))
        missing = rng.choice(eligible, size=k_miss, replace=False)
        copied = approved.copy()
        copied[missing] = False
        hdr = np.flatnonzero(copied)
        erp_amount = htje[hdr].copy()
        movable = np.flatnonzero(hdr != backwards)
        k_diff = min(len(movable), max(2, round(0.05 * len(hdr))))
        diff = np.sort(rng.choice(movable, size=k_diff, replace=False))
        erp_amount[diff] = np.round(
            erp_amount[diff] * rng.choice([0.9, 0.95, 1.05, 1.1], k_diff) + rng.integers(1, 500, k_diff) * 10, 2
        )
        erp_mod = np.minimum(
            con["done"][hdr] + rng.integers(3_600, 5 * _DAY, len(hdr)).astype("timedelta64[s]"), _YEAR_END
        )
        extra_no = f"HT2026{n + 1:0{width}d}"
        cols = {
            "cContractID": [*htbh[hdr].tolist(), extra_no],
            "strContractName": [*htmc[hdr].tolist(), "厂区保洁及绿化养护年度服务合同"],
            "strContractKind": [*kind[hdr].tolist(), "服务合同"],
            "cVenCode": [*ven["code"][vendor[hdr]].tolist(), str(ven["code"][0])],
            "dblTotalMoney": [*erp_amount.tolist(), 86_400.00],
            "dtStartDate": [*start[hdr].tolist(), dt.date(2026, 1, 1)],
            "dtEndDate": [*end[hdr].tolist(), dt.date(2026, 12, 31)],
            "cDepCode": [*self.p_erp_dept[who[hdr]].tolist(), self.unit_list[0].erp_code],
            "cPersonCode": [*self.p_code[who[hdr]].tolist(), str(self.p_code[self.requester_pool[0]])],
            "strState": [*np.where(rng.random(len(hdr)) < 0.05, "终止", "生效").tolist(), "生效"],
            "cOARequestID": [*con["rid"][hdr].astype(str).tolist(), None],
            "dModifyDate": [*erp_mod.tolist(), dt.datetime(2026, 1, 6, 14, 3, 27)],
        }
        self.data.erp["CM_Contract"] = cols
        m.contracts_missing_in_erp = sorted(str(s) for s in htbh[approved & ~copied])
        m.contract_amount_differences = [
            {"htbh": str(htbh[hdr[j]]), "oa": float(htje[hdr[j]]), "erp": float(erp_amount[j])} for j in diff
        ]
        m.erp_contract_without_oa_request = extra_no
        m.contract_end_before_start = str(htbh[backwards])
        m.force_archived_requests = sorted([*m.force_archived_requests, *con["rid"][con["forced"]].tolist()])

    def run(self) -> DemoData:
        self.units()
        self.people()
        self.master_tables()
        self.catalog()
        self.transactions()
        return self.data


def _pick_within(rng: np.random.Generator, item_cat: np.ndarray, want: np.ndarray, n_cat: int) -> np.ndarray:
    """For each wanted category, the index of a random item of that category (vectorised)."""
    order = np.argsort(item_cat, kind="stable")
    counts = np.bincount(item_cat, minlength=n_cat)
    first = np.cumsum(counts) - counts
    if (counts[want] == 0).any():
        raise ValueError("a category has no items")
    return order[first[want] + (rng.random(len(want)) * counts[want]).astype(np.int64)]


def _rand_ts(rnd: random.Random, after: dt.date | None = None, before: dt.date | None = None) -> dt.datetime:
    """A working-hours timestamp in 2026, optionally after/before a day."""
    lo = dt.date(2026, 1, 2)
    hi = dt.date(2026, 11, 28)
    if after is not None:
        lo = max(lo, min(after + dt.timedelta(days=1), hi))
    if before is not None:
        hi = max(dt.date(2026, 1, 2), min(hi, before - dt.timedelta(days=1)))
        lo = min(lo, hi)
    day = lo + dt.timedelta(days=rnd.randrange((hi - lo).days + 1))
    return dt.datetime.combine(day, dt.time(rnd.randrange(8, 19), rnd.randrange(60), rnd.randrange(60)))


def generate_demo(size: DemoSize, seed: int = 42) -> DemoData:
    """Generate both systems from one shared truth; nothing touches a database."""
    return _Generator(size, seed).run()


# --------------------------------------------------------------------------- loading


def _pylist(values: Any) -> list[Any]:
    """Column values as Python objects the DB drivers understand (NaN/NaT -> None)."""
    if not isinstance(values, np.ndarray):
        return list(values)
    if values.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in values.tolist()]
    if values.dtype.kind == "M" and values.dtype != np.dtype("datetime64[D]"):
        return values.astype("datetime64[us]").tolist()
    return values.tolist()


def _chunks(columns: Columns, names: Sequence[str], size: int, start: int = 0) -> Iterator[list[tuple[Any, ...]]]:
    for lo in range(start, _length(columns), size):
        yield list(zip(*(_pylist(columns[c][lo : lo + size]) for c in names), strict=True))


def _null_mask(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "f":
        return np.isnan(values)
    if kind == "M":
        return np.isnat(values)
    if kind == "O":
        return np.fromiter((v is None for v in values.tolist()), dtype=bool, count=len(values))
    return np.zeros(len(values), dtype=bool)


def _sql_literals(values: np.ndarray, backslash: bool) -> np.ndarray | None:
    """One column as MySQL literals, rendered by numpy; None if the dtype is not handled."""
    kind = values.dtype.kind
    null = _null_mask(values)
    if kind in "iub":
        text = values.astype(np.int64).astype(str)
    elif kind == "f":
        text = np.where(null, 0.0, values).astype(str)
    elif kind == "M":
        filled = np.where(null, np.datetime64("2000-01-01", "s"), values)
        text = _dates(filled)
        if values.dtype != np.dtype("datetime64[D]"):
            text = np.char.add(np.char.add(text, " "), _times(filled))
        text = np.char.add(np.char.add("'", text), "'")
    elif kind == "U" or (kind == "O" and all(isinstance(v, str | None) for v in values.tolist())):
        text = np.where(null, "", values).astype(str)
        if backslash:
            text = np.char.replace(text, "\\", "\\\\")
        text = np.char.add(np.char.add("'", np.char.replace(text, "'", "''")), "'")
    else:
        return None
    return np.where(null, "NULL", text) if null.any() else text


def _sql_rows(columns: Columns, names: Sequence[str], lo: int, hi: int, backslash: bool) -> list[str] | None:
    """Rows ``lo:hi`` as ``(a,b,...)`` literal tuples; None unless every column is a numpy array."""
    row: np.ndarray | None = None
    for name in names:
        values = columns[name]
        text = _sql_literals(values[lo:hi], backslash) if isinstance(values, np.ndarray) else None
        if text is None:
            return None
        row = np.char.add("(", text) if row is None else np.char.add(np.char.add(row, ","), text)
    return None if row is None else np.char.add(row, ")").tolist()


def _copy_postgres(engine: Engine, table: sa.Table, columns: Columns) -> None:
    """COPY FROM STDIN; psycopg formats rows in C, faster than rendering text in numpy."""
    prep = engine.dialect.identifier_preparer
    names = list(table.c.keys())
    sql = f"COPY {prep.format_table(table)} ({', '.join(prep.quote(c) for c in names)}) FROM STDIN"
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            for rows in _chunks(columns, names, 100_000):
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _insert_mysql(engine: Engine, table: sa.Table, columns: Columns) -> None:
    """Multi-row INSERTs of literals rendered by numpy: PyMySQL's per-value escaping is the bottleneck."""
    prep = engine.dialect.identifier_preparer
    names = list(table.c.keys())
    # identifiers come from the dialect's quoting, values from _sql_literals' escaping
    head = f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in names)}) VALUES "  # noqa: S608
    with engine.begin() as conn:
        conn.exec_driver_sql("SET foreign_key_checks = 0, unique_checks = 0")
        mode = str(conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() or "")
        packet = int(conn.exec_driver_sql("SELECT @@SESSION.max_allowed_packet").scalar() or 1 << 22)
        backslash = "NO_BACKSLASH_ESCAPES" not in mode.upper()
        cursor = conn.connection.cursor()
        for lo in range(0, _length(columns), _RENDER_CHUNK):
            rows = _sql_rows(columns, names, lo, lo + _RENDER_CHUNK, backslash)
            if rows is None:
                chunk = next(_chunks(columns, names, _RENDER_CHUNK, lo))
                conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in chunk])
                continue
            # statements well under max_allowed_packet, at 4 bytes per character at worst
            step = max(1, len(rows) * packet // (8 * max(1, sum(map(len, rows)))))
            for k in range(0, len(rows), step):
                cursor.execute(head + ",".join(rows[k : k + step]))


def _length(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _insert(engine: Engine, table: sa.Table, columns: Columns) -> None:
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        _copy_postgres(engine, table, columns)
    elif engine.dialect.name in ("mysql", "mariadb") and engine.dialect.driver == "pymysql":
        _insert_mysql(engine, table, columns)
    else:
        names = list(table.c.keys())
        with engine.begin() as conn:
            for rows in _chunks(columns, names, _INSERT_CHUNK):
                conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])


def _load(url_or_engine: str | Engine, metadata: sa.MetaData, tables: dict[str, Columns], drop: bool) -> dict[str, int]:
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        if drop:
            metadata.drop_all(engine)
        metadata.create_all(engine)
        if not drop:
            with engine.connect() as conn:
                busy = [
                    t.name
                    for t in metadata.sorted_tables
                    if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                ]
            if busy:
                raise ValueError(f"demo tables already hold rows ({', '.join(busy)}); use drop=True")
        counts: dict[str, int] = {}
        for table in metadata.sorted_tables:
            columns = tables[table.name]
            _insert(engine, table, columns)
            counts[table.name] = len(next(iter(columns.values())))
        return counts
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def create_erp(url_or_engine: str | Engine, size: DemoSize, seed: int = 42, *, drop: bool = True) -> dict[str, int]:
    """Create the demo ERP schema at ``url_or_engine`` and load it; return rows per table.

    With ``drop`` the demo tables are dropped first; without it they are created if
    missing and must be empty.
    """
    return _load(url_or_engine, erp_schema.metadata, generate_demo(size, seed).erp, drop)


def create_oa(url_or_engine: str | Engine, size: DemoSize, seed: int = 42, *, drop: bool = True) -> dict[str, int]:
    """Create the demo OA schema at ``url_or_engine`` and load it; return rows per table."""
    return _load(url_or_engine, oa_schema.metadata, generate_demo(size, seed).oa, drop)


def build_demo(erp_url: str | Engine, oa_url: str | Engine, size: DemoSize, seed: int = 42) -> DemoManifest:
    """Generate both systems once, load them (dropping old demo tables) and return the manifest."""
    data = generate_demo(size, seed)
    data.manifest.row_counts = {
        "erp": _load(erp_url, erp_schema.metadata, data.erp, drop=True),
        "oa": _load(oa_url, oa_schema.metadata, data.oa, drop=True),
    }
    return data.manifest
