"""Kill a sync with SIGKILL at a named fault point, rerun it, and compare with a clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

from etl.cli.demo_cmd import write_project
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.demo.generate import DemoSize, build_demo
from etl.engine.pipeline import run_sync
from etl.engine.sweep import id_hashes

TINY = DemoSize(departments=12, employees=60, requisitions=30, contracts=15)
ENTITY_TABLES = {
    "department": "md_department",
    "employee": "md_employee",
    "contract": "md_contract",
    "purchase": "md_purchase_line",
}


@dataclass
class Trial:
    point: str
    nth: int
    killed: bool
    identical: bool
    detail: str = ""


def build_sources(folder: Path, size: DemoSize = TINY, seed: int = 7) -> Path:
    """Demo ERP and OA SQLite files in `folder` (copied for each trial)."""
    folder.mkdir(parents=True, exist_ok=True)
    build_demo(f"sqlite:///{folder / 'erp.db'}", f"sqlite:///{folder / 'oa.db'}", size, seed)
    return folder


def new_project(sources: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("erp.db", "oa.db"):
        shutil.copy(sources / name, folder / name)
    return write_project(folder)


def snapshot(config_path: Path) -> dict[str, Any]:
    """Target tables (business columns), mirror, watermarks and cross-reference of a project, and how many
    mirrored ids lack a recorded hash (`etl.engine.idhashes`: none may)."""
    config = load_project(config_path)
    out: dict[str, Any] = {}
    target = create_engine(config.connection("target").sqlalchemy_url())
    recon = create_engine(config.connection("recon").sqlalchemy_url())
    try:
        with target.connect() as conn:
            for entity, table in ENTITY_TABLES.items():
                rows = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
                keep = [
                    {k: v for k, v in r.items() if k not in ("_run_id", "_updated_at", "_mapping_version")}
                    for r in rows
                ]
                out[table] = sorted(repr(sorted(r.items())) for r in keep)
                mirror = conn.execute(text(f"SELECT * FROM erpoa_src_{entity}")).mappings().all()
                out[f"mirror_{entity}"] = sorted(
                    repr(sorted((k, v) for k, v in r.items() if k != "_run")) for r in mirror
                )
                out[f"uncovered_ids_{entity}"] = _uncovered_ids(conn, entity, mirror)
        with recon.connect() as conn:
            out["watermarks"] = sorted(
                tuple(r) for r in conn.execute(text("SELECT entity, source, value FROM erpoa_watermark"))
            )
            out["xref"] = sorted(
                tuple(r)
                for r in conn.execute(text("SELECT entity, source, src_id, golden_key, active FROM erpoa_xref"))
            )
            out["pending"] = conn.execute(text("SELECT COUNT(*) FROM erpoa_watermark_pending")).scalar()
    finally:
        target.dispose()
        recon.dispose()
    return out


def _uncovered_ids(conn: Any, entity: str, mirror: Any) -> int:
    """Mirrored ids whose hash the live rows of `erpoa_ids_<entity>` lack (the sweep would miss their deletion)."""
    live: dict[str, list[np.ndarray]] = {}
    for source, data in conn.execute(text(f"SELECT _source, _hashes FROM erpoa_ids_{entity} WHERE _kind = 'live'")):
        live.setdefault(source, []).append(np.frombuffer(data, dtype="<u8"))
    uncovered = 0
    for source, rows in pd.DataFrame([dict(r) for r in mirror], columns=["_source", "_src_id"]).groupby("_source"):
        recorded = np.concatenate(live.get(source, [np.empty(0, dtype=np.uint64)]))
        uncovered += int((~np.isin(id_hashes(rows["_src_id"].astype(object)), recorded)).sum())
    return uncovered


def killed_sync(config_path: Path, point: str, nth: int, timeout: float = 120) -> bool:
    """Run `erpoa sync --full-refresh` in a subprocess that SIGKILLs itself at the point; True if it died there."""
    env = {**os.environ, "ERPOA_FAULT": f"{point}:{nth}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl.cli.app",
            "sync",
            "--full-refresh",
            "--no-flows",
            "--config",
            str(config_path),
            "--json",
        ],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode == -signal.SIGKILL


def rerun(config_path: Path) -> None:
    """The operator's rerun after a crash: a plain `erpoa sync` (incremental), in process."""
    summary, _ = run_sync(load_project(config_path))
    dispose_all()
    assert summary.status == "success", summary.message


def compare(reference: dict[str, Any], actual: dict[str, Any]) -> str:
    """'' when identical, else the first difference."""
    for key, ref in reference.items():
        act = actual.get(key)
        if ref != act:
            if isinstance(ref, list) and isinstance(act, list):
                missing = set(ref) - set(act)
                extra = set(act) - set(ref)
                return (
                    f"{key}: {len(missing)} missing, {len(extra)} unexpected (e.g. {next(iter(missing or extra), '')})"
                )
            return f"{key}: expected {ref!r}, got {act!r}"
    return ""
