"""How busy the host was while a cell was timed: other processes' CPU time, load, steal, GPU peers.

A benchmark on a loaded box measures the box, not the code (issue 30: `mlp:seed sgd` gave 88,655
samples/s in one run and 841 in the next at load 7-12 on 2 cores, and nothing said so). Two
snapshots, one each side of the timed window (outside it: the window's hooks), and the pure
`host_load` turn them into a small record field.

The threshold: a cell is **busy** when, averaged over its window, other processes kept more CPU
cores busy than the cores the cell leaves free (`logical cores - cores the cell uses`), plus a
small slack for daemons. Up to that point the others fit on the spare cores; beyond it the
scheduler must time-slice the cell's own cores with them, and every slice taken is wall time added
to a step. (Shared caches and memory bandwidth still couple cells below the line: `other_cpu_cores`
is recorded so a reader can judge a closer call.) Steal (a hypervisor giving our vCPU to another
guest) counts against the same spare: it is CPU time this host did not get at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The clock and the pause of `--require-quiet`, looked up at call time (tests replace them).
sleep = time.sleep
monotonic = time.monotonic
#: Other processes may use this much of a core beyond the spare cores before a cell counts as
#: busy: the kernel's and the driver's own housekeeping on an otherwise idle box.
BUSY_SLACK_CORES = 0.1


@dataclass(frozen=True, kw_only=True)
class HostSnapshot:
    """Cumulative CPU counters at one instant (seconds since boot, all CPUs together)."""

    wall_s: float
    busy_cpu_s: float  # user + nice + system + irq + softirq of every process
    total_cpu_s: float  # the same plus idle, iowait and steal
    steal_cpu_s: float | None  # None where the kernel reports no steal
    own_cpu_s: float  # user + system of our process tree (this process and its children)
    loadavg_1m: float | None


@dataclass(frozen=True, kw_only=True)
class HostLoad:
    """The host's load over one timed window (the record's `host_load`)."""

    loadavg_1m: float | None
    other_cpu_s: float  # CPU seconds other processes used during the window
    other_cpu_cores: float  # the same per wall second: cores they kept busy on average
    steal_pct: float | None  # share of all CPU time the hypervisor took, where reported
    gpu_other_processes: int | None  # compute processes on our GPU besides ours; None: no GPU/NVML
    cores: int  # logical cores of the host
    cores_used: int  # cores the cell itself uses (its threads)
    busy: bool

    def to_json(self) -> dict[str, Any]:
        """The record field: plain JSON, rounded where more digits say nothing."""
        return {"loadavg_1m": self.loadavg_1m, "other_cpu_s": round(self.other_cpu_s, 4),
                "other_cpu_cores": round(self.other_cpu_cores, 3),
                "steal_pct": None if self.steal_pct is None else round(self.steal_pct, 3),
                "gpu_other_processes": self.gpu_other_processes, "cores": self.cores,
                "cores_used": self.cores_used, "busy": self.busy}


def is_busy(*, other_cpu_cores: float, steal_pct: float | None, cores: int, cores_used: int,
            gpu_other_processes: int | None = None) -> bool:
    """The threshold of the module docstring; any other compute process on our GPU is busy too
    (kernels from two processes time-slice the device)."""
    spare = max(cores - cores_used, 0)
    stolen = (steal_pct or 0.0) / 100 * cores
    return other_cpu_cores + stolen > spare + BUSY_SLACK_CORES or bool(gpu_other_processes)


def host_load(before: HostSnapshot, after: HostSnapshot, *, cores: int, cores_used: int,
              gpu_other_processes: int | None = None) -> HostLoad:
    """The load between two snapshots (pure: tests feed it made-up counters)."""
    wall_s = max(after.wall_s - before.wall_s, 1e-9)
    other_cpu_s = max((after.busy_cpu_s - before.busy_cpu_s)
                      - (after.own_cpu_s - before.own_cpu_s), 0.0)
    total = after.total_cpu_s - before.total_cpu_s
    steal_pct = None
    if before.steal_cpu_s is not None and after.steal_cpu_s is not None and total > 0:
        steal_pct = max(after.steal_cpu_s - before.steal_cpu_s, 0.0) / total * 100
    cores_used = min(max(cores_used, 1), cores)
    other_cores = other_cpu_s / wall_s
    return HostLoad(loadavg_1m=after.loadavg_1m, other_cpu_s=other_cpu_s,
                    other_cpu_cores=other_cores, steal_pct=steal_pct,
                    gpu_other_processes=gpu_other_processes, cores=cores, cores_used=cores_used,
                    busy=is_busy(other_cpu_cores=other_cores, steal_pct=steal_pct, cores=cores,
                                 cores_used=cores_used, gpu_other_processes=gpu_other_processes))


def host_cores() -> int:
    """Logical cores of the host: what the CPU counters (/proc/stat) add up over, and where other
    processes run, whatever this process's own affinity (an `ab` worker is pinned to one)."""
    return os.cpu_count() or 1


def usable_cores() -> int:
    """Logical cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cores_used_by(device: Any) -> int:
    """Cores a cell keeps busy: torch's intra-op threads on the CPU, one (the thread that
    launches kernels) on a GPU."""
    if getattr(device, "type", str(device)) != "cpu":
        return 1
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores()))


def read_snapshot() -> HostSnapshot:
    """The counters now, from psutil (/proc/stat and /proc/<pid>/stat on Linux)."""
    import psutil

    cpu = psutil.cpu_times()
    busy = sum(getattr(cpu, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    total = busy + sum(getattr(cpu, name, 0.0) for name in ("idle", "iowait", "steal"))
    own = 0.0
    me = psutil.Process()
    for process in (me, *me.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.Error:  # a child that ended between the listing and the read
            continue
        own += times.user + times.system
    try:
        loadavg: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        loadavg = None
    return HostSnapshot(wall_s=time.monotonic(), busy_cpu_s=busy, total_cpu_s=total,
                        steal_cpu_s=getattr(cpu, "steal", None), own_cpu_s=own,
                        loadavg_1m=loadavg)


def gpu_other_processes(device: str | None) -> int | None:
    """Compute processes on the torch device `device` (`cuda:N`) other than ours (NVML); None for
    the CPU, or where NVML cannot list them."""
    if device is None or not device.startswith("cuda"):
        return None
    from bigtrain.measure.telemetry.nvml import other_compute_processes

    return other_compute_processes(device, os.getpid())


class WindowLoad:
    """The window hooks' side: `open()` before the window, `close()` after, `result()` later.

    Reading the counters costs a few system calls, outside the timed window on both sides.
    """

    def __init__(self, *, cores_used: int, device: str | None = None,
                 reader: Callable[[], HostSnapshot] = read_snapshot,
                 cores: int | None = None) -> None:
        self._reader = reader
        self._cores_used = cores_used
        self._cores = cores or host_cores()
        self._device = device
        self._snapshots: list[HostSnapshot] = []

    def open(self) -> None:
        """Take the opening snapshot."""
        self._snapshots = [self._reader()]

    def close(self) -> None:
        """Take the closing snapshot."""
        self._snapshots.append(self._reader())

    def result(self) -> HostLoad | None:
        """The window's load; None when the window did not open and close (or reading failed)."""
        if len(self._snapshots) != 2:
            return None
        try:
            gpu_others = gpu_other_processes(self._device)
        except Exception:  # noqa: BLE001 - a missing GPU peer count must not lose the cell
            gpu_others = None
        return host_load(*self._snapshots, cores=self._cores, cores_used=self._cores_used,
                         gpu_other_processes=gpu_others)


def sample_quiet(*, seconds: float, cores_used: int,
                 reader: Callable[[], HostSnapshot] = read_snapshot,
                 sleep: Callable[[float], None] = time.sleep,
                 cores: int | None = None) -> HostLoad:
    """The host's load over `seconds` with nothing of ours running: `--require-quiet`'s probe."""
    before = reader()
    sleep(seconds)
    return host_load(before, reader(), cores=cores or host_cores(), cores_used=cores_used)


#: `--require-quiet` policies: wait (up to a bound) for the machine to go quiet, or refuse at once.
QUIET_WAIT = "wait"
QUIET_REFUSE = "refuse"
QUIET_POLICIES = (QUIET_WAIT, QUIET_REFUSE)
#: Each probe of `--require-quiet` watches the machine this long (a load average lags by
#: minutes; the CPU time others use over a couple of seconds is what a cell would now compete with).
QUIET_PROBE_S = 2.0


class MachineBusy(Exception):
    """`--require-quiet` found the machine busy (refuse), or still busy at the end of the wait."""

    def __init__(self, load: HostLoad, message: str) -> None:
        super().__init__(message)
        self.load = load


def require_quiet(policy: str, *, cores_used: int, max_wait_s: float,
                  probe: Callable[[], HostLoad], sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic,
                  say: Callable[[str], None] = lambda line: None,
                  pause_s: float = 10.0) -> HostLoad:
    """Return the first quiet probe; raise MachineBusy with the measured load when the machine
    is busy and `policy` is refuse, or is still busy after `max_wait_s` of waiting.

    `probe` measures the load over a short span (`sample_quiet`); `clock`, `sleep` and `say` are
    the boundaries tests replace.
    """
    if policy not in QUIET_POLICIES:
        raise ValueError(f"--require-quiet {policy!r}: expected one of {QUIET_POLICIES}")
    started = clock()
    while True:
        load = probe()
        if not load.busy:
            return load
        waited = clock() - started
        words = describe(load.to_json())
        if policy == QUIET_REFUSE or waited + pause_s > max_wait_s:
            how = ("--require-quiet refuse" if policy == QUIET_REFUSE
                   else f"still busy after waiting {waited:.0f} s (--quiet-wait-s {max_wait_s:g})")
            raise MachineBusy(load, f"the machine is busy: {words}; a cell using {cores_used} "
                                    f"core(s) would be timed against them. Not run ({how})")
        say(f"waiting for a quiet machine ({waited:.0f} of {max_wait_s:g} s): {words}")
        sleep(pause_s)


def describe(load: Mapping[str, Any]) -> str:
    """`other processes kept 1.35 of 2 core(s) busy while the cell used 2 (load 3.30, steal
    0.0%)`: a record's `host_load` in words (pure: the console and compare both print it)."""
    parts = []
    if load.get("loadavg_1m") is not None:
        parts.append(f"load {load['loadavg_1m']:.2f}")
    if load.get("steal_pct"):
        parts.append(f"steal {load['steal_pct']:.1f}%")
    if load.get("gpu_other_processes"):
        parts.append(f"{load['gpu_other_processes']} other process(es) on the GPU")
    extra = f" ({', '.join(parts)})" if parts else ""
    return (f"other processes kept {load.get('other_cpu_cores', 0):.2f} of "
            f"{load.get('cores', '?')} core(s) busy while the cell used "
            f"{load.get('cores_used', '?')}{extra}")


__all__: Sequence[str] = ("HostLoad", "HostSnapshot", "WindowLoad", "host_load", "is_busy",
                          "read_snapshot", "sample_quiet", "describe")
