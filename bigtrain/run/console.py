"""The sweep's console: live progress while it runs, a line per cell off a terminal, a summary.

On a terminal, a rich progress bar (cells done/total, current cell, elapsed, ETA) runs on stderr;
its ETA is recomputed every few seconds from the running cell's elapsed time (`eta_s`), so a slow
cell pushes it out instead of leaving it frozen. Off a terminal (CI logs, pipes) a bar would print
nothing until the end, so `LineProgress` prints a line per finished cell on stdout, and on stderr
(chatter, which a CI log shows beside stdout) a line when each cell starts and a heartbeat line
every `heartbeat_s` while one runs: a cell of minutes must not leave a CI log silent. Either way
the run folder and the closing `results:`
line go to stdout, chatter (counts, failures, the summary table) to stderr, and every piece of
data (reasons, labels, paths) is printed as text, never as markup (bigtrain/common/terminal_text.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bigtrain.cells.axes import AXIS_BY_NAME, AXIS_NAMES, cell_label
from bigtrain.cells.matrix import Cell
from bigtrain.results.schema import CellRecord
from bigtrain.run.job import CellJob
from bigtrain.run.sweep import SweepOutcome, SweepProgress
from bigtrain.common.terminal_text import data_text, inert, one_line

STATUS_STYLE = {"ok": "green", "skipped": "dim", "unsupported": "dim", "diverged": "bold red",
                "oom": "bold red", "error": "bold red", "crashed": "bold red",
                "timeout": "bold red"}
NOT_RUN = ("skipped", "unsupported")
#: Off a terminal rich assumes 80 columns and folds every cell of the summary table.
LOG_WIDTH = 160
#: A failed cell's reason on its one line stops here; the record keeps all of it.
REASON_CHARS = 300
#: Off a terminal: a `still running` line this often while a cell runs (`--heartbeat-s`).
HEARTBEAT_S = 30.0
#: On a terminal: the bar (elapsed, ETA) is redrawn this often while a cell runs. Rare on
#: purpose: the cell runs in a worker process, but a small CPU box has no core to spare.
TTY_REFRESH_S = 2.0


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


def sweep_progress(heartbeat_s: float = HEARTBEAT_S) -> SweepProgress:
    """The live bar when stderr is a terminal, else lines (start, heartbeat, finish) per cell."""
    if Console(stderr=True).is_terminal:
        return RichProgress()
    return LineProgress(heartbeat_s=heartbeat_s)


def human_duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def eta_s(*, done: int, total: int, done_elapsed_s: float,
          running_elapsed_s: float) -> float | None:
    """Seconds left: the cells to go at the mean time of those done, less what the running cell
    has already spent. A running cell that has outlasted the mean counts as at least that long,
    in the mean too, so the estimate grows while it runs instead of standing still (the issue's
    stale ETA). None before any cell finished: no rate yet."""
    remaining = total - done
    if remaining <= 0:
        return 0.0
    if done <= 0:
        return None
    mean = done_elapsed_s / done
    if running_elapsed_s <= mean:
        return remaining * mean - running_elapsed_s
    stretched = (done_elapsed_s + running_elapsed_s) / (done + 1)
    return (remaining - 1) * stretched


class _Ticker:
    """A daemon thread calling `tick` every `every_s` (an Event wait: it sleeps, it never spins)."""

    def __init__(self, tick: Callable[[], None], every_s: float) -> None:
        self._tick, self._every_s = tick, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bigbench-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - a progress line must never stop a sweep
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class _RunningCells:
    """Which cells are running since when, and when the last one finished (for the ETA)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.started: dict[tuple[str, int], tuple[str, float]] = {}
        self.begun_at = clock()
        self.last_finished_at = self.begun_at

    def start(self, job: CellJob) -> str:
        label = f"{job.cell.label} #{job.repeat}" if job.repeat else job.cell.label
        with self.lock:
            self.started[(job.cell.cell_id, job.repeat)] = (label, self.clock())
        return label

    def finish(self, record: CellRecord) -> None:
        with self.lock:
            if self.started.pop((record.cell_id, record.repeat), None) is not None:
                self.last_finished_at = self.clock()

    def eta(self, done: int, total: int) -> float | None:
        now = self.clock()
        with self.lock:
            # the running cell's own time: from its start, or from the last finish when cells
            # overlap (time before that is in the finished cells' share already)
            since = max([self.last_finished_at, min(t for _, t in self.started.values())]
                        if self.started else [now])
            return eta_s(done=done, total=total,
                         done_elapsed_s=self.last_finished_at - self.begun_at,
                         running_elapsed_s=now - since)


def record_label(record: CellRecord, cells: dict[str, Cell]) -> str:
    """The cell's label (the one builder in bigtrain/cells/axes.py), with ` #N` for a later repeat."""
    cell = cells.get(record.cell_id)
    label = cell.label if cell is not None else cell_label(
        {name: getattr(record, name) for name in AXIS_NAMES})
    return f"{label} #{record.repeat}" if record.repeat else label


def finished_line(record: CellRecord, label: str, done: int, total: int) -> str:
    """`3/12 ok       <label>  step 1.2 ms  4,567 samples/s`; a failed cell shows its reason."""
    head = f"{done}/{total} {record.status:<8} {label}"
    if record.status != "ok":
        reason = one_line(record.reason or "")
        if len(reason) > REASON_CHARS:
            reason = reason[:REASON_CHARS] + "..."
        return inert(f"{head}: {reason}")
    median = record.step_time_s.median if record.step_time_s else None
    throughput = (f"{record.items_per_s:,.0f} {record.item_unit}/s" if record.items_per_s
                  else "- items/s")
    return inert(f"{head}  step {human_seconds(median)}  {throughput}")


def busy_line(record: CellRecord, label: str) -> str | None:
    """The live warning for a cell timed on a busy machine (None when it was not)."""
    from bigtrain.measure.host_load import describe

    if not record.measured_busy:
        return None
    return inert(f"warning: {label} measured on a busy machine: {describe(record.host_load)}; "
                 f"its numbers measure the machine as much as the code")


def _begin_lines(run_dir: Path, cells: Sequence[Cell], jobs: int) -> tuple[str, str]:
    not_run = sum(1 for c in cells if c.status != "pending")
    return (inert(f"run folder: {run_dir}"),
            f"cells: {len(cells)} ({not_run} skipped/unsupported), measurements to run: {jobs}")


def _print_ending(outcome: SweepOutcome, stderr: Console) -> None:
    """The summary table and what went wrong on stderr; the `results:` line on stdout."""
    stderr.print(summary_table(outcome.records))
    counts: dict[str, int] = {}
    for record in outcome.records:
        counts[record.status] = counts.get(record.status, 0) + 1
    line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if outcome.error:
        stderr.print(Text.assemble(("stopped: ", "bold red"), data_text(outcome.error, "bold red")))
    if outcome.interrupted:
        stderr.print(Text.assemble(
            ("interrupted", "bold yellow"),
            data_text(f": finished cells are saved; continue with --resume {outcome.run_dir.name}")))
    elif outcome.failed:
        stderr.print(Text.assemble((f"{len(outcome.failed)} cell(s) failed", "bold red"),
                                   " (see above)"))
    click.echo(inert(f"results: {outcome.run_dir}  ({line})"))


class RichProgress:
    """On a terminal: the live progress bar (cells done/total, current cell, elapsed, ETA) on
    stderr, failed cells printed above it, and the closing summary."""

    def __init__(self, console: Console | None = None, *, refresh_s: float = TTY_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, LOG_WIDTH)
        self._running = _RunningCells(clock)
        self._refresh_s = refresh_s
        self._ticker: _Ticker | None = None
        self._done = 0
        self._total = 0
        self._progress = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}", markup=False),
            # The description is a cell label: data, never markup.
            TextColumn("{task.description}", markup=False),
            console=self.console,
            transient=False,
            # No redraw thread: on a small CPU box it would steal time from the timed window.
            auto_refresh=False,
        )
        self._task = None
        self._cells: dict[str, Cell] = {}

    def begin(self, run_dir: Path, cells: Sequence[Cell], jobs: int) -> None:
        self._cells = {c.cell_id: c for c in cells}
        folder, counts = _begin_lines(run_dir, cells, jobs)
        click.echo(folder)
        self.console.print(data_text(counts))
        self._total = jobs
        self._running = _RunningCells(self._running.clock)
        self._progress.start()
        self._task = self._progress.add_task("starting", total=jobs, eta="-:--:--")
        if self._refresh_s > 0:
            self._ticker = _Ticker(self.tick, self._refresh_s)
            self._ticker.start()

    def eta_text(self) -> str:
        """The ETA column's text now: `0:04:10`, or `-:--:--` before any rate is known."""
        eta = self._running.eta(self._done, self._total)
        if eta is None:
            return "-:--:--"
        hours, rest = divmod(int(round(eta)), 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

    def tick(self) -> None:
        """Redraw with the ETA from the running cell's elapsed time (the ticker calls this)."""
        if self._task is not None:
            self._progress.update(self._task, eta=self.eta_text(), refresh=True)

    def cell_started(self, job: CellJob) -> None:
        label = self._running.start(job)
        self._progress.update(self._task, description=inert(label), eta=self.eta_text(),
                              refresh=True)

    def cell_finished(self, record: CellRecord) -> None:
        if record.status in NOT_RUN:
            return
        self._running.finish(record)
        self._done += 1
        self._progress.advance(self._task)
        self._progress.update(self._task, eta=self.eta_text())
        self._progress.refresh()
        busy = busy_line(record, record_label(record, self._cells))
        if busy:
            self._progress.console.print(data_text(busy, "yellow"))
        if record.status != "ok":
            label = record_label(record, self._cells)
            self._progress.console.print(Text.assemble(
                data_text(record.status, STATUS_STYLE.get(record.status, "red")),
                " ", data_text(f"{label}: {record.reason}")))

    def end(self, outcome: SweepOutcome) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._progress.stop()
        _print_ending(outcome, self.console)


class LineProgress:
    """Off a terminal: plain lines as things happen, so a CI log shows progress live: on stderr
    `started` when a cell starts and `still running` every `heartbeat_s` while one runs (0:
    never); on stdout one line per finished cell (status, label, median step time, throughput;
    a failure's reason)."""

    def __init__(self, stderr: Console | None = None, *, heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic, ticker: bool = True) -> None:
        self.console = stderr or Console(stderr=True)
        self.console.width = max(self.console.width, LOG_WIDTH)
        self._cells: dict[str, Cell] = {}
        self._done = 0
        self._total = 0
        self._heartbeat_s = heartbeat_s
        self._running = _RunningCells(clock)
        self._last_beat = self._running.begun_at
        self._use_ticker = ticker
        self._ticker: _Ticker | None = None

    def begin(self, run_dir: Path, cells: Sequence[Cell], jobs: int) -> None:
        self._cells = {c.cell_id: c for c in cells}
        self._total = jobs
        folder, counts = _begin_lines(run_dir, cells, jobs)
        click.echo(folder)
        click.echo(counts, err=True)
        if self._use_ticker and self._heartbeat_s > 0:
            # checks a few times per period, so a beat is late by a quarter period at most
            self._ticker = _Ticker(self.tick, min(self._heartbeat_s / 4, 5.0))
            self._ticker.start()

    def cell_started(self, job: CellJob) -> None:
        label = self._running.start(job)
        with self._running.lock:
            self._last_beat = self._running.clock()
        click.echo(inert(f"{self._done + 1}/{self._total} started  {label}"), err=True)

    def tick(self) -> None:
        """A heartbeat line when `heartbeat_s` passed since the last line about running cells."""
        if self._heartbeat_s <= 0:
            return
        now = self._running.clock()
        with self._running.lock:
            if not self._running.started or now - self._last_beat < self._heartbeat_s:
                return
            self._last_beat = now
            running = [f"{label} ({human_duration(now - since)})"
                       for label, since in self._running.started.values()]
        eta = self._running.eta(self._done, self._total)
        left = f"; about {human_duration(eta)} left" if eta is not None else ""
        click.echo(inert(f"{self._done}/{self._total} still running: {', '.join(running)}{left}"),
                   err=True)

    def cell_finished(self, record: CellRecord) -> None:
        if record.status in NOT_RUN:
            return
        self._running.finish(record)
        self._done += 1
        label = record_label(record, self._cells)
        click.echo(finished_line(record, label, self._done, self._total))
        busy = busy_line(record, label)
        if busy:
            click.echo(busy, err=True)

    def end(self, outcome: SweepOutcome) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        _print_ending(outcome, self.console)


#: The axes the summary table always shows (in its first columns).
_SUMMARY_AXES = frozenset({"model", "optimizer", "impl", "precision", "batch_norm", "batch_size",
                           "device"})


def summary_table(records: Sequence[CellRecord]) -> Table:
    """Throughput, step time, memory and status per cell; failed cells in red. Every value is
    a Text: a reason holding `[/x]` is shown, not parsed."""
    table = Table(title="bigbench sweep", show_lines=False)
    # Every other axis gets a column where its value differs between the rows: without one, a
    # framework (or compile, world size, ...) sweep shows rows that read the same.
    varying = [name for name in AXIS_NAMES if name not in _SUMMARY_AXES
               and len({str(getattr(r, name, None)) for r in records}) > 1]
    for name, justify in (("model", "left"), ("optimizer/impl", "left"), ("prec", "left"),
                          ("bn", "left"), ("bs", "right"), ("device", "left"),
                          *((AXIS_BY_NAME[n].column or n, "left") for n in varying),
                          ("rep", "right"),
                          ("throughput", "right"), ("step median", "right"),
                          ("p10–p90", "right"), ("peak mem", "right"), ("status", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    order = {"ok": 1, "skipped": 2, "unsupported": 2}  # failures (0) first, skipped last
    for r in sorted(records, key=lambda r: order.get(r.status, 0)):
        stats = r.step_time_s
        memory = r.peak_mem_allocated_bytes if r.peak_mem_allocated_bytes else r.peak_rss_bytes
        status = r.status if r.status == "ok" else f"{r.status}: {one_line((r.reason or '')[:60])}"
        values = (
            r.model, f"{r.optimizer}/{r.impl}", r.precision, r.batch_norm, str(r.batch_size),
            r.device, *(str(getattr(r, n, "")) for n in varying), str(r.repeat),
            f"{r.items_per_s:,.0f} {r.item_unit}/s" if r.items_per_s else "-",
            human_seconds(stats.median if stats else None),
            f"{human_seconds(stats.p10)}–{human_seconds(stats.p90)}" if stats else "-",
            human_bytes(memory),
        )
        table.add_row(*(data_text(v) for v in values),
                      data_text(status, STATUS_STYLE.get(r.status, "")))
    return table
