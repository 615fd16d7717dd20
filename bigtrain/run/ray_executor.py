"""The `ray` executor: cells spread over the nodes of a Ray cluster (`bigbench sweep --executor
ray [--ray-address ADDR]`).

Ray does the placing; this module asks it for the right resources and turns every outcome into
a record:
- each cell runs in an actor of its own (a fresh process per cell, so cells share no process
  state), made for that cell and killed after it. A GPU cell asks for one GPU (and one CPU to
  feed it); Ray makes that GPU the only visible one, so the cell runs on `cuda:0` of its
  process. A CPU cell asks for every CPU of one node, pinned to that node, since anything
  beside it would steal its cores;
- inside the actor the cell runs through `bigtrain.run.cell.run_cell`, the code the local
  worker runs, after the same plugin loading;
- records come back to the driver as cells finish (`ray.wait`), and the driver alone appends
  them to `cells.jsonl`: kill -9 of the driver and `--resume` work as with `local` (Ray kills a
  dead driver's actors);
- an actor that does not start within `WORKER_START_TIMEOUT_S`, or a cell over its limit, is
  killed (`ray.kill`) and recorded `timeout`; a node lost mid-cell, or the actor's process
  dying, is `crashed`, naming the node (`bigtrain.run.records`). Which of the two it was comes
  from Ray's own account of the death, else from the node's state, which Ray may take a dozen
  seconds to settle: until it does, the node takes no new cell, and a node found dead never
  does again. A cell whose actor died before the cell started is not a result: it runs again
  (up to `MAX_START_RETRIES` times) on a node that is alive;
- what an actor answers is a worker-protocol message (`bigtrain.run.worker_protocol`), checked
  like the local pool's; one that breaks it is the cell's `error`;
- on the first `run` one small task per node collects that node's environment fingerprint
  (`bigtrain.measure.envinfo`): the sweep driver writes them to the manifest's `nodes`.

Ray is an optional extra (`pip install 'bigtrain[ray]'`); without it `--executor ray` is bad
input naming the install command. The address: `--ray-address` (the `address` option), else
Ray's own rules (`RAY_ADDRESS`, a cluster started on this machine with `ray start`, else a new
local one for the length of the sweep).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.common.errors import BadInput
from bigtrain.results.schema import CellRecord
from bigtrain.run import worker_protocol as protocol
from bigtrain.run.job import CellJob
from bigtrain.run.executor import ExecutorSettings, ResultCallback, StartCallback
from bigtrain.run.local_pool import WORKER_START_TIMEOUT_S
from bigtrain.run.native_log import NativeStderr
from bigtrain.run.records import executor_error_record, lost_worker_record, timeout_record

NAME = "ray"
#: `--ray-address` arrives as this option.
OPTIONS = ("address",)
INSTALL_HINT = "pip install 'bigtrain[ray]'"
#: A node's fingerprint task gets this long (a fresh process that imports torch).
FINGERPRINT_TIMEOUT_S = 180.0
#: After an actor dies without Ray saying why, how long to wait for Ray to say whether its node
#: went too: Ray declares a node dead after its health checks fail (by default 5 checks 3 s
#: apart, plus their timeouts: ~15 s; ~13 s measured), so 5 s was too short.
NODE_DEATH_CONFIRM_S = 20.0
#: How often a cell whose actor died before the cell started is started again.
MAX_START_RETRIES = 2
#: What Ray says of an actor that died with its node (ActorDiedError's text).
_NODE_DIED = re.compile(r"node (?:has )?died|node .{0,80} (?:is |was )?dead|raylet .{0,80}died",
                        re.IGNORECASE)
#: What Ray says of an actor cancelled before it ran.
_NEVER_RAN = "actor never ran"
#: Where Ray keeps its processes' logs (its default session folder).
RAY_LOGS_HINT = "/tmp/ray/session_latest/logs"
#: The longest the driver sleeps in `ray.wait` before it looks at the deadlines again.
POLL_S = 1.0


def import_ray() -> Any:
    """The `ray` module, or BadInput naming the install command (the optional extra)."""
    try:
        import ray
    except ImportError as exc:
        raise BadInput(f"--executor ray: Ray is not installed here ({exc}); install the extra "
                       f"with: {INSTALL_HINT}") from None
    return ray


def ray_executor(settings: ExecutorSettings) -> RayExecutor:
    """The `ray` executor's factory: checks its options and that Ray imports; connects later."""
    settings.refuse_options(NAME, OPTIONS)
    address = settings.options.get("address")
    if address is not None and not address.strip():
        raise BadInput("--ray-address: empty address; give host:port of the head node, or "
                       "leave it out to use RAY_ADDRESS or a local cluster")
    import_ray()
    return RayExecutor(settings)


@dataclass(frozen=True, kw_only=True)
class RayNode:
    """One alive node of the cluster, as the executor schedules onto it."""

    node_id: str
    address: str | None
    host: str | None
    cpus: float
    gpus: float

    @property
    def label(self) -> str:
        """How records name the node: a short id, its address and host name."""
        return f"{self.node_id[:12]} ({self.address}, {self.host})"


class CellRunner:
    """The actor that runs one cell (made with `ray.remote` by the executor)."""

    def __init__(self) -> None:
        from bigtrain.common.registry import load_plugins

        import torch  # noqa: F401  (paid before the cell's clock starts, as in the local worker)

        load_plugins()

    def where(self) -> dict[str, Any]:
        """The protocol's `ready` message, saying where this actor runs: node id, host name."""
        import ray

        return protocol.ready_message(os.getpid(), node_id=ray.get_runtime_context().get_node_id(),
                                      host=socket.gethostname())

    def run(self, job: CellJob) -> dict[str, Any]:
        """Run the cell as the local worker does; its `record` message, naming the node."""
        import ray

        from bigtrain.run.cell import run_cell

        record = run_cell(job)
        return protocol.record_message(dataclasses.replace(
            record, node_id=ray.get_runtime_context().get_node_id()))


def node_fingerprint() -> dict[str, Any]:
    """This node's environment fingerprint (run as a small Ray task on each node)."""
    import ray

    from bigtrain.measure.envinfo import collect_environment

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "environment": collect_environment()}


@dataclass
class _Cell:
    """A job handed to an actor: where it is, and what the driver waits for next."""

    job: CellJob
    actor: Any
    node: RayNode | None  # known at once for a CPU cell (pinned), after `where` for a GPU cell
    waiting_for: Any  # the ObjectRef of `where` (starting) or of `run`
    deadline: float
    pid: int | None = None

    @property
    def starting(self) -> bool:
        return self.pid is None


class RayExecutor:
    """Runs each cell in a fresh Ray actor on the cluster; see the module docstring."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.address = settings.options.get("address")
        self.workers_started = 0
        #: Every node's id, address, host, resources and environment, for the manifest.
        self.nodes: list[dict[str, Any]] = []
        self._ray: Any = None
        self._connected_here = False
        self._runner: Any = None
        self._running: dict[Any, _Cell] = {}  # ObjectRef -> cell
        self._native_log = NativeStderr(Path(settings.log_dir or tempfile.gettempdir())
                                        / f"bigtrain-ray-driver-{os.getpid()}.log")
        #: Nodes that lost a cell's actor and that Ray has not yet declared dead or alive, and
        #: nodes it declared dead: no new cell goes to either.
        self._unusable_nodes: set[str] = set()
        #: Jobs whose actor died before the cell started, to be started again.
        self._restart: list[CellJob] = []
        self._starts: dict[tuple[str, int], int] = {}
        #: Where time comes from (a test gives a fake clock).
        self._clock = time.monotonic
        self._sleep = time.sleep

    # -- connection ------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._ray is not None:
            return
        ray = import_ray()
        if not ray.is_initialized():
            # Ray's C++ core logs to descriptor 2 (a raylet's death banner, `[state-dump]`
            # lines): into a file of its own, named once, never between the per-cell lines.
            self._native_log.start()
            print(f"ray: Ray's own log lines go to {self._native_log.path}; Ray's logs: "
                  f"{RAY_LOGS_HINT}", file=sys.stderr)
            with _signal_handlers_kept():  # the sweep's interrupt guard stays in charge
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            self._connected_here = True
        self._ray = ray
        self._runner = ray.remote(CellRunner)
        self.nodes = self._fingerprints()

    def _cluster_nodes(self) -> list[tuple[RayNode, bool]]:
        """Every node Ray knows, with whether it is alive."""
        nodes = []
        for node in self._ray.nodes():
            resources = node.get("Resources") or {}
            nodes.append((RayNode(node_id=node["NodeID"], address=node.get("NodeManagerAddress"),
                                  host=node.get("NodeManagerHostname"),
                                  cpus=float(resources.get("CPU", 0)),
                                  gpus=float(resources.get("GPU", 0))),
                          bool(node.get("Alive"))))
        return nodes

    def _alive_nodes(self) -> list[RayNode]:
        return [node for node, alive in self._cluster_nodes() if alive]

    def _usable_nodes(self) -> list[RayNode]:
        """Alive nodes that lost no cell's actor without Ray settling why."""
        return [node for node in self._alive_nodes() if node.node_id not in self._unusable_nodes]

    def _fingerprints(self) -> list[dict[str, Any]]:
        """Each alive node's fingerprint, collected on the node itself."""
        ray = self._ray
        task = ray.remote(node_fingerprint)
        nodes = self._alive_nodes()
        # Asking for no CPU, the task would see one thread; it is told the thread count a CPU
        # cell there gets (Ray sets OMP_NUM_THREADS to an actor's CPUs), which the
        # fingerprint records.
        refs = [task.options(num_cpus=0, scheduling_strategy=self._pinned(node),
                             runtime_env={"env_vars": {"OMP_NUM_THREADS": str(int(node.cpus)
                                                                              or 1)}}).remote()
                for node in nodes]
        ready: list[Any] = []
        give_up = time.monotonic() + FINGERPRINT_TIMEOUT_S
        while len(ready) < len(refs) and time.monotonic() < give_up:
            # Short waits: a Ctrl-C reaches the sweep's handler between them.
            ready, _ = _unwrapped(ray.wait, refs, num_returns=len(refs), timeout=POLL_S)
        out = []
        for node, ref in zip(nodes, refs):
            environment = None
            if ref in ready:
                try:
                    environment = _unwrapped(ray.get, ref)["environment"]
                except ray.exceptions.RayError:  # a node that cannot say is listed without it
                    environment = None
            out.append({"node_id": node.node_id, "address": node.address, "host": node.host,
                        "resources": {"CPU": node.cpus, "GPU": node.gpus},
                        "environment": environment})
        return out

    def _pinned(self, node: RayNode) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node.node_id, soft=False)

    # -- running ---------------------------------------------------------------------------
    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None:
        """Run every job on the cluster, reporting each exactly once as it ends."""
        self._connect()
        pending = list(jobs)
        while pending or self._running or self._restart:
            pending[:0], self._restart = self._restart, []  # first: they were due before
            self._dispatch(pending, on_start, on_result)
            if self._running:
                self._collect(on_result)

    def _dispatch(self, pending: list[CellJob], on_start: StartCallback | None,
                  on_result: ResultCallback) -> None:
        """Start, in the given order, every pending job the cluster has room for now."""
        nodes = self._usable_nodes()
        cpu_busy = {c.node.node_id for c in self._running.values()
                    if c.job.device == "cpu" and c.node is not None}
        gpu_cells = sum(c.job.cell.world_size for c in self._running.values()
                        if c.job.device != "cpu")
        gpus = sum(node.gpus for node in nodes)
        for job in list(pending):
            cell: _Cell | None = None
            if job.device == "cpu":
                node = next((n for n in nodes if n.cpus >= 1 and n.node_id not in cpu_busy), None)
                if node is not None:
                    cpu_busy.add(node.node_id)
                    cell = self._start(job, num_cpus=node.cpus, num_gpus=0, node=node)
            elif gpu_cells + job.cell.world_size <= gpus:
                # A data-parallel cell's ranks run on cuda:0..N-1 of one node: N GPUs.
                gpu_cells += job.cell.world_size
                # Ray makes the GPUs it grants the only ones the actor sees. With a node out of
                # use, the cell is pinned (softly) to one that is usable, so Ray cannot place it
                # on a node it is about to declare dead.
                usable = [n for n in nodes if n.gpus >= job.cell.world_size]
                pin = usable[0] if self._unusable_nodes and usable else None
                cell = self._start(dataclasses.replace(job, device="cuda:0"), num_cpus=1,
                                   num_gpus=job.cell.world_size, node=pin)
            if cell is None:
                if not self._running:  # nothing will free room for it: say so, never hang
                    pending.remove(job)
                    kind = "CPU" if job.device == "cpu" else "GPU"
                    on_result(executor_error_record(
                        job, reason=f"no alive node of the Ray cluster has a {kind} for this "
                                    f"cell", host=None))
                continue
            pending.remove(job)
            if on_start is not None:
                on_start(cell.job)

    def _start(self, job: CellJob, *, num_cpus: float, num_gpus: float,
               node: RayNode | None) -> _Cell:
        # No restarts, no retries: a cell that lost its process is a record, never run twice.
        options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus,
                                   "max_restarts": 0, "max_task_retries": 0}
        if self.settings.worker_env:
            options["runtime_env"] = {"env_vars": dict(self.settings.worker_env)}
        if node is not None:
            options["scheduling_strategy"] = self._pinned(node)
        # The cell's limit travels with it: a data-parallel cell stops its ranks just before it,
        # so its record names the rank at fault rather than being killed from here.
        job = dataclasses.replace(job, timeout_s=self.settings.cell_timeout_s)
        actor = self._runner.options(**options).remote()
        self.workers_started += 1
        ref = actor.where.remote()
        cell = _Cell(job=job, actor=actor, node=node, waiting_for=ref,
                     deadline=time.monotonic() + WORKER_START_TIMEOUT_S)
        self._running[ref] = cell
        return cell

    def _collect(self, on_result: ResultCallback) -> None:
        """Wait for the next answer or deadline, and handle what came."""
        ray = self._ray
        timeout = max(0.0, min(min(c.deadline for c in self._running.values())
                               - time.monotonic(), POLL_S))
        ready, _ = _unwrapped(ray.wait, list(self._running), num_returns=1, timeout=timeout)
        for ref in ready:
            self._answer(self._running.pop(ref), ref, on_result)
        now = time.monotonic()
        for ref, cell in list(self._running.items()):
            if now >= cell.deadline:
                del self._running[ref]
                self._kill(cell)
                on_result(timeout_record(
                    cell.job, what="start" if cell.starting else "cell",
                    limit_s=WORKER_START_TIMEOUT_S if cell.starting
                    else self.settings.cell_timeout_s,
                    stderr_tail="", worker_pid=cell.pid, **_where(cell)))

    def _answer(self, cell: _Cell, ref: Any, on_result: ResultCallback) -> None:
        ray = self._ray
        try:
            value = _unwrapped(ray.get, ref)
        except ray.exceptions.RayActorError as exc:
            self._kill(cell)
            if exc.actor_init_failed:  # e.g. bigtrain or torch missing on that node
                on_result(executor_error_record(
                    cell.job, reason="the cell's Ray actor failed to start on its node",
                    detail=str(exc), **_where(cell)))
                return
            node_lost = self._settle_node(cell, str(exc))
            key = (cell.job.cell.cell_id, cell.job.repeat)
            never_started = cell.starting or _NEVER_RAN in str(exc)
            if never_started and self._starts.get(key, 0) < MAX_START_RETRIES:
                self._starts[key] = self._starts.get(key, 0) + 1
                self._restart.append(cell.job)  # no result was lost: it runs again elsewhere
                return
            on_result(self._lost(cell, exc, node_lost))
            return
        except ray.exceptions.RayError as exc:  # Ray could not deliver the call or its answer
            self._kill(cell)
            on_result(executor_error_record(cell.job, reason=f"{type(exc).__name__} from Ray",
                                            detail=str(exc), worker_pid=cell.pid,
                                            **_where(cell)))
            return
        try:
            message = protocol.decode(value, expect=(protocol.READY,) if cell.starting
                                      else (protocol.RECORD,))
        except protocol.ProtocolError as exc:
            self._kill(cell)
            on_result(executor_error_record(
                cell.job, reason=f"the Ray actor broke the worker protocol: {exc.problem}",
                detail=f"what arrived: {exc.arrived}", worker_pid=cell.pid, **_where(cell)))
            return
        if cell.starting:
            cell.pid = message.fields["pid"]
            node_id, host = str(message.fields.get("node_id")), message.fields.get("host")
            cell.node = self._node(node_id) or RayNode(
                node_id=node_id, address=None, host=str(host), cpus=0, gpus=0)
            run_ref = cell.actor.run.remote(cell.job)
            cell.waiting_for = run_ref
            cell.deadline = time.monotonic() + self.settings.cell_timeout_s
            self._running[run_ref] = cell
            return
        self._kill(cell)  # a fresh process for every cell
        assert message.record is not None
        on_result(message.record)

    def _node(self, node_id: str) -> RayNode | None:
        return next((n for n, _ in self._cluster_nodes() if n.node_id == node_id), None)

    def _node_alive(self, node_id: str) -> bool:
        return any(n.node_id == node_id and alive for n, alive in self._cluster_nodes())

    def _settle_node(self, cell: _Cell, death: str) -> bool:
        """Whether the node of a cell whose actor died went with it. Ray's account of the death
        says so when it knows; else the node is kept out of use while Ray settles its state
        (up to NODE_DEATH_CONFIRM_S), and it stays out for good once Ray declares it dead."""
        if cell.node is None:
            return bool(_NODE_DIED.search(death))
        node_id = cell.node.node_id
        self._unusable_nodes.add(node_id)
        if _NODE_DIED.search(death):
            return True
        # Ray may report the actor's death well before it declares the node dead.
        give_up = self._clock() + NODE_DEATH_CONFIRM_S
        while self._node_alive(node_id):
            if self._clock() >= give_up:
                self._unusable_nodes.discard(node_id)  # it stayed up: only the process died
                return False
            self._sleep(0.2)
        return True

    def _lost(self, cell: _Cell, exc: Exception, node_lost: bool) -> CellRecord:
        """The record of a cell whose actor died: its node gone, or only its process."""
        label = cell.node.label if cell.node is not None else "(not yet placed)"
        return lost_worker_record(cell.job, node=label, node_lost=node_lost, detail=str(exc),
                                  worker_pid=cell.pid, **_where(cell))

    def _kill(self, cell: _Cell) -> None:
        try:
            self._ray.kill(cell.actor, no_restart=True)
        except Exception:  # already gone with its node: nothing left to kill
            pass

    def retire_idle_workers(self) -> None:
        """Nothing to do: every cell already gets a fresh actor."""

    def shutdown(self) -> None:
        """Kill every running cell's actor, and leave the cluster (stopping it if this sweep
        started it)."""
        if self._ray is None:
            self._native_log.stop()  # ray.init may have failed after it started
            return
        for cell in self._running.values():
            self._kill(cell)
        self._running.clear()
        if self._connected_here:
            with _signal_handlers_kept():
                self._ray.shutdown()
        self._native_log.stop()
        self._ray = None


def _where(cell: _Cell) -> dict[str, str | None]:
    """The `host` and `node_id` fields of a record for a cell that ran (or was to run) on a
    node of the cluster, not on the driver's machine."""
    if cell.node is None:
        return {"host": None, "node_id": None}
    return {"host": cell.node.host, "node_id": cell.node.node_id}


def _unwrapped(call: Any, *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)` for a Ray call that blocks in C++ and checks for signals there: an
    exception our signal handler raised (the sweep's interrupt) comes out wrapped in a
    SystemError; raise it as itself, so the sweep stops as it does with any executor."""
    try:
        return call(*args, **kwargs)
    except SystemError as exc:
        if exc.__cause__ is not None and not isinstance(exc.__cause__, SystemError):
            raise exc.__cause__ from None
        raise


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Put SIGINT and SIGTERM's handlers back after Ray's (`ray.init` installs its own)."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)
