"""The optimizer registry and its implementation variants.

An optimizer from torch can be built four ways: `forloop` (one kernel per parameter,
foreach=False), `foreach` (multi-tensor kernels), `fused` (one fused kernel, where torch has it for
that optimizer and device) and `compiled` (the step wrapped in torch.compile). An optimizer from a
package (`bigtrain.training.optim_packages`: the `optimizers` extra) says which of these it really
has (`OptimizerSpec.impls`); one with no switch of its own runs as `native`, its package's own
step, rather than under a name that would claim a kernel choice it does not make. Whether a
combination can run here is decided before any work starts (`unsupported_reason`).

A cell may give an optimizer its own hyper-parameters: `adamw:weight_decay=0.1:lr=3e-4`
(`resolve_optimizer`, `canonical_optimizer`), checked against the keys its constructor takes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bigtrain.common.errors import BadInput, unknown_choice
from bigtrain.common.registry import Registry
from bigtrain.training.compiling import make_room_for_compilation
from bigtrain.training.muon import MuonWithAdamW
from bigtrain.training.optim_packages import load_class, missing_reason, package_version

IMPLS = ("forloop", "foreach", "fused", "compiled", "native")
#: A package optimizer's own step: it has no foreach/fused switch of its own to choose.
NATIVE = "native"
#: Not an implementation but a request for each optimizer's own (`preferred_impl`), resolved when
#: the matrix is built, so records and cell ids name the implementation that really ran.
AUTO = "auto"
#: Constructor keywords that choose an implementation (the impl axis), not hyper-parameters.
IMPL_SWITCHES = frozenset({"foreach", "fused", "capturable", "differentiable", "multi_tensor", "use_triton",
                           "compile_step"})
#: What a hyper-parameter value may be, as `bigbench` parses it from text.
VALUE_TYPES = ("float", "int", "bool", "str", "floats")
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """A named optimizer: its class (given, or a package's, imported when first used), the
    hyper-parameters every cell uses, and what it can do.

    `impls` None: the torch rule (forloop/foreach/compiled where the constructor takes `foreach`,
    fused where it takes `fused`); else exactly those. `overrides` are the hyper-parameters a cell
    gave (`adamw:weight_decay=0.1`), already merged into `hyperparams`.
    """

    name: str
    cls: type | None = None
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: The distribution (in `optim_packages.PACKAGES`) the class comes from; "" when `cls` is given.
    package: str = ""
    #: The class's attribute path inside the package (`optim.AdamW8bit`).
    class_name: str = ""
    impls: tuple[str, ...] | None = None
    #: Why `impls` is what it is (said when another impl is asked for).
    impl_note: str = ""
    #: The constructor takes the model itself (to split its parameters, like Muon).
    takes_model: bool = False
    #: The optimizer keeps different weights for training and evaluation (Schedule-Free):
    #: `set_train_mode` must switch it around every evaluation.
    train_eval_modes: bool = False
    #: The optimizer makes its own lr schedule (Schedule-Free): it runs under schedule constant.
    replaces_schedule: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: impl -> the constructor keywords that choose it, for a package whose switches are named
    #: otherwise (heavyball's `multi_tensor` and its own compilation); None: foreach/fused.
    configure: Callable[[str], Mapping[str, Any]] | None = None
    #: The package compiles its own step whatever the impl (torchao): it needs torch.compile.
    compiles_itself: bool = False

    def __post_init__(self) -> None:
        if (self.cls is None) == (not self.package):
            raise ValueError(f"optimizer {self.name!r}: give either cls or package (+ class_name)")
        if self.impls is not None and (bad := set(self.impls) - set(IMPLS)):
            raise ValueError(f"optimizer {self.name!r}: unknown impls {sorted(bad)}")

    def optimizer_class(self) -> type:
        """The class; a package's is imported now (MissingPackage, exit 2, when absent)."""
        if self.cls is not None:
            return self.cls
        return load_class(self.package, self.class_name)

    def available(self) -> str | None:
        """Why the class cannot be had here (its package is missing), or None."""
        return missing_reason(self.package) if self.package else None

    def accepts(self, keyword: str) -> bool:
        """True when the optimizer's constructor takes `keyword` (False while its package is
        missing)."""
        if self.available():
            return False
        return keyword in inspect.signature(self.optimizer_class()).parameters

    def hyperparameter_types(self) -> dict[str, str]:
        """The hyper-parameters a cell may set and the type of each (`VALUE_TYPES`), from the
        constructor's signature: every keyword but the parameters and the implementation
        switches, where its default or annotation says a type bigbench can parse."""
        out = {}
        for name, parameter in inspect.signature(self.optimizer_class()).parameters.items():
            if name == "params" or name in IMPL_SWITCHES or parameter.kind in (
                    inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if kind := _value_type(parameter):
                out[name] = kind
        return out

    @property
    def label(self) -> str:
        """The optimizer as the axis writes it: the name, then its overrides (`adamw:lr=0.001`)."""
        return canonical_text(self.name, self.overrides)


def _value_type(parameter: inspect.Parameter) -> str | None:
    default, annotation = parameter.default, parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    text = text or ("" if annotation is inspect.Parameter.empty else str(annotation))
    if isinstance(default, bool) or text == "bool":
        return "bool"
    if isinstance(default, tuple):
        numeric = default and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  for v in default)
        return "floats" if numeric else None
    if isinstance(default, float) or "float" in text:
        return "float"
    if isinstance(default, int) or text.startswith("int"):
        return "int"
    if isinstance(default, str) or "str" in text:
        return "str"
    return None


def heavyball_impl(impl: str) -> dict[str, Any]:
    """heavyball's switches for `impl`: `multi_tensor` is its foreach; its kernels are compiled
    by heavyball itself (`compiled`) or run eagerly (forloop, foreach), which is a package-wide
    setting read at each call, so it is set for every cell built."""
    import heavyball.utils

    heavyball.utils.compile_mode = HEAVYBALL_COMPILE_MODE if impl == "compiled" else None
    return {"multi_tensor": impl != "forloop"}


#: heavyball's own default compile mode (restored for `compiled` cells).
HEAVYBALL_COMPILE_MODE = "max-autotune-no-cudagraphs"
_HEAVYBALL_NOTE = "heavyball's multi_tensor switch and its own compiled kernels; no fused kernel"

OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
_MUON_IMPL_NOTE = "torch has no foreach or fused Muon"
for _spec in (
    OptimizerSpec(name="sgd", cls=torch.optim.SGD, hyperparams={"lr": 0.01, "momentum": 0.9},
                  description="SGD with momentum 0.9"),
    OptimizerSpec(name="adam", cls=torch.optim.Adam, hyperparams={"lr": 1e-3},
                  description="Adam"),
    OptimizerSpec(name="adamw", cls=torch.optim.AdamW,
                  hyperparams={"lr": 1e-3, "weight_decay": 0.01}, description="AdamW, decay 0.01"),
    OptimizerSpec(name="rmsprop", cls=torch.optim.RMSprop, hyperparams={"lr": 1e-3},
                  description="RMSprop"),
    # -- issue 25: the optimizers argued about now. torch's own first.
    OptimizerSpec(name="adafactor", cls=torch.optim.Adafactor, hyperparams={"lr": 1e-2},
                  description="Adafactor (factored second moment, no first moment; torch)"),
    OptimizerSpec(name="muon", cls=MuonWithAdamW, takes_model=True, impls=("forloop",),
                  impl_note=_MUON_IMPL_NOTE,
                  hyperparams={"lr": 1e-3, "weight_decay": 0.01},
                  description="Muon on hidden matrices + AdamW on embeddings/head/biases/norms "
                              "(torch; RMS-matched lr)"),
    OptimizerSpec(name="nadam", cls=torch.optim.NAdam, hyperparams={"lr": 2e-3},
                  description="NAdam (Nesterov Adam)"),
    OptimizerSpec(name="radam", cls=torch.optim.RAdam, hyperparams={"lr": 1e-3},
                  description="RAdam (rectified Adam)"),
    # -- from maintained packages (the `optimizers` extra)
    OptimizerSpec(name="lion", package="lion-pytorch", class_name="Lion", impls=(NATIVE,),
                  impl_note="lion-pytorch has no foreach or fused switch",
                  hyperparams={"lr": 1e-4, "weight_decay": 0.1},
                  description="Lion (sign of an interpolated momentum; lr 10x below AdamW's, "
                              "decay 10x above)"),
    OptimizerSpec(name="schedulefree-adamw", package="schedulefree",
                  class_name="AdamWScheduleFree", impls=("forloop", "foreach"),
                  impl_note="schedulefree has a foreach switch, no fused kernel",
                  train_eval_modes=True, replaces_schedule=True,
                  hyperparams={"lr": 2.5e-3, "weight_decay": 0.01},
                  description="Schedule-Free AdamW (no lr schedule; evaluates the averaged "
                              "weights)"),
    OptimizerSpec(name="soap", package="heavyball", class_name="SOAP",
                  impls=("forloop", "foreach", "compiled"), impl_note=_HEAVYBALL_NOTE,
                  configure=heavyball_impl,
                  hyperparams={"lr": 3e-3}, description="SOAP (Adam in Shampoo's eigenbasis; "
                                                        "heavyball)"),
    OptimizerSpec(name="shampoo", package="heavyball", class_name="KLShampoo",
                  impls=("forloop", "foreach", "compiled"), impl_note=_HEAVYBALL_NOTE,
                  configure=heavyball_impl,
                  hyperparams={"lr": 1e-3}, description="Shampoo (heavyball 3's KL-Shampoo: Kronecker "
                                                        "factors, KL-corrected)"),
    OptimizerSpec(name="adamw8bit", package="torchao", class_name="optim.AdamW8bit",
                  impls=(NATIVE,), impl_note="torchao compiles its own 8-bit step",
                  compiles_itself=True,
                  hyperparams={"lr": 1e-3, "weight_decay": 0.01},
                  description="AdamW with 8-bit block-quantised moments (torchao)"),
):
    OPTIMIZERS.register(_spec.name, _spec)


def register_optimizer(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add an optimizer (for plugins: call this from your `bigtrain.optimizers` entry point)."""
    return OPTIMIZERS.register(spec.name, spec, replace=replace)


# -- per-cell hyper-parameters: `name:key=value:key=value` -------------------------------------
def resolve_optimizer(name: str, where: str = "") -> OptimizerSpec:
    """The spec named `name`, with the hyper-parameters the text gives merged in
    (`adamw:weight_decay=0.1`); BadInput lists the valid names, or the keys the optimizer takes."""
    base_name, _, rest = str(name).partition(":")
    spec = OPTIMIZERS.get(base_name)
    if spec is None:
        raise unknown_choice("optimizer", name, OPTIMIZERS.names(), where)
    if not rest:
        return spec
    overrides = parse_overrides(spec, str(name), rest.split(":"), where)
    return dataclasses.replace(spec, hyperparams={**spec.hyperparams, **overrides},
                               overrides=overrides)


def canonical_optimizer(value: Any, where: str = "") -> str:
    """The optimizer axis value as canonical text: the name, then the given hyper-parameters in
    key order, each value written one way (`adamw:lr=0.0003:weight_decay=0.1`), so two spellings
    of one setting are one cell. A bare name is itself: existing cell ids do not change."""
    return resolve_optimizer(str(value), where).label


def parse_overrides(spec: OptimizerSpec, text: str, parts: Iterable[str],
                    where: str = "") -> dict[str, Any]:
    """`key=value` texts -> typed hyper-parameters, each checked against what `spec` takes."""
    prefix = f"{where}: " if where else ""
    types = spec.hyperparameter_types()  # MissingPackage (exit 2, install line) when absent
    valid = ", ".join(f"{k} ({t})" for k, t in types.items()) or "none"
    out: dict[str, Any] = {}
    for part in parts:
        key, equals, raw = part.partition("=")
        key = key.strip()
        if not equals or not _KEY.match(key):
            raise BadInput(f"{prefix}optimizer {text!r}: {part!r} is not key=value; "
                           f"{spec.name} takes: {valid}")
        if key not in types:
            raise BadInput(f"{prefix}optimizer {text!r}: {spec.name} takes no hyper-parameter "
                           f"{key!r}; valid keys: {valid}")
        if key in out:
            raise BadInput(f"{prefix}optimizer {text!r}: {key} is given twice")
        try:
            out[key] = parse_value(raw.strip(), types[key])
        except ValueError as exc:
            raise BadInput(f"{prefix}optimizer {text!r}: {key}={raw!r} {exc}; valid keys: "
                           f"{valid}") from None
    return dict(sorted(out.items()))


def parse_value(raw: str, kind: str) -> Any:
    """One hyper-parameter value from text; ValueError says what it should have been."""
    if kind == "bool":
        lowered = raw.lower()
        if lowered in ("true", "on", "1", "yes"):
            return True
        if lowered in ("false", "off", "0", "no"):
            return False
        raise ValueError("is not a boolean (true or false)")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
    if kind == "str":
        if not _WORD.match(raw):
            raise ValueError("is not a word (letters, digits, _ . -)")
        return raw
    values = raw.split("/") if kind == "floats" else [raw]
    numbers = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            what = "numbers separated by / (e.g. 0.9/0.95)" if kind == "floats" else "a finite number"
            raise ValueError(f"is not {what}")
        numbers.append(number)
    return tuple(numbers) if kind == "floats" else numbers[0]


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "/".join(repr(float(v)) for v in value)
    return str(value)


def canonical_text(name: str, overrides: Mapping[str, Any]) -> str:
    """`name` followed by `:key=value` for each override, in key order."""
    return ":".join([name, *(f"{k}={_value_text(v)}" for k, v in sorted(overrides.items()))])


# -- implementations -----------------------------------------------------------------------------
def check_impl(impl: str, where: str = "") -> str:
    """Validate an implementation name (`auto` included: resolved per optimizer later)."""
    if impl not in (*IMPLS, AUTO):
        raise unknown_choice("optimizer implementation", impl, (*IMPLS, AUTO), where)
    return impl


def preferred_impl(spec: OptimizerSpec, device_type: str) -> str:
    """The implementation `auto` stands for: foreach where the optimizer has it here (torch's own
    default on accelerators, and what most optimizer packages call their fast path), else its
    package's native step, else its for-loop; an optimizer that can run none of them here gets
    its first, which the matrix then marks unsupported with the reason."""
    impls = spec_impls(spec)
    for impl in ("foreach", NATIVE, "forloop"):
        if impl in impls and unsupported_reason(spec, impl, device_type) is None:
            return impl
    return impls[0]


def spec_impls(spec: OptimizerSpec) -> tuple[str, ...]:
    """The implementations `spec` has in principle (before asking a device or this torch)."""
    if spec.impls is not None:
        return spec.impls
    return tuple(impl for impl in IMPLS if impl != NATIVE)


def unsupported_reason(spec: OptimizerSpec, impl: str, device_type: str) -> str | None:
    """Why `spec` cannot run as `impl` on `device_type` here, or None when it can."""
    if reason := spec.available():
        return reason
    if spec.impls is not None:
        if impl not in spec.impls:
            note = f" ({spec.impl_note})" if spec.impl_note else ""
            return f"{spec.name} runs only as {', '.join(spec.impls)}{note}"
    elif impl == NATIVE:
        return (f"{spec.name} is a torch optimizer: choose forloop, foreach, fused or compiled "
                f"(native names a package optimizer's own step)")
    elif impl in ("forloop", "foreach", "compiled") and not spec.accepts("foreach"):
        return f"{spec.name} has no foreach switch in torch {torch.__version__}"
    if impl == "fused":
        if not spec.accepts("fused"):
            return f"torch {torch.__version__} has no fused {spec.optimizer_class().__name__}"
        if device_type not in _fused_devices():
            return f"torch {torch.__version__} has no fused kernels on {device_type}"
    if impl == "compiled" or spec.compiles_itself:
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


def _impl_kwargs(spec: OptimizerSpec, impl: str) -> dict[str, Any]:
    if spec.configure is not None:
        return dict(spec.configure(impl))
    if impl == NATIVE:
        return {}
    wanted = {"forloop": {"foreach": False}, "foreach": {"foreach": True},
              "fused": {"fused": True}, "compiled": {"foreach": True}}[impl]
    # A package optimizer that lists forloop/foreach takes the switch; torch's always do.
    return {k: v for k, v in wanted.items() if spec.impls is None or spec.accepts(k)}


def build_optimizer(
    spec: OptimizerSpec, impl: str, params: Iterable[torch.nn.Parameter] | torch.nn.Module
) -> tuple[torch.optim.Optimizer, Callable[[], Any]]:
    """Build the optimizer for `impl`; returns it and the callable that performs one step.

    `params` may be the model itself: an optimizer that splits its parameters by role (Muon)
    needs the modules; every other one gets the model's parameters."""
    if isinstance(params, torch.nn.Module):
        source: Any = params if spec.takes_model else list(params.parameters())
    else:
        source = list(params)
    cls = spec.optimizer_class()
    optimizer = cls(source, **dict(spec.hyperparams), **_impl_kwargs(spec, impl))
    if spec.train_eval_modes:
        set_train_mode(optimizer, True)  # Schedule-Free refuses to step until told it trains
    if impl == "compiled" and spec.configure is None:
        # dynamo guards the compiled step on this optimizer's identity: a new optimizer is a new
        # compilation of the same code, counted against dynamo's recompile limit.
        make_room_for_compilation()
        # Compile the step itself; GradScaler calls optimizer.step, so route it there too.
        optimizer.step = torch.compile(optimizer.step, fullgraph=False)  # type: ignore[method-assign]
    return optimizer, optimizer.step


# -- train/eval modes (Schedule-Free) ------------------------------------------------------------
def needs_train_eval_modes(name: str) -> bool:
    """True when optimizer `name` (axis text) keeps separate training and evaluation weights, so
    evaluation must call `set_train_mode(optimizer, False)` first and `True` after."""
    return resolve_optimizer(name).train_eval_modes


def set_train_mode(optimizer: Any, training: bool) -> None:
    """Put an optimizer with train/eval modes (Schedule-Free: `train()`/`eval()` swap the weights
    the model holds) into training or evaluation mode; a no-op for every other optimizer."""
    method = getattr(optimizer, "train" if training else "eval", None)
    if callable(method):
        method()


# -- provenance ----------------------------------------------------------------------------------
def optimizer_provenance(spec: OptimizerSpec) -> tuple[str, str | None]:
    """(package, version) the optimizer's code comes from: torch for torch's (and bigtrain's Muon
    wrapper around torch's Muon), the extra's distribution, or a plugin's top-level package."""
    if spec.package:
        return spec.package, package_version(spec.package)
    module = getattr(spec.cls, "__module__", "") or ""
    top = module.split(".")[0]
    if top in ("torch", "bigtrain"):
        return "torch", torch.__version__
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        return distribution, package_version(distribution)
    return top or "unknown", None
