"""A login without the grants the flows need (UPDATE on `erpoa_flow_lock`, INSERT on the ERP tables) is the
connection's problem, reported once for the flow with the fix (docs/security.md): it used to be quarantined as
"the ERP refused the document" for every approved request, each held and retried as if its data were wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.flows.run import run_flows
from etl.store.repo import Store
from tests.conftest import PG_ADMIN
from tests.flows.test_flow_fixes_s22 import SIZE, _copy_request, _links
from tests.helpers.project import make_project, urls_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def read_only_role(pg_url: str) -> Iterator[str]:
    """A PostgreSQL login that may read the test schema's tables but not write them; dropped afterwards."""
    role = f"t_ro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    try:
        yield role
    finally:
        with sa.create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_a_login_without_write_grants_fails_the_flow_once_with_the_fix(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, read_only_role: str
) -> None:
    folder = tmp_path / "p"
    config, _ = make_project(folder, urls_for("postgres", request, folder), size=SIZE, seed=11)
    first = run_flows(config, flows=["purchase_order"]).flows[0]
    assert first.status == "success", first.message
    schema = pg_url.rsplit("%3D", 1)[1]
    with sa.create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema}" TO {read_only_role}'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {read_only_role}'))
    data: dict[str, Any] = yaml.safe_load(config.config_path.read_text(encoding="utf-8"))
    data["connections"]["erp_write"] = {"url": pg_url.replace("://postgres@", f"://{read_only_role}@", 1)}
    config.config_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_project(config.config_path)
    like = sorted(_links(config))[0]
    _copy_request(config, like, 990030, "QG-S22-900030")
    _copy_request(config, like, 990031, "QG-S22-900031")
    summary = run_flows(config, flows=["purchase_order"])
    po = summary.flows[0]
    assert po.status == "failed" and po.refused == 0, po
    assert "permission denied" in (po.message or "") and "docs/security.md" in (po.message or ""), po.message
    assert "connections.erp_write" in (po.message or "")
    # the run's message names the flow once
    assert (summary.message or "").startswith("purchase_order: writing the document of request "), summary.message
    store = Store(sa.create_engine(config.connection("recon").sqlalchemy_url()))
    held = store.quarantine(entity="purchase_order", status="open")
    assert not (held["rule"] == "erp_refused").any(), held
    assert not {"990030", "990031"} & set(_links(config))
    store.engine.dispose()
    dispose_all()
