"""Broken mapping files: each mistake is reported at its file, line and column, with its key path.

Every file in `tests/mapping/broken/` (code tables in `broken/codes/`) is a
mapping a steward could plausibly write. A case copies the shipped `mappings/`
into a temporary project, adds its broken file(s), runs `erpoa mappings check`
through the real CLI and asserts the exact issues: `file:line:col key.path:`
and a fragment of the message, the exit code 2 and that no traceback reaches
the user. The shipped mappings themselves must stay clean, so every issue
printed belongs to the case.

`doc` is the part of the message that names the error family; the error
catalogue in docs/mapping.md must quote it (see `test_error_catalogue_*`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli.app import app
from etl.errors import ConfigError
from etl.mapping.loader import load_mappings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).resolve().parent / "broken"
DOCS = REPO / "docs" / "mapping.md"
CONFIG = """\
connections:
  erp: {url: "sqlite:///erp.db"}
  oa: {url: "sqlite:///oa.db"}
  target: {url: "sqlite:///target.db"}
  recon: {url: "sqlite:///recon.db"}
mappings: mappings
"""



# Where the shipped employee mapping names its target table (cases below refer to it).
EMPLOYEE_TARGET_LINE = next(
    number
    for number, line in enumerate((Path(__file__).parents[2] / "mappings" / "employee.yaml").read_text(
        encoding="utf-8").splitlines(), 1)
    if line.strip() == "table: md_employee"
)

@dataclass(frozen=True)
class Issue:
    """One expected line of `erpoa mappings check` output."""

    file: str  # relative to the checked folder
    line: int | None
    column: int | None
    path: str
    fragment: str

    @property
    def prefix(self) -> str:
        where = f"mappings/{self.file}"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where} {self.path}: " if self.path else f"{where}: "


@dataclass(frozen=True)
class Broken:
    """A broken file (plus companions) and every issue it must produce."""

    files: tuple[str, ...]
    issues: tuple[Issue, ...]
    doc: str
    with_config: bool = False  # check through erpoa.yaml, so that connection names are known

    @property
    def id(self) -> str:
        return Path(self.files[0]).stem


def case(file: str, line: int | None, column: int | None, path: str, fragment: str, *, doc: str) -> Broken:
    """A single-file case with one issue."""
    return Broken((file,), (Issue(file, line, column, path, fragment),), doc)


T = "sources.erp.fields.supplier_code.transforms[1]"
CASES: list[Broken] = [
    # ---------------------------------------------------------------- YAML itself
    case("yaml_syntax_error.yaml", 6, 7, "",
         "YAML syntax error: expected ',' or '}', but got ':' (while parsing a flow mapping that starts at line 5, "
         "column 18)", doc="YAML syntax error"),
    case("tab_indent.yaml", 5, 1, "",
         "YAML syntax error: found character '\\t' that cannot start any token (a tab; YAML is indented with spaces "
         "only)", doc="YAML is indented with spaces"),
    case("duplicate_yaml_key.yaml", 14, 7, "sources.erp.fields.name", "duplicate key; keep only one of them",
         doc="duplicate key"),
    case("empty_file.yaml", None, None, "", "the file is empty", doc="the file is empty"),
    # ---------------------------------------------------------------- structure and types
    case("unknown_top_level_key.yaml", 16, 1, "quailty",
         "unknown key 'quailty'; did you mean 'quality'? allowed keys: entity, description", doc="unknown key"),
    case("unknown_source_key.yaml", 10, 5, "sources.erp.filer", "unknown key 'filer'; did you mean 'filter'?",
         doc="did you mean"),
    case("missing_target.yaml", 2, 1, "target", "required key 'target' is missing; add it", doc="is missing; add it"),
    case("wrong_type.yaml", 5, 55, "fields.supplier_code.nullable", "expected true or false, got 'sometimes'",
         doc="expected true or false"),
    case("unknown_field_type.yaml", 6, 16, "fields.name.type",
         "got 'text'; Input should be 'string', 'integer', 'decimal', 'date', 'datetime' or 'boolean'",
         doc="Input should be 'string'"),
    case("entity_name_invalid.yaml", 2, 9, "entity",
         "entity name 'Supplier-Master' must be lower-case letters, digits and _", doc="must be lower-case letters"),
    case("decimal_without_scale.yaml", 6, 17, "fields.credit_limit", "a decimal field needs `scale:`",
         doc="a decimal field needs `scale:`"),
    case("scale_on_non_decimal.yaml", 6, 16, "fields.credit_days",
         "`scale` applies to decimal fields only; this field is integer", doc="applies to decimal fields only"),
    case("reference_malformed.yaml", 6, 20, "fields.department_code",
         "references 'department' must be written entity.field", doc="must be written entity.field"),
    case("survivorship_bad_rule.yaml", 18, 11, "survivorship.fields.name",
         "got 'latest'; expected a list (`- item` lines or `[a, b]`) or 'most_recent'", doc="or 'most_recent'"),
    # ---------------------------------------------------------------- sources
    Broken(
        ("bad_identifier.yaml",),
        (
            Issue("bad_identifier.yaml", 9, 12, "sources.erp.table",
                  "name 'users; drop table x' is not a plain identifier (letters, digits, _ ; optionally "
                  "schema.table); use `query:` for anything more complex"),
            Issue("bad_identifier.yaml", 13, 13, "sources.erp.fields.name.from",
                  "column 'cVenName) --' is not a plain identifier"),
        ),
        doc="is not a plain identifier",
    ),
    case("query_not_select.yaml", 9, 12, "sources.erp.query",
         "`query` must be a read-only SELECT (or WITH ... SELECT) statement", doc="must be a read-only SELECT"),
    case("query_two_statements.yaml", 9, 12, "sources.erp.query", "`query` must be one statement; remove the ';'",
         doc="must be one statement"),
    case("table_and_query.yaml", 8, 3, "sources.erp",
         "give exactly one of `table:` (with optional `filter:`) or `query:`", doc="give exactly one of `table:`"),
    case("neither_table_nor_query.yaml", 8, 3, "sources.erp", "give exactly one of `table:`",
         doc="give exactly one of `table:`"),
    case("overlap_not_duration.yaml", 12, 14, "sources.erp.overlap",
         "'ten minutes' is not a duration; write e.g. 30s, 10m, 2h or 1d", doc="is not a duration"),
    case("multi_column_without_concat.yaml", 14, 15, "sources.oa.fields.updated_at.from",
         "several columns need a first transform that combines them: concat or coalesce",
         doc="several columns need a first transform"),
    case("missing_from.yaml", 13, 13, "sources.erp.fields.name",
         "no `from:` column; give one, or use the `constant` transform", doc="no `from:` column"),
    case("unknown_canonical_field.yaml", 13, 7, "sources.erp.fields.nmae",
         "canonical field 'nmae' not found; did you mean 'name'? known: name, supplier_code; declare it under fields:",
         doc="canonical field"),
    # ---------------------------------------------------------------- keys
    case("key_not_declared.yaml", 3, 22, "key[1]",
         "key field 'vendor_no' not found; known: name, supplier_code; declare it under fields:", doc="key field"),
    case("key_not_mapped.yaml", 17, 5, "sources.oa.fields",
         "key field 'supplier_code' is not mapped from oa; every source must map every key field",
         doc="every source must map every key field"),
    # ---------------------------------------------------------------- transforms
    case("unknown_transform.yaml", 17, 13, "sources.erp.fields.name.transforms[1]",
         "transform 'trimm' not found; did you mean 'trim'? known: coalesce, concat", doc="transform '"),
    case("transform_unknown_arg.yaml", 16, 35, f"{T}.pad_zeros.fill", "unknown key 'fill'; allowed keys: width, char",
         doc="allowed keys"),
    case("transform_bad_regex.yaml", 16, 38, f"{T}.regex_replace.pattern",
         "invalid regular expression '[^A-Z0-9': unterminated character set", doc="invalid regular expression"),
    case("transform_scalar_without_shorthand.yaml", 16, 13, T,
         "transform 'regex_replace' takes no scalar argument; write it as a mapping of arguments",
         doc="takes no scalar argument"),
    case("transform_two_keys.yaml", 16, 13, T, "a transform is a name (`- trim`) or a one-key mapping",
         doc="a transform is a name"),
    case("unknown_code_table.yaml", 15, 37, "sources.erp.fields.department_code.transforms[1].lookup",
         "code table 'departments' not found; did you mean 'department'? "
         "known: contract_kind, contract_status, department, employee_status", doc="code table '"),
    case("bad_unmapped_policy.yaml", 15, 67, "sources.erp.fields.department_code.transforms[1].lookup.unmapped",
         "got 'ignore'; expected 'fail', 'quarantine' or 'pass' or a mapping", doc="expected 'fail', 'quarantine'"),
    Broken(
        ("bad_date_format.yaml",),
        (
            Issue("bad_date_format.yaml", 14, 55, "sources.oa.fields.created.transforms[0].parse_date.format",
                  "format 'YYYY-MM-DD' has no strftime directive; write e.g. %Y-%m-%d"),
            Issue("bad_date_format.yaml", 15, 94, "sources.oa.fields.updated_at.transforms[0].parse_datetime.timezone",
                  "unknown timezone 'Asia/Peking'; use an IANA name such as Asia/Shanghai"),
        ),
        doc="has no strftime directive",
    ),
    # ---------------------------------------------------------------- survivorship
    case("survivorship_unknown_source.yaml", 17, 12, "survivorship.fields.name[0]", "source 'hr' not found; known: erp",
         doc="source '"),
    case("most_recent_without_recency.yaml", 18, 11, "survivorship.fields.name",
         "`most_recent` needs `survivorship.recency_field:` naming a datetime field",
         doc="`most_recent` needs `survivorship.recency_field:`"),
    case("recency_not_date.yaml", 19, 18, "survivorship.recency_field",
         "recency field must be a date or datetime, not string", doc="recency field must be a date or datetime"),
    # ---------------------------------------------------------------- across entities
    Broken(
        ("duplicate_target_table.yaml",),
        (
            Issue("duplicate_target_table.yaml", 15, 10, "target.table",
                  "target table 'MD_EMPLOYEE' is also used by entity 'employee' "
                  f"(mappings/employee.yaml:{EMPLOYEE_TARGET_LINE}); "
                  "give each entity its own target table"),
            Issue("employee.yaml", EMPLOYEE_TARGET_LINE, 10, "target.table",
                  "target table 'md_employee' is also used by entity 'supplier' "
                  "(mappings/duplicate_target_table.yaml:15)"),
        ),
        doc="is also used by entity",
    ),
    case("reference_unknown_entity.yaml", 6, 59, "fields.department_code.references",
         "entity 'dept' not found; known: contract, department, employee, purchase, supplier", doc="entity '"),
    case("reference_unknown_field.yaml", 6, 59, "fields.department_code.references",
         "department field 'code' not found; known: department_code, is_leaf, name, status, updated_at",
         doc="field 'code'"),
    case("depends_on_unknown.yaml", 14, 14, "depends_on[0]", "entity 'employe' not found; did you mean 'employee'?",
         doc="not found; did you mean"),
    Broken(
        ("cycle_a.yaml", "cycle_b.yaml"),
        (
            Issue("cycle_a.yaml", 12, 14, "depends_on[0]",
                  "entities depend on each other in a cycle: cycle_a -> cycle_b -> cycle_a; remove one dependency"),
        ),
        doc="depend on each other in a cycle",
    ),
    Broken(
        ("unknown_connection.yaml",),
        (
            Issue("unknown_connection.yaml", 9, 17, "sources.erp.connection",
                  "connection 'srm' not found; known: erp, oa, recon, target"),
            Issue("unknown_connection.yaml", 17, 15, "target.connection",
                  "connection 'targt' not found; did you mean 'target'? known: erp, oa, recon, target"),
        ),
        doc="connection '",
        with_config=True,
    ),
    # ---------------------------------------------------------------- code tables
    case("codes/same_spelling_two_codes.yaml", 5, 48, "entries[1].synonyms[1]",
         "'采购' maps to both 'PURCHASE' and 'FRAME'; keep it under one entry", doc="maps to both"),
    case("codes/valid_to_before_from.yaml", 5, 5, "entries[1]",
         "valid_to 2026-06-30 is before valid_from 2026-07-01; swap them", doc="is before valid_from"),
    case("codes/name_mismatch.yaml", 2, 7, "name",
         "code table name 'departments' must match its file name 'name_mismatch'", doc="must match its file name"),
    case("codes/bad_date.yaml", 5, 17, "",
         "invalid value: '2026-13-01' looks like a date but is not one (month must be in 1..12)",
         doc="looks like a date but is not one"),
    case("codes/unquoted_codes.yaml", 3, 41, "entries[0].synonyms[0]",
         "YAML reads 0101 as the number 65; quote it (\"0101\") to keep it as written", doc="YAML reads 0101"),
    case("unquoted_map_key.yaml", 13, 66, "sources.erp.fields.grade.transforms[0].map_values.mapping.01",
         "YAML reads 01 as the number 1; quote it (\"01\")", doc="quote it ("),
    Broken(
        ("codes/bad_entry_key.yaml",),
        (
            Issue("codes/bad_entry_key.yaml", 3, 29, "entries[0].synonym",
                  "unknown key 'synonym'; did you mean 'synonyms'?"),
            Issue("codes/bad_entry_key.yaml", 4, 5, "entries[1].code", "required key 'code' is missing; add it"),
        ),
        doc="required key",
    ),
    # ---------------------------------------------------------------- several at once
    Broken(
        ("several_errors.yaml",),
        (
            Issue("several_errors.yaml", 5, 55, "fields.supplier_code.nullable",
                  "expected true or false, got 'no_way'"),
            Issue("several_errors.yaml", 6, 11, "fields.amount", "a decimal field needs `scale:`"),
            Issue("several_errors.yaml", 7, 24, "fields.name.lenght", "unknown key 'lenght'; did you mean 'length'?"),
            Issue("several_errors.yaml", 12, 14, "sources.erp.overlap", "'10 minutes' is not a duration"),
        ),
        doc="unknown key",
    ),
    Broken(
        ("mistakes_beside_a_duplicate_key.yaml",),
        (
            Issue("mistakes_beside_a_duplicate_key.yaml", 8, 3, "fields.name", "duplicate key; keep only one of them"),
            Issue("mistakes_beside_a_duplicate_key.yaml", 8, 42, "fields.name.pii",
                  "expected true or false, got 'perhaps'"),
            Issue("mistakes_beside_a_duplicate_key.yaml", 18, 12, "survivorship.fields.name[0]",
                  "source 'hr' not found; known: erp"),
            Issue("mistakes_beside_a_duplicate_key.yaml", 22, 24, "quality.max_quarantined_pct",
                  "expected a number from 0 to 100, got 150"),
        ),
        doc="duplicate key",
    ),
    Broken(
        ("several_checks.yaml",),
        (
            Issue("several_checks.yaml", 13, 58, "sources.erp.fields.supplier_code.transforms[1]",
                  "transform 'trimm' not found; did you mean 'trim'?"),
            Issue("several_checks.yaml", 14, 65, "sources.erp.fields.amount.transforms[0].decimal.rounding",
                  "unknown key 'rounding'; allowed keys: scale, on_excess_scale, on_error"),
            Issue("several_checks.yaml", 15, 63, "sources.erp.fields.department_code.transforms[0].lookup",
                  "code table 'dept' not found"),
            Issue("several_checks.yaml", 19, 5, "sources.oa.fields",
                  "key field 'supplier_code' is not mapped from oa"),
            Issue("several_checks.yaml", 22, 18, "survivorship.default[1]", "source 'srm' not found; known: erp, oa"),
        ),
        doc="not found",
    ),
]  # fmt: skip


def project_with(tmp_path: Path, files: tuple[str, ...]) -> Path:
    """A project folder: the shipped mappings and code tables plus the broken files; returns its mappings folder."""
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", folder, ignore=shutil.ignore_patterns("flows"))
    for name in files:
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BROKEN / name, dest)
    (tmp_path / "erpoa.yaml").write_text(CONFIG, encoding="utf-8")
    return folder


def check(tmp_path: Path, broken: Broken) -> tuple[int, str, BaseException | None]:
    """Run `erpoa mappings check` on the case's project; (exit code, everything printed, exception)."""
    folder = project_with(tmp_path, broken.files)
    args = ["mappings", "check", "--config", str(tmp_path / "erpoa.yaml")]
    if not broken.with_config:
        args = ["mappings", "check", str(folder)]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, result.exception


@pytest.mark.parametrize("broken", CASES, ids=[c.id for c in CASES])
def test_broken_mapping_is_reported_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: Broken
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output, exception = check(tmp_path, broken)
    assert "Traceback" not in output
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert code == 2, output
    lines = [line.strip() for line in output.splitlines()]
    assert f"error: {len(broken.issues)} problem(s) in the configuration:" in lines, output
    for issue in broken.issues:
        hits = [line for line in lines if line.startswith(issue.prefix)]
        assert hits, f"no line starts with {issue.prefix!r}:\n{output}"
        assert any(issue.fragment in line for line in hits), f"{issue.fragment!r} not in {hits}"


def test_several_errors_in_one_file_come_in_one_run_in_line_order(tmp_path: Path) -> None:
    for name, count in [("several_errors.yaml", 4), ("several_checks.yaml", 5)]:
        folder = project_with(tmp_path / name, (name,))
        with pytest.raises(ConfigError) as caught:
            load_mappings(folder)
        issues = [i for i in caught.value.issues if i.file.endswith(name)]
        assert len(issues) == count == len(caught.value.issues)
        assert [i.line for i in issues] == sorted(i.line or 0 for i in issues)


def test_the_shipped_mappings_are_clean_so_every_issue_belongs_to_its_case(tmp_path: Path) -> None:
    assert load_mappings(project_with(tmp_path, ())).entities


def test_every_broken_file_has_a_case() -> None:
    files = {p.relative_to(BROKEN).as_posix() for p in BROKEN.rglob("*.yaml")}
    used = {name for broken in CASES for name in broken.files}
    assert files == used, f"without a case: {sorted(files - used)}; missing: {sorted(used - files)}"


def test_at_least_25_distinct_broken_files() -> None:
    assert len({p.read_text(encoding="utf-8") for p in BROKEN.rglob("*.yaml")}) >= 25


@pytest.mark.skipif(not DOCS.exists(), reason="docs/mapping.md not written yet")
def test_error_catalogue_in_the_docs_quotes_every_error_family() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = sorted({broken.doc for broken in CASES if broken.doc not in text})
    assert not missing, f"docs/mapping.md (error catalogue) does not mention: {missing}"


@pytest.mark.skipif(not DOCS.exists(), reason="docs/mapping.md not written yet")
def test_error_catalogue_examples_are_what_the_loader_prints(tmp_path: Path) -> None:
    """Every `mappings/...:L:C path: message` example line in the docs is printed by a case above."""
    text = DOCS.read_text(encoding="utf-8")
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("mappings/") and ".yaml" in line]
    assert examples, "the error catalogue shows no example output lines"
    printed = {
        f"{issue.prefix}{issue.fragment}" for broken in CASES for issue in broken.issues
    }
    unknown = [e for e in examples if not any(e.startswith(p) or p.startswith(e) for p in printed)]
    assert not unknown, f"docs examples not backed by a broken-file case: {unknown}"


@pytest.mark.skipif(not DOCS.exists(), reason="docs/mapping.md not written yet")
def test_transform_reference_in_the_docs_is_generated_from_the_registry() -> None:
    from etl.mapping.docs import updated

    text = DOCS.read_text(encoding="utf-8")
    assert updated(text) == text, "docs/mapping.md is out of date: run `python -m etl.mapping.docs`"


@pytest.mark.skipif(not DOCS.exists(), reason="docs/mapping.md not written yet")
def test_the_docs_describe_every_key_of_the_language() -> None:
    from etl.mapping import model
    from etl.mapping.codes import CodeEntry, CodeTable
    from etl.yamlio import allowed_keys

    text = DOCS.read_text(encoding="utf-8")
    models = [
        model.EntityMapping, model.CanonicalField, model.SourceSpec, model.SourceField, model.ApprovalSpec,
        model.Survivorship, model.TargetSpec, model.DeletionSpec, model.QualitySpec, CodeTable, CodeEntry,
    ]  # fmt: skip
    missing = sorted({f"{m.__name__}.{key}" for m in models for key in allowed_keys(m) if f"`{key}" not in text})
    assert not missing, f"keys without documentation in docs/mapping.md: {missing}"
