"""The executor seam: where cells run, chosen by name (`bigbench sweep --executor NAME`).

The sweep driver hands an executor jobs and a callback; the executor calls the callback, in the
driver's process, with one CellRecord for every job, whatever happened to it (a result, an
exception the worker turned into a record, a crash, a timeout, a silent exit). Only the driver
appends to `cells.jsonl`, whatever the executor, so resume, the run lock and kill -9 safety stay in
one place. Records for outcomes an executor decides (death, timeout, its own failure) come from
`bigtrain.run.records`, so they read the same from every executor.

Executors are registered by name with a factory that takes `ExecutorSettings` and returns an
`Executor`; the factory imports its implementation lazily, so a cluster engine's package is
imported only when it is chosen. `local` (one worker process per device slot on this machine,
`bigtrain.run.local_pool`) and `ray` (a fresh Ray actor per cell on a cluster's nodes,
`bigtrain.run.ray_executor`; the optional `ray` extra) are built in; another executor registers
itself the same way, from a plugin module or a test:

    register_executor("mine", lambda settings: MyExecutor(settings))

An executor may also offer `nodes` (a list of dicts, one per machine it runs cells on, each with
`node_id` and that machine's `environment` fingerprint): the sweep driver writes them to the
manifest's `nodes` before the first cell starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bigtrain.common.errors import BadInput, unknown_choice
from bigtrain.common.registry import Registry
from bigtrain.results.schema import CellRecord

if TYPE_CHECKING:
    from bigtrain.run.job import CellJob

DEFAULT_EXECUTOR = "local"

ResultCallback = Callable[[CellRecord], None]
StartCallback = Callable[["CellJob"], None]


class Executor(Protocol):
    """Runs cells somewhere and reports one record per job, in the driver's process.

    A factory builds an executor before the run folder is written, so it only validates its
    settings (BadInput for bad ones); processes, connections and other resources are acquired by
    the first `run`. The driver calls `run` once per repeat round and `retire_idle_workers`
    between rounds, reads `workers_started` for the summary, and calls `shutdown` exactly once at
    the end, also after an interrupt or an error.
    """

    #: Worker processes (local) or actors (a cluster) started so far: the start-up cost the
    #: sweep paid.
    workers_started: int

    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None:
        """Run every job and return when each has been reported through `on_result`, exactly
        once, in completion order. `on_start` hears each job, with its concrete device, as it is
        handed to a worker. Jobs are started in the order given, as far as devices allow."""
        ...

    def retire_idle_workers(self) -> None:
        """Let go of every idle worker, so the jobs of the next `run` start in fresh processes
        (a new repeat round must not share process state with the previous one)."""
        ...

    def shutdown(self) -> None:
        """Stop everything now, running cells included (an interrupt); nothing half-done
        survives. Running cells get no record: resume runs them again."""
        ...


@dataclass(frozen=True, kw_only=True)
class ExecutorSettings:
    """What the sweep tells any executor about where and how to run its cells."""

    #: Device slots the sweep's cells need: `cpu` and/or `cuda:N` (see `slots_for`). A cluster
    #: executor maps them to its own resources.
    slots: tuple[str, ...]
    cell_timeout_s: float
    #: Reuse a worker for the next cell on its slot (off: a fresh worker per cell).
    reuse_workers: bool = True
    #: Extra environment for worker processes (e.g. one side of an A/B run).
    worker_env: Mapping[str, str] = field(default_factory=dict)
    #: Where worker stderr logs go; None: a temporary folder.
    log_dir: Path | None = None
    #: Executor-specific settings from the command line (e.g. a cluster's address). An executor
    #: refuses, with BadInput, any it does not know.
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.slots:
            raise ValueError("an executor needs at least one device slot")
        if not self.cell_timeout_s > 0:
            raise ValueError(f"cell_timeout_s must be > 0, got {self.cell_timeout_s}")

    def refuse_options(self, executor: str, known: Sequence[str] = ()) -> None:
        """Raise BadInput naming any option the executor `executor` does not take."""
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            takes = ", ".join(known) if known else "none"
            raise BadInput(f"executor {executor!r} takes no option {', '.join(unknown)}; "
                           f"its options: {takes}")


ExecutorFactory = Callable[[ExecutorSettings], Executor]

EXECUTORS: Registry[ExecutorFactory] = Registry("executor")


def register_executor(name: str, factory: ExecutorFactory, *, replace: bool = False) -> None:
    """Make `factory` available as `--executor NAME`."""
    EXECUTORS.register(name, factory, replace=replace)


def executor_names() -> list[str]:
    """Registered executor names, built-in first."""
    return EXECUTORS.names()


def executor_factory(name: str) -> ExecutorFactory:
    """The factory registered as `name`; BadInput naming the choices if there is none."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise unknown_choice("executor", name, executor_names(), where="--executor")
    return factory


def slots_for(devices: Sequence[str], cuda_count: int) -> list[str]:
    """The worker slots the devices of a sweep need (`cuda` means every visible GPU)."""
    slots: list[str] = []
    for device in devices:
        wanted = [f"cuda:{i}" for i in range(cuda_count)] if device == "cuda" else [device]
        slots.extend(s for s in wanted if s not in slots)
    return slots


def _lazy(module: str, attribute: str) -> ExecutorFactory:
    """A factory that imports `module` only when an executor is actually built."""

    def build(settings: ExecutorSettings) -> Executor:
        return getattr(importlib.import_module(module), attribute)(settings)

    return build


register_executor(DEFAULT_EXECUTOR, _lazy("bigtrain.run.local_pool", "local_pool_executor"))
# A Ray cluster (the optional `ray` extra); without Ray installed, choosing it is bad input.
register_executor("ray", _lazy("bigtrain.run.ray_executor", "ray_executor"))
