"""`erpoa quarantine list|show|retry`: what was set aside, why, and replaying it after a fix."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from etl.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, WaitOpt, emit_json, err, fail, load_config, out
from etl.errors import ConfigError, ErpOaError

app = typer.Typer(help="Inspect and replay quarantined rows.", no_args_is_help=True)


def _missing(value: object) -> bool:
    """None, NaN or NaT: what the store's NULL reads as in a frame (shown as an empty cell, never `nan`)."""
    import pandas as pd  # loaded already: the rows came as a frame

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _masked(frame, config, entity: str | None):  # type: ignore[no-untyped-def]
    """Quarantine rows as shown: values of `pii: true` fields and their columns of the raw record masked.

    The store keeps them masked already (`etl.engine.build.mask_personal_data`); masking again is
    a no-op on those and covers rows written before the store masked them. When the mappings
    cannot be read, the pii fields are unknown: raw records are withheld rather than shown unmasked.
    """
    from etl.engine.build import mask_personal_data
    from etl.engine.pipeline import load_project_mappings

    try:
        mappings = load_project_mappings(config)
    except ErpOaError:
        if "raw" in frame:
            frame["raw"] = _WITHHELD
        return frame
    for name, mapping in mappings.entities.items():
        rows = frame["entity"] == name
        if not mapping.pii_fields or not rows.any():
            continue
        masked = mask_personal_data(frame.loc[rows], mapping)
        for col in ("value", "raw"):
            if col in frame:
                frame[col] = frame[col].astype(object)
                frame.loc[rows, col] = masked[col]
    return frame


_WITHHELD = "(not shown: the mappings, which name the personal-data fields, could not be read)"


class Status(StrEnum):
    """Statuses of quarantine rows (and `all`)."""

    open = "open"
    resolved = "resolved"
    superseded = "superseded"
    vanished = "vanished"
    all = "all"


def _check_entity(cfg, store, entity: str) -> None:  # type: ignore[no-untyped-def]
    """ConfigError (exit 2, with a did-you-mean) unless `entity` is an entity, an approval flow or has rows."""
    import difflib

    from etl.engine.pipeline import load_project_mappings
    from etl.flows import load_flows

    known: list[str] = []
    try:
        known += list(load_project_mappings(cfg).entities)
        flows = load_flows(cfg, keep_going=True)
        known += [*flows.flows, *flows.broken]
    except ErpOaError:
        pass  # unreadable mappings: the names in the store still tell
    known += sorted(set(store.quarantine(status=None)["entity"].astype(str)))
    known = list(dict.fromkeys(known))
    if entity in known:
        return
    close = difflib.get_close_matches(entity, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"--entity: unknown entity '{entity}'; {hint}known entities and approval flows: {', '.join(known) or '(none)'}"
    )


@app.command("list")
def list_(
    entity: Annotated[str | None, typer.Option(help="Only this entity or approval flow.")] = None,
    status: Annotated[
        Status,
        typer.Option(
            help="open (to be fixed), resolved (published by a later run or replay, or the rule now passes), "
            "superseded (the same problem of the same record was found again by a later run, whose row is the "
            "open one), vanished (the source no longer has the record) or all.",
            case_sensitive=False,
        ),
    ] = Status.open,
    limit: Annotated[int, typer.Option(min=0, help="Rows to show; 0 shows all.")] = 50,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined rows with the rule they broke."""
    from etl.engine.pipeline import open_store

    try:
        cfg = load_config(config)
        store = open_store(cfg, read_only=True)
        if entity is not None:
            _check_entity(cfg, store, entity)
        frame = store.quarantine(entity=entity, status=None if status is Status.all else status.value)
        total = len(frame)
        frame = _masked((frame.head(limit) if limit else frame).copy(), cfg, entity)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    cols = ["id", "run_id", "entity", "source", "src_id", "field", "rule", "value", "reason", "status"]
    if as_json:
        emit_json({"total": total, "rows": frame[cols].to_dict(orient="records")})
        return
    shown = f", showing {limit}" if limit and total > limit else ""
    table = Table(title=f"quarantine ({status.value}): {total} row(s){shown}")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in frame[cols].itertuples(index=False):
        table.add_row(*["" if _missing(v) else str(v) for v in row])
    out.print(table)


@app.command()
def show(
    qid: Annotated[int, typer.Argument(help="Quarantine row id (see `list`).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Show one quarantined row with its raw source record, values of personal-data (`pii: true`) fields masked.

    Rows of the merge and gate stages are about a golden record and have no raw record.
    """
    import pandas as pd

    from etl.engine.pipeline import open_store

    try:
        cfg = load_config(config)
        frame = open_store(cfg, read_only=True).quarantine(status=None)
        frame = _masked(frame[frame["id"] == qid].copy(), cfg, None)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    if frame.empty:  # a wrong id is a usage error (2), as an unknown --id of `retry` is; 1 means an internal error
        out.print(f"No quarantine row {qid}; see `erpoa quarantine list --status all` for the ids.")
        raise typer.Exit(2)
    row = frame.iloc[0].to_dict()
    if as_json:
        emit_json(row)
        return
    for key, value in row.items():
        out.print(f"[bold]{key:>16}[/]: ", end="")
        out.print("" if pd.isna(value) else str(value), markup=False)


@app.command()
def retry(
    entity: Annotated[str, typer.Argument(help="Entity whose open quarantine rows to replay.")],
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these quarantine ids (repeatable).")] = None,
    wait: WaitOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Replay quarantined rows of ENTITY with the current mappings; rows that now pass are published.

    Records the source no longer has are closed (status vanished). Ids given with --id that are not open rows
    of ENTITY are named and skipped; when none is, or ENTITY has no open row to replay, nothing runs and no run
    is recorded (exit 2). Changes the replay made to the entity's tables (a mapping's new field: columns added)
    follow the summary, as `erpoa sync` shows them. Approval flows are retried by `erpoa flows run`.
    """
    from etl.engine.replay import replay_quarantine

    try:
        cfg = load_config(config, wait=wait)
        done = replay_quarantine(cfg, entity, ids=ids)
    except ErpOaError as exc:
        fail(exc, as_json)
        return
    result = done.result
    payload = {
        "entity": entity,
        "replayed": done.records,
        "replayed_rows": done.rows,
        "still_quarantined": done.still_records,
        "still_quarantined_rows": done.still_rows,
        "vanished": done.vanished_records,
        "inserted": result.inserted,
        "updated": result.updated,
        "skipped_ids": [{"id": qid, "reason": why} for qid, why in done.skipped],
        "status": result.status,
        "table_changes": done.table_changes,
    }
    if as_json:
        emit_json(payload)
        return
    for why, qids in _by_reason(done.skipped).items():
        # rows of a source the mapping no longer has are skipped without --id, and their reason names them all
        err.print(f"skipped: {why}" if why.startswith("row(s) ") else f"skipped --id {qids[0]}: {why}", markup=False)
    vanished = done.vanished_records
    gone = f"; {vanished} record(s) no longer exist at the source (closed)" if vanished else ""
    out.print(
        f"{entity}: replayed {done.records} quarantined record(s) ({done.rows} row(s)); published "
        f"{result.inserted} new and {result.updated} updated record(s){gone}; {done.still_records} record(s) still "
        f"quarantined ({done.still_rows} open row(s)).",
        markup=False,
    )
    if done.table_changes:  # as `erpoa sync` names them in the entity's message
        out.print(f"{entity}: {'; '.join(done.table_changes)}", markup=False)


def _by_reason(skipped: list[tuple[int, str]]) -> dict[str, list[int]]:
    """The skipped ids by reason, in order: a reason naming several rows is printed once."""
    out: dict[str, list[int]] = {}
    for qid, why in skipped:
        out.setdefault(why, []).append(qid)
    return out
