"""Contract tests for every mapping file in `mappings/`: parametrised over the files, so a new one is covered.

A mapping file must load with the others, map every key field from every
source, own its target table, point its references at another entity's key,
have an expectation suite, and read only columns that exist in the demo source
schema (`--against-db`, on SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from etl.cli.demo_cmd import sqlite_urls, write_project
from etl.config.project import ProjectConfig, load_project
from etl.demo.generate import DemoSize, build_demo
from etl.mapping import registry
from etl.mapping.dbcheck import check_against_db
from etl.mapping.loader import MappingSet, load_mappings
from etl.mapping.model import EntityMapping

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
EXPECTATIONS = REPO / "expectations"
FILES = sorted([*MAPPINGS.glob("*.yaml"), *MAPPINGS.glob("*.yml")])
SMALL = DemoSize(departments=12, employees=60, requisitions=30, contracts=10)


@cache
def mapping_set() -> MappingSet:
    """All shipped mappings and code tables, loaded (and cross-checked) together, once."""
    return load_mappings(MAPPINGS)


def mapping_of(path: Path) -> EntityMapping:
    """The entity defined by `path`."""
    mappings = mapping_set()
    names = [name for name, file in mappings.files.items() if file.resolve() == path.resolve()]
    assert names, f"{path.name} defines no entity"
    return mappings.entities[names[0]]


ids = [p.stem for p in FILES]


@pytest.mark.unit
def test_there_are_mapping_files() -> None:
    assert len(FILES) >= 4


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_loads_with_the_others(path: Path) -> None:
    mapping = mapping_of(path)
    assert mapping.entity == path.stem, "name each file after its entity"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_every_source_maps_every_key_field(path: Path) -> None:
    mapping = mapping_of(path)
    for source, spec in mapping.sources.items():
        missing = [key for key in mapping.key if key not in spec.fields]
        assert not missing, f"{source} does not map key field(s) {missing}"
        for key in mapping.key:
            assert mapping.fields[key].nullable is False, f"key field {key} should say nullable: false"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_owns_its_target_table(path: Path) -> None:
    mapping = mapping_of(path)
    others = {
        (m.target.connection, m.target.table.lower()): name
        for name, m in mapping_set().entities.items()
        if name != mapping.entity
    }
    key = (mapping.target.connection, mapping.target.table.lower())
    assert key not in others, f"target table {mapping.target.table} also used by {others.get(key)}"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_references_point_at_the_key_of_an_earlier_entity(path: Path) -> None:
    mappings = mapping_set()
    mapping = mapping_of(path)
    order = list(mappings.entities)
    for field, (entity, other) in mapping.references.items():
        assert other in mappings.entities[entity].key, f"{field} references {entity}.{other}, not its key"
        assert order.index(entity) < order.index(mapping.entity), f"{entity} must sync before {mapping.entity}"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_every_field_is_fed_and_most_recent_has_a_stamp(path: Path) -> None:
    mapping = mapping_of(path)
    fed = {name for spec in mapping.sources.values() for name in spec.fields}
    assert set(mapping.fields) == fed, f"declared but never mapped: {sorted(set(mapping.fields) - fed)}"
    surv = mapping.survivorship
    rules = [surv.default, *surv.fields.values()]
    if "most_recent" in rules:
        assert surv.recency_field is not None
        for source, spec in mapping.sources.items():
            assert surv.recency_field in spec.fields, f"{source} does not map the recency field"


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_lookups_name_real_tables_and_transforms_parse(path: Path) -> None:
    mappings = mapping_set()
    mapping = mapping_of(path)
    for spec in mapping.sources.values():
        for fspec in spec.fields.values():
            for raw in fspec.transforms:
                name, args = registry.split_spec(raw)
                parsed = registry.parse_args(registry.get(name), args)
                if name == "lookup":
                    assert parsed.table in mappings.code_tables  # type: ignore[attr-defined]


@pytest.mark.unit
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_has_an_expectation_suite(path: Path) -> None:
    if not EXPECTATIONS.is_dir():
        pytest.skip("expectations/ does not exist yet (the expectation suites are being added separately)")
    entity = mapping_of(path).entity
    assert (EXPECTATIONS / f"{entity}.json").is_file(), f"expectations/{entity}.json is missing"


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectConfig]:
    """A small demo ERP and OA on SQLite and a project config pointing at them."""
    folder = tmp_path_factory.mktemp("demo")
    urls = sqlite_urls(folder)
    build_demo(urls["erp"], urls["oa"], SMALL, seed=7)
    yield load_project(write_project(folder, urls))
    from etl.db.connect import dispose_all

    dispose_all()


@pytest.mark.sqlite
@pytest.mark.parametrize("path", FILES, ids=ids)
def test_every_source_column_exists_in_the_demo_schema(demo_config: ProjectConfig, path: Path) -> None:
    mappings = mapping_set()
    file = mappings.source_maps[mapping_of(path).entity].file
    issues = [issue for issue in check_against_db(demo_config, mappings) if issue.file == file]
    assert not issues, "\n".join(str(issue) for issue in issues)
