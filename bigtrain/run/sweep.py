"""Sweep orchestration: spec -> cells -> jobs -> executor -> records on disk.

This process owns the run folder; cells run in worker processes. Every record is appended and
fsynced as its cell ends, with SIGINT/SIGTERM held back for the few microseconds of the write, so
an interrupt never leaves a half-written line. Ctrl-C or SIGTERM stops the running cells, marks
the manifest `interrupted` and ends with exit code 130; `--resume` picks up where it stopped.
Signals after the first are ignored until the manifest is final (`InterruptGuard`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bigtrain import __version__
from bigtrain.common.errors import BadInput
from bigtrain.common.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from bigtrain.cells.matrix import DEFAULT_MAX_CELLS, PENDING, Cell, DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.results.schema import FAILED_STATUSES, CellRecord, Manifest
from bigtrain.results.store import (
    MANIFEST_NAME,
    RunWriter,
    UnstorableRecord,
    is_disk_full,
    latest_records,
    load_run,
    read_manifest,
)
from bigtrain.measure.profile_settings import ProfileRequest, ProfileSettings, profile_settings_for
from bigtrain.run.job import CellJob
from bigtrain.run.executor import (
    DEFAULT_EXECUTOR,
    Executor,
    ExecutorSettings,
    executor_factory,
    slots_for,
)
from bigtrain.run.records import cell_record, not_run_record, now_iso
from bigtrain.results.run_ids import RUN_ID_MAX_CHARS, check_run_id, host_for_run_id
from bigtrain.cells.spec import SweepSpec


class SweepInterrupted(Exception):
    """Raised in the main thread by SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SweepProgress(Protocol):
    """What the console (or a test) hears while a sweep runs."""

    def begin(self, run_dir: Path, cells: Sequence[Cell], jobs: int) -> None: ...
    def cell_started(self, job: CellJob) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def end(self, outcome: SweepOutcome) -> None: ...


class SilentProgress:
    """A progress sink that prints nothing."""

    def begin(self, run_dir: Path, cells: Sequence[Cell], jobs: int) -> None: ...
    def cell_started(self, job: CellJob) -> None: ...
    def cell_finished(self, record: CellRecord) -> None: ...
    def end(self, outcome: SweepOutcome) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SweepOptions:
    """How to run a spec (as opposed to what to run)."""

    out_dir: Path = Path("results")
    run_id: str | None = None
    resume: str | None = None
    retry_failed: bool = False
    force: bool = False
    reuse_workers: bool = True
    worker_env: dict[str, str] = field(default_factory=dict)
    #: Where cells run: a name registered with `register_executor`. None: `local` for a new
    #: run, the run's own executor on resume.
    executor: str | None = None
    #: Executor-specific settings (e.g. a cluster's address), passed through ExecutorSettings.
    executor_options: Mapping[str, str] = field(default_factory=dict)
    #: Refuse (BadInput, before anything is written) a matrix of more axis combinations.
    max_cells: int = DEFAULT_MAX_CELLS
    #: After a SIGINT/SIGTERM, leave both ignored when the sweep returns (the command line, which
    #: only exits then); off, a library caller gets its own handlers back.
    ignore_signals_after_interrupt: bool = False
    #: `--profile`: each cell's first repeat runs a profiled window after its timed one
    #: (bigtrain.measure.profile_settings.ProfileRequest), or None.
    profile: ProfileRequest | None = None

    def __post_init__(self) -> None:
        # Both become a folder under out_dir: one safe path component, checked before any write.
        if self.run_id is not None:
            check_run_id(self.run_id, "--run-id")
        if self.resume is not None:
            check_run_id(self.resume, "--resume")


@dataclass(frozen=True, kw_only=True)
class SweepOutcome:
    """How a sweep ended."""

    run_dir: Path
    records: tuple[CellRecord, ...]
    interrupted: bool = False
    error: str | None = None
    workers_started: int = 0

    @property
    def failed(self) -> list[CellRecord]:
        return [r for r in self.records if r.status in FAILED_STATUSES]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed or self.error else EXIT_OK


def default_run_id() -> str:
    """`YYYYMMDD-HHMMSS-host`: sortable, and says where it ran (the host name made safe)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return check_run_id(f"{stamp}-{host_for_run_id()}"[:RUN_ID_MAX_CHARS], "default run id")


def plan_jobs(run_id: str, spec: SweepSpec, cells: Sequence[Cell],
              done: set[tuple[str, int]], *, profile: ProfileRequest | None = None,
              run_dir: Path | None = None) -> list[list[CellJob]]:
    """Jobs in rounds, one round per repeat (A B C, then A B C again), minus those already done.
    With `profile`, each cell's repeat 0 also runs a profiled window into `run_dir`/profiles/
    (one profile per cell; the other repeats stay unprofiled).

    A converge repeat is a seed: repeat r trains from seed `measure.seed + r` (convergence varies
    by seed); step-time repeats all build from `measure.seed`, as they always have."""
    m = spec.measure
    settings = spec.converge or StepTimeSettings.from_measure(m)
    seeds_per_repeat = spec.converge is not None
    rounds = []
    for repeat in range(m.repeats):
        rounds.append([
            CellJob(run_id=run_id, cell=cell, repeat=repeat, device=cell.device,
                    settings=settings, protocol=spec.protocol,
                    seed=m.seed + repeat if seeds_per_repeat else m.seed,
                    profile=_profile_settings(profile, run_dir, cell, repeat))
            for cell in cells
            if cell.status == PENDING and (cell.cell_id, repeat) not in done
        ])
    return rounds


def _profile_settings(profile: ProfileRequest | None, run_dir: Path | None, cell: Cell,
                      repeat: int) -> ProfileSettings | None:
    if profile is None or repeat != 0 or run_dir is None:
        return None
    return profile_settings_for(profile, str(Path(run_dir).resolve()), cell.cell_id)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a record is written, so no line is ever cut by an interrupt."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class InterruptGuard:
    """SIGINT and SIGTERM while a sweep owns its run folder, from opening it to the last word.

    Armed (cells running), the first signal raises SweepInterrupted in the main thread, once.
    Disarmed (the folder being opened before, clean-up after), a signal is only noted: one that
    came before `arm` raises as soon as `arm` is called, and every later one is ignored, so
    stopping the workers and marking the manifest `interrupted` always finish, however quickly a
    second Ctrl-C follows the first. Python's own handler (KeyboardInterrupt) is never back in
    force while the manifest can still say `running`.

    On leaving, the previous handlers come back, unless a signal came and `ignore_after_signal`
    is set: then the process keeps ignoring both, since it is on its way out and a late Ctrl-C
    in the interpreter's own exit handlers would print a traceback (the command line's choice).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, ignore_after_signal: bool = False) -> None:
        self.ignore_after_signal = ignore_after_signal
        self.received: int | None = None  # the first signal that came, if any
        self._armed = False
        # One token, popped by whoever raises: list.pop is atomic with respect to signal
        # handlers, so two signals in quick succession can never both raise.
        self._raise_token = [True]
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptGuard:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._armed = False
        ignore = self.received is not None and self.ignore_after_signal
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else previous)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signum
        if self._armed:
            self._raise(signum)

    def _raise(self, signum: int) -> None:
        try:
            self._raise_token.pop()
        except IndexError:
            return  # one interrupt was raised already: clean-up is under way
        self._armed = False
        raise SweepInterrupted(signum)

    def arm(self) -> None:
        """From now the first signal raises SweepInterrupted (at once, if one already came)."""
        self._armed = True
        if self.received is not None:
            self._raise(self.received)

    def disarm(self) -> None:
        """From now signals are only noted: clean-up must finish."""
        self._armed = False


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What a resume would change in a run's spec (`key: old -> new`), its name aside.

    An axis added after a run was written (`required_in_preset=False`: cuda_graphs, the levers,
    framework, schedule) is absent from its manifest, which means that axis's default: the run's
    cells had it. Read so, a run from before the axis resumes as the same spec; read as None, every
    such run was refused without --force."""
    from bigtrain.cells.axes import AXIS_TABLE

    old = dict(old)
    for entry in AXIS_TABLE:
        if not entry.required_in_preset and entry.name not in old:
            old[entry.name] = list(entry.default or ())
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
            if k not in ("preset", "description") and old.get(k) != new.get(k)]


@dataclass(frozen=True)
class _RunStart:
    """Where a sweep starts: its folder and manifest, and what a resumed run already holds."""

    run_dir: Path
    manifest: Manifest
    #: (cell_id, repeat) pairs that need no new measurement.
    done: frozenset[tuple[str, int]]
    #: Cells with any record (a not-run record is written only for cells without one).
    recorded_ids: frozenset[str]
    previous: tuple[CellRecord, ...]


def open_run_folder(spec_json: dict[str, Any], options: SweepOptions, cells_total: int,
                    environment: dict[str, Any], *, compared: str = "the spec",
                    check_resumable: Callable[[Path, Manifest], None] | None = None,
                    ) -> tuple[Path, Manifest, tuple[CellRecord, ...]]:
    """A new run's folder and manifest; or, with `options.resume`, the run's folder, its
    manifest set running again and the records it holds, after checking (BadInput) that
    `check_resumable` accepts it and that neither `compared` (its spec, as `spec_json`), the
    executor nor this machine changed, unless `options.force`."""
    from bigtrain.measure.envinfo import fingerprint_differences

    if not options.resume:
        run_id = options.run_id or default_run_id()
        manifest = Manifest(
            run_id=run_id, bigtrain_version=__version__, spec=spec_json,
            environment=environment, started_at=now_iso(), state="running",
            cells_total=cells_total, executor=options.executor or DEFAULT_EXECUTOR,
        )
        return Path(options.out_dir) / run_id, manifest, ()

    run_dir = Path(options.out_dir) / options.resume
    manifest = read_manifest(run_dir)
    # The manifest's run id goes into every new record; a hand-edited one is refused here.
    check_run_id(manifest.run_id, f"{run_dir / MANIFEST_NAME}: run_id")
    if check_resumable is not None:
        check_resumable(run_dir, manifest)
    executor_name = options.executor or manifest.executor
    problems = spec_differences(dict(manifest.spec), spec_json)
    problems += fingerprint_differences(dict(manifest.environment), environment)
    if executor_name != manifest.executor:
        problems.append(f"executor: {manifest.executor!r} -> {executor_name!r}")
    if problems and not options.force:
        raise BadInput(
            f"cannot resume {run_dir}: {compared}, the executor or this machine differs from "
            f"the run's ({'; '.join(problems)}); use --force to resume anyway"
        )
    previous = tuple(load_run(run_dir).records)
    manifest = replace(manifest, spec=spec_json, state="running", ended_at=None,
                       executor=executor_name)
    return run_dir, manifest, previous


def _open_run(spec: SweepSpec, options: SweepOptions, cells: Sequence[Cell],
              environment: dict[str, Any]) -> _RunStart:
    """A new run's manifest, or a resumed run's, after checking nothing changed (BadInput)."""
    # What the manifest records, and what a resume is checked against.
    run_dir, manifest, previous = open_run_folder(
        spec.to_json(), options, len(cells) * spec.measure.repeats, environment)
    done = {(r.cell_id, r.repeat) for r in previous
            if r.status not in FAILED_STATUSES or not options.retry_failed}
    return _RunStart(run_dir=run_dir, manifest=manifest, done=frozenset(done),
                     recorded_ids=frozenset(r.cell_id for r in previous), previous=previous)


def _with_executor_nodes(manifest: Manifest, executor: Executor) -> Manifest:
    """The manifest holding the nodes a cluster executor reports (its optional `nodes`: one
    dict per node, with its fingerprint), beside those a resumed run recorded before."""
    nodes = list(getattr(executor, "nodes", None) or ())
    if not nodes:
        return manifest
    seen = {node.get("node_id") for node in nodes}
    merged = [node for node in manifest.nodes if node.get("node_id") not in seen] + nodes
    return replace(manifest, nodes=tuple(merged))


class OpenRun:
    """A run folder while its cells run (inside `drive_run`): its manifest, the records so far,
    and the two things every driver does with them. After `drive_run`, `interrupted` and
    `error` say how the run ended."""

    def __init__(self, manifest: Manifest, writer: RunWriter, executor: Executor,
                 progress: SweepProgress, records: list[CellRecord]) -> None:
        self.manifest = manifest
        self.records = records
        self.interrupted = False
        self.error: str | None = None
        self._writer, self._executor, self._progress = writer, executor, progress

    def store(self, result: CellRecord, instead: Callable[[CellRecord, UnstorableRecord],
                                                          CellRecord] | None = None) -> CellRecord:
        """Append and fsync `result` with SIGINT/SIGTERM held for the write, and keep it; the
        record stored. A record JSON cannot hold is replaced by `instead(result, error)` (the
        cell's `error` record), or the error is raised when there is no `instead`."""
        with _signals_deferred():
            try:
                self._writer.append(result)
            except UnstorableRecord as exc:
                if instead is None:
                    raise
                result = instead(result, exc)
                self._writer.append(result)
            self.records.append(result)
        return result

    def cell_started(self, job: CellJob) -> None:
        """An executor's start callback. A cluster executor knows its nodes once connected,
        before its first cell starts: their fingerprints go into the manifest then, so a
        killed driver keeps them."""
        with_nodes = _with_executor_nodes(self.manifest, self._executor)
        if with_nodes != self.manifest:
            self.manifest = with_nodes
            self._writer.write_manifest(self.manifest)
        self._progress.cell_started(job)


def drive_run(run_dir: Path, manifest: Manifest, *, options: SweepOptions, executor: Executor,
              progress: SweepProgress, records: list[CellRecord], begin: Callable[[], None],
              body: Callable[[OpenRun], None]) -> OpenRun:
    """Own `run_dir` while `body` runs its cells (the sweep's, `fit`'s): write the manifest,
    `begin`, then run `body` with interrupts armed; whatever happens, stop the executor and
    mark the manifest complete (`body` returned) or interrupted (a signal, a full disk, an
    unexpected error, which is raised after). Returns the run, saying how it ended."""
    # The guard covers the whole life of the open run folder, so no Ctrl-C can leave the
    # manifest `running`; the command line keeps ignoring signals once one came (see the guard).
    with InterruptGuard(ignore_after_signal=options.ignore_signals_after_interrupt) as guard, \
            RunWriter(run_dir, resume=bool(options.resume)) as writer:
        run = OpenRun(manifest, writer, executor, progress, records)
        writer.write_manifest(manifest)
        begin()
        finished = False
        try:
            try:
                guard.arm()
                body(run)
                finished = True
            finally:
                # An interrupt landing here, before the disarm, is caught just below.
                guard.disarm()
        except SweepInterrupted:
            pass  # guard.received says so
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            run.error = f"disk full while writing {run_dir}; every record before it is intact"
        finally:
            executor.shutdown()
            # Only a run that got through every job is complete; an unexpected error is not.
            state = "complete" if finished else "interrupted"
            try:
                writer.write_manifest(replace(run.manifest, state=state, ended_at=now_iso()))
            except OSError:
                pass  # the disk may be full; the cells file is what must stay valid
    # A signal that came at any moment means the user asked to stop: no report follows.
    run.interrupted = guard.received is not None
    return run


def run_sweep(spec: SweepSpec, options: SweepOptions,
              progress: SweepProgress | None = None) -> SweepOutcome:
    """Run (or resume) a sweep and return how it ended. Bad input raises BadInput before any cell
    runs; cell failures are records; interrupts end the sweep cleanly."""
    from bigtrain.measure.envinfo import collect_environment

    progress = progress or SilentProgress()
    # Looked up once, before any write: a named executor first (an unknown name is bad input
    # whatever else is wrong), else the run's own (`local`, or a resumed run's manifest's).
    make_executor = executor_factory(options.executor) if options.executor else None
    inventory = DeviceInventory.detect()
    cells = expand(spec, inventory, max_cells=options.max_cells)
    start = _open_run(spec, options, cells, collect_environment())
    run_dir, manifest, recorded_ids = start.run_dir, start.manifest, start.recorded_ids
    make_executor = make_executor or executor_factory(manifest.executor)
    rounds = plan_jobs(manifest.run_id, spec, cells, start.done, profile=options.profile,
                       run_dir=run_dir)
    records: list[CellRecord] = list(start.previous)
    executor: Executor = make_executor(ExecutorSettings(
        slots=tuple(slots_for(sorted({c.device for c in cells if c.status == PENDING}),
                              inventory.cuda_count) or ["cpu"]),
        cell_timeout_s=spec.measure.cell_timeout_s,
        reuse_workers=options.reuse_workers,
        worker_env=options.worker_env,
        options=options.executor_options,
    ))

    cells_by_id = {cell.cell_id: cell for cell in cells}

    def as_error(result: CellRecord, exc: UnstorableRecord) -> CellRecord:
        """An executor passed on a record JSON cannot hold: the cell's error record instead."""
        if result.cell_id not in cells_by_id:
            raise exc
        return cell_record(
            manifest.run_id, cells_by_id[result.cell_id], result.repeat,
            status="error", reason=f"the record cannot be stored: {exc}"[:500],
            protocol=result.protocol, started_at=result.started_at,
            ended_at=result.ended_at, worker_pid=result.worker_pid)

    def run_cells(run: OpenRun) -> None:
        def record(result: CellRecord) -> None:
            progress.cell_finished(run.store(result, instead=as_error))

        for cell in cells:
            if cell.status != PENDING and cell.cell_id not in recorded_ids:
                record(not_run_record(manifest.run_id, cell, spec.protocol))
        for index, jobs in enumerate(rounds):
            if index:
                executor.retire_idle_workers()  # each repeat round: fresh workers
            executor.run(jobs, record, run.cell_started)

    run = drive_run(run_dir, manifest, options=options, executor=executor, progress=progress,
                    records=records,
                    begin=lambda: progress.begin(run_dir, cells, sum(len(r) for r in rounds)),
                    body=run_cells)
    # A retried cell's new record supersedes its old one, here as in every reader.
    outcome = SweepOutcome(run_dir=run_dir, records=tuple(latest_records(records)),
                           interrupted=run.interrupted,
                           error=run.error, workers_started=executor.workers_started)
    progress.end(outcome)
    return outcome

