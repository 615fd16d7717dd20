"""Fault-injection workloads, registered only for tests through BIGTRAIN_PLUGINS=fault_workloads.

Each size of the `fault` family misbehaves in one way inside a worker process. They live here,
never in the product's registries.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.run.health import mark_unhealthy
from bigtrain.workloads import register_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator

HANG_S = 3600
#: The `escape` fault writes the pids of the processes it leaves behind here, one a line.
ESCAPE_PIDS_ENV = "BIGTRAIN_ESCAPE_PIDS"
_escaped = False


def _escape_the_process_group() -> None:
    """Start two sleepers that a process-group kill cannot reach: one child in a session of its
    own, and one double-forked (its parent exits at once, as a daemon's does), then record their
    pids, once per worker."""
    global _escaped
    if _escaped:
        return
    _escaped = True
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}
    child = subprocess.Popen(["sleep", str(HANG_S)], start_new_session=True, **quiet)
    daemonizer = (f"import subprocess; p = subprocess.Popen(['sleep', '{HANG_S}'], "
                  "start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
                  "stderr=subprocess.DEVNULL); print(p.pid)")
    middle = subprocess.run([sys.executable, "-c", daemonizer], capture_output=True, text=True,
                            check=True, start_new_session=True)
    orphan = int(middle.stdout.strip())
    with open(os.environ[ESCAPE_PIDS_ENV], "w") as fh:
        fh.write(f"{child.pid}\n{orphan}\n")


class _Faulty(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.linear = nn.Linear(4, 1)
        self.steps = 0
        self.ballast: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        if self.mode == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif self.mode == "hang":
            time.sleep(HANG_S)
        elif self.mode == "escape":
            _escape_the_process_group()
            time.sleep(HANG_S)
        elif self.mode == "raise":
            raise ValueError("injected failure in forward")
        elif self.mode == "silent-exit":
            os._exit(0)
        elif self.mode == "oom":
            _allocate_until_out_of_memory()
        elif self.mode == "poison":
            # Stands in for a sticky CUDA error on a machine without a GPU: the process must go.
            mark_unhealthy("poisoned by the fault:poison workload")
            raise RuntimeError("injected failure that leaves the process unhealthy")
        elif self.mode == "no-bf16" and torch.is_autocast_enabled("cpu"):
            # Stands in for a CPU whose oneDNN has no bf16 kernel for a layer (an LSTM on an
            # EPYC without AVX-512 BF16): fp32 trains, autocast fails.
            raise RuntimeError("could not create a primitive descriptor for the faulty layer. "
                               "Run with ONEDNN_VERBOSE=all for more")
        elif self.mode == "flaky":
            # Fails until the marker file exists: the first attempt fails, a retry succeeds.
            marker = os.environ["BIGTRAIN_FLAKY_MARKER"]
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("flaky failure, first attempt")
        out = self.linear(x)
        if self.mode == "nan" and self.steps > 3:
            out = out * float("nan")
        return out


def _allocate_until_out_of_memory() -> None:
    # Cap the address space a little above what is mapped now, so "out of memory" comes in
    # milliseconds rather than after the test machine starts swapping. A healthy worker is kept
    # after a failed cell, so the cap is lifted again on the way out.
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + 256 * 1024 * 1024
    previous = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, previous[1]))
    try:
        hoard = []
        while True:
            hoard.append(torch.ones(16 * 1024 * 1024))  # 64 MiB at a time
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous)


class _Ballast(nn.Module):
    """A healthy model that holds `megabytes` of extra memory, to test per-cell peak RSS."""

    def __init__(self, megabytes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.register_buffer("ballast", torch.ones(megabytes * 1024 * 1024 // 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


MODES = ("segv", "hang", "raise", "silent-exit", "oom", "nan", "ballast", "healthy", "flaky",
         "poison", "escape", "no-bf16")


@dataclass(frozen=True, kw_only=True)
class FaultSize(SizeConfig):
    """A size of the fault family: which misbehaviour it injects."""

    mode: str

    def validate(self) -> None:
        self.require_choice("mode", MODES)


def _build(config: FaultSize, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    mode = config.mode
    model = _Ballast(400) if mode == "ballast" else _Faulty(mode)
    generator = seeded_generator(seed)
    inputs = torch.randn(batch_size, 4, generator=generator)
    targets = torch.randn(batch_size, 1, generator=generator)
    return Workload(model=model.to(device), inputs=inputs.to(device), targets=targets.to(device),
                    loss_fn=nn.functional.mse_loss, items_per_step=batch_size,
                    item_unit="samples")


register_family(
    WorkloadFamily(
        name="fault",
        sizes={m: FaultSize(name=m, default_batch_size=8, mode=m) for m in MODES},
        default_size="healthy",
        item_unit="samples",
        build_fn=_build,
        size_type=FaultSize,
        description="test-only fault injection",
    ),
    replace=True,
)
