"""The workload contract: a model family with typed named sizes, synthetic data, a loss and an item
unit. Built-in families (mlp, cnn, rnn, transformer) and plugins (`tv:`, `hf:`, users') all build
to it; the step loop only calls `Workload.forward_loss()` and reads `model`, `items_per_step` and
`item_unit`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from bigtrain.common.errors import BadInput

#: What a model is called with: one tensor (positional) or a mapping of tensors (keyword arguments).
Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]
#: `loss_fn(model_output, targets) -> scalar tensor`.
LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


class SizeConfigError(BadInput):
    """A size config with a field that cannot be built; the message names the size and field."""


@dataclass(frozen=True, kw_only=True)
class SizeConfig:
    """One named size of a family: the fields every size has.

    A family declares its hyper-parameters as typed fields of a frozen kw_only subclass
    (`MLPSize`, `TransformerSize`, ...) and checks them in `validate()`; a family without
    hyper-parameters uses `SizeConfig` itself. A bad field fails on construction, naming the
    size and the field, not later as a KeyError inside a worker.
    """

    name: str
    default_batch_size: int
    has_batch_norm: bool = False
    description: str = ""
    #: A smaller size of the same family built from the same layer types, probed in this one's
    #: place by the CPU capability probe (`bigtrain.workloads.capability`): a missing kernel is a
    #: fact about an op and a dtype, not about a width, and probing GPT-2 small in bf16 on a CPU
    #: without bf16 units takes minutes where its tiny twin takes a second. Empty: itself.
    probe_as: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(
                c in self.name for c in ":, "):
            raise SizeConfigError(f"{type(self).__name__}: field 'name' must be a non-empty name "
                                  f"without ':', ',' or spaces, got {self.name!r}")
        self.require_positive_int("default_batch_size")
        if not isinstance(self.has_batch_norm, bool):
            raise self.invalid("has_batch_norm", "must be true or false")
        if not isinstance(self.description, str):
            raise self.invalid("description", "must be a string")
        if not isinstance(self.probe_as, str) or self.probe_as == self.name:
            raise self.invalid("probe_as", "must name another size of the family, or be empty")
        self.validate()

    def validate(self) -> None:
        """Check the family's own fields (override in a subclass; the common ones are checked)."""

    def hyperparameters(self) -> dict[str, Any]:
        """The family's own fields, in declaration order (the common ones left out)."""
        common = {f.name for f in dataclasses.fields(SizeConfig)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in common}

    def hyperparameters_text(self) -> str:
        """`field=value` pairs of the family's own fields, for listings (sequences comma-joined)."""
        def show(value: Any) -> str:
            if isinstance(value, tuple):
                return ",".join(str(v) for v in value)
            return str(value)

        return " ".join(f"{key}={show(value)}" for key, value in self.hyperparameters().items())

    # -- helpers for validate() ------------------------------------------------------------------

    def invalid(self, field_name: str, problem: str) -> SizeConfigError:
        """The error naming one bad field: `<Type> '<size>': field '<f>' <problem>, got <value>`."""
        value = getattr(self, field_name, None)
        return SizeConfigError(f"{type(self).__name__} {self.name!r}: field {field_name!r} "
                               f"{problem}, got {value!r}")

    def require_positive_int(self, field_name: str) -> None:
        """The field is an int >= 1 (a bool is not accepted)."""
        if not _is_positive_int(getattr(self, field_name)):
            raise self.invalid(field_name, "must be a positive integer")

    def require_positive_ints(self, field_name: str) -> None:
        """The field is a non-empty sequence of ints >= 1; stored as a tuple so the size stays
        hashable and its version stamp does not depend on list-versus-tuple."""
        value = getattr(self, field_name)
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise self.invalid(field_name, "must be a non-empty sequence of positive integers")
        items = tuple(value)
        if not items or not all(_is_positive_int(v) for v in items):
            raise self.invalid(field_name, "must be a non-empty sequence of positive integers")
        object.__setattr__(self, field_name, items)  # frozen: the one normalisation allowed

    def require_choice(self, field_name: str, choices: Iterable[str]) -> None:
        """The field is one of `choices`."""
        choices = tuple(choices)
        if getattr(self, field_name) not in choices:
            raise self.invalid(field_name, f"must be one of {', '.join(choices)}")


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(kw_only=True)
class Workload:
    """A built workload: model and one fixed synthetic batch on the target device.

    The batch is made once from a fixed seed and reused every step, so the benchmark measures the
    training step rather than data loading.

    `inputs` is one tensor (the model is called as `model(inputs)`) or a mapping of tensors (called
    as `model(**inputs)`, as Hugging Face models are). With a `loss_fn` the loss is
    `loss_fn(output, targets)`; with `loss_fn=None` the model computes its own loss and returns it,
    as a scalar tensor or as an output carrying `.loss` (or a `"loss"` key).

    Not frozen: the worker may replace `model` by its compiled version.
    """

    model: nn.Module
    inputs: Inputs
    items_per_step: int
    item_unit: str
    targets: torch.Tensor | None = None
    loss_fn: LossFn | None = None
    #: What the record's `extra` should say about how the model was built (e.g. the attention
    #: implementation a library picked, its version); JSON-ready values.
    notes: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.inputs, Mapping):
            if not self.inputs:
                raise ValueError("Workload inputs: an empty mapping; give at least one tensor")
            for key, value in self.inputs.items():
                if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                    raise TypeError(f"Workload inputs[{key!r}]: must map names to tensors, got "
                                    f"{type(value).__name__}")
        elif not isinstance(self.inputs, torch.Tensor):
            raise TypeError(f"Workload inputs: must be a tensor or a mapping of tensors, got "
                            f"{type(self.inputs).__name__}")
        if self.loss_fn is not None and self.targets is None:
            raise ValueError("Workload: a loss_fn needs targets (use loss_fn=None when the model "
                             "computes its own loss)")
        if not _is_positive_int(self.items_per_step):
            raise ValueError(f"Workload items_per_step: must be a positive integer, got "
                             f"{self.items_per_step!r}")
        if not isinstance(self.item_unit, str) or not self.item_unit:
            raise ValueError(f"Workload item_unit: must be a non-empty string, got "
                             f"{self.item_unit!r}")

    def forward_loss(self) -> torch.Tensor:
        """Forward pass and loss on the fixed batch (the one call the step loop makes)."""
        # The tensor test first: it is the common case and cheaper than the Mapping ABC check,
        # and this runs inside the timed window.
        if isinstance(self.inputs, torch.Tensor):
            output = self.model(self.inputs)
        else:
            output = self.model(**self.inputs)
        if self.loss_fn is None:
            return model_computed_loss(output)
        return self.loss_fn(output, self.targets)

    def to(self, device: torch.device | str, *, channels_last: bool = False) -> Workload:
        """Move model, inputs and targets to `device` (in place; returns self).

        `channels_last` also converts the model and every 4-D input tensor (images) to NHWC,
        which lets cuDNN pick tensor-core convolution kernels; other inputs (token ids, masks)
        keep their layout.
        """
        self.model = self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if isinstance(self.inputs, Mapping):
            self.inputs = {key: _move(value, device, channels_last)
                           for key, value in self.inputs.items()}
        else:
            self.inputs = _move(self.inputs, device, channels_last)
        if self.targets is not None:
            self.targets = self.targets.to(device)
        return self


def _move(tensor: torch.Tensor, device: torch.device | str, channels_last: bool) -> torch.Tensor:
    tensor = tensor.to(device)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def model_computed_loss(output: Any) -> torch.Tensor:
    """The loss a model returned itself: a scalar tensor, `output.loss`, or `output["loss"]`."""
    if isinstance(output, torch.Tensor):
        if output.dim() == 0:
            return output
        raise TypeError(f"the model returned a tensor of shape {tuple(output.shape)}, not a scalar "
                        f"loss; give the Workload a loss_fn and targets")
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    raise TypeError(f"the model's output ({type(output).__name__}) carries no loss tensor: return "
                    f"a scalar or an output with .loss (e.g. pass labels), or give the Workload "
                    f"a loss_fn and targets")


BuildFn = Callable[..., Workload]


@dataclass(frozen=True, kw_only=True)
class WorkloadFamily:
    """A model family: `build(size, batch_size=, batch_norm=, device=, seed=)` makes a Workload.

    `build_fn(config, *, batch_size, batch_norm, device, seed)` gets the size's config (an
    instance of `size_type`) and returns a Workload on `device`.
    """

    name: str
    sizes: Mapping[str, SizeConfig]
    default_size: str
    item_unit: str
    build_fn: BuildFn
    description: str = ""
    size_type: type[SizeConfig] = SizeConfig

    def __post_init__(self) -> None:
        if self.default_size not in self.sizes:
            raise ValueError(f"family {self.name}: default size {self.default_size!r} not in sizes")
        for key, config in self.sizes.items():
            if not isinstance(config, self.size_type):
                raise TypeError(f"family {self.name}: size {key!r} is a "
                                f"{type(config).__name__}, not a {self.size_type.__name__}")
            if key != config.name:
                raise ValueError(f"family {self.name}: size registered as {key!r} is named "
                                 f"{config.name!r}")
            self._check_probe_stand_in(config)

    def _check_probe_stand_in(self, config: SizeConfig) -> None:
        """A size's `probe_as` names a size of this family that is probed as itself and has the
        same batch-norm slots (a probe with BN on must build BN layers)."""
        if not config.probe_as:
            return
        stand_in = self.sizes.get(config.probe_as)
        where = f"family {self.name}: size {config.name!r} has probe_as={config.probe_as!r}"
        if stand_in is None:
            raise ValueError(f"{where}, which is not one of its sizes ({', '.join(self.sizes)})")
        if stand_in.probe_as:
            raise ValueError(f"{where}, which is itself probed as {stand_in.probe_as!r}")
        if stand_in.has_batch_norm != config.has_batch_norm:
            raise ValueError(f"{where}, whose batch-norm slots differ")

    def probe_size(self, size: str) -> str:
        """The size the capability probe builds in `size`'s place (itself unless declared)."""
        return self.sizes[size].probe_as or size

    def build(
        self,
        size: str,
        *,
        batch_size: int | None = None,
        batch_norm: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> Workload:
        """Build the model and its synthetic batch, deterministic for a given seed."""
        config = self.sizes[size]
        generator_device = torch.device(device)
        torch.manual_seed(seed)
        return self.build_fn(
            config,
            batch_size=batch_size or config.default_batch_size,
            batch_norm=batch_norm and config.has_batch_norm,
            device=generator_device,
            seed=seed,
        )


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator; data is made on the CPU then moved, so it is identical on every device."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position's prediction of the next token."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def language_model_workload(
    model: nn.Module, *, vocab: int, seq: int, batch_size: int, device: torch.device, seed: int
) -> Workload:
    """A next-token workload: one random token stream, inputs and targets shifted by one."""
    stream = torch.randint(0, vocab, (batch_size, seq + 1), generator=seeded_generator(seed))
    return Workload(
        model=model,
        inputs=stream[:, :-1].contiguous(),
        targets=stream[:, 1:].contiguous(),
        loss_fn=next_token_loss,
        items_per_step=batch_size * seq,
        item_unit="tokens",
    ).to(device)


def norm_or_identity(kind: type[nn.Module], channels: int, enabled: bool) -> nn.Module:
    """A batch-norm slot: the norm when enabled, identity when switched off."""
    return kind(channels) if enabled else nn.Identity()
