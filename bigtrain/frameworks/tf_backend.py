"""The TensorFlow backend of the `framework` axis: Keras 3 twins, Keras optimizers, a custom step.

Why Keras 3 on the TensorFlow backend rather than tf.keras: Keras 3 is what `import keras` gives
with TensorFlow 2.16 and later, and its optimizers and BatchNormalization are the ones a user of
current TensorFlow trains with. The training step is our own (`tf.GradientTape`, then
`optimizer.apply`) inside one `tf.function`, so the step is a single graph call as a torch cell's
is one Python step; the cell's `compile` axis picks how that graph runs:

- `compile off`: `tf.function` without XLA (TensorFlow's graph executor; what `model.fit` runs by
  default), the counterpart of an eager torch cell's unfused kernels;
- `compile on`: `tf.function(jit_compile=True)`, the whole step compiled by XLA, the counterpart
  of `torch.compile`.

Timing follows the torch cells' rules: the first call (tracing, and XLA compilation) is timed as
`compile_s` and kept out of warm-up and window; warm-up runs until its budget is spent and step
time has settled (the torch loop's rule and constants); in the window each step's loss is read on
the host (`.numpy()`), which forces the step's result, and that is the step's timestamp: on a CPU
TensorFlow runs a graph call synchronously, so the read costs one scalar copy; on a GPU it is the
per-step synchronisation TensorFlow needs to time a step at all.

Threads: TensorFlow's intra-op and inter-op pools are set to the counts torch uses in this worker
(`torch.get_num_threads()`, `torch.get_num_interop_threads()`, which follow OMP_NUM_THREADS), so
that both frameworks' cells get the same cores. TensorFlow fixes them when its runtime starts; a
worker that already ran TensorFlow keeps its first cell's counts, and `threads` says which were in
force.

FLOPs are the torch twin's count (`flops_source` "torch-twin"): TensorFlow's graph profiler (the
tf.compat.v1 one; TensorFlow has no public compiled cost analysis) counts element-wise ops as FLOPs
too, a different convention from bigtrain's matmul/conv/attention count
(`bigtrain.measure.flops.FLOPS_CONVENTION`), so its MFU would not compare with the torch cell's.
The twin has the same layers and shapes, so the same arithmetic.

Importing this module imports neither TensorFlow nor torch: `missing_reason`, `version_info` and
`unsupported_reason` read package metadata and the cell's axis values only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from bigtrain.frameworks.base import FrameworkMeasurement

NAME = "tensorflow"
INSTALL_LINE = "pip install -e '.[tensorflow]'"
#: The one optimizer implementation axis value with a TensorFlow counterpart: Keras has a single
#: optimizer implementation (its update, inside the compiled step), which stands in for the
#: registry's default impl, so TensorFlow cells line up with the default torch cells.
DEFAULT_IMPL = "foreach"
#: bigtrain precision -> Keras dtype policy. tf32 is fp32 storage with TensorFloat-32 matmuls
#: switched on (TensorFlow's own switch); fp16 would need Keras's LossScaleOptimizer in the step.
DTYPE_POLICIES = {"fp32": "float32", "tf32": "float32", "bf16": "mixed_bfloat16"}
#: bigtrain optimizer -> the Keras optimizer built with the torch optimizer's hyper-parameters.
KERAS_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
#: The distributions that provide TensorFlow; tensorflow-cpu has no CUDA kernels.
TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")
CPU_ONLY_DISTRIBUTION = "tensorflow-cpu"
#: Families with a Keras twin (`bigtrain.frameworks.tf_models`); every size of each is built.
FAMILIES = ("mlp", "cnn", "rnn", "transformer")


def family_unsupported_reason(family: str) -> str | None:
    """Why a model family has no Keras twin, or None."""
    if family in FAMILIES:
        return None
    return f"the {family} family has no Keras twin; TensorFlow cells run {', '.join(FAMILIES)}"


class TensorFlowBackend:
    """The `tensorflow` value of the framework axis (see `bigtrain.frameworks.base`)."""

    name = NAME
    install_line = INSTALL_LINE

    def missing_reason(self) -> str | None:
        """Why TensorFlow cannot run here (a package not installed, Keras older than 3), or None.
        Reads package metadata only: no TensorFlow import."""
        for module in ("tensorflow", "keras"):
            if _find_spec(module) is None:
                return f"{module} is not installed: {INSTALL_LINE}"
        keras_version = _distribution_version("keras")
        if keras_version is not None and not keras_version.split(".")[0].isdigit():
            return f"keras {keras_version} is not a release version; {INSTALL_LINE}"
        if keras_version is not None and int(keras_version.split(".")[0]) < 3:
            return f"keras {keras_version} is installed; bigtrain's twins need Keras 3: {INSTALL_LINE}"
        return None

    def version_info(self) -> Mapping[str, str]:
        """TensorFlow and Keras versions and the TensorFlow build (from package metadata: cheap,
        no import). A measured cell's `versions` add the devices TensorFlow saw."""
        if self.missing_reason() is not None:
            return {"tensorflow": "not installed"}
        distribution = _tf_distribution()
        info = {"tensorflow": _distribution_version(distribution or "tensorflow") or "unknown",
                "keras": _distribution_version("keras") or "unknown",
                "tensorflow_build": distribution or "unknown",
                "keras_backend": "tensorflow"}
        info["devices"] = "cpu" if distribution == CPU_ONLY_DISTRIBUTION else "cpu, cuda if visible"
        return info

    def unsupported_reason(self, cell: Any) -> str | None:
        """Why TensorFlow cannot run `cell` (reads its model, optimizer, impl, precision, device,
        cuda_graphs, world_size, grad_accum and checkpointing), or None."""
        family = str(cell.model).partition(":")[0]
        if reason := family_unsupported_reason(family):
            return reason
        if cell.optimizer not in KERAS_OPTIMIZERS:
            return (f"optimizer {cell.optimizer} has no Keras counterpart here; TensorFlow cells "
                    f"run {', '.join(KERAS_OPTIMIZERS)}")
        if cell.impl != DEFAULT_IMPL:
            return (f"impl {cell.impl} is a torch optimizer variant; TensorFlow has one optimizer "
                    f"implementation (Keras's update inside the compiled step), run as impl "
                    f"{DEFAULT_IMPL} (the default); the compile axis picks XLA for the whole step")
        if cell.precision not in DTYPE_POLICIES:
            return (f"precision {cell.precision} is not wired for TensorFlow (fp16 needs Keras's "
                    f"LossScaleOptimizer in the step); TensorFlow cells run "
                    f"{', '.join(DTYPE_POLICIES)}")
        device_type = str(cell.device).split(":")[0]
        if device_type == "cuda" and _tf_distribution() == CPU_ONLY_DISTRIBUTION:
            return (f"{CPU_ONLY_DISTRIBUTION} is installed, which has no CUDA kernels; a GPU cell "
                    f"needs the tensorflow package (pip install tensorflow[and-cuda])")
        if getattr(cell, "cuda_graphs", "off") == "on":
            return "CUDA graphs are a torch capture; TensorFlow cells run cuda_graphs off"
        if getattr(cell, "world_size", 1) > 1:
            return ("data-parallel TensorFlow cells (tf.distribute) are not built; TensorFlow "
                    "cells run world_size 1")
        if getattr(cell, "grad_accum", 1) > 1:
            return "gradient accumulation is not built for TensorFlow cells; grad_accum 1"
        if getattr(cell, "checkpointing", "off") == "on":
            return ("activation checkpointing (tf.recompute_grad) is not built for TensorFlow "
                    "cells; checkpointing off")
        return None

    def measure(self, cell: Any, settings: Any, seed: int, *,
                on_window_open: Callable[[], None] | None = None,
                on_window_close: Callable[[], None] | None = None) -> FrameworkMeasurement:
        """Build the cell's Keras twin and optimizer, compile its step, warm up, time the window;
        `on_window_open`/`on_window_close` run right before its first timed step and right after
        its last (the worker's peak-RSS, telemetry and host-load instruments)."""
        if reason := self.missing_reason():
            from bigtrain.common.errors import CellSkipped

            raise CellSkipped(reason)
        return _measure(cell, settings, seed, on_window_open, on_window_close)


def _find_spec(module: str) -> Any:
    """The import spec of a top-level module, or None (the import boundary tests fake)."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a broken or half-removed install
        return None


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tf_distribution() -> str | None:
    """Which distribution provides TensorFlow: tensorflow (CUDA-capable) or tensorflow-cpu."""
    for name in TF_DISTRIBUTIONS:
        if _distribution_version(name) is not None:
            return name
    return None


# -- measuring (TensorFlow imported from here on) ------------------------------------------------
def _measure(cell: Any, settings: Any, seed: int,
             on_window_open: Callable[[], None] | None = None,
             on_window_close: Callable[[], None] | None = None) -> FrameworkMeasurement:
    from bigtrain.common.errors import CellSkipped
    from bigtrain.workloads import resolve_model

    threads = _set_threads()  # before anything starts TensorFlow's runtime
    import tensorflow as tf

    from bigtrain.frameworks import tf_models

    device = _tf_device(tf, str(cell.device))
    if device is None:
        raise CellSkipped(f"TensorFlow sees no GPU for device {cell.device} "
                          f"(tf.config.list_physical_devices('GPU') is empty)")
    # fp32 must be fp32 on a GPU too (TensorFlow turns TensorFloat-32 on by default).
    tf.config.experimental.enable_tensor_float_32_execution(cell.precision == "tf32")
    ref = resolve_model(cell.model)
    jit = cell.compile == "on"
    with tf.device(device):
        workload = tf_models.build(ref.family.name, ref.size, batch_size=cell.batch_size,
                                   batch_norm=cell.batch_norm == "on", seed=seed,
                                   dtype_policy=DTYPE_POLICIES[cell.precision])
        model = workload.model
        variables = model.trainable_variables
        optimizer = _keras_optimizer(cell.optimizer, getattr(cell, "lr", "default"))
        optimizer.build(variables)  # its slots exist before the step is traced
        inputs = tf.constant(workload.inputs)
        targets = tf.constant(workload.targets)
        loss_fn = workload.loss_fn

        @tf.function(jit_compile=jit)
        def train_step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(model(x, training=True), y)
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        def step() -> float:
            return float(train_step(inputs, targets).numpy())  # the read forces the step

        start = time.perf_counter()
        step()  # tracing, graph optimisation and (jit) XLA compilation
        compile_s = time.perf_counter() - start
        warmup_s = _warm_up(step, settings.warmup_s)
        if on_window_open is not None:
            on_window_open()
        step_times, losses = _window(step, settings)
        if on_window_close is not None:
            on_window_close()
        peak = _peak_memory_bytes(tf, device)
    return FrameworkMeasurement(
        step_times_s=step_times, warmup_s=warmup_s, compile_s=compile_s,
        samples_per_step=int(cell.batch_size),
        param_count=tf_models.trainable_param_count(model),
        # TensorFlow's profiler counts element-wise ops as FLOPs (another convention): the run
        # side fills in the torch twin's count (bigtrain.run.measured.framework_record)
        flops_per_step=None,
        flops_source="none",
        peak_memory_bytes=peak, losses=losses, threads=threads,
        versions={**_measured_versions(tf, device, jit, DTYPE_POLICIES[cell.precision]),
                  **({"model_note": workload.note} if workload.note else {})})


def _set_threads() -> dict[str, Any]:
    """Set TensorFlow's thread pools to torch's counts in this worker; return those in force."""
    import tensorflow as tf
    import torch

    wanted = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    try:
        tf.config.threading.set_intra_op_parallelism_threads(wanted["intra_op"])
        tf.config.threading.set_inter_op_parallelism_threads(wanted["inter_op"])
        note = "set to torch's counts in this worker"
    except RuntimeError:  # the runtime started in an earlier cell of this worker: counts are fixed
        note = "fixed when TensorFlow's runtime started in an earlier cell of this worker"
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "torch_intra_op": wanted["intra_op"], "torch_inter_op": wanted["inter_op"],
            "note": note}


def _tf_device(tf: Any, device: str) -> str | None:
    """The TensorFlow device name of a bigtrain device (`cpu`, `cuda`, `cuda:N`), or None when
    TensorFlow does not see it."""
    if device == "cpu":
        return "/CPU:0"
    index = int(device.partition(":")[2] or 0)
    gpus = tf.config.list_physical_devices("GPU")
    return f"/GPU:{index}" if index < len(gpus) else None


def torch_hyperparams(name: str) -> dict[str, Any]:
    """The torch optimizer's hyper-parameters in force in bigtrain's cells: its constructor's
    defaults, overridden by the registry's (`bigtrain.training.optim.OPTIMIZERS`)."""
    from bigtrain.training.optim import resolve_optimizer

    spec = resolve_optimizer(name)
    defaults = {key: p.default for key, p in inspect.signature(spec.cls).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **dict(spec.hyperparams)}


def keras_optimizer_kwargs(name: str, lr: str = "default") -> dict[str, Any]:
    """The Keras optimizer's arguments that reproduce torch's update for optimizer `name` (the
    `lr` axis value overriding the registry's). Keras's own defaults differ (epsilon 1e-7,
    RMSprop rho 0.9, AdamW decay 0.004), so every one is passed."""
    hp = torch_hyperparams(name)
    rate = float(hp["lr"] if lr == "default" else lr)
    if name == "sgd":
        if hp.get("dampening") or hp.get("weight_decay"):
            raise ValueError("SGD with dampening or L2 weight decay has no Keras counterpart")
        return {"learning_rate": rate, "momentum": float(hp["momentum"]),
                "nesterov": bool(hp.get("nesterov"))}
    if name in ("adam", "adamw"):
        beta_1, beta_2 = hp["betas"]
        kwargs = {"learning_rate": rate, "beta_1": float(beta_1), "beta_2": float(beta_2),
                  "epsilon": float(hp["eps"]), "amsgrad": bool(hp.get("amsgrad"))}
        if name == "adamw":
            kwargs["weight_decay"] = float(hp["weight_decay"])
        elif hp.get("weight_decay"):
            raise ValueError("Adam with L2 weight decay has no Keras counterpart")
        return kwargs
    if name == "rmsprop":
        return {"learning_rate": rate, "rho": float(hp["alpha"]), "epsilon": float(hp["eps"]),
                "momentum": float(hp.get("momentum", 0.0)), "centered": bool(hp.get("centered"))}
    raise ValueError(f"optimizer {name} has no Keras counterpart; valid: {', '.join(KERAS_OPTIMIZERS)}")


def _keras_optimizer(name: str, lr: str) -> Any:
    import keras

    cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
           "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}[name]
    return cls(**keras_optimizer_kwargs(name, lr))


def _warm_up(step: Any, budget_s: float) -> float:
    """Run steps until the budget is spent and step time has settled, by the torch loop's rule
    and constants (`bigtrain.measure.step_loop`); returns the warm-up's seconds."""
    from bigtrain.common.warmup import MIN_WARMUP_STEPS, WARMUP_CAP_FACTOR, settled

    start = time.perf_counter()
    times: list[float] = []
    while True:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        enough = spent >= budget_s and len(times) >= MIN_WARMUP_STEPS
        if enough and (settled(times) or spent >= WARMUP_CAP_FACTOR * budget_s):
            break
    return time.perf_counter() - start


def _window(step: Any, settings: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The timed window: only steps (each read back) and one timestamp per step inside it."""
    times: list[float] = []
    losses: list[float] = []
    window_start = last = time.perf_counter()
    while True:
        losses.append(step())
        now = time.perf_counter()
        times.append(now - last)
        last = now
        if len(times) >= settings.min_steps and now - window_start >= settings.duration_s:
            break
    return tuple(times), tuple(losses)


def _peak_memory_bytes(tf: Any, device: str) -> int | None:
    """TensorFlow's own peak on a GPU; None on the CPU, where it keeps no count (the worker's
    peak RSS stands for it there)."""
    if not device.startswith("/GPU"):
        return None
    try:
        return int(tf.config.experimental.get_memory_info(device.lstrip("/"))["peak"])
    except (ValueError, KeyError):
        return None


def _measured_versions(tf: Any, device: str, jit: bool, policy: str) -> dict[str, str]:
    import keras

    if device.startswith("/GPU"):
        details = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[int(device.rpartition(":")[2])])
        kind = f"gpu: {details.get('device_name', 'unknown')}"
    else:
        kind = "cpu"
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "device": kind,
            "train_step": ("tf.function(jit_compile=True): XLA" if jit
                           else "tf.function(jit_compile=False): graph executor"),
            "dtype_policy": policy,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


#: The backend `bigtrain.frameworks.BACKENDS["tensorflow"]` names.
BACKEND = TensorFlowBackend()
