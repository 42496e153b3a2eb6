"""Replay quarantined rows after a steward fixed a mapping, a code table or the source data.

Only the quarantined source records are read again (by their source ids) and go
through the normal stages; those that now pass are published and their
quarantine entries marked resolved. Watermarks do not move.

The quality gate of a replay judges what the replay adds: a replayed row that fails
again was quarantined, and unpublished, before the replay, so it stays quarantined but
does not count toward `max_quarantined_pct` or `max_quarantined_rows` (which would
otherwise be measured on a batch made of nothing but rows already known to be bad, and
refuse to publish the repaired ones). Every row still goes through every check: a row
that fails one is quarantined, not published, and a failed batch-level expectation
still refuses the publish (docs/mapping.md, "Replaying quarantined rows").
"""

from __future__ import annotations

from collections.abc import Iterable

from etl.config.project import ProjectConfig
from etl.engine.context import SyncContext
from etl.engine.pipeline import EntityResult, load_project_mappings, open_store, record, sync_entity
from etl.store.repo import new_run_id, source_records


def retry_quarantine(
    config: ProjectConfig, entity: str, *, ids: Iterable[int] | None = None, hooks: Iterable = ()
) -> tuple[EntityResult, int, int]:  # type: ignore[type-arg]
    """Replay the open quarantine rows of `entity`; returns (result, rows replayed, rows still open)."""
    mappings = load_project_mappings(config)
    store = open_store(config)
    mappings.entity(entity)
    open_rows = store.quarantine(entity=entity, status="open")
    with_ids = open_rows[open_rows["src_id"].notna()]
    known = frozenset(
        pair
        for source, src_id in zip(with_ids["source"], with_ids["src_id"], strict=True)
        for pair in source_records(str(source), str(src_id))
    )
    if ids is not None:
        wanted = set(ids)
        open_rows = open_rows[open_rows["id"].isin(wanted)]
    only: dict[str, list[str]] = {}
    for source, part in open_rows.groupby("source"):
        for value in part["src_id"].dropna().astype(str):
            for src, src_id in source_records(str(source), value):
                only.setdefault(src, []).append(src_id)
    only = {s: sorted(set(v)) for s, v in only.items()}
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
    except Exception as exc:
        store.finish_run(run_id, "failed", str(exc)[:2000])
        raise
    remaining = store.quarantine(entity=entity, status="open")
    still = remaining[remaining["run_id"] == run_id]
    return result, len(open_rows), int(still["src_id"].nunique()) if not still.empty else 0
