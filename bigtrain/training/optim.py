"""The optimizer registry and its implementation variants.

Every optimizer can be built four ways: `forloop` (one kernel per parameter, foreach=False),
`foreach` (multi-tensor kernels), `fused` (one fused kernel, where torch has it for that optimizer
and device) and `compiled` (the step wrapped in torch.compile). Whether the installed torch can do a
combination is decided from the constructor's signature and torch's list of fused-capable devices,
before any work starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bigtrain.training.compiling import make_room_for_compilation
from bigtrain.common.errors import unknown_choice
from bigtrain.common.registry import Registry

IMPLS = ("forloop", "foreach", "fused", "compiled")


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """A named optimizer: the torch class and the hyper-parameters every cell uses."""

    name: str
    cls: type[torch.optim.Optimizer]
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def accepts(self, keyword: str) -> bool:
        """True when the optimizer's constructor takes `keyword`."""
        return keyword in inspect.signature(self.cls).parameters


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
for _spec in (
    OptimizerSpec(name="sgd", cls=torch.optim.SGD, hyperparams={"lr": 0.01, "momentum": 0.9},
                  description="SGD with momentum 0.9"),
    OptimizerSpec(name="adam", cls=torch.optim.Adam, hyperparams={"lr": 1e-3},
                  description="Adam"),
    OptimizerSpec(name="adamw", cls=torch.optim.AdamW,
                  hyperparams={"lr": 1e-3, "weight_decay": 0.01}, description="AdamW, decay 0.01"),
    OptimizerSpec(name="rmsprop", cls=torch.optim.RMSprop, hyperparams={"lr": 1e-3},
                  description="RMSprop"),
):
    OPTIMIZERS.register(_spec.name, _spec)


def register_optimizer(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add an optimizer (for plugins: call this from your `bigtrain.optimizers` entry point)."""
    return OPTIMIZERS.register(spec.name, spec, replace=replace)


def resolve_optimizer(name: str, where: str = "") -> OptimizerSpec:
    """The spec named `name`; BadInput lists the valid names."""
    spec = OPTIMIZERS.get(name)
    if spec is None:
        raise unknown_choice("optimizer", name, OPTIMIZERS.names(), where)
    return spec


def check_impl(impl: str, where: str = "") -> str:
    """Validate an implementation name."""
    if impl not in IMPLS:
        raise unknown_choice("optimizer implementation", impl, IMPLS, where)
    return impl


def unsupported_reason(spec: OptimizerSpec, impl: str, device_type: str) -> str | None:
    """Why this torch cannot run `spec` as `impl` on `device_type`, or None when it can."""
    if impl in ("forloop", "foreach", "compiled") and not spec.accepts("foreach"):
        return f"{spec.name} has no foreach switch in torch {torch.__version__}"
    if impl == "fused":
        if not spec.accepts("fused"):
            return f"torch {torch.__version__} has no fused {spec.cls.__name__}"
        if device_type not in _fused_devices():
            return f"torch {torch.__version__} has no fused kernels on {device_type}"
    if impl == "compiled":
        from torch import _dynamo

        if not _dynamo.is_dynamo_supported():
            return f"torch.compile is not supported on this Python/torch ({torch.__version__})"
    return None


def _fused_devices() -> list[str]:
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # older torch: fused kernels were CUDA-only
        return ["cuda"]


def build_optimizer(
    spec: OptimizerSpec, impl: str, params: Iterable[torch.nn.Parameter]
) -> tuple[torch.optim.Optimizer, Callable[[], Any]]:
    """Build the optimizer for `impl`; returns it and the callable that performs one step."""
    impl_kwargs: dict[str, Any] = {
        "forloop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
        "compiled": {"foreach": True},
    }[impl]
    optimizer = spec.cls(list(params), **dict(spec.hyperparams), **impl_kwargs)
    if impl == "compiled":
        # dynamo guards the compiled step on this optimizer's identity: a new optimizer is a new
        # compilation of the same code, counted against dynamo's recompile limit.
        make_room_for_compilation()
        # Compile the step itself; GradScaler calls optimizer.step, so route it there too.
        optimizer.step = torch.compile(optimizer.step, fullgraph=False)  # type: ignore[method-assign]
    return optimizer, optimizer.step
