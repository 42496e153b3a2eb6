"""docs/configuration.md documents every key of erpoa.yaml, and its example loads as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.config.project import ConnectionConfig, ProjectConfig, RunSettings, load_project
from etl.yamlio import allowed_keys

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    keys = {*allowed_keys(ProjectConfig), *allowed_keys(ConnectionConfig), *allowed_keys(RunSettings)}
    missing = sorted(k for k in keys if not re.search(rf"`{k}`|^\s*{k}:", text, re.M))
    assert missing == []
    for name in ("erp", "oa", "target", "recon", "erp_write", "oa_write"):
        assert re.search(rf"^  {name}:", text, re.M), f"connection {name} missing from the example"


def test_documented_example_loads_and_states_real_defaults(tmp_path: Path, monkeypatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example
    for var in set(re.findall(r"\$\{([A-Z_]+)\}", example.group(1))):
        monkeypatch.setenv(var, "Pw0rdFromEnv")
    path = tmp_path / "erpoa.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    config = load_project(path)
    assert config.connection("oa_write").connect_args["password"] == "Pw0rdFromEnv"
    assert "Pw0rdFromEnv" in config.secrets()
    defaults = RunSettings()
    assert defaults.max_quarantined_pct is None and defaults.max_quarantined_rows is None
    assert "default gate threshold" not in text
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", text, re.M))
    assert rows["max_quarantined_pct"] == rows["max_quarantined_rows"] == "none"
    assert rows["chunk_size"] == str(defaults.chunk_size) and rows["retries"] == str(defaults.retries)
