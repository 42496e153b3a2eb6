"""Replay quarantined rows after a steward fixed a mapping, a code table or the source data.

Only the quarantined source records are read again (by their source ids) and go
through the normal stages; those that now pass are published and their
quarantine entries marked resolved. A record that now fails another rule keeps only
that rule open; one the source no longer has is closed `vanished`. Watermarks do not move. Rows naming a
source the mapping no longer has (renamed or removed) are skipped and named: the next sync closes them.

The quality gate of a replay judges what the replay adds: a replayed row that fails
again was quarantined, and unpublished, before the replay, so it stays quarantined but
does not count toward `max_quarantined_pct` or `max_quarantined_rows` (which would
otherwise be measured on a batch made of nothing but rows already known to be bad, and
refuse to publish the repaired ones). Every row still goes through every check: a row
that fails one is quarantined, not published, and a failed batch-level expectation
still refuses the publish (docs/mapping.md, "Replaying quarantined rows").

Approval flows are not replayed here: every run of a flow re-reads its approved requests
and resolves the quarantine rows of those that became documents (`etl.flows.run`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from etl.config.project import ProjectConfig
from etl.engine.context import SyncContext
from etl.engine.pipeline import (
    EntityResult,
    failed_result,
    load_project_mappings,
    open_store,
    record,
    record_crash,
    sync_entity,
)
from etl.errors import ConfigError, ErpOaError, TerminalError
from etl.store.repo import new_run_id, source_records

log = logging.getLogger("erpoa.replay")


class NothingToReplayError(TerminalError):
    """No open quarantine row of the entity names a source record to read again, or `--id` named none (exit 2,
    like other usage errors). Nothing runs and no run is recorded."""

    exit_code = 2


@dataclass
class Replay:
    """What a replay did, counted in source records and in quarantine rows."""

    result: EntityResult
    records: int = 0
    rows: int = 0
    still_records: int = 0
    still_rows: int = 0
    vanished_records: int = 0
    #: (quarantine id, why it was not replayed) for each `--id` that is not an open row of the entity, and each
    #: open row naming a source the mapping no longer has (renamed or removed: `_unmapped_skipped`)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    #: What the replay changed in the entity's tables (a mapping's new field: columns added), as notes
    table_changes: list[str] = field(default_factory=list)


def _records(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """The distinct source records (source, src_id) quarantine rows are about (merge and gate rows: their ids)."""
    return {(str(s), str(i)) for s, i in zip(rows["source"], rows["src_id"], strict=True) if not pd.isna(i)}


def _flow_refused(config: ProjectConfig, entity: str) -> None:
    """ConfigError when `entity` names an approval flow: its quarantine rows are retried by running the flow."""
    from etl.flows import load_flows

    try:
        flows = load_flows(config, keep_going=True)
    except ErpOaError:
        return
    if entity in flows.flows or entity in flows.broken:
        raise ConfigError(
            f"'{entity}' is an approval flow, not an entity: `quarantine retry` replays entities only. Every run "
            f"of the flow checks its held requests again and resolves the quarantine rows of those that became "
            f"documents: fix the form, the code table or the ERP master data, then run `erpoa flows run --flow "
            f"{entity}` (or `erpoa sync`, which runs the flows after the entities)."
        )


def _skipped(store_rows: pd.DataFrame, entity: str, wanted: list[int]) -> list[tuple[int, str]]:
    """Each id of `wanted` that is not an open row of `entity` with a source id, and why."""
    by_id = store_rows.set_index("id")
    out = []
    for qid in dict.fromkeys(wanted):
        if qid not in by_id.index:
            out.append((qid, "no such quarantine row"))
            continue
        row = by_id.loc[qid]
        if row["entity"] != entity:
            out.append((qid, f"a row of {row['entity']}, not {entity}"))
        elif row["status"] != "open":
            out.append((qid, f"not open (status {row['status']})"))
        elif pd.isna(row["src_id"]):
            out.append((qid, "has no source id to read again"))
    return out


def _mapped_rows(rows: pd.DataFrame, sources: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`rows` split in those whose source records all belong to `sources` and those naming another source (one the
    mapping no longer has: renamed or removed). Rows without a source id stay with the first."""
    mapped = [
        pd.isna(i) or all(src in sources for src, _ in source_records(str(s), str(i)))
        for s, i in zip(rows["source"], rows["src_id"], strict=True)
    ]
    keep = pd.Series(mapped, index=rows.index, dtype=bool)
    return rows[keep], rows[~keep]


def _unmapped_skipped(rows: pd.DataFrame, entity: str, path: object, sources: set[str]) -> list[tuple[int, str]]:
    """(id, why) for each row of `rows`, which name sources the entity's mapping (`path`) no longer has: one
    reason per such source (or set of them), naming the rows, the file and the ways out."""
    by_missing: dict[tuple[str, ...], list[int]] = {}
    for qid, source, src_id in zip(rows["id"], rows["source"], rows["src_id"], strict=True):
        named = {src for src, _ in source_records(str(source), str(src_id))} | set(str(source).split("+"))
        by_missing.setdefault(tuple(sorted(named - sources)), []).append(int(qid))
    out: list[tuple[int, str]] = []
    for missing, ids in by_missing.items():
        names = ", ".join(f"'{m}'" for m in missing)
        why = (
            f"row(s) {', '.join(map(str, ids))} of {entity} name source {names}, which {path} no longer has "
            f"(renamed or removed): they cannot be read again under another name. Map {names} again to replay "
            "them; otherwise the next `erpoa sync` of the entity closes them (status vanished), as it drops what "
            "the target kept of that source"
        )
        out += [(qid, why) for qid in ids]
    return out


def _nothing_open(entity: str, open_rows: pd.DataFrame) -> str:
    """Why the entity has nothing to replay (no open row names a source record), and where to look."""
    why = (
        f"its {len(open_rows)} open quarantine row(s) name no source record to read again"
        if len(open_rows)
        else "it has no open quarantine rows"
    )
    return (
        f"{entity}: nothing to replay: {why}; no run was recorded. See `erpoa quarantine list --entity {entity} "
        "--status all` for its rows."
    )


def replay_quarantine(
    config: ProjectConfig, entity: str, *, ids: Iterable[int] | None = None, hooks: Iterable = ()  # type: ignore[type-arg]
) -> Replay:
    """Replay the open quarantine rows of `entity` (or the `ids` among them) with the current mappings.

    ConfigError for an unknown entity (an approval flow's name says how its rows are retried);
    NothingToReplayError when `ids` names no open row of the entity, or the entity has no open row with a source
    id: then no run is recorded.
    """
    mappings = load_project_mappings(config)
    store = open_store(config)
    if entity not in mappings.entities:
        _flow_refused(config, entity)
    mappings.entity(entity)
    open_rows = store.quarantine(entity=entity, status="open")
    with_ids = open_rows[open_rows["src_id"].notna()]
    known = frozenset(
        pair
        for source, src_id in zip(with_ids["source"], with_ids["src_id"], strict=True)
        for pair in source_records(str(source), str(src_id))
    )
    skipped: list[tuple[int, str]] = []
    if ids is not None:
        wanted = list(ids)
        skipped = _skipped(store.quarantine(status=None), entity, wanted)
        chosen = set(wanted) - {qid for qid, _ in skipped}
        if not chosen:
            raise NothingToReplayError(
                f"{entity}: nothing to replay: "
                + "; ".join(f"id {qid}: {why}" for qid, why in skipped)
                + f". See `erpoa quarantine list --entity {entity}` for its open rows."
            )
        open_rows = open_rows[open_rows["id"].isin(chosen)]
    open_rows, unmapped = _mapped_rows(open_rows, set(mappings.entity(entity).sources))
    if not unmapped.empty:
        path = mappings.files.get(entity) or f"the mapping of {entity}"
        skipped += _unmapped_skipped(unmapped, entity, path, set(mappings.entity(entity).sources))
    only: dict[str, list[str]] = {}
    for source, part in open_rows.groupby("source"):
        for value in part["src_id"].dropna().astype(str):
            for src, src_id in source_records(str(source), value):
                only.setdefault(src, []).append(src_id)
    only = {s: sorted(set(v)) for s, v in only.items()}
    if not only:
        if not unmapped.empty:
            why = "; ".join(dict.fromkeys(w if w.startswith("row(s) ") else f"id {q}: {w}" for q, w in skipped))
            raise NothingToReplayError(f"{entity}: nothing to replay: {why}. No run was recorded.")
        raise NothingToReplayError(_nothing_open(entity, open_rows))
    run_id = new_run_id()
    ctx = SyncContext(
        config=config,
        mappings=mappings,
        store=store,
        run_id=run_id,
        trigger="retry",
        only_ids=only,
        already_quarantined=known,
    )
    store.start_run(run_id, trigger="retry", mode="retry", mapping_version=mappings.version, entities=[entity])
    try:
        result = sync_entity(ctx, entity, hooks)
        record(ctx, result)
        store.finish_run(run_id, "success")
    except ErpOaError as exc:  # recorded as a sync records it: `erpoa status` shows the entity's figures and why
        failed = failed_result(ctx, entity, exc)
        try:
            record(ctx, failed)
            store.finish_run(run_id, "failed", (failed.message or "")[:2000])
        except Exception as store_exc:  # never hide the replay's error behind the store's
            log.error("could not record run %s as failed: %s", run_id, store_exc)
        raise
    except BaseException as exc:
        record_crash(ctx, [], [entity], exc)
        raise
    replayed = _records(open_rows)
    after = store.quarantine(entity=entity, status=None)
    remaining = after[after["status"] == "open"]
    # Still quarantined: the replayed records' open rows, and what the replay found anew about them
    pairs = zip(remaining["source"].astype(str), remaining["src_id"].astype(str), strict=True)
    mine = pd.Series([pair in replayed for pair in pairs], index=remaining.index, dtype=bool)
    still = remaining[(remaining["run_id"] == run_id) | mine]
    vanished = after[(after["status"] == "vanished") & (after["resolved_run_id"] == run_id)]
    return Replay(
        result=result,
        records=len(replayed),
        rows=len(open_rows),
        still_records=len(_records(still)),
        still_rows=len(still),
        vanished_records=len(_records(vanished)),
        skipped=skipped,
        table_changes=result.notes,
    )


def retry_quarantine(
    config: ProjectConfig, entity: str, *, ids: Iterable[int] | None = None, hooks: Iterable = ()  # type: ignore[type-arg]
) -> tuple[EntityResult, int, int]:
    """`replay_quarantine`; returns (result, source records replayed, source records still quarantined)."""
    done = replay_quarantine(config, entity, ids=ids, hooks=hooks)
    return done.result, done.records, done.still_records
