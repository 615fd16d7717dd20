"""The sweep's console: a rich progress bar while it runs and a summary table at the end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bigtrain.matrix import Cell
from bigtrain.results.schema import CellRecord
from bigtrain.run.cell import CellJob
from bigtrain.run.sweep import SweepOutcome

STATUS_STYLE = {"ok": "green", "skipped": "dim", "unsupported": "dim", "diverged": "bold red",
                "oom": "bold red", "error": "bold red", "crashed": "bold red",
                "timeout": "bold red"}


def human_bytes(value: float | None) -> str:
    """1536 -> '1.5 KiB'; None -> '-'."""
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"


def human_seconds(value: float | None) -> str:
    """Step times in the unit that keeps three significant digits."""
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


class RichProgress:
    """Progress bar (cells done/total, current cell, elapsed, ETA) and the closing summary."""

    def __init__(self, console: Console | None = None) -> None:
        # Off a terminal (CI logs, pipes) rich assumes 80 columns and folds every cell.
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, 160)
        self._progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
            # No redraw thread: on a small CPU box it would steal time from the timed window.
            auto_refresh=False,
        )
        self._task = None
        self._cells: dict[str, Cell] = {}

    def begin(self, run_dir: Path, cells: Sequence[Cell], jobs: int) -> None:
        self._cells = {c.cell_id: c for c in cells}
        not_run = sum(1 for c in cells if c.status != "pending")
        self.console.print(f"run folder: [bold]{run_dir}[/]  cells: {len(cells)} "
                           f"({not_run} skipped/unsupported), measurements to run: {jobs}")
        self._progress.start()
        self._task = self._progress.add_task("starting", total=jobs)

    def cell_started(self, job: CellJob) -> None:
        repeat = f" #{job.repeat}" if job.repeat else ""
        self._progress.update(self._task, description=f"{job.cell.label}{repeat}", refresh=True)

    def cell_finished(self, record: CellRecord) -> None:
        if record.status in ("skipped", "unsupported"):
            return
        self._progress.advance(self._task)
        self._progress.refresh()
        if record.status != "ok":
            self._progress.console.print(
                f"[{STATUS_STYLE.get(record.status, 'red')}]{record.status}[/] "
                f"{self._cells[record.cell_id].label if record.cell_id in self._cells else record.cell_id}: {record.reason}"
            )

    def end(self, outcome: SweepOutcome) -> None:
        self._progress.stop()
        self.console.print(summary_table(outcome.records))
        counts: dict[str, int] = {}
        for record in outcome.records:
            counts[record.status] = counts.get(record.status, 0) + 1
        line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self.console.print(f"results: {outcome.run_dir}  ({line})")
        if outcome.error:
            self.console.print(f"[bold red]stopped: {outcome.error}[/]")
        if outcome.interrupted:
            self.console.print(f"[bold yellow]interrupted[/]: finished cells are saved; continue "
                               f"with --resume {outcome.run_dir.name}")
        elif outcome.failed:
            self.console.print(f"[bold red]{len(outcome.failed)} cell(s) failed[/] (see above)")


def summary_table(records: Sequence[CellRecord]) -> Table:
    """Throughput, step time, memory and status per cell; failed cells in red."""
    table = Table(title="bigbench sweep", show_lines=False)
    for name, justify in (("model", "left"), ("optimizer/impl", "left"), ("prec", "left"),
                          ("bn", "left"), ("bs", "right"), ("device", "left"), ("rep", "right"),
                          ("throughput", "right"), ("step median", "right"),
                          ("p10–p90", "right"), ("peak mem", "right"), ("status", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    order = {"ok": 1, "skipped": 2, "unsupported": 2}  # failures (0) first, skipped last
    for r in sorted(records, key=lambda r: order.get(r.status, 0)):
        stats = r.step_time_s
        memory = r.peak_mem_allocated_bytes if r.peak_mem_allocated_bytes else r.peak_rss_bytes
        style = STATUS_STYLE.get(r.status, "")
        status = r.status if r.status == "ok" else f"{r.status}: {(r.reason or '')[:60]}"
        table.add_row(
            r.model, f"{r.optimizer}/{r.impl}", r.precision, r.batch_norm, str(r.batch_size),
            r.device, str(r.repeat),
            f"{r.items_per_s:,.0f} {r.item_unit}/s" if r.items_per_s else "-",
            human_seconds(stats.median if stats else None),
            f"{human_seconds(stats.p10)}–{human_seconds(stats.p90)}" if stats else "-",
            human_bytes(memory),
            f"[{style}]{status}[/]" if style else status,
        )
    return table

