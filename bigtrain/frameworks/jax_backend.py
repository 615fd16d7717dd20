"""The `jax` framework: Flax NNX twins of the torch models (`jax_models`) trained by Optax, the
whole training step (forward, backward, optimizer update) under one `jax.jit` with donated
buffers.

How a cell is measured, to the torch cells' discipline:
- the step is lowered and compiled explicitly before anything is timed (`compile_s`), and the
  compiled executable's cost analysis gives the step's FLOPs (`flops_source`
  "framework-cost-analysis"; XLA counts every op, elementwise ones included, where torch's
  counter counts matmuls and convolutions);
- warm-up steps run until `warmup_s` has passed (at least `MIN_WARMUP_STEPS`), then the timed
  window: each step is timed from its dispatch to `jax.block_until_ready` on everything it
  returns (JAX dispatches asynchronously: without the block a step would time its launch);
- losses are read back only after the window closes.

Optimizers mirror the torch registry (`bigtrain.training.optim.OPTIMIZERS`): the same learning
rate and named hyper-parameters, and torch's constructor defaults for the rest (Adam's betas and
eps, RMSprop's alpha and eps, with eps outside the square root as torch has it).

Threads on the CPU: torch cells run torch's intra-op thread count (all physical cores unless
OMP_NUM_THREADS says otherwise). XLA's CPU client sizes its thread pool from the process's affinity
mask and has no supported thread-count setting in jax 0.10, so where the torch count is smaller
than the usable cores the twin is given that many cores by the affinity mask (and, for one
thread, XLA's single-thread Eigen flags, which jax 0.10 accepts), set before jax starts its
backend. `framework_threads` records torch's count, the cores in the mask and XLA_FLAGS.

Importing this module imports no framework: jax, flax and optax load in `measure` and
`version_info` only.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from bigtrain.frameworks.base import FrameworkMeasurement

#: Warm-up steps before the window whatever `warmup_s` says: the first runs of a compiled
#: executable still allocate its buffers.
MIN_WARMUP_STEPS = 3
PACKAGES = ("jax", "jaxlib", "flax", "optax")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: The torch families with a Flax twin in `jax_models`; others are `unsupported`.
TWIN_FAMILIES = ("mlp", "cnn", "transformer", "rnn")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}
#: XLA's flags for one CPU thread, set with the affinity mask when torch runs one thread.
SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: A jax CUDA plugin is its own distribution (jax[cuda12] installs one of these).
CUDA_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin")


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class JaxBackend:
    """The `jax` value of the framework axis (`bigtrain.frameworks.base.FrameworkBackend`)."""

    name = "jax"
    install_line = "pip install -e '.[jax]'"

    def missing_reason(self) -> str | None:
        """Why jax cells cannot run here: jax, flax or optax is not installed."""
        missing = [name for name in ("jax", "flax", "optax") if importlib.util.find_spec(name) is None]
        if missing:
            return f"the jax framework needs {', '.join(missing)}, not installed"
        return None

    def version_info(self) -> Mapping[str, str]:
        """Package versions, the default backend and the devices jax sees."""
        import jax

        out = {name: version for name in PACKAGES if (version := _installed(name))}
        out["backend"] = jax.default_backend()
        out["devices"] = ", ".join(f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices())
        return out

    def unsupported_reason(self, cell: Any) -> str | None:
        """Why the twin cannot run `cell`: a family without a Flax twin, an optimizer, impl or
        precision with no counterpart, a torch-only lever; None when it can."""
        family = cell.model.partition(":")[0]
        if family not in TWIN_FAMILIES:
            return (f"jax has no Flax twin of the {family} family (twins: "
                    f"{', '.join(TWIN_FAMILIES)})")
        if cell.optimizer not in OPTIMIZERS:
            return (f"jax has no optax twin of optimizer {cell.optimizer!r}; valid: "
                    f"{', '.join(OPTIMIZERS)}")
        if cell.impl != "foreach":
            return (f"impl {cell.impl!r} has no jax counterpart: the optax update is part of the "
                    f"one jitted step, which XLA fuses; jax cells take impl foreach (the default)")
        if cell.precision not in PRECISIONS:
            return (f"precision {cell.precision!r} has no jax twin here; valid: "
                    f"{', '.join(PRECISIONS)} (bf16: bf16 compute, fp32 parameters)")
        if cell.compile != "off":
            return ("a jax step is always compiled whole (jax.jit; its compile time is in "
                    "compile_s): compile on has no further meaning, use compile off")
        for axis, default in (("cuda_graphs", "off"), ("checkpointing", "off"), ("grad_accum", 1),
                              ("world_size", 1), ("parallel", "ddp")):
            if getattr(cell, axis, default) != default:
                return (f"{axis} {getattr(cell, axis)!r} is a torch lever; jax cells run it at "
                        f"{default}")
        if cell.device.startswith("cuda") and not any(map(_installed, CUDA_PLUGINS)):
            return ("this jax has no CUDA plugin (jax-cuda12-plugin); install "
                    "pip install 'jax[cuda12]==<the jax version>' for GPU cells")
        return None

    def measure(self, cell: Any, settings: Any, seed: int, *,
                on_window_open: Callable[[], None] | None = None,
                on_window_close: Callable[[], None] | None = None) -> FrameworkMeasurement:
        """Build the twin and its optimizer, compile the step, warm up and time the window."""
        threads = configure_cpu_threads()
        import jax

        from bigtrain.frameworks.jax_models import build_twin, param_count
        from bigtrain.workloads import resolve_model

        device = _jax_device(jax, cell.device)
        ref = resolve_model(cell.model)
        with jax.default_device(device):
            twin = build_twin(ref.family.name, ref.size, batch_size=cell.batch_size,
                              batch_norm=cell.batch_norm == "on",
                              dtype=getattr(jax.numpy, PRECISIONS[cell.precision]), seed=seed,
                              device=device)
            tx = optax_twin(cell.optimizer, None if cell.lr == "default" else float(cell.lr))
            step, state = _jitted_step(twin, tx)
            started = time.perf_counter()
            compiled = step.lower(*state, twin.inputs, twin.targets).compile()
            compile_s = time.perf_counter() - started
            flops = _cost_analysis_flops(compiled)
            timed = _run(compiled, state, twin, settings, on_window_open, on_window_close)
        versions = {name: version for name in PACKAGES if (version := _installed(name))}
        versions.update(backend=device.platform, device_name=device.device_kind)
        return FrameworkMeasurement(
            step_times_s=timed.step_times_s, warmup_s=timed.warmup_s, compile_s=compile_s,
            samples_per_step=twin.samples_per_step, param_count=param_count(twin.model),
            flops_per_step=flops,
            flops_source="framework-cost-analysis" if flops is not None else "none",
            peak_memory_bytes=_peak_device_bytes(device), losses=timed.losses,
            threads=threads, versions=versions)


@dataclasses.dataclass(frozen=True)
class _Timed:
    step_times_s: tuple[float, ...]
    warmup_s: float
    losses: tuple[float, ...]


def _run(compiled: Any, state: tuple, twin: Any, settings: Any,
         on_window_open: Callable[[], None] | None,
         on_window_close: Callable[[], None] | None) -> _Timed:
    """Warm up, then time the window; each step blocks on all it returns before the clock."""
    import jax

    inputs, targets = twin.inputs, twin.targets
    started = time.perf_counter()
    warmup_steps = 0
    while warmup_steps < MIN_WARMUP_STEPS or time.perf_counter() - started < settings.warmup_s:
        *state, _loss = jax.block_until_ready(compiled(*state, inputs, targets))
        warmup_steps += 1
    warmup_s = time.perf_counter() - started
    if on_window_open is not None:
        on_window_open()
    times: list[float] = []
    losses: list[Any] = []
    window_started = time.perf_counter()
    while len(times) < settings.min_steps or time.perf_counter() - window_started < settings.duration_s:
        begin = time.perf_counter()
        out = jax.block_until_ready(compiled(*state, inputs, targets))
        times.append(time.perf_counter() - begin)
        *state, loss = out
        losses.append(loss)
    if on_window_close is not None:
        on_window_close()
    return _Timed(step_times_s=tuple(times), warmup_s=warmup_s,
                  losses=tuple(float(loss) for loss in losses))


def _jitted_step(twin: Any, tx: Any) -> tuple[Any, tuple]:
    """The training step as one pure function of (params, other state, optimizer state, batch),
    jitted with the three states donated (their buffers are reused for the outputs), and the
    initial states."""
    import jax
    import optax
    from flax import nnx

    graphdef, params, rest = nnx.split(twin.model, nnx.Param, ...)
    opt_state = tx.init(params)
    loss_of = twin.loss_fn

    def step(params: Any, rest: Any, opt_state: Any, inputs: Any, targets: Any) -> tuple:
        model = nnx.merge(graphdef, params, rest)
        # nnx's own grad: it carries BatchNorm's statistics updates out of the gradient's trace
        loss, grads = nnx.value_and_grad(lambda m: loss_of(m(inputs), targets))(model)
        _, params, rest = nnx.split(model, nnx.Param, ...)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2)), (params, rest, opt_state)


def torch_hyperparameters(name: str) -> dict[str, Any]:
    """The hyper-parameters a torch cell of optimizer `name` runs with: the registry's own, over
    the torch constructor's defaults (betas, eps, alpha, momentum, ...)."""
    from bigtrain.training.optim import resolve_optimizer

    spec = resolve_optimizer(name)
    defaults = {key: p.default for key, p in inspect.signature(spec.cls).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **dict(spec.hyperparams)}


def optax_twin(name: str, lr: float | None = None) -> Any:
    """The optax transformation matching torch optimizer `name` at its registry settings (`lr`
    overrides the learning rate: the lr axis)."""
    import optax

    hp = torch_hyperparameters(name)
    rate = float(lr if lr is not None else hp["lr"])
    if name == "sgd":
        return optax.sgd(rate, momentum=hp["momentum"] or None, nesterov=bool(hp["nesterov"]))
    if name in ("adam", "adamw"):
        b1, b2 = hp["betas"]
        if name == "adam":
            return optax.adam(rate, b1=b1, b2=b2, eps=hp["eps"])
        return optax.adamw(rate, b1=b1, b2=b2, eps=hp["eps"], weight_decay=hp["weight_decay"])
    if name == "rmsprop":
        # torch divides by sqrt(v) + eps; optax puts eps inside the root unless told otherwise.
        return optax.rmsprop(rate, decay=hp["alpha"], eps=hp["eps"], eps_in_sqrt=False,
                             momentum=hp["momentum"] or None, centered=bool(hp["centered"]))
    raise ValueError(f"no optax twin of optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def configure_cpu_threads() -> dict[str, Any]:
    """Match the torch cells' CPU thread count before jax starts its backend, and say what is in
    force (see the module docstring)."""
    wanted = _torch_thread_count()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    jax_started = "jax" in sys.modules and _backend_started()
    if affinity and wanted < len(affinity) and not jax_started:
        os.sched_setaffinity(0, affinity[:wanted])
        affinity = affinity[:wanted]
    if wanted == 1 and not jax_started and SINGLE_THREAD_FLAGS not in os.environ.get("XLA_FLAGS", ""):
        # Eigen's own pool too (accepted by jax 0.10's XLA; the mask is what is relied on).
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAGS}".strip()
    return {"torch_intra_op_threads": wanted, "cpu_affinity": len(affinity) or None,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "matched_by": "affinity mask" if wanted < (os.cpu_count() or wanted) else
                          "default (all usable cores)"}


def _torch_thread_count() -> int:
    """torch's intra-op thread count in a worker like this one: OMP_NUM_THREADS when set, else
    torch's own default (one per physical core)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return True  # unknown: assume started, so nothing is changed under it


def _jax_device(jax: Any, device: str) -> Any:
    """The jax device for a cell's concrete device (`cpu`, `cuda`, `cuda:N`)."""
    if device == "cpu":
        return jax.devices("cpu")[0]
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as exc:
        raise RuntimeError(f"jax sees no GPU for {device}: {exc}") from None
    if index >= len(gpus):
        raise RuntimeError(f"jax sees {len(gpus)} GPU(s); {device} is not one of them")
    return gpus[index]


def _cost_analysis_flops(compiled: Any) -> float | None:
    """FLOPs of one step from XLA's cost analysis of the compiled executable, or None."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis: the torch twin counts
        return None
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else None
    flops = analysis.get("flops") if isinstance(analysis, Mapping) else None
    return float(flops) if flops and flops > 0 else None


def _peak_device_bytes(device: Any) -> int | None:
    """The device allocator's peak in use (GPU); None where jax keeps no such count (CPU)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - CPU devices have none
        return None
    peak = (stats or {}).get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


BACKEND = JaxBackend()
