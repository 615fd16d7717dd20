"""`bigbench converge --tune-lr N`: a learning-rate search per group, then the lr chosen trained
again from fresh seeds.

Each cell of the matrix less its lr is a *group* (its model, optimizer, implementation,
precision and every other axis). A group's search (`bigtrain.run.tune_search`: the grid, the
budget, the choice) runs its trials one after another; each trial is an ordinary converge cell of
the run at one lr, from the spec's seed (repeat 0, `tune_role` trial), appended to `cells.jsonl`
like any. When the search is over, the lr chosen is trained from `--seeds` fresh seeds (repeats
1..n: seeds `seed + 1`..`seed + n`, never the trials' seed, so the seed the lr was picked on is
not reported as its result), `tune_role` final, with the search's cost in every final record.

The trials are kept (nothing hidden: they are records, in the frame and the report's tuning
table) and left out of the gates and the time-to-target tables
(`bigtrain.results.tuning.is_tuning_trial`). A group
whose trials all diverged or failed gets `skipped` final records naming why, so the leaderboard
shows it did not reach the target rather than leaving it out.

Resume (`--resume`) replays each search from the records the run holds, budget included (the
recorded trials' costs), and carries on: the grid and the choice depend on the records alone.
One search runs at a time per device slot, so a run stopped early holds whole answers.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bigtrain.cells.matrix import PENDING, Cell, DeviceInventory, cell_id_for, expand
from bigtrain.cells.spec import SweepSpec
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import FAILED_STATUSES, CellRecord, Manifest
from bigtrain.results.store import UnstorableRecord, latest_records
from bigtrain.results.tuning import ROLE_FINAL, ROLE_TRIAL
from bigtrain.run.executor import ExecutorSettings, executor_factory, slots_for
from bigtrain.run.job import CellJob
from bigtrain.run.records import cell_record, not_run_record, now_iso
from bigtrain.run.sweep import (
    OpenRun,
    SilentProgress,
    SweepOptions,
    SweepOutcome,
    SweepProgress,
    drive_run,
    open_run_folder,
)
from bigtrain.run.tune_limits import MAX_TRIALS
from bigtrain.run.tune_search import (
    Trial,
    choose,
    next_trial,
    spent_j,
    spent_s,
    stop_reason,
    trial_lrs,
)

#: The key of a tuned run's settings in its manifest's `spec`.
TUNE_SPEC_KEY = "tune"
TRIAL_REPEAT = 0
#: What a final record that could not run copies from its search's trials: the target it is for.
TARGET_FIELDS = ("target_metric", "target_value", "target_direction")


@dataclass(frozen=True, kw_only=True)
class TuneSettings:
    """How each group's lr is searched: `trials` lrs at most, within `budget_s` seconds."""

    trials: int
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or not (
                1 <= self.trials <= MAX_TRIALS):
            raise BadInput(f"--tune-lr: {self.trials!r} trials; valid: a whole number from 1 to "
                           f"{MAX_TRIALS}")
        budget = self.budget_s
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget <= 0):
            raise BadInput(f"--tune-budget-s: {budget!r}; valid: a number of seconds > 0")

    def to_json(self) -> dict[str, Any]:
        """The manifest's `spec.tune`."""
        return {"trials": self.trials, "budget_s": self.budget_s}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TuneSettings:
        """Rebuild from a manifest's `spec.tune`."""
        return cls(trials=data.get("trials"), budget_s=data.get("budget_s"))


def group_spec(spec: SweepSpec) -> SweepSpec:
    """The spec whose cells are the groups: every axis as given, the lr each optimizer's own."""
    return dataclasses.replace(spec, lr=("default",))


def tune_group_id(cell: Cell) -> str:
    """A stable id of a group: the cell id of its axes less the lr."""
    return cell_id_for({k: v for k, v in cell.axes().items() if k != "lr"})


def cell_at(cell: Cell, lr: float) -> Cell:
    """The group's cell at `lr`, with the cell id a sweep at `--lr` gives those axes."""
    text = repr(float(lr))  # the lr axis's canonical text (bigtrain.cells.axes._lr)
    return replace(cell, lr=text, cell_id=cell_id_for({**cell.axes(), "lr": text}))


def default_lr(optimizer: str) -> float | None:
    """The lr an optimizer of the registry trains with when none is given: its registry
    hyper-parameters', else its constructor's default; None when it has neither."""
    from bigtrain.training.optim import resolve_optimizer

    spec = resolve_optimizer(optimizer)
    value = dict(spec.hyperparams).get("lr")
    if value is None:
        parameter = inspect.signature(spec.cls).parameters.get("lr")
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            value = parameter.default
    try:
        number = float(value)  # a tensor lr reads as its value
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def check_tune_input(spec: SweepSpec, groups: Sequence[Cell]) -> dict[str, float]:
    """Bad input before anything is written (BadInput names the value and the choices); returns
    each pending group's optimizer's default lr."""
    if spec.converge is None:
        raise BadInput("--tune-lr tunes converge cells: use `bigbench converge`")
    if tuple(spec.lr) != ("default",):
        raise BadInput(f"--tune-lr searches the learning rate itself, so the lr axis must be "
                       f"'default' (got {', '.join(map(str, spec.lr))}); drop --lr, or the "
                       f"preset's lr list, or drop --tune-lr to train at those lrs")
    defaults: dict[str, float] = {}
    for group in groups:
        if group.status != PENDING or group.optimizer in defaults:
            continue
        lr = default_lr(group.optimizer)
        if lr is None:
            raise BadInput(f"optimizer {group.optimizer!r} has no default lr to search around "
                           f"(neither its registry hyper-parameters nor its constructor name "
                           f"one); register it with hyperparams={{'lr': ...}}")
        defaults[group.optimizer] = lr
    return defaults


def _check_is_tune_run(run_dir: Path, manifest: Manifest) -> None:
    if TUNE_SPEC_KEY not in manifest.spec:
        raise BadInput(f"cannot resume {run_dir} with --tune-lr: it is not a tuned run (its "
                       f"manifest's spec has no {TUNE_SPEC_KEY!r}); resume it without --tune-lr")


def tune_spec_json(spec: SweepSpec, settings: TuneSettings) -> dict[str, Any]:
    """What a tuned run's manifest records as its spec: the groups' spec and the settings."""
    return {**group_spec(spec).to_json(), TUNE_SPEC_KEY: settings.to_json()}


def trial_from_record(record: CellRecord) -> Trial:
    """What a trial's record tells the search: its outcome and what it cost."""
    energy = (record.telemetry or {}).get("energy_j") if record.telemetry else None
    return Trial(lr=float(record.lr), status=record.status,
                 steps_to_target=record.steps_to_target,
                 time_to_target_s=record.time_to_target_s, best_value=record.best_value,
                 cost_s=record_cost_s(record),
                 cost_j=float(energy) if isinstance(energy, (int, float)) else None)


def record_cost_s(record: CellRecord) -> float:
    """Seconds a trial cost: its training plus evaluation clocks; for a trial that failed before
    they ran (an error, a crash, a timeout), the wall seconds between its start and end."""
    if record.window_s is not None:
        return float(record.window_s) + float(record.eval_time_s or 0.0)
    try:
        started = _dt.datetime.fromisoformat(str(record.started_at))
        ended = _dt.datetime.fromisoformat(str(record.ended_at))
    except ValueError:
        return 0.0
    return max(0.0, (ended - started).total_seconds())


def is_failure(record: CellRecord) -> bool:
    """A record that failed the run (exit 1) and that `--retry-failed` runs again: as in a
    sweep, except a diverged trial, which is an answer of the search (that lr is too high)."""
    if record.status == "diverged" and record.tune_role == ROLE_TRIAL:
        return False
    return record.status in FAILED_STATUSES


class TuneOutcome(SweepOutcome):
    """How a tuned run ended; a diverged trial does not make the exit code 1 (`is_failure`)."""

    @property
    def failed(self) -> list[CellRecord]:
        return [r for r in self.records if is_failure(r)]


@dataclass
class _Search:
    """One group's search while the run goes on."""

    group: Cell
    group_id: str
    grid: tuple[float, ...]
    budget_s: float | None
    trials: list[Trial] = field(default_factory=list)
    over: bool = False
    chosen: Trial | None = None
    finals_done: set[int] = field(default_factory=set)
    #: The target its trials trained to (copied onto finals that could not run).
    target: dict[str, Any] = field(default_factory=dict)

    def next_trial(self) -> float | None:
        lr = next_trial(self.grid, self.trials, self.budget_s)
        if lr is None:
            self.over = True
        return lr

    def final_fields(self) -> dict[str, Any]:
        """The search's summary, carried by each of its final records."""
        return {"tune_role": ROLE_FINAL, "tune_group": self.group_id,
                "tuned_lr": self.chosen.lr if self.chosen else None,
                "tuning_cost_s": spent_s(self.trials), "tuning_cost_j": spent_j(self.trials),
                "tune_trials": len(self.trials), "tune_trials_planned": len(self.grid),
                "tune_budget_s": self.budget_s,
                "tune_stop": stop_reason(self.grid, self.trials)}


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """One group's answer, for the command's summary."""

    group: Cell
    trials: tuple[Trial, ...]
    planned: int
    chosen: Trial | None
    stop: str
    cost_s: float
    budget_s: float | None


def run_tune(spec: SweepSpec, settings: TuneSettings, options: SweepOptions,
             progress: SweepProgress | None = None) -> tuple[TuneOutcome, list[SearchResult]]:
    """Run (or resume) the lr searches of `spec`'s groups and their finals; bad input raises
    BadInput before any write; a diverged trial is a record; an interrupt ends the run cleanly
    (resume goes on from the records)."""
    from bigtrain.measure.envinfo import collect_environment

    progress = progress or SilentProgress()
    make_executor = executor_factory(options.executor) if options.executor else None
    inventory = DeviceInventory.detect()
    groups = expand(group_spec(spec), inventory, max_cells=options.max_cells)
    defaults = check_tune_input(spec, groups)
    pending = [g for g in groups if g.status == PENDING]
    seeds = spec.measure.repeats
    cells_total = len(pending) * (settings.trials + seeds)
    run_dir, manifest, previous = open_run_folder(
        tune_spec_json(spec, settings), options, cells_total, collect_environment(),
        compared="the spec, the tuning settings", check_resumable=_check_is_tune_run)
    make_executor = make_executor or executor_factory(manifest.executor)
    known = {(r.cell_id, r.repeat): r for r in latest_records(previous)
             if not (options.retry_failed and is_failure(r))}
    recorded_ids = {r.cell_id for r in previous}
    slots = slots_for(sorted({g.device for g in pending}), inventory.cuda_count) or ["cpu"]
    executor = make_executor(ExecutorSettings(
        slots=tuple(slots), cell_timeout_s=spec.measure.cell_timeout_s,
        reuse_workers=options.reuse_workers, worker_env=options.worker_env,
        options=options.executor_options))
    searches = [_Search(group=g, group_id=tune_group_id(g),
                        grid=trial_lrs(defaults[g.optimizer], settings.trials),
                        budget_s=settings.budget_s) for g in pending]
    by_job: dict[tuple[str, int], tuple[_Search, str]] = {}
    records: list[CellRecord] = list(previous)
    converge = spec.converge
    base_seed = spec.measure.seed

    def trial_job(search: _Search, lr: float) -> CellJob:
        cell = cell_at(search.group, lr)
        by_job[(cell.cell_id, TRIAL_REPEAT)] = (search, ROLE_TRIAL)
        return CellJob(run_id=manifest.run_id, cell=cell, repeat=TRIAL_REPEAT,
                       device=cell.device, settings=converge, protocol=spec.protocol,
                       seed=base_seed)

    def final_job(search: _Search, repeat: int) -> CellJob:
        assert search.chosen is not None
        cell = cell_at(search.group, search.chosen.lr)
        by_job[(cell.cell_id, repeat)] = (search, ROLE_FINAL)
        return CellJob(run_id=manifest.run_id, cell=cell, repeat=repeat, device=cell.device,
                       settings=converge, protocol=spec.protocol, seed=base_seed + repeat)

    def annotate(record: CellRecord) -> CellRecord:
        search, role = by_job[(record.cell_id, record.repeat)]
        if role == ROLE_TRIAL:
            return replace(record, tune_role=ROLE_TRIAL, tune_group=search.group_id,
                           tune_trial_index=len(search.trials),
                           tune_trials_planned=len(search.grid), tune_budget_s=search.budget_s)
        return replace(record, **search.final_fields())

    def take(record: CellRecord) -> None:
        search, role = by_job[(record.cell_id, record.repeat)]
        if role == ROLE_TRIAL:
            search.trials.append(trial_from_record(record))
            if record.target_metric is not None:
                search.target = {k: getattr(record, k) for k in TARGET_FIELDS}
        else:
            search.finals_done.add(record.repeat)

    def no_choice_records(run: OpenRun, search: _Search) -> None:
        """Every final of a search that chose nothing: `skipped`, naming why (or replayed)."""
        tried = ", ".join(f"{t.lr:g} ({t.status})" for t in search.trials)
        reason = f"no lr to train from fresh seeds: no trial gave a usable result (lr {tried})"
        for repeat in range(1, seeds + 1):
            if (search.group.cell_id, repeat) in known:
                continue
            skipped = cell_record(manifest.run_id, replace(search.group, status="skipped",
                                                           reason=reason), repeat,
                                  status="skipped", reason=reason[:500], started_at=now_iso(),
                                  ended_at=now_iso(), protocol=spec.protocol,
                                  seed=base_seed + repeat, **search.target,
                                  **search.final_fields())
            progress.cell_finished(run.store(skipped))
        search.finals_done.update(range(1, seeds + 1))

    def next_jobs(run: OpenRun) -> list[CellJob]:
        """The next job of each of the first unfinished searches (one per slot), replaying what
        a resumed run already recorded."""
        jobs: list[CellJob] = []
        for search in searches:
            if len(jobs) >= len(slots):
                break
            while True:
                job = None
                if not search.over:
                    lr = search.next_trial()  # None: the search is over, its lr is chosen now
                    if lr is not None:
                        job = trial_job(search, lr)
                    else:
                        search.chosen = choose(search.trials, _direction(search))
                if job is None:
                    if search.chosen is None:
                        no_choice_records(run, search)
                        break
                    missing = [r for r in range(1, seeds + 1) if r not in search.finals_done]
                    if not missing:
                        break
                    job = final_job(search, missing[0])
                stored = known.get((job.cell.cell_id, job.repeat))
                if stored is None:
                    jobs.append(job)
                    break
                take(annotate(stored))
        return jobs

    def run_searches(run: OpenRun) -> None:
        def record(result: CellRecord) -> None:
            stored = annotate(result)

            def as_error(failed: CellRecord, exc: UnstorableRecord) -> CellRecord:
                """As the sweep does: the cell's error record instead, annotated alike."""
                return annotate(cell_record(
                    manifest.run_id, _cell_of(failed), failed.repeat, status="error",
                    reason=f"the record cannot be stored: {exc}"[:500], protocol=spec.protocol,
                    started_at=failed.started_at, ended_at=failed.ended_at,
                    worker_pid=failed.worker_pid))

            stored = run.store(stored, instead=as_error)
            take(stored)
            progress.cell_finished(stored)

        for group in groups:
            if group.status != PENDING and group.cell_id not in recorded_ids:
                progress.cell_finished(run.store(replace(
                    not_run_record(manifest.run_id, group, spec.protocol),
                    tune_group=tune_group_id(group))))
        while jobs := next_jobs(run):
            executor.run(jobs, record, run.cell_started)

    def _cell_of(record: CellRecord) -> Cell:
        search, _ = by_job[(record.cell_id, record.repeat)]
        return cell_at(search.group, float(record.lr))

    run = drive_run(run_dir, manifest, options=options, executor=executor, progress=progress,
                    records=records, begin=lambda: progress.begin(run_dir, groups, cells_total),
                    body=run_searches)
    outcome = TuneOutcome(run_dir=run_dir, records=tuple(latest_records(records)),
                           interrupted=run.interrupted, error=run.error,
                           workers_started=executor.workers_started)
    progress.end(outcome)
    results = [SearchResult(group=s.group, trials=tuple(s.trials), planned=len(s.grid),
                            chosen=s.chosen, stop=stop_reason(s.grid, s.trials),
                            cost_s=spent_s(s.trials), budget_s=s.budget_s)
               for s in searches if s.over]
    return outcome, results


def _direction(search: _Search) -> str | None:
    """The group's target direction, from its task (min: a loss; max: an accuracy)."""
    from bigtrain.data.tasks import task_for

    task = task_for(search.group.model)
    return task.direction if task is not None else None
