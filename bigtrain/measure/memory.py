"""Per-cell peak memory: torch's allocator on CUDA, and the process's peak RSS.

A worker process is reused for many cells, so neither figure may carry over from an earlier
cell. CUDA's peak statistics are reset per device. The kernel's peak RSS (VmHWM) only grows over
a process's life, so for the CPU figure a light thread samples RSS every few milliseconds while
the workload is built and warmed up (the warm-up runs the very steps that are then measured, so
it reaches the same peak); the thread stops before the timed window so that it cannot disturb it.
If VmHWM rose during the cell, the cell set a new process peak and VmHWM is exact; otherwise the
sampled peak is used. The record notes which. (Resetting VmHWM through /proc/self/clear_refs
was tried and rejected: in sandboxed kernels such as gVisor it slowed every later step 200x.)
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_STATM = "/proc/self/statm"
RSS_SAMPLE_INTERVAL_S = 0.002


@dataclass(frozen=True, kw_only=True)
class PeakMemory:
    """Peaks over one cell, in bytes; None where the figure is not available."""

    allocated_bytes: int | None
    reserved_bytes: int | None
    rss_bytes: int | None
    rss_method: str


class _RssSampler:
    """Polls this process's resident set size on a daemon thread and keeps the maximum."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.peak_bytes = current_rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bigtrain-rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes() or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = current_rss_bytes()
            if rss and rss > self.peak_bytes:
                self.peak_bytes = rss


class PeakMemoryTracker:
    """`start()` before building the workload, `window_open()` just before the timed window,
    `stop()` after it."""

    def __init__(self, device: torch.device, interval_s: float = RSS_SAMPLE_INTERVAL_S) -> None:
        self.device = device
        self.interval_s = interval_s
        self._hwm_at_start: int | None = None
        self._sampler: _RssSampler | None = None

    def start(self) -> None:
        """Free what earlier cells left behind, reset CUDA peaks, start sampling RSS."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        self._hwm_at_start = peak_rss_hwm_bytes()
        self._sampler = _RssSampler(self.interval_s)
        self._sampler.start()

    def window_open(self) -> None:
        """Stop the sampling thread: nothing but the step may run inside the timed window."""
        if self._sampler is not None:
            self._sampler.stop()

    def stop(self) -> PeakMemory:
        """Read the peaks since `start()`."""
        allocated = reserved = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            allocated = torch.cuda.max_memory_allocated(self.device)
            reserved = torch.cuda.max_memory_reserved(self.device)
        sampled = None
        if self._sampler is not None:
            self._sampler.stop()
            sampled = self._sampler.peak_bytes
        hwm = peak_rss_hwm_bytes()
        if hwm is not None and self._hwm_at_start is not None and hwm > self._hwm_at_start:
            rss, method = hwm, "vmhwm"  # this cell set a new process peak: exact
        elif sampled:
            rss, method = sampled, f"sampled every {self.interval_s * 1e3:g} ms"
        else:
            rss, method = hwm, "process peak (not per cell)"
        return PeakMemory(allocated_bytes=allocated, reserved_bytes=reserved, rss_bytes=rss,
                          rss_method=method)


def current_rss_bytes() -> int | None:
    """This process's resident set size now."""
    try:
        with open(_STATM, "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_hwm_bytes() -> int | None:
    """The process's peak resident set size over its whole life (VmHWM, else getrusage)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kilobytes on Linux, bytes on macOS.
    return maxrss if sys.platform == "darwin" else maxrss * 1024
