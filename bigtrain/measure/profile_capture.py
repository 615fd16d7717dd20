"""The profiled window of a cell: a few training steps under torch.profiler, run AFTER the timed
window (never inside it), so the cell's step-time figures stay those of its unprofiled window.

Each step's phases are `record_function` ranges (`## forward ##`, `## backward ##`,
`## optimizer ##`), opened and closed at the step's own phase marks; with gradient accumulation
each micro-batch opens its own forward and backward range. An op's phase is the range its start
lies in (by time, not by parent: on CUDA the autograd engine runs backward on its own thread);
a collective is in the `communication` phase wherever it runs. What is kept of the window
(`ProfileCapture`): the ops table, the launches per step by phase and the Chrome trace, which
`bigtrain.measure.profile_artifacts` writes to the contract of `bigtrain.profiles.load`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigtrain.common.op_categories import categorise
from bigtrain.measure.profile_settings import ProfileSettings

PHASE_RANGE = "## {} ##"
#: Names of profiler rows that are no op: our phase ranges, the schedule's step ranges, memory
#: and out-of-memory instants.
_NOT_OPS = ("## ", "ProfilerStep", "[memory]", "[OutOfMemory]")
#: Host-side CUDA runtime calls that start work on the device (a kernel, a graph).
KERNEL_LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                   "cudaLaunchCooperativeKernel", "cudaGraphLaunch")
#: What `launches_per_step_by_phase` counts: ATen ops entered from outside ATen (Python, the
#: autograd engine, an optimizer), not the ops an ATen op calls inside itself: the number a
#: for-loop optimizer multiplies by its parameters and a fused one cuts to one.
LAUNCH_UNIT = "top-level aten ops dispatched"
#: Allocator events kept in a CUDA memory snapshot (the newest, when more happen).
MEMORY_ENTRIES = 20_000


class PhaseRanges:
    """Runs a step with its phases marked by `record_function` ranges."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.micro_batches = int(getattr(step, "micro_batches", 1) or 1)
        self.separable = getattr(step, "separable_phases", True)
        self._range: Any = None
        self._marks = 0

    def _open(self, phase: str) -> None:
        from torch.autograd.profiler import record_function

        self._range = record_function(PHASE_RANGE.format(phase))
        self._range.__enter__()

    def _close(self) -> None:
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = None

    def _mark(self) -> None:
        self._close()
        self._marks += 1
        if self._marks >= 2 * self.micro_batches:
            self._open("optimizer")
        else:
            self._open("backward" if self._marks % 2 else "forward")

    def __call__(self) -> Any:
        """One step: forward, backward (per micro-batch), then the optimizer, each a range. A step
        replayed as one CUDA graph has no marks: it is one `other` range."""
        self._marks = 0
        self._open("forward" if self.separable else "other")
        try:
            return self.step(self._mark) if self.separable else self.step()
        finally:
            self._close()


@dataclass(frozen=True)
class OpStat:
    """One ops-table row, summed over the profiled steps (divided by steps when written)."""

    op: str
    phase: str
    category: str
    input_shapes: str
    calls: int
    self_host_us: float
    self_device_us: float
    flops: float


@dataclass(frozen=True, kw_only=True)
class ProfileCapture:
    """What one profiled window yields."""

    steps: int
    step_times_s: tuple[float, ...]
    ops: tuple[OpStat, ...]
    launches_by_phase: dict[str, int]
    kernels_by_phase: dict[str, int] | None  # CUDA only
    device: str
    record_shapes: bool
    trace_json_path: Path  # the uncompressed Chrome trace, in the cell's folder
    memory_snapshot_path: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def time_basis(self) -> str:
        """`device` when the ops hold device time (a CUDA trace), else `host`."""
        return "device" if any(o.self_device_us > 0 for o in self.ops) else "host"


def capture_window(step: Any, device: Any, settings: ProfileSettings, *,
                   trace_name: str = "trace.json", max_steps: int | None = None) -> ProfileCapture:
    """Profile `settings.request.steps` steps of `step` (at most `max_steps`, plus one untraced
    profiler warm-up step) on `device`; the Chrome trace is exported to the cell's folder as
    `trace_name`."""
    from torch.profiler import ProfilerActivity, profile, schedule

    from bigtrain.measure.step_loop import synchronize

    cuda = device.type == "cuda"
    folder = Path(settings.folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = min(settings.request.steps, max_steps or settings.request.steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    kept: dict[str, Any] = {}
    trace_path = folder / trace_name

    def ready(prof: Any) -> None:
        kept["events"] = prof.events()
        prof.export_chrome_trace(str(trace_path))

    run = PhaseRanges(step)
    times: list[float] = []
    memory = _MemoryHistory(folder) if cuda else None
    snapshot = None
    try:
        with profile(activities=activities,
                     schedule=schedule(wait=0, warmup=1, active=steps, repeat=1),
                     on_trace_ready=ready, record_shapes=settings.request.shapes,
                     with_flops=True, profile_memory=True, acc_events=True) as prof:
            for index in range(steps + 1):
                if index == 1 and memory is not None:
                    memory.start()
                start = time.perf_counter()
                run()
                synchronize(device)
                if index:  # the first is the profiler's warm-up step, not traced
                    times.append(time.perf_counter() - start)
                prof.step()
    finally:
        # Even when a step fails: a reused worker's next cells must not record allocator history.
        if memory is not None and memory.started:
            snapshot = memory.stop()
    events = kept.get("events")
    if events is None:
        raise RuntimeError("torch.profiler handed back no events for the profiled window")
    ops, launches, kernels = summarise_events(events, steps=steps, shapes=settings.request.shapes,
                                              cuda=cuda)
    return ProfileCapture(steps=steps, step_times_s=tuple(times), ops=ops,
                          launches_by_phase=launches, kernels_by_phase=kernels,
                          device=str(device), record_shapes=settings.request.shapes,
                          trace_json_path=trace_path, memory_snapshot_path=snapshot)


class _MemoryHistory:
    """The CUDA caching allocator's history over the profiled steps, dumped as a snapshot."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "memory_snapshot.pickle"
        self.started = False

    def start(self) -> None:
        import torch

        self.started = True

        # Python stacks only and a bounded history: the snapshot (and the page that embeds it)
        # stays a few MB, within what a GPU validation brings back.
        torch.cuda.memory._record_memory_history(stacks="python", max_entries=MEMORY_ENTRIES)

    def stop(self) -> Path | None:
        import torch

        try:
            torch.cuda.memory._dump_snapshot(str(self.path))
        finally:
            torch.cuda.memory._record_memory_history(enabled=None)
        return self.path if self.path.exists() else None


def _phase_finder(events: Sequence[Any]) -> Callable[[float], str]:
    """start time (µs) -> the phase whose range holds it (`other` outside every range)."""
    spans = sorted((e.time_range.start, e.time_range.end, e.name[3:-3]) for e in events
                   if e.name.startswith("## ") and e.name.endswith(" ##"))
    starts = [s[0] for s in spans]

    def find(at: float) -> str:
        import bisect

        index = bisect.bisect_right(starts, at) - 1
        if index >= 0 and spans[index][0] <= at <= spans[index][1]:
            return spans[index][2]
        return "other"

    return find


def summarise_events(events: Sequence[Any], *, steps: int, shapes: bool, cuda: bool,
                     ) -> tuple[tuple[OpStat, ...], dict[str, int], dict[str, int] | None]:
    """The ops (summed over the window), top-level op launches by phase, and on CUDA the kernel
    launches by phase, from torch.profiler's events."""
    from torch.autograd import DeviceType

    phase_at = _phase_finder(events)
    sums: dict[tuple[str, str, str], list[float]] = {}
    launches: dict[str, int] = {}
    kernels: dict[str, int] = {}
    for event in events:
        name = event.name
        if name.startswith(_NOT_OPS) or event.device_type != DeviceType.CPU:
            continue
        phase = phase_at(event.time_range.start)
        category = categorise(name, phase)
        if category == "communication":
            phase = "communication"
        key = (name, phase, str(event.input_shapes) if shapes and event.input_shapes else "")
        acc = sums.setdefault(key, [0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += max(0.0, float(event.self_cpu_time_total))
        acc[2] += max(0.0, float(event.self_device_time_total)) if cuda else 0.0
        acc[3] += float(event.flops or 0)
        if name.startswith("aten::") and not _has_aten_ancestor(event):
            launches[phase] = launches.get(phase, 0) + 1
        if cuda and name in KERNEL_LAUNCHES:
            kernels[phase] = kernels.get(phase, 0) + 1
    ops = tuple(OpStat(op=op, phase=phase, category=categorise(op, phase), input_shapes=shape,
                       calls=int(acc[0]), self_host_us=acc[1], self_device_us=acc[2],
                       flops=acc[3])
                for (op, phase, shape), acc in sums.items())
    return ops, launches, (kernels if cuda else None)


def _has_aten_ancestor(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def median_step_s(capture: ProfileCapture) -> float | None:
    """The median step time inside the profiled window (profiler overhead included)."""
    return statistics.median(capture.step_times_s) if capture.step_times_s else None
