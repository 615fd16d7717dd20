"""`bigbench fit`: for each cell of the matrix, the largest batch size that trains.

Each cell less its batch size is a *group*; each group gets its own search (`bigtrain.run.fit_search`:
doubling, then bisection), and every probe of it is an ordinary cell of the run, appended to
`cells.jsonl` like a sweep's (repeat 0, `fit_role` probe), measured with the spec's warm-up and
window. When a group's search is over, the batch it found is measured once more, alike (repeat 1,
`fit_role` max): the throughput at the largest batch, and a check that the answer reproduces (a
peak measured again can land on the other side of the budget; the report says so).

What "fits" means (`judge`): on CUDA, the cell ran without a CUDA out-of-memory error (the
worker's allocator optionally capped with --memory-fraction); on the CPU, and wherever a
--memory-budget is stated, the peak the record holds (`bigtrain.run.fit_memory.CHECKED_PEAK`) is
within the budget. A probe over the budget is recorded with status `oom` and the reason
`peak ... > budget ...`: the statuses are a closed set that every reader knows, and `oom` is what a
probe over its memory is, whether the allocator or the budget said so (`fit_memory_budget_bytes`
and `fit_checked_peak` in the record say which).

Workers: on the CPU every probe runs in a fresh worker (a process's peak RSS only grows, and freed
memory is not always returned to the system, so a reused worker would carry the previous probe's
peak into the next); on CUDA, where the allocator's peak is reset per cell, workers are reused,
and after a round in which a probe ran out of memory every idle worker is replaced.

One group's search runs at a time per device slot (one on a CPU or a single GPU): the searches
finish one after another, so a run stopped by a deadline holds whole answers, not half of each.
A resumed run (`--resume`) replays each search from the records it holds and carries on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bigtrain.cells.matrix import PENDING, Cell, DeviceInventory, cell_id_for, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import SweepSpec
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import FAILED_STATUSES, CellRecord, Manifest
from bigtrain.results.store import (
    UnstorableRecord,
    latest_records,
)
from bigtrain.run.executor import ExecutorSettings, executor_factory, slots_for
from bigtrain.run.fit_memory import CHECKED_PEAK, human_size
from bigtrain.run.fit_search import (
    BROKE,
    DOES_NOT_FIT,
    FITS,
    FitBounds,
    FitConclusion,
    Probe,
    conclude,
    next_batch,
)
from bigtrain.run.job import CellJob
from bigtrain.run.records import cell_record, not_run_record
from bigtrain.run.sweep import (
    OpenRun,
    SilentProgress,
    SweepOptions,
    SweepOutcome,
    SweepProgress,
    drive_run,
    open_run_folder,
)

#: The key of a fit run's settings in its manifest's `spec` (a sweep's manifest has none).
FIT_SPEC_KEY = "fit"
PROBE_REPEAT, MAX_REPEAT = 0, 1
ROLE_PROBE, ROLE_MAX = "probe", "max"
#: Failed probes `--retry-failed` runs again on resume (an `oom` is an answer, not a failure).
RETRIED_STATUSES = FAILED_STATUSES - {"oom"}


@dataclass(frozen=True, kw_only=True)
class FitSettings:
    """How a fit run searches: the bounds, and what a probe must fit in."""

    bounds: FitBounds = field(default_factory=FitBounds)
    #: The budget a probe's recorded peak must stay within; required for CPU cells.
    memory_budget_bytes: int | None = None
    #: The share of each GPU's memory a worker's allocator may use (None: all of it).
    memory_fraction: float | None = None

    def __post_init__(self) -> None:
        fraction = self.memory_fraction
        if fraction is not None and (isinstance(fraction, bool) or not 0 < fraction <= 1):
            raise BadInput(f"--memory-fraction: {fraction!r} is out of range; valid: a number "
                           f"above 0 and at most 1 (a share of each GPU's memory)")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 1:
            raise BadInput(f"--memory-budget: {self.memory_budget_bytes!r} bytes; valid: >= 1")

    def to_json(self) -> dict[str, Any]:
        """The manifest's `spec.fit`."""
        return {**self.bounds.to_json(), "memory_budget_bytes": self.memory_budget_bytes,
                "memory_fraction": self.memory_fraction}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FitSettings:
        bounds = FitBounds(**{k: data[k] for k in ("batch_min", "batch_max", "max_probes")
                              if k in data})
        return cls(bounds=bounds, memory_budget_bytes=data.get("memory_budget_bytes"),
                   memory_fraction=data.get("memory_fraction"))


class FitOutcome(SweepOutcome):
    """How a fit run ended. A probe that ran out of memory is an answer of the search, not a
    failed cell: only other failures (errors, timeouts, crashes) make the exit code 1."""

    @property
    def failed(self) -> list[CellRecord]:
        return [r for r in self.records if r.status in RETRIED_STATUSES]


def group_spec(spec: SweepSpec) -> SweepSpec:
    """The spec whose cells are the groups: every axis as given, the batch size the model's own
    (the search sets it per probe)."""
    return dataclasses.replace(spec, batch_size=(None,))


def fit_group_id(cell: Cell) -> str:
    """A stable id of a group: the cell id of its axes less the batch size."""
    axes = {k: v for k, v in cell.axes().items() if k != "batch_size"}
    return cell_id_for(axes)


def cell_at(cell: Cell, batch_size: int) -> Cell:
    """The group's cell at `batch_size`, with the cell id a sweep gives those axes."""
    axes = {**cell.axes(), "batch_size": batch_size}
    return replace(cell, batch_size=batch_size, cell_id=cell_id_for(axes))



def judge(record: CellRecord, settings: FitSettings) -> tuple[CellRecord, Probe]:
    """The record as stored (an ok probe over the budget becomes `oom`, naming its peak and the
    budget) and what it tells the search."""
    device_type = str(record.device).split(":")[0]
    budget = settings.memory_budget_bytes
    checked = CHECKED_PEAK.get(device_type) if budget is not None else None
    record = replace(record, fit_memory_budget_bytes=budget, fit_checked_peak=checked,
                     fit_memory_fraction=settings.memory_fraction if device_type == "cuda" else None)
    if record.status == "oom":
        return record, Probe(record.batch_size, DOES_NOT_FIT, record.reason or "out of memory")
    if record.status != "ok":
        return record, Probe(record.batch_size, BROKE, f"{record.status}: {record.reason or ''}")
    if checked is None:
        return record, Probe(record.batch_size, FITS)
    peak = getattr(record, checked, None)
    if peak is None:
        return record, Probe(record.batch_size, BROKE,
                             f"no {checked} recorded: the budget cannot be checked")
    if peak > budget:
        reason = (f"peak {checked} {human_size(peak)} ({peak:,} bytes) > budget "
                  f"{human_size(budget)} ({budget:,} bytes)")
        return replace(record, status="oom", reason=reason), Probe(record.batch_size,
                                                                  DOES_NOT_FIT, reason)
    return record, Probe(record.batch_size, FITS)


@dataclass
class _Search:
    """One group's search while the run goes on."""

    group: Cell
    group_id: str
    probes: list[Probe] = field(default_factory=list)
    conclusion: FitConclusion | None = None
    max_recorded: bool = False


@dataclass(frozen=True, kw_only=True)
class GroupResult:
    """One group's answer, for the command's summary."""

    group: Cell
    conclusion: FitConclusion
    max_record: CellRecord | None


def _check_cpu_budget(cells: Sequence[Cell], settings: FitSettings) -> None:
    if settings.memory_budget_bytes is None and any(
            c.status == PENDING and c.device == "cpu" for c in cells):
        raise BadInput("a CPU cell needs --memory-budget SIZE (e.g. 1GiB): the CPU has no "
                       "out-of-memory error to catch before the kernel kills the process, so a "
                       "probe fits when its recorded peak RSS is within the stated budget")


def check_fit_input(spec: SweepSpec, settings: FitSettings, cells: Sequence[Cell]) -> None:
    """Bad input before anything is written: a CPU cell without a budget, a budget below a model's
    own parameters or above this machine's RAM (BadInput names the value and the valid range)."""
    from bigtrain.run.fit_memory import check_memory_budget

    _check_cpu_budget(cells, settings)
    pending = [c for c in cells if c.status == PENDING]
    if settings.memory_budget_bytes is not None and pending:
        check_memory_budget(settings.memory_budget_bytes, [c.model for c in pending],
                            on_cpu=any(c.device == "cpu" for c in pending))


def _check_is_fit_run(run_dir: Path, manifest: Manifest) -> None:
    """Only a fit run resumes as one (BadInput)."""
    if FIT_SPEC_KEY not in manifest.spec:
        raise BadInput(f"cannot resume {run_dir} with `bigbench fit`: it is not a fit run (its "
                       f"manifest's spec has no {FIT_SPEC_KEY!r}); resume it with `bigbench sweep`")


def fit_spec_json(spec: SweepSpec, settings: FitSettings) -> dict[str, Any]:
    """What a fit run's manifest records as its spec: the groups' spec and the fit settings."""
    return {**group_spec(spec).to_json(), FIT_SPEC_KEY: settings.to_json()}


def run_fit(spec: SweepSpec, settings: FitSettings, options: SweepOptions,
            progress: SweepProgress | None = None) -> tuple[FitOutcome, list[GroupResult]]:
    """Run (or resume) the searches of `spec`'s groups; bad input raises BadInput before any
    write; probe failures are records; an interrupt ends the run cleanly (resume goes on)."""
    from bigtrain.measure.envinfo import collect_environment

    progress = progress or SilentProgress()
    make_executor = executor_factory(options.executor) if options.executor else None
    inventory = DeviceInventory.detect()
    groups = expand(group_spec(spec), inventory, max_cells=options.max_cells)
    check_fit_input(spec, settings, groups)
    pending = [g for g in groups if g.status == PENDING]
    cells_total = len(pending) * (settings.bounds.max_probes + 1)
    run_dir, manifest, previous = open_run_folder(
        fit_spec_json(spec, settings), options, cells_total, collect_environment(),
        compared="the spec, the fit settings", check_resumable=_check_is_fit_run)
    make_executor = make_executor or executor_factory(manifest.executor)
    known = {(r.cell_id, r.repeat): r for r in latest_records(previous)
             if not (options.retry_failed and r.status in RETRIED_STATUSES)}
    recorded_ids = {r.cell_id for r in previous}
    slots = slots_for(sorted({g.device for g in pending}), inventory.cuda_count) or ["cpu"]
    on_cpu = any(g.device == "cpu" for g in pending)
    executor = make_executor(ExecutorSettings(
        slots=tuple(slots), cell_timeout_s=spec.measure.cell_timeout_s,
        # A CPU probe's peak RSS is only its own in a fresh process (see the module docstring).
        reuse_workers=options.reuse_workers and not on_cpu,
        worker_env=options.worker_env, options=options.executor_options))
    searches = [_Search(group=g, group_id=fit_group_id(g)) for g in pending]
    by_job: dict[tuple[str, int], tuple[_Search, str, int | None]] = {}
    records: list[CellRecord] = list(previous)
    # Probes and the answer are measured alike: a peak is only comparable with one taken over
    # the same warm-up and window (on the CPU, a 0.25 s probe of mlp:small at batch 7712 peaked
    # at 515 MiB, its 1 s re-measurement at 566 MiB).
    measure = StepTimeSettings.from_measure(spec.measure)

    def job_for(search: _Search, role: str) -> CellJob:
        if role == ROLE_PROBE:
            batch = next_batch(settings.bounds, search.probes)
            assert batch is not None
            cell, repeat = cell_at(search.group, batch), PROBE_REPEAT
            index: int | None = len(search.probes)
        else:
            assert search.conclusion is not None and search.conclusion.max_batch_size
            cell = cell_at(search.group, search.conclusion.max_batch_size)
            repeat, index = MAX_REPEAT, None
        by_job[(cell.cell_id, repeat)] = (search, role, index)
        return CellJob(run_id=manifest.run_id, cell=cell, repeat=repeat, device=cell.device,
                       settings=measure, seed=spec.measure.seed,
                       cuda_memory_fraction=settings.memory_fraction)

    def annotate(record: CellRecord) -> tuple[CellRecord, Probe | None]:
        search, role, index = by_job[(record.cell_id, record.repeat)]
        record = replace(record, fit_group=search.group_id, fit_role=role, fit_probe_index=index)
        if role == ROLE_MAX:
            assert search.conclusion is not None
            record = replace(record, fit_fail_batch_size=search.conclusion.fail_batch_size,
                             fit_stop=search.conclusion.stop)
        judged, probe = judge(record, settings)
        return judged, probe if role == ROLE_PROBE else None

    def take(record: CellRecord, probe: Probe | None) -> None:
        search, role, _ = by_job[(record.cell_id, record.repeat)]
        if probe is not None:
            search.probes.append(probe)
            if next_batch(settings.bounds, search.probes) is None:
                search.conclusion = conclude(settings.bounds, search.probes)
        else:
            search.max_recorded = True

    def next_jobs() -> list[CellJob]:
        """The next job of each of the first unfinished searches (one per slot), replaying
        what a resumed run already recorded."""
        jobs: list[CellJob] = []
        for search in searches:
            if len(jobs) >= len(slots):
                break
            while True:
                if search.conclusion is None:
                    job = job_for(search, ROLE_PROBE)
                elif search.conclusion.max_batch_size and not search.max_recorded:
                    job = job_for(search, ROLE_MAX)
                else:
                    job = None
                if job is None:
                    break
                stored = known.get((job.cell.cell_id, job.repeat))
                if stored is None:
                    jobs.append(job)
                    break
                _, probe = annotate(stored)
                take(stored, probe)
        return jobs

    def run_searches(run: OpenRun) -> None:
        round_ran_out = False

        def record(result: CellRecord) -> None:
            nonlocal round_ran_out
            stored, probe = annotate(result)

            def as_error(failed: CellRecord, exc: UnstorableRecord) -> CellRecord:
                """As the sweep does: the probe's error record instead, judged like any."""
                nonlocal probe
                search, role, index = by_job[(failed.cell_id, failed.repeat)]
                error = cell_record(
                    manifest.run_id, cell_at(search.group, failed.batch_size), failed.repeat,
                    status="error", reason=f"the record cannot be stored: {exc}"[:500],
                    started_at=failed.started_at, ended_at=failed.ended_at,
                    worker_pid=failed.worker_pid, fit_group=search.group_id, fit_role=role,
                    fit_probe_index=index)
                error, error_probe = judge(error, settings)
                probe = error_probe if role == ROLE_PROBE else None
                return error

            stored = run.store(stored, instead=as_error)
            take(stored, probe)
            round_ran_out = round_ran_out or stored.status == "oom"
            progress.cell_finished(stored)

        for group in groups:
            if group.status != PENDING:
                at = cell_at(group, settings.bounds.batch_min)
                if at.cell_id not in recorded_ids:
                    skipped = replace(not_run_record(manifest.run_id, at),
                                      fit_group=fit_group_id(group))
                    progress.cell_finished(run.store(skipped))
        while jobs := next_jobs():
            round_ran_out = False
            executor.run(jobs, record, run.cell_started)
            if round_ran_out:
                executor.retire_idle_workers()  # the worker after an OOM is replaced

    run = drive_run(run_dir, manifest, options=options, executor=executor, progress=progress,
                    records=records, begin=lambda: progress.begin(run_dir, groups, cells_total),
                    body=run_searches)
    outcome = FitOutcome(run_dir=run_dir, records=tuple(latest_records(records)),
                         interrupted=run.interrupted, error=run.error,
                         workers_started=executor.workers_started)
    progress.end(outcome)
    latest = {(r.cell_id, r.repeat): r for r in outcome.records}
    results = [GroupResult(group=s.group, conclusion=s.conclusion,
                           max_record=latest.get((cell_at(s.group, s.conclusion.max_batch_size)
                                                  .cell_id, MAX_REPEAT))
                           if s.conclusion.max_batch_size else None)
               for s in searches if s.conclusion is not None]
    return outcome, results
