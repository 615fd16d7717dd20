"""The A/B driver: rounds of paired measurements of two sides, into two ordinary run folders.

Each round runs every cell once per side, in a seeded random order (`bigtrain.ab.plan`), in fresh
single-threaded workers pinned to a core: one side after the other (`interleave`) or both at once
on two cores (`duet`). After each round the paired gate decides what it can; the run stops when
every cell is decided, at the round limit, or when one more round would overrun the budget.

Both sides are written like sweeps (`results/<id>-baseline`, `results/<id>-candidate`): the same
manifest (with the side's interpreter, environment variables, mode and order seed under
`environment.ab`), the same append-and-fsync records (`repeat` = the round; `extra.ab_round`,
`ab_position`, `ab_side`, `ab_core`), the same guard against Ctrl-C, so an interrupted A/B run
leaves two valid folders marked `interrupted`, and `compare`, `report` and `export` read them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bigtrain.ab.plan import INTERLEAVE, Slot, next_round_fits, round_order, side_cores, usable_cores
from bigtrain.ab.protocol import PROTOCOL_VERSION, WORKER_COMMAND
from bigtrain.ab.side_worker import SideWorker, run_jobs, side_environment
from bigtrain.ab.sides import SIDES, Side
from bigtrain.common.errors import BadInput
from bigtrain.common.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION
from bigtrain.cells.matrix import DEFAULT_MAX_CELLS, PENDING, Cell, DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.results.schema import CellRecord, Manifest
from bigtrain.results.store import RunWriter
from bigtrain.run.job import CellJob
from bigtrain.run.records import not_run_record, now_iso
from bigtrain.run.sweep import (
    InterruptGuard,
    SweepInterrupted,
    SweepOptions,
    _open_run,
    _signals_deferred,
    default_run_id,
)
from bigtrain.results.run_ids import check_run_id
from bigtrain.cells.spec import SweepSpec

#: How long a side's interpreter gets to describe itself (import torch, read the machine).
DESCRIBE_TIMEOUT_S = 300.0
STOP_DECIDED = "decided"
STOP_ROUNDS = "rounds"
STOP_BUDGET = "budget"
STOP_INTERRUPTED = "interrupted"


@dataclass(frozen=True, kw_only=True)
class AbOptions:
    """How to run an A/B comparison (the spec says what to run)."""

    out_dir: Path = Path("results")
    run_id: str | None = None
    mode: str = INTERLEAVE
    max_rounds: int = 30
    budget_s: float = 600.0
    #: Seeds the order of every round; None: drawn at random (and recorded).
    order_seed: int | None = None
    thresholds_pct: Mapping[str, float] | None = None
    alpha: float | None = None
    max_cells: int = DEFAULT_MAX_CELLS
    #: `--profile`: after the last round, each cell runs once more per side in fresh workers,
    #: profiled into the side's run folder (bigtrain.measure.profile_settings.ProfileRequest).
    profile: Any = None

    def __post_init__(self) -> None:
        if self.run_id is not None:
            for side in SIDES:
                check_run_id(f"{self.run_id}-{side}", "--run-id")
        from bigtrain.compare.stats import MIN_PAIRED_ROUNDS

        if self.max_rounds < MIN_PAIRED_ROUNDS:
            raise BadInput(f"--rounds {self.max_rounds}: paired rounds decide nothing before "
                           f"{MIN_PAIRED_ROUNDS} rounds; give {MIN_PAIRED_ROUNDS} or more")
        if not self.budget_s > 0:
            raise BadInput(f"--budget-s must be > 0 seconds, got {self.budget_s}")
        from bigtrain.cells.spec import number_problem

        # `inf` would be written into the manifest, which JSON cannot hold (as sweep's flags).
        if problem := number_problem("--budget-s", self.budget_s):
            raise BadInput(problem)


@dataclass(frozen=True, kw_only=True)
class RoundReport:
    """What the console hears after each round."""

    index: int
    duration_s: float
    elapsed_s: float
    result: Any
    decided: bool


@dataclass(frozen=True, kw_only=True)
class AbOutcome:
    """How an A/B run ended, and its paired comparison (None when no round finished)."""

    run_dirs: Mapping[str, Path]
    order_seed: int
    mode: str
    max_rounds: int
    budget_s: float
    rounds_used: int
    round_durations_s: tuple[float, ...]
    elapsed_s: float
    stop_reason: str
    result: Any = None

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == STOP_INTERRUPTED

    @property
    def exit_code(self) -> int:
        """130 interrupted (the gate is not passed); else compare's: 1 when the gate failed."""
        if self.interrupted or self.result is None:
            return EXIT_INTERRUPTED
        return EXIT_REGRESSION if self.result.gate_failed else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The run's own facts, beside the comparison in `--json`."""
        return {"run_dirs": {k: str(v) for k, v in self.run_dirs.items()}, "mode": self.mode,
                "order_seed": self.order_seed, "rounds_used": self.rounds_used,
                "max_rounds": self.max_rounds, "budget_s": self.budget_s,
                "elapsed_s": round(self.elapsed_s, 3), "stop_reason": self.stop_reason,
                "round_durations_s": [round(d, 3) for d in self.round_durations_s]}


def describe_sides(sides: Mapping[str, Side]) -> dict[str, dict[str, Any]]:
    """Ask each side's interpreter, at the same time, what it is (`ab-worker --describe`).

    BadInput naming the side's flag when it cannot run bigtrain's A/B worker (no bigtrain, an
    older one without `ab-worker`, another protocol), with the tail of what it printed.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sides)) as pool:
        futures = {name: pool.submit(_describe, side) for name, side in sides.items()}
        return {name: future.result() for name, future in futures.items()}


def _describe(side: Side) -> dict[str, Any]:
    flag = f"--{side.name}-python"
    try:
        done = subprocess.run([side.python, "-m", "bigtrain", WORKER_COMMAND, "--describe"],
                              env=side_environment(side), capture_output=True,
                              timeout=DESCRIBE_TIMEOUT_S, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BadInput(f"{flag} {side.python}: cannot run it: {exc}") from None
    tail = done.stderr.decode("utf-8", errors="replace").strip()[-1500:]
    try:
        described = json.loads(done.stdout)
    except ValueError:
        described = None
    if done.returncode != 0 or not isinstance(described, dict):
        raise BadInput(f"{flag} {side.python}: `python -m bigtrain {WORKER_COMMAND} --describe` "
                       f"failed (exit code {done.returncode}); this side needs bigtrain with "
                       f"the A/B worker (protocol {PROTOCOL_VERSION}) installed in that "
                       f"interpreter. It printed: {tail or '(nothing)'}")
    if PROTOCOL_VERSION not in described.get("protocol", []):
        raise BadInput(f"{flag} {side.python}: its bigtrain "
                       f"{described.get('bigtrain_version')} speaks A/B protocol "
                       f"{described.get('protocol')}, this one {PROTOCOL_VERSION}")
    return described


def _job(run_id: str, cell: Cell, round_index: int, settings: StepTimeSettings,
         seed: int) -> CellJob:
    # The pinned worker runs one device; `cuda` (any GPU) means the first one.
    device = "cuda:0" if cell.device == "cuda" else cell.device
    return CellJob(run_id=run_id, cell=cell, repeat=round_index, device=device,
                   settings=settings, seed=seed)


class _Round:
    """The workers and records of one round."""

    def __init__(self, sides: Mapping[str, Side], cores: Mapping[str, int], log_dir: Path,
                 index: int) -> None:
        self.sides, self.cores, self.log_dir, self.index = sides, cores, log_dir, index
        #: One worker per (side, framework): two frameworks in one process fight over threads and
        #: memory, so a side's jax cells never run in the process of its torch cells.
        self.workers: dict[tuple[str, str], SideWorker] = {}
        self.records: dict[str, dict[str, CellRecord]] = {name: {} for name in sides}
        self._started = 0

    def worker(self, side: str, cell: Cell) -> SideWorker:
        """The side's live worker for `cell`'s framework, or a fresh one (a failed cell's worker
        was killed)."""
        framework = str(getattr(cell, "framework", "torch"))
        current = self.workers.get((side, framework))
        if current is None or (current.pid is not None and not current.alive):
            self._started += 1
            tag = "" if framework == "torch" else f"-{framework}"
            log = self.log_dir / f"r{self.index}-{side}{tag}-{self._started}.log"
            current = SideWorker(self.sides[side], core=self.cores[side], log_path=log,
                                 framework=framework)
            self.workers[(side, framework)] = current
        return current

    def close(self, *, kill: bool) -> None:
        for worker in self.workers.values():
            if kill:
                worker.kill()
            else:
                worker.stop()
        self.workers.clear()


def run_ab(spec: SweepSpec, sides: Mapping[str, Side], options: AbOptions, *,
           on_round: Callable[[RoundReport], None] | None = None,
           ignore_signals_after_interrupt: bool = False,
           clock: Callable[[], float] = time.monotonic,
           cores: Sequence[int] | None = None) -> AbOutcome:
    """Run the A/B comparison of `sides` (baseline and candidate) over the cells of `spec`.

    Bad input (flags, a side's interpreter, duet on one core, existing run folders) raises
    BadInput before anything is written.
    """
    from bigtrain.ab.gate import decide_rounds

    started = clock()
    cores = list(usable_cores() if cores is None else cores)
    side_cores(options.mode, 0, cores)  # duet on one core: refused before anything runs
    cells = expand(spec, DeviceInventory.detect(), max_cells=options.max_cells)
    pending = [c for c in cells if c.status == PENDING]
    if not pending:
        raise BadInput("no cell of this matrix can run here (every one is skipped or "
                       "unsupported); nothing to compare")
    run_id = options.run_id or default_run_id()
    run_dirs = {name: Path(options.out_dir) / f"{run_id}-{name}" for name in SIDES}
    for path in run_dirs.values():
        if path.exists():
            raise BadInput(f"run folder {path} already exists; choose another --run-id "
                           f"(nothing was overwritten)")
    seed = options.order_seed if options.order_seed is not None else secrets.randbelow(2**31)
    recorded_spec = replace(spec, measure=replace(spec.measure, repeats=options.max_rounds))
    starts = _open_sides(recorded_spec, sides, options, cells, run_id=run_id, seed=seed)

    settings = StepTimeSettings.from_measure(spec.measure)
    # Sorted by id: a round's order depends on the seed and the set of cells alone.
    sorted_cells = sorted(pending, key=lambda c: c.cell_id)
    rounds: list[dict[str, dict[str, CellRecord]]] = []
    durations: list[float] = []
    result: Any = None
    stop_reason = STOP_ROUNDS
    log_dir = Path(tempfile.mkdtemp(prefix="bigtrain-ab-"))
    current: _Round | None = None
    with InterruptGuard(ignore_after_signal=ignore_signals_after_interrupt) as guard, \
            _writers(starts) as writers:
        def record(side: str, slot: Slot, core: int, rec: CellRecord) -> CellRecord:
            rec = replace(rec, extra={**rec.extra, "ab_round": len(rounds) - 1,
                                      "ab_position": slot.position, "ab_side": side,
                                      "ab_core": core, "ab_mode": options.mode})
            with _signals_deferred():
                writers[side].append(rec)
            return rec

        def decide(*, final: bool) -> tuple[Any, bool]:
            return decide_rounds(
                rounds, thresholds_pct=options.thresholds_pct, alpha=options.alpha,
                max_rounds=options.max_rounds, final=final,
                runs={n: (st.manifest.run_id, st.run_dir, st.manifest.environment)
                      for n, st in starts.items()})

        try:
            try:
                guard.arm()
                for name, start in starts.items():
                    for cell in cells:
                        if cell.status != PENDING:
                            with _signals_deferred():
                                writers[name].append(not_run_record(start.manifest.run_id, cell))
                for index in range(options.max_rounds):
                    if not next_round_fits(clock() - started, durations, options.budget_s):
                        stop_reason = STOP_BUDGET
                        # No round follows: judge the last look as the final one.
                        result, _ = decide(final=True)
                        break
                    round_start = clock()
                    round_cores = side_cores(options.mode, index, cores)
                    current = _Round(sides, round_cores, log_dir, index)
                    rounds.append(current.records)
                    _run_round(current, sorted_cells=sorted_cells, seed=seed,
                               mode=options.mode, starts=starts, spec=spec, settings=settings,
                               record=record)
                    current.close(kill=False)
                    current = None
                    durations.append(clock() - round_start)
                    result, decided = decide(final=False)
                    if on_round is not None:
                        on_round(RoundReport(index=index, duration_s=durations[-1],
                                             elapsed_s=clock() - started, result=result,
                                             decided=decided))
                    if decided:
                        stop_reason = STOP_DECIDED
                        break
                if options.profile is not None and durations:
                    current = _Round(sides, side_cores(options.mode, len(durations), cores),
                                     log_dir, len(durations))
                    _profile_pass(current, sorted_cells=sorted_cells, starts=starts, spec=spec,
                                  settings=settings, request=options.profile)
                    current.close(kill=False)
                    current = None
            finally:
                guard.disarm()
        except SweepInterrupted:
            pass  # guard.received says so
        finally:
            if current is not None:
                current.close(kill=True)
            shutil.rmtree(log_dir, ignore_errors=True)
            interrupted = guard.received is not None
            for name, start in starts.items():
                with contextlib.suppress(OSError):
                    writers[name].write_manifest(_final_manifest(
                        start.manifest, recorded_spec, len(cells), len(durations), interrupted))
    if guard.received is not None:
        stop_reason = STOP_INTERRUPTED
    return AbOutcome(run_dirs=run_dirs, order_seed=seed, mode=options.mode,
                     max_rounds=options.max_rounds, budget_s=options.budget_s,
                     rounds_used=len(durations), round_durations_s=tuple(durations),
                     elapsed_s=clock() - started, stop_reason=stop_reason, result=result)


def _open_sides(spec: SweepSpec, sides: Mapping[str, Side], options: AbOptions,
                cells: Sequence[Cell], *, run_id: str, seed: int) -> dict[str, Any]:
    """Each side's run start (sweep's `_open_run`: folder and `running` manifest, nothing written
    yet), its environment as the side's own interpreter describes it, plus `environment.ab`."""
    described = describe_sides(sides)
    starts = {}
    for name, side in sides.items():
        environment = {**described[name]["environment"], "ab": {
            **side.describe(), "mode": options.mode, "order_seed": seed,
            "worker_bigtrain_version": described[name].get("bigtrain_version"),
            "protocol": PROTOCOL_VERSION}}
        starts[name] = _open_run(spec, SweepOptions(
            out_dir=options.out_dir, run_id=f"{run_id}-{name}", executor=f"ab-{options.mode}"),
            cells, environment)
    return starts


def _run_round(current: _Round, *, sorted_cells: Sequence[Cell], seed: int, mode: str,
               starts: Mapping[str, Any], spec: SweepSpec, settings: StepTimeSettings,
               record: Callable[[str, Slot, int, CellRecord], CellRecord]) -> None:
    """Every cell once per side, in the round's seeded order; each record through `record`.

    The cells come sorted by id, so the order depends on the seed and the set of cells alone.
    """
    by_id = {c.cell_id: c for c in sorted_cells}
    for slot in round_order(list(by_id), current.index, seed, mode):
        cell = by_id[slot.cell_id]
        names = SIDES if slot.side is None else (slot.side,)
        jobs = [(current.worker(n, cell), _job(starts[n].manifest.run_id, cell, current.index, settings,
                                         spec.measure.seed))
                for n in names]
        for name, rec in zip(names, run_jobs(jobs, cell_timeout_s=spec.measure.cell_timeout_s)):
            current.records[name][cell.cell_id] = record(name, slot, current.cores[name], rec)


def _profile_pass(current: _Round, *, sorted_cells: Sequence[Cell], starts: Mapping[str, Any],
                  spec: SweepSpec, settings: StepTimeSettings, request: Any) -> None:
    """`ab --profile`: every cell once more per side, in the fresh workers of one more round,
    profiled into `<side run>/profiles/<cell>/`. Their records are not stored: the comparison is
    the rounds', and the profile folders are what `compare`'s and `ab`'s op diffs read. A side
    whose bigtrain predates profiles ignores the request (its folder then has no profiles)."""
    from bigtrain.measure.profile_settings import profile_settings_for

    for cell in sorted_cells:
        jobs = []
        for name in SIDES:
            job = _job(starts[name].manifest.run_id, cell, current.index, settings,
                       spec.measure.seed)
            profile = profile_settings_for(request, str(Path(starts[name].run_dir).resolve()),
                                           cell.cell_id)
            jobs.append((current.worker(name, cell), replace(job, profile=profile)))
        run_jobs(jobs, cell_timeout_s=spec.measure.cell_timeout_s)


def _final_manifest(manifest: Manifest, spec: SweepSpec, cells: int, rounds: int,
                    interrupted: bool) -> Manifest:
    """The manifest at the end: the rounds run become the spec's repeats."""
    repeats = max(1, rounds)
    final_spec = replace(spec, measure=replace(spec.measure, repeats=repeats))
    return replace(manifest, spec=final_spec.to_json(), cells_total=cells * repeats,
                   state="interrupted" if interrupted else "complete", ended_at=now_iso())


@contextlib.contextmanager
def _writers(starts: Mapping[str, Any]) -> Iterator[dict[str, RunWriter]]:
    """Both run folders open (and locked), their `running` manifests written."""
    with contextlib.ExitStack() as stack:
        writers = {}
        for name, start in starts.items():
            writers[name] = stack.enter_context(RunWriter(start.run_dir))
            writers[name].write_manifest(start.manifest)
        yield writers
