"""`erpoa xref`: an unknown entity is refused as sync, plan and reconcile refuse it (exit 2, the known entities);
no match exits 1 in text and JSON alike; a composite key is written with '|'; links found under an approval flow's
name say so in the text output; a key typed as a source spells it (no leading zeros, full-width digits, a
department's name) is read through the entity's key mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from etl.cli.app import app
from etl.config.project import load_project
from etl.db.connect import dispose_all
from etl.engine.pipeline import open_store
from etl.store import schema as s
from tests.helpers.project import synced_sqlite_project

pytestmark = pytest.mark.sqlite


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A demo project after a full sync with its approval flows (purchase and purchase_order links in the store)."""
    return synced_sqlite_project(tmp_path_factory.mktemp("xref"))


def _key(project: str, entity: str, source: str, *, composite: bool = False) -> tuple[str, str]:
    """(golden key, source id) of a link of `entity` from `source` in the store."""
    with open_store(load_project(Path(project)), read_only=True).engine.connect() as conn:
        rows = conn.execute(
            select(s.xref.c.golden_key, s.xref.c.src_id).where(s.xref.c.entity == entity, s.xref.c.source == source)
        ).all()
    dispose_all()
    rows = [r for r in rows if ("|" in r[0]) == composite]
    assert rows, f"no {entity} link from {source}"
    return str(rows[0][0]), str(rows[0][1])


def _run(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["xref", *args])
    return done.exit_code, done.output


def test_an_unknown_entity_is_refused_like_sync_does(project: str) -> None:
    code, text = _run("foo", "1", "--config", project)
    assert code == 2, text
    assert "unknown entity 'foo'" in text and "known entities: department" in text
    assert "purchase_order" in text  # the approval flows, whose links xref shows too
    assert "No cross-reference" not in text
    code, output = _run("foo", "1", "--config", project, "--json")
    assert code == 2 and json.loads(output)["error"] == "ConfigError"
    sync = CliRunner().invoke(app, ["sync", "foo", "--config", project])
    assert sync.exit_code == 2 and "unknown entity 'foo'" in sync.output


def test_no_match_exits_1_in_text_and_json(project: str) -> None:
    code, text = _run("department", "NO-SUCH-KEY", "--config", project)
    assert code == 1 and "No cross-reference for department 'NO-SUCH-KEY'" in text
    code, output = _run("department", "NO-SUCH-KEY", "--config", project, "--json")
    assert code == 1, output
    assert json.loads(output) == {"entity": "department", "query": "NO-SUCH-KEY", "links": []}


def test_a_composite_key_is_written_with_a_bar(project: str) -> None:
    golden, src_id = _key(project, "purchase", "oa", composite=True)
    code, text = _run("purchase", golden, "--config", project)
    assert code == 0 and golden in text and "approval flow" not in text
    code, output = _run("purchase", golden, "--config", project, "--json")
    assert code == 0 and (src_id, golden) in {(x["src_id"], x["golden_key"]) for x in json.loads(output)["links"]}
    code, text = _run("--help")
    assert code == 0 and "'|' between its parts" in text and "QG2026000002|1" in text


def test_links_of_an_approval_flow_name_the_flow(project: str) -> None:
    po_no, _ = _key(project, "purchase_order", "erp")
    code, output = _run("purchase", po_no, "--config", project, "--json")
    assert code == 0 and {x["entity"] for x in json.loads(output)["links"]} == {"purchase_order"}
    code, text = _run("purchase", po_no, "--config", project)
    assert code == 0 and f"purchase {po_no} · links of approval flow purchase_order" in text
    code, text = _run("purchase_order", po_no, "--config", project)  # a flow's name is an xref entity
    assert code == 0 and po_no in text and "links of approval flow" not in text


def test_a_key_typed_as_a_source_spells_it_is_read_through_the_key_mapping(project: str) -> None:
    golden, _ = _key(project, "employee", "erp")
    assert golden.startswith("0"), golden
    bare = golden.lstrip("0")
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in bare)
    for typed in (bare, full_width):
        code, output = _run("employee", typed, "--config", project, "--json")
        found = json.loads(output)
        assert code == 0 and found["matched_key"] == golden and found["read_by"] == "erp", output
        assert golden in {x["golden_key"] for x in found["links"]}
    code, text = _run("employee", full_width, "--config", project)
    assert code == 0 and f"'{full_width}' is read as employee '{golden}' (as the erp mapping reads its key)" in text
    code, text = _run("department", "市场部", "--config", project)  # a name the department code table knows
    assert code == 0 and "'市场部' is read as department 'D0101'" in text


def test_a_source_id_and_a_spelled_key_that_both_match_are_both_shown(project: str) -> None:
    """`5` is the OA id of one person and, read as the ERP spells work codes, the key 000005 of another."""
    with open_store(load_project(Path(project)), read_only=True).engine.connect() as conn:
        links = conn.execute(
            select(s.xref.c.golden_key, s.xref.c.src_id).where(s.xref.c.entity == "employee", s.xref.c.source == "oa")
        ).all()
    dispose_all()
    keys = {str(g) for g, _ in links}
    both = [(str(i), str(g)) for g, i in links if str(i).isdigit() and str(i).zfill(6) in keys and str(i).zfill(6) != g]
    assert both, "the demo has no OA id that is also a work code without its zeros"
    typed, by_id = both[0]
    code, output = _run("employee", typed, "--config", project, "--json")
    found = json.loads(output)
    assert code == 0 and found["matched_key"] == typed.zfill(6), output
    assert {x["golden_key"] for x in found["links"]} == {by_id, typed.zfill(6)}
    code, text = _run("employee", typed, "--config", project)
    assert f"'{typed}' is also read as employee '{typed.zfill(6)}'" in text


def test_a_misspelt_entity_in_reconcile_list_is_refused_with_the_flows_among_the_suggestions(project: str) -> None:
    """`reconcile list --entity purchase_ordr` printed "differences: 0" (exit 0); the did-you-mean of xref and
    reconcile looked among the entities only (purchase_ordr -> 'purchase')."""
    done = CliRunner().invoke(app, ["reconcile", "list", "--entity", "purchase_ordr", "--config", project])
    assert done.exit_code == 2, done.output
    assert done.output.startswith("error: option --entity: unknown entity 'purchase_ordr'; did you mean "
                                  "'purchase_order'?"), done.output  # a command-line mistake: no "configuration"
    assert "approval flows: contract_archive, purchase_order" in done.output
    listed = CliRunner().invoke(app, ["reconcile", "list", "--entity", "purchase_order", "--config", project, "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] >= 0
    code, text = _run("purchase_ordr", "1", "--config", project)
    assert code == 2 and "did you mean 'purchase_order'?" in text, text


def test_reconcile_run_of_a_flow_points_to_flows_run(project: str) -> None:
    done = CliRunner().invoke(app, ["reconcile", "run", "purchase_order", "--config", project])
    assert done.exit_code == 2, done.output
    assert "'purchase_order' is an approval flow: `erpoa flows run --flow purchase_order` audits it" in " ".join(
        done.output.split()
    ), done.output
