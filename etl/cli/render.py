"""Human output of sync summaries and progress."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from etl.cli.common import err, out
from etl.engine.pipeline import SyncSummary


class StageProgress:
    """A rich progress display: one line per entity and stage with rows and rows/s."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            # Names as they are written (no markup): a stage's description may carry a source's name.
            TextColumn("{task.fields[entity]:<11}", style="bold", markup=False),
            TextColumn("{task.description:<14}", markup=False),
            BarColumn(bar_width=None),
            TextColumn("{task.completed:>10,.0f} rows"),
            TextColumn("{task.fields[rate]:>12}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.tasks: dict[tuple[str, str], Any] = {}
        self.started: dict[tuple[str, str], float] = {}

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def __call__(self, entity: str, stage: str, rows: int) -> None:
        if not self.enabled:
            return
        key = (entity, stage)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(stage, total=None, entity=entity, rate="")
            self.started[key] = time.monotonic()
        task = self.tasks[key]
        self.progress.advance(task, rows)
        done = self.progress.tasks[task].completed
        elapsed = max(time.monotonic() - self.started[key], 1e-6)
        self.progress.update(task, rate=f"{done / elapsed:,.0f} rows/s")


def summary_table(summary: SyncSummary, title: str | None = None) -> None:
    """Print the per-entity summary table."""
    table = Table(title=title or f"run {summary.run_id} · {summary.mode} · mapping {summary.mapping_version}")
    sources = sorted({s for e in summary.entities for s in e.read})
    table.add_column("entity")
    for source in sources:
        table.add_column(f"read {source}", justify="right")
    for name in ("inserted", "updated", "unchanged", "inactivated", "quarantined"):
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    for e in summary.entities:
        colour = {"success": "green", "planned": "cyan", "failed": "red", "skipped": "yellow"}.get(e.status, "white")
        table.add_row(
            e.entity,
            *[f"{e.read.get(s, 0):,}" for s in sources],
            f"{e.inserted:,}",
            f"{e.updated:,}",
            f"{e.unchanged:,}",
            f"{e.inactivated:,}",
            f"{e.quarantined:,}",
            f"{e.seconds:.2f}",
            Text(e.status, style=colour),
        )
    out.print(table)  # cells, title and headers literal (`DataConsole`)
    for e in summary.entities:
        if e.message:
            message = e.message.removeprefix(f"{e.entity}: ")  # errors that name their entity already
            out.print(Text(e.entity, style="bold"), Text(f": {message}"), sep="")

