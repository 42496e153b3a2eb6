"""Figures of the reliability suite: each test records its numbers; `python -m tests.reliability.figures` renders them.

Tests call `record(test, title, **figures)`; the numbers are merged into
`var/test-artifacts/reliability.json` (one entry per test, replaced on every run).
`render()` turns that file into `docs/reliability.md`, so the document only ever
shows numbers of an actual run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "var" / "test-artifacts" / "reliability.json"
DOC = REPO / "docs" / "reliability.md"

# Sections of docs/reliability.md, in order: file stem -> heading.
SECTIONS = {
    "test_process_faults": "Process faults (SIGKILL at seeded points, then rerun)",
    "test_outages": "Database outages (connections dropped mid-extract and mid-publish)",
    "test_hostile_data": "Hostile and broken data",
    "test_hostile_config": "Hostile and broken configuration",
    "test_secrets": "Secrets and personal data",
    "test_concurrency": "Concurrency",
    "test_load": "Sustained load (incremental cycles vs. a fresh full sync)",
}


# Problems this suite found, and their fixes: (found by, problem, fix).
FOUND = [
    ('load',
     'a duplicated key whose members were set aside stayed out of the mirror: an incremental run that '
     're-read one member no longer saw the other and published it',
     'duplicate members are mirrored (status `duplicate`), so every rebuild of the key finds the duplicate '
     'again (`tests/engine/test_sync.py::test_duplicate_stays_quarantined_when_one_member_changes_alone`)'),
    ('review',
     'a source record whose business key changed (e.g. a corrected 工号) was published under the new key '
     'while the old golden record stayed active for ever, even after a full refresh',
     'the old key is staged as `moved`: its golden record is rebuilt without the record and inactivated '
     'when nothing else contributes (`test_sync.py::test_changed_business_key_moves_the_record`)'),
    ('hostile data',
     'a `9999-12-31` date in a DATE column (a common "open end" sentinel) crashed the mapping with '
     '`OutOfBoundsDatetime`',
     "dates outside pandas' range are invalid values: the row is quarantined (`type:date`)"),
    ('hostile data',
     'an integer text beyond 64 bits crashed the chunk; beyond 2**53 it was silently altered',
     'such values are quarantined (`type:integer`)'),
    ('hostile data',
     "a NUL byte in text would fail PostgreSQL's COPY (and the quarantine write)",
     'rows with NUL in a text field are quarantined (`type:string`, a reason naming NUL); the store '
     'escapes NUL'),
    ('hostile data',
     'on MariaDB, keys differing only by trailing blanks (`A1 ` / `A1`) were one key under '
     '`utf8mb4_bin` (PAD SPACE): the second row silently overwrote the first',
     'engine tables are created with a NO PAD binary collation'),
    ('hostile configuration',
     'a recursive YAML alias crashed with `RecursionError`; an alias bomb hung the loader',
     'aliases are bounded (expansion limit, recursion refused), deep nesting is a located error'),
    ('hostile configuration',
     '`--json` output became invalid JSON when an error message contained `PWD=` (redaction ran past '
     'the closing quote)',
     'masking stops at quotes and backslashes'),
    ('hostile configuration',
     'an unreachable store or target database gave an uncaught `OperationalError` (no JSON, "internal'
     ' error")',
     'store opening and every stage classify database errors: the entity fails with a message'),
    ('hostile configuration',
     'log records written after `sys.stderr` was swapped (test runners, embedding apps) failed with '
     '"I/O operation on closed file"',
     'the log handler writes to the current `sys.stderr`'),
    ('secrets',
     'a password put in the environment without URL-encoding leaked its second half as a "host name" '
     'in driver errors; an unparsable URL was printed in full',
     'both are located configuration errors that never show the value'),
    ('secrets / PII',
     'Data Docs showed unmasked values of `pii: true` fields; quarantine rows stored them unmasked '
     '(`value`, `raw`)',
     'masked in both'),
    ('concurrency',
     'a sync that found an entity locked exited 1 like any failure',
     'it exits 5 ("another sync holds the lock") once the run is recorded; since session 21 the locked entity '
     'fails alone, the summary lists every entity and the flows still run'),
    ('outages',
     '"database unavailable (...); will be retried (gave up after N retries)"',
     'the final message drops "will be retried"'),
    ('load',
     'the cross-reference kept a deleted source record linked (active) to a golden record that lives '
     'on through the other source',
     'links of vanished records are deactivated before the publish (crash-safe: repeated until the '
     'mirror forgets them)'),
    ('load',
     'hashes of a partition with an inactivated key were stored rounded to 53 bits (float64)',
     'the hash column stays an exact Int64'),
    ('load',
     'the same gate or integrity finding of a golden record stayed open twice when the golden record '
     'was built from other sources the next time',
     'a newer finding of the same golden key and rule supersedes the older one'),
    ('review',
     'a password holding a raw `@` after a `/` got past the load-time check and leaked its tail into '
     'messages, logs and the store; a literal password hidden in a `${VAR:-default}`, beside a variable '
     'or in `connect_args` was accepted; a one-character password turned every `1` of `--json` into `***`',
     'such URLs and literal passwords are refused at load; short secrets are masked only where they '
     'stand as a password (`tests/config/test_secret_rules.py`)'),
    ('review',
     '`erpoa sync` exited 1 for every failed entity although exit codes 3, 4 and 6 were documented; '
     '`erpoa plan` exited 0 with failed entities',
     'both exit with the first failed entity\'s code; `--json` names each failed entity\'s error '
     '(`tests/engine/test_cli_sync.py`)'),
    ('review',
     'an unparseable cursor value crashed the run with an internal error and left it `running` for ever',
     'a data error naming the column, the values and their ids; any crash records the run as failed '
     '(`tests/engine/test_error_handling.py`)'),
    ('review',
     '`erpoa quarantine retry` refused to publish a repaired row because the replayed rows still bad '
     'counted against `max_quarantined_pct`',
     'the gate counts only records a replay quarantines anew (`tests/engine/test_quarantine_replay.py`)'),
    ('review',
     'a duplicate YAML key hid every other error of its file; a file that failed to load made its '
     'references look missing elsewhere',
     'all of a file\'s errors in one round, and no follow-on "not found" (`tests/mapping/test_all_issues_at_once.py`)'),
    ('review',
     'Airflow: a task cleared after the run finished published without the entity lock, beside another sync',
     'every stage after `prepare` needs the run to hold the lock; a cleared `prepare` reopens the run first '
     '(`tests/airflow/test_airflow_fixes.py`)'),
    ('review',
     'Airflow: the approvals DAG ran flows switched off with `enabled: false` and created ERP documents',
     'the task of a disabled flow is skipped, writing nothing (`tests/airflow/test_airflow_fixes.py`)'),
    ('review',
     'approval flows: a PO whose request column had a stray blank was not adopted, so the request got a second '
     'PO, and the audit listed neither duplicate',
     'the lookup trims as the audit does; a second PO for a linked request is an audit difference '
     '(`tests/flows/test_flow_fixes_core.py`)'),
    ('review',
     'approval flows: duplicate approval rows crashed every flow with an internal error and left the run `running`',
     'duplicates collapse (disagreeing ones hold their request only); a run is always finished '
     '(`tests/flows/test_flow_fixes_core.py`, `test_flow_fixes_run.py`)'),
    ('review',
     'reconciliation: the report of a past run showed differences that run had not found',
     'each run records which differences it found (store schema 4) (`tests/report/test_report_fixes.py`)'),
    ('review',
     'personal data: quarantine reasons quoted full ID numbers, even other people\'s, in every output',
     'reasons of `pii: true` fields quote masked values of their own row only '
     '(`tests/report/test_report_labels_pii.py`)'),
    ('review',
     'mapping edits: adding a field, widening a length or changing a type on a running project ended every '
     'plan and sync in "internal error"',
     'the tables are compared with the mapping before any write: safe changes applied (a complete read fills a '
     'new column), unsafe ones refused, located, with the migration (`tests/engine/test_schema_evolution.py`)'),
    ('review',
     'quality gate: every full refresh after an incremental run was refused (the row-count band compared it '
     'with the incremental run\'s changed rows); `plan` said "planned" for runs the gate then refused',
     'the band compares with the last complete read; plan applies the gate\'s decision '
     '(`tests/store/test_schema.py`, `tests/engine/test_gate.py`)'),
    ('review',
     'numbers: `decimal` and `to_integer` dropped every comma, reading a European `1.234,50` as 1.23',
     'commas only as thousands grouping; anything else is quarantined (`tests/mapping/test_review_numbers.py`)'),
    ('review',
     'quarantine: long source ids overflowed the quarantine on PostgreSQL (internal error); findings of records '
     'deleted at the source stayed open forever',
     'store schema 5 (TEXT ids); such findings close as `vanished` (`tests/engine/test_quarantine_fixes.py`)'),
    ('benchmark',
     'an incremental run of the 1M benchmark took 27 s instead of 1.6 s: closing those findings read each record '
     'by id through the source query\'s join',
     'the sweep\'s own read of the source ids answers it (hashes checked per chunk)'),
    ('review',
     'mapping edits: a field removed and later mapped again kept the values of when it was removed (stale, or NULL '
     'for records published meanwhile) until someone ran `--full-refresh`',
     'the store records the fields each publish wrote (schema 6); a field mapped again makes the run read the entity '
     'completely, as for a new field (`tests/engine/test_readded_field.py`, '
     '`tests/airflow/test_readded_field_dag.py`)'),
    ('review',
     'Airflow: `start_run` stopped at the first broken layer (config, then mappings, then suites) where `erpoa sync` '
     'lists all three; `mappings check` of a broken erpoa.yaml looked for `mappings/` beside it instead of the folder '
     'the file names',
     'one check for both (`etl/engine/preflight.py`) (`tests/airflow/test_start_run_every_problem.py`, '
     '`tests/mapping/test_mappings_check_broken_config.py`)'),
    ('review',
     'report: the Excel workbook of 200,000 differences took ~35 s and +300 MB; a pandas NA in the quarantine or gap '
     'sheet ended it with an error',
     'rows streamed to disk a chunk at a time (~7 s, ~20 MB), NA written blank '
     '(`tests/report/test_report_excel_large.py`)'),
    ('review',
     'quality gate: a replay whose code-table fix gave a record the key of a published one was refused with only '
     '"100.0% of rows quarantined"; `erpoa status` then showed the replayed entity `running` with zeros',
     'a threshold refusal names what it counted (per rule: records, examples, field and value); a failed replay is '
     'recorded as a failed sync is (`tests/engine/test_quarantine_replay.py`, `tests/engine/test_gate.py`)'),
    ('review',
     'mapping edits: after a replay that met a new or re-mapped field the next sync read everything without saying '
     'why; a rerun after a run killed once it had added a column called the new field "mapped again"',
     'the store keeps the fields any publish wrote and a replay records only what it filled for every record; such '
     'a field is "not filled yet" (`tests/engine/test_readded_field.py`, `tests/engine/test_quarantine_closing.py`)'),
    ('exploratory',
     'incremental reads: a record added with an empty cursor column (U8 leaves a department\'s modify date empty '
     'until it is edited) was never read after the first run, and nothing said so',
     'incremental reads also take the rows whose cursor is NULL (`tests/engine/test_sync.py`)'),
    ('exploratory',
     'mapping edits: a renamed field (the same values, so the same row hash) left its new column NULL in every '
     'record, even after `--full-refresh`',
     'until a publish has written every mapped field, each record read is rewritten '
     '(`tests/engine/test_readded_field.py`)'),
    ('exploratory',
     'gate: a suite with `expect_column_values_to_exist_in_entity` (which `expectations init` writes for '
     '`references:`) ended every sync and plan that changed a row with an internal error; a misnamed '
     '`quality.suite` switched the entity\'s gate off silently',
     'the expectation runs; a suite file that does not exist is a located error before the run '
     '(`tests/engine/test_gate.py`, `tests/mapping/test_check_gaps.py`)'),
    ('exploratory',
     'reconciliation: a sync (against the mirror) closed differences that `erpoa reconcile` (a fresh read) had '
     'found, the next reconcile reopened them, and a person\'s sign-off was erased on reopening',
     'only a fresh reconciliation closes what a fresh one saw; the sign-off is kept in the note '
     '(`tests/reconcile/test_reconcile_flapping.py`, `tests/reconcile/test_signoff_history.py`)'),
    ('exploratory',
     'operations: one locked entity hid the whole run\'s results and skipped the flows and alerts; a killed '
     'sync stayed `running`; relative SQLite paths were read from the working directory (cron made empty '
     'databases); a mistyped source path created a new database',
     'the locked entity fails alone; the dead run is marked failed when its lock is taken over; paths are '
     'relative to erpoa.yaml; a missing source file is refused (`tests/engine/test_locked_entity.py`, '
     '`tests/engine/test_stale_lock_run.py`, `tests/config/test_sqlite_paths.py`)'),
    ('exploratory',
     'servers: after one refused or killed run, quarantine findings a published run had accepted counted again, '
     'and the entity was refused run after run although its new bad rows were fixed',
     'acceptance follows the findings back through runs that did not publish '
     '(`tests/engine/test_fixes_s22.py`)'),
    ('exploratory',
     'servers: through the MariaDB ODBC driver some Chinese names lost their last character (高芳怡 -> 高芳); '
     'amounts of 16+ significant digits were published changed; an ODBC server that was down was not retried',
     'ODBC text is read and sent as UTF-8; such amounts are quarantined (`decimal_digits`); ODBC can\'t-connect '
     'is transient (`tests/db/test_fixes_s22.py`, `tests/mapping/test_decimal_digits_s22.py`)'),
    ('exploratory',
     'approval flows: one hand-keyed `PO<day>9999` blocked every PO of the day; a copied requisition (same 请购单号) '
     'got a second PO; a PO deleted in the ERP was reported nowhere; a force-archive named the administrator '
     'as approver; PO timestamps were in the server\'s zone',
     'numbering goes on after the highest number that can be followed; the copy is held '
     '(`duplicate_request_no`); the missing PO is listed; archiver kept apart; `run.timezone` '
     '(`tests/flows/test_flow_fixes_s22.py`, `tests/flows/test_audit_fixes_s22.py`)'),
    ('exploratory',
     'Airflow: a failed entity was recorded with 0 rows read; a config typo was alerted nowhere; the last try '
     'still said "retried by Airflow"; a lock skip of the approvals DAG was recorded as a failed run',
     'figures, alert, messages and run records as the CLI gives them (`tests/airflow/test_airflow_fixes_s22.py`)'),
    ('exploratory',
     'incremental loads: a future-dated cursor value froze the watermark (even through `--full-refresh`); a changed '
     '`cursor:` column, a naive/aware type change, a PostgreSQL varchar, a non-ISO text, a rowversion or numeric '
     'cursor failed every run or read nothing; a record restored at the source with its old modify time stayed '
     'inactive; a source returning no rows inactivated every record',
     'a complete read sets the watermark, a value more than a day ahead never becomes it, the store records the '
     'cursor column (schema 7); the sweep reads again records the mirror lacks and refuses an empty source '
     '(`tests/engine/test_watermarks_s23.py`, `tests/store/test_watermark_store_s23.py`, '
     '`tests/engine/test_sweep_s23.py`)'),
    ('exploratory',
     'the steward\'s loop: `erpoa plan` said "update" where the sync quarantined (a department the same plan '
     'abolished), quarantined what the sync published, counted a record twice, refused what the sync published; a '
     'published key duplicated in one source was inactivated or lost that source\'s fields; `target.key` leaving '
     'out a business key field published 18 departments as 2 rows',
     'the plan sees the referenced target as it leaves it and counts as the sync does; the held key keeps its last '
     'published version; such a target key is refused (`tests/engine/test_plan_s23.py`, '
     '`tests/engine/test_duplicates_s23.py`, `tests/mapping/test_review_lists.py`)'),
    ('exploratory',
     'real schemas and secrets: `charset=utf8` turned emoji and 𠮷 into "?"; a decimal field without the transform '
     'rounded half to even; integers of 2^53+ were refused; a URL password with a blank or quote, and a short ODBC '
     'password inside `odbc_connect`, were printed; identifiers starting with a digit were refused',
     'such charsets are refused; rounding as the transform; exact int64; every password masked '
     '(`tests/config/test_secrets_s23.py`, `tests/mapping/test_types_s23.py`, `tests/engine/test_fixes_s23.py`)'),
    ('review',
     'a source returning one row of seven inactivated the other six; on PostgreSQL an INSERT ... SELECT counted -1 '
     'rows, so a large incremental publish never vacuumed the mirror or analysed the target',
     '`max_vanished_pct` (default 50%) refuses a run that is not a full refresh when one source lost more of its '
     'records; counts kept with `preserve_rowcount` (`tests/engine/test_vanished_guard.py`, '
     '`tests/db/test_rows_written.py`, `tests/engine/test_tables.py`)'),
]

LIMITS = """\
## Known limitations (by design, or left to the engine's owners)

* **A refused change keeps the last published version.** When a record's new version is refused
  (e.g. the OA-only version left after its ERP record was deleted points to an inactive department),
  the target keeps the version published before; a fresh full sync never had one. The open quarantine
  row says why.
* **References are checked when a row is published.** A requisition published while its requester was
  active stays published when the requester later leaves or disappears; reconciliation reports it as
  `orphan_reference`, a fresh full sync quarantines it.
* **Changes in joined tables do not move a `query:` source's cursor.** The demo's OA queries join
  `HrmResource` / `HrmDepartment`; deleting or renumbering a person changes the joined columns of their
  requisitions without touching `modified`. A periodic `--full-refresh` picks such changes up.
* **Percentage quarantine thresholds on small incremental batches.** `max_quarantined_pct` is a
  percentage of the rows read; in an incremental run of eight rows one bad row is 12.5%, and by default
  that refuses the entity. `pct_min_rows` (run-wide or per entity) leaves reads smaller than it to
  `max_quarantined_rows`. The load and crash tests lift the percentage gates (the same mappings for
  every run they compare).
* **A PO deleted in the ERP keeps its links.** The audit lists its request under `req_without_po` ("linked PO …
  no longer exists in the ERP"), `erpoa xref` shows the links inactive, and both recover when the PO is back;
  but the OA form keeps the deleted number, and no second PO is made for the request (a person decides).
* **DAG runs write no Data Docs.** The gate's pages are built in separate `merge_validate` task processes and
  not kept; a refused gate points to those tasks' logs (docs/airflow.md).
* **Renaming an entity starts it afresh.** Its state in the store (watermarks, open quarantine rows, links,
  mirror tables) stays under the old name: the new name's first run reads everything, and the old rows can
  be replayed only under the old name. `erpoa status` names such an entity with its open rows.
* **A cursor value more than a day in the future** is not taken as the watermark, but its rows are read again by
  every incremental run until they are corrected at the source (the run's message names them).
* **A business key whose values hold `|`.** Composite keys are joined with `|`: (`A|B`, `C`) and (`A`, `B|C`) are
  the same golden key and both are quarantined as `duplicate_key`. (Composite source ids with `|` are replayed
  correctly.)
* **A floating-point NaN** (PostgreSQL `double precision` 'NaN') reads as NULL; a numeric NaN is quarantined.
* **Dates outside 1677-09-22..2262-04-11** cannot be represented and are quarantined (`type:date` for
  native DATE columns, `parse_date`/`parse_datetime` for text); the reason names the range and the
  `null_if` fix for a sentinel such as 9999-12-31.
* The load test keeps the seeded changes inside these limits: it never deletes or sets to `left` people
  that requisitions, orders or contracts name, never edits refused records, edits members of duplicated
  work codes but never deletes them, deletes only people the other system does not have, and files new
  people under published departments.
"""


def _load() -> dict[str, Any]:
    if ARTIFACT.exists():
        try:
            data = json.loads(ARTIFACT.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("tests"), dict):
                return data
        except ValueError:
            pass
    return {"tests": {}}


def record(test: str, title: str, proves: str, **figures: Any) -> None:
    """Store the figures of one test (`file::name`), replacing those of an earlier run."""
    data = _load()
    data["tests"][test] = {
        "title": title,
        "proves": proves,
        "figures": figures,
        "recorded_at": datetime.now().isoformat(timespec="seconds"),
    }
    data["environment"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "ci": bool(os.environ.get("CI")),
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    tmp = ARTIFACT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(ARTIFACT)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        long = any(isinstance(v, str) and len(v) > 40 for v in value.values())
        return ("<br>" if long else ", ").join(f"{k}: {_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render(data: dict[str, Any] | None = None) -> str:
    """docs/reliability.md from the recorded figures."""
    data = data or _load()
    tests = data.get("tests", {})
    env = data.get("environment", {})
    lines = [
        "# Reliability and security figures",
        "",
        "Generated by `python -m tests.reliability.figures` from `var/test-artifacts/reliability.json`, which",
        "the tests of `tests/reliability/` write as they run (`python -m pytest tests/reliability`).",
        "Every number below comes from that run; rerun both commands to refresh them.",
        "",
        f"Environment of the run: Python {env.get('python', '?')}, {env.get('cpus', '?')} CPUs, "
        f"{'CI' if env.get('ci') else 'local'} ({env.get('platform', '?')}).",
        "",
        "Security design (threat model, secrets, PII, read-only sources, grants): see [security.md](security.md).",
        "",
    ]
    latest = max((t.get("recorded_at", "") for t in tests.values()), default="")
    if latest:
        lines += [f"Last recorded: {latest}.", ""]
    lines += _summary(tests)
    for stem, heading in SECTIONS.items():
        entries = sorted((name, t) for name, t in tests.items() if name.split("::")[0] == stem)
        if not entries:
            continue
        lines += [f"## {heading}", ""]
        for _name, entry in entries:
            lines += [f"### {entry['title']}", "", f"`tests/reliability/{stem}.py`", "",
                      entry["proves"], "", "| figure | value |", "|---|---|"]
            for key, value in entry["figures"].items():
                lines.append(f"| {key.replace('_', ' ')} | {_value(value).replace('|', '/')} |")
            lines.append("")
    lines += ["## Found by this suite (and fixed)", "", "| found by | problem | fix |", "|---|---|---|"]
    lines += [f"| {who} | {problem} | {fix} |" for who, problem, fix in FOUND]
    lines += ["", LIMITS]
    return "\n".join(lines).rstrip() + "\n"


def _first(figures: dict[str, Any], *names: str) -> Any:
    return next((figures[n] for n in names if n in figures), "")


def _summary(tests: dict[str, Any]) -> list[str]:
    """One line per recorded test: the headline figures."""
    lines = ["## Summary", "",
             "| test | faults / trials | cases fuzzed | rows checked | rows lost | duplicates | divergences / leaks |",
             "|---|---|---|---|---|---|---|"]
    order = {stem: i for i, stem in enumerate(SECTIONS)}
    for _name, entry in sorted(tests.items(), key=lambda t: (order.get(t[0].split("::")[0], 99), t[0])):
        f = entry["figures"]
        lines.append("| " + " | ".join(str(v) for v in (
            entry["title"],
            _first(f, "faults_injected", "trials", "processes", "cycles", "writes_attempted", "attempts"),
            _first(f, "cases_fuzzed", "cases"),
            _first(f, "rows_checked"),
            _first(f, "rows_lost", "rows_lost_or_different"),
            _first(f, "duplicates", "duplicates_published", "double_publishes", "rows_unexpected"),
            _first(f, "divergences", "password_leaks", "partial_writes", "source_rows_changed"),
        )) + " |")
    return [*lines, ""]


def main() -> int:
    """Write docs/reliability.md; exit 1 when no figures were recorded yet."""
    data = _load()
    if not data["tests"]:
        print(f"no figures in {ARTIFACT}; run `python -m pytest tests/reliability` first", file=sys.stderr)
        return 1
    DOC.write_text(render(data), encoding="utf-8")
    print(f"wrote {DOC} ({len(data['tests'])} tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
