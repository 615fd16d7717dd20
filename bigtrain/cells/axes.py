"""The axes of the benchmark matrix, declared once.

Each `Axis` says everything the rest of bigtrain needs about one axis: its name (the preset key,
the `SweepSpec`/`Cell`/`CellRecord` field and the results column), its command-line flag, how a
raw value is parsed and checked (with an error naming the value and the valid choices), its
choices, the default a generated preset uses, the JSON type of its value in a record, and how a
value is labelled. The spec, the matrix, the result schema, the sweep command and every label read
this table, so adding an axis is one entry here: the axis fields of `SweepSpec`, `Cell` and
`CellRecord` are made from it (`spec_axis_fields`, `record_axis_fields`).

Pure Python on purpose: both the measuring and the analysing side import it, so nothing here
imports torch or pandas at module level. The choices and parsers that need the torch-backed
registries (models, optimizers, precisions) import them when called.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bigtrain.common.errors import BadInput, unknown_choice

#: (raw value, where it came from) -> the canonical value; raises BadInput naming value and choices.
Parser = Callable[[Any, str], Any]
#: An axis value -> its text in a label, or None to leave the axis out of that label.
Labeller = Callable[[Any], "str | None"]

#: Spellings of an on/off axis that the compare label has always counted as on.
LENIENT_ON_VALUES = frozenset({"on", "True", "true"})
#: Implementation names that add nothing to an optimizer's label.
PLAIN_IMPLS = frozenset({"", "default", "auto", "none"})

BATCH_NORM_CHOICES = ("on", "off")
COMPILE_CHOICES = ("off", "on")
CUDA_GRAPHS_CHOICES = ("off", "on")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
WORLD_SIZE_CHOICES = ("1", "N > 1")
CHECKPOINTING_CHOICES = ("off", "on")
GRAD_ACCUM_CHOICES = ("1", "N > 1 dividing the batch size")
#: ddp: every rank holds the whole model (DistributedDataParallel); fsdp: FSDP2 `fully_shard` per
#: block; fsdp-offload: the same with parameters, gradients and optimizer state in host memory.
#: Offload is a value rather than a flag of its own because it only means something with fsdp: a
#: flag would put a dead `ddp x offload` combination into every matrix that names both.
PARALLEL_CHOICES = ("ddp", "fsdp", "fsdp-offload")
#: The framework a cell trains in (issue 28): bigtrain's own torch machinery, or a backend of
#: `bigtrain.frameworks` (kept in step with its BACKENDS by a test; pure text here, so parsing
#: imports no framework).
FRAMEWORK_CHOICES = ("torch", "jax", "tensorflow")
#: The lr schedule of a converge cell over its max_steps (issue 25; `bigtrain.training.schedules`
#: holds their definitions and is kept in step with these names by a test).
SCHEDULE_CHOICES = ("constant", "cosine", "warmup-cosine")


# -- how values are labelled ---------------------------------------------------------------------
def bare(value: Any) -> str:
    """The value as it is (`mlp:seed`, `fp32`)."""
    return str(value)


def keyed(tag: str, separator: str = " ", hidden: Sequence[str] = ()) -> Labeller:
    """A labeller writing `tag` + `separator` + value (`bs 32`, `bn=on`); values in `hidden` are
    left out of the label."""
    def label(value: Any) -> str | None:
        return None if str(value) in hidden else f"{tag}{separator}{value}"

    return label


def switch(on_word: str, off_word: str | None = None,
           on_values: frozenset[str] = frozenset({"on"})) -> Labeller:
    """A labeller for an on/off axis: `on_word` when the value is in `on_values`, else `off_word`
    (None leaves the axis out)."""
    def label(value: Any) -> str | None:
        return on_word if str(value) in on_values else off_word

    return label


# -- how values are parsed -----------------------------------------------------------------------
def _one_of(what: str, choices: tuple[str, ...]) -> Parser:
    def parse(value: Any, where: str) -> str:
        if value not in choices:
            raise unknown_choice(what, value, choices, where)
        return value

    return parse


def _device(value: Any, where: str) -> str:
    if not isinstance(value, str) or not DEVICE_PATTERN.match(value):
        raise unknown_choice("device", value, DEVICE_CHOICES, where)
    return value


def _batch_size(value: Any, where: str) -> int | None:
    """A positive whole number, or None for `default` (the model's own batch size)."""
    if value == "default":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: batch size {value!r} is not a whole number or 'default'") from None
    if isinstance(value, float) and value != number:
        raise BadInput(f"{where}: batch size {value!r} is not a whole number")
    if number <= 0:
        raise BadInput(f"{where}: batch size must be > 0, got {number}")
    return number


def _lr(value: Any, where: str) -> str:
    """A learning rate as canonical text (`0.001`), or `default` (the optimizer's own, see
    `bigtrain.training.optim.OPTIMIZERS`). Text, not a number, so `default` and a value share one type and
    `1e-3`, `0.001` and a TOML 0.001 name the same cell."""
    if value == "default":
        return "default"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: learning rate {value!r} is not a number or 'default'") from None
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise BadInput(f"{where}: learning rate must be a finite number > 0 or 'default', "
                       f"got {value!r}")
    return repr(number)


def _world_size(value: Any, where: str) -> int:
    """How many data-parallel ranks run the cell: a whole number >= 1."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: world size {value!r} is not a whole number; "
                       f"valid choices: {', '.join(WORLD_SIZE_CHOICES)}") from None
    if isinstance(value, bool) or (isinstance(value, float) and value != number):
        raise BadInput(f"{where}: world size {value!r} is not a whole number")
    if number < 1:
        raise BadInput(f"{where}: world size must be >= 1, got {number}")
    return number


def _grad_accum(value: Any, where: str) -> int:
    """Micro-batches per optimizer step: a whole number >= 1 (whether it divides the batch size
    is checked when the cells are built, once the model's own batch size is known)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: grad_accum {value!r} is not a whole number; "
                       f"valid choices: {', '.join(GRAD_ACCUM_CHOICES)}") from None
    if isinstance(value, bool) or (isinstance(value, float) and value != number):
        raise BadInput(f"{where}: grad_accum {value!r} is not a whole number")
    if number < 1:
        raise BadInput(f"{where}: grad_accum must be >= 1 (micro-batches per optimizer step), "
                       f"got {number}")
    return number


# The registries behind these import torch: import them only when a value is parsed or listed.
def _model(value: Any, where: str) -> str:
    from bigtrain.workloads import resolve_model

    return resolve_model(str(value), where).name


def _model_choices() -> list[str]:
    from bigtrain.workloads import FAMILIES

    return [f"{name}:{size}" for name, family in FAMILIES for size in family.sizes]


def _optimizer(value: Any, where: str) -> str:
    from bigtrain.training.optim import canonical_optimizer, resolve_optimizer
    from bigtrain.training.optim_packages import MissingPackage

    # `adamw:weight_decay=0.1`: the optimizer with its own hyper-parameters, written one way.
    label = canonical_optimizer(value, where)
    # Asked for by name, an optimizer whose package is absent is bad input (exit 2, the install
    # line), not a sweep of `unsupported` cells that looks like it ran.
    if reason := resolve_optimizer(label).available():
        raise MissingPackage(f"{where + ': ' if where else ''}optimizer {label}: {reason}")
    return label


def _optimizer_choices() -> list[str]:
    from bigtrain.training.optim import OPTIMIZERS

    return list(OPTIMIZERS.names())


def _impl(value: Any, where: str) -> str:
    from bigtrain.training.optim import check_impl

    return check_impl(str(value), where)


def _impl_choices() -> list[str]:
    from bigtrain.training.optim import AUTO, IMPLS

    return [*IMPLS, AUTO]


def _precision(value: Any, where: str) -> str:
    from bigtrain.training.precision import resolve_precision

    return resolve_precision(str(value), where).name


def _precision_choices() -> list[str]:
    from bigtrain.training.precision import PRECISIONS

    return list(PRECISIONS)


# -- the table -----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Axis:
    """One axis of the matrix: everything the spec, matrix, schema, CLI and labels need."""

    name: str
    #: The flag's help text: what the values are (static, so `--help` needs no torch).
    help: str
    parse: Parser
    #: The valid values, or a callable listing them (for registries plugins can extend).
    choices: tuple[str, ...] | Callable[[], Sequence[str]]
    #: The values a generated preset (`spec.preset_toml`) uses; None: the caller must give them.
    default: tuple[Any, ...] | None
    #: The JSON type of the value in a `CellRecord` (checked when a record is read).
    record_type: type = str
    #: How a value reads in the report's labels (`BN on`, `bs 32`).
    label: Labeller = bare
    #: The column header in `bigbench sweep --dry-run`; the name when empty.
    column: str = ""
    #: False lets a preset (and an older run's manifest) leave the axis out: `default` applies.
    #: The first axes are required; one added later can be optional so old presets keep loading.
    required_in_preset: bool = True

    def __post_init__(self) -> None:
        # A bad entry is a bug in this table (or a plugin's): say which entry and why, at import.
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"axis name {self.name!r} must be lower_snake_case")
        if not self.required_in_preset and not self.default:
            raise ValueError(f"axis {self.name!r} may be left out of presets, so needs a default")

    @property
    def flag(self) -> str:
        """The command-line flag that overrides this axis (`batch_norm` -> `--batch-norm`)."""
        return "--" + self.name.replace("_", "-")

    def choice_list(self) -> tuple[str, ...]:
        """The valid values, as text."""
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def parse_values(self, raw: Sequence[Any], where: str) -> tuple[Any, ...]:
        """Parse a list of raw values; empty strings are ignored, duplicates dropped (first wins)."""
        values = [v for v in raw if not (isinstance(v, str) and v == "")]
        if not values:
            raise BadInput(f"{where}: the {self.name} axis is empty; give at least one value")
        # Keep first occurrence order; a repeated value would make two cells with one cell_id.
        return tuple(dict.fromkeys(self.parse(value, where) for value in values))


AXIS_TABLE: tuple[Axis, ...] = (
    Axis(name="model", help="models as family[:size], e.g. mlp:seed,cnn:resnet50",
         parse=_model, choices=_model_choices, default=None),
    Axis(name="optimizer", help="sgd, adam, adamw, rmsprop, adafactor, muon, nadam, radam, lion, "
                                "schedulefree-adamw, soap, shampoo, adamw8bit; hyper-parameters "
                                "as name:key=value[:key=value] (`bigbench list optimizers`)",
         parse=_optimizer, choices=_optimizer_choices, default=None),
    Axis(name="impl", help="forloop, foreach, fused, compiled, native (a package's own step), "
                           "auto (each optimizer's own: foreach, else native, else forloop)",
         parse=_impl, choices=_impl_choices, default=("foreach",)),
    Axis(name="batch_norm", help="on, off",
         parse=_one_of("batch-norm setting", BATCH_NORM_CHOICES), choices=BATCH_NORM_CHOICES,
         default=("on",), label=keyed("BN"), column="bn"),
    Axis(name="precision", help="fp32, tf32, fp16, bf16",
         parse=_precision, choices=_precision_choices, default=("fp32",)),
    Axis(name="device", help="auto, cpu, cuda, cuda:N",
         parse=_device, choices=DEVICE_CHOICES, default=("cpu",)),
    Axis(name="batch_size", help="positive integers or 'default'",
         parse=_batch_size, choices=("default", "N > 0"), default=("default",), record_type=int,
         label=keyed("bs"), column="bs"),
    Axis(name="compile", help="torch.compile the model: off, on",
         parse=_one_of("compile setting", COMPILE_CHOICES), choices=COMPILE_CHOICES,
         default=("off",), label=switch("compiled", "eager")),
    # Added after the first runs: optional in presets and manifests, and at its default ("off")
    # left out of the cell_id, so every earlier cell keeps its id. "off" is not labelled either,
    # so earlier cells keep their labels too.
    Axis(name="cuda_graphs", help="capture the training step as a CUDA graph and replay it: off, on",
         parse=_one_of("cuda-graphs setting", CUDA_GRAPHS_CHOICES), choices=CUDA_GRAPHS_CHOICES,
         default=("off",), label=switch("cuda-graphs"), column="graphs", required_in_preset=False),
    # Added with `bigbench converge` (optimizers compared at one shared lr is not a fair
    # comparison): optional, and at "default" (each optimizer's own lr, as before) left out of the
    # cell_id and of labels, so every earlier cell keeps its id and label.
    Axis(name="lr", help="learning rates (numbers > 0) or 'default' (the optimizer's own)",
         parse=_lr, choices=("default", "x > 0"), default=("default",),
         label=keyed("lr", " ", hidden=("default",)), required_in_preset=False),
    # Data-parallel ranks (DistributedDataParallel, per-rank batch fixed): optional like
    # cuda_graphs, and at its default (1, a plain single-process cell) out of ids and labels.
    Axis(name="world_size", help="data-parallel ranks per cell (DDP, per-rank batch fixed): 1, 2, 4, 8",
         parse=_world_size, choices=WORLD_SIZE_CHOICES, default=(1,), record_type=int,
         label=keyed("ws", hidden=("1",)), column="ws", required_in_preset=False),
    # -- memory levers (issue 26): optional, and at their defaults (off, 1, ddp: what every cell
    # did before them) out of ids and labels, so earlier cells keep both.
    Axis(name="checkpointing", help="activation checkpointing per block: off, on",
         parse=_one_of("checkpointing setting", CHECKPOINTING_CHOICES),
         choices=CHECKPOINTING_CHOICES, default=("off",), label=switch("ckpt"), column="ckpt",
         required_in_preset=False),
    Axis(name="grad_accum", help="micro-batches per optimizer step (batch_size is the optimizer "
                                 "step's batch): 1, 2, 4, ...",
         parse=_grad_accum, choices=GRAD_ACCUM_CHOICES, default=(1,), record_type=int,
         label=keyed("ga", hidden=("1",)), column="ga", required_in_preset=False),
    Axis(name="parallel", help="data-parallel strategy of world_size > 1 cells: ddp, fsdp, "
                               "fsdp-offload",
         parse=_one_of("parallel strategy", PARALLEL_CHOICES), choices=PARALLEL_CHOICES,
         default=("ddp",), label=keyed("", "", hidden=("ddp",)), column="par",
         required_in_preset=False),
    # -- the framework (issue 28): optional, and at its default (torch, what every cell was
    # before it) out of ids and labels, so earlier cells keep both.
    Axis(name="framework", help="the framework a cell trains in: torch, jax, tensorflow",
         parse=_one_of("framework", FRAMEWORK_CHOICES), choices=FRAMEWORK_CHOICES,
         default=("torch",), label=keyed("", "", hidden=("torch",)), column="fw",
         required_in_preset=False),
    # -- the lr schedule (issue 25): converge cells only (a step-time cell's lr does not change
    # what a step costs). Optional, and at its default (constant, what every cell did before it)
    # out of ids and labels, so earlier cells keep both.
    Axis(name="schedule", help="the lr schedule over a converge run's max_steps: constant, "
                               "cosine, warmup-cosine",
         parse=_one_of("lr schedule", SCHEDULE_CHOICES), choices=SCHEDULE_CHOICES,
         default=("constant",), label=keyed("", "", hidden=("constant",)), column="sched",
         required_in_preset=False),
)
#: The axis names in table order: the order of presets, the cell product and result columns.
AXIS_NAMES: tuple[str, ...] = tuple(axis.name for axis in AXIS_TABLE)
AXIS_BY_NAME: Mapping[str, Axis] = {axis.name: axis for axis in AXIS_TABLE}


def record_axis_fields(table: Sequence[Axis] | None = None) -> list[tuple[str, str, Any]]:
    """The axis fields of a `Cell` or `CellRecord` (one value each), in table order, as
    `dataclasses.make_dataclass` takes them: (name, annotation, field). An axis a preset may leave
    out defaults to its preset default, so records written before it existed still read."""
    out = []
    for entry in AXIS_TABLE if table is None else table:
        annotation = entry.record_type.__name__
        spec = (dataclasses.field() if entry.required_in_preset
                else dataclasses.field(default=entry.default[0]))  # type: ignore[index]
        out.append((entry.name, annotation, spec))
    return out


def spec_axis_fields(table: Sequence[Axis] | None = None) -> list[tuple[str, str, Any]]:
    """The axis fields of a `SweepSpec` (a tuple of values each; `None` is the `default` batch
    size), in table order, as `dataclasses.make_dataclass` takes them."""
    out = []
    for entry in AXIS_TABLE if table is None else table:
        annotation = f"tuple[{entry.record_type.__name__} | None, ...]"
        spec = (dataclasses.field() if entry.required_in_preset
                else dataclasses.field(default=tuple(entry.default or ())))
        out.append((entry.name, annotation, spec))
    return out


def axis(name: str) -> Axis:
    """The axis called `name`; BadInput lists the axes."""
    try:
        return AXIS_BY_NAME[name]
    except KeyError:
        raise unknown_choice("axis", name, AXIS_NAMES) from None


# -- labels --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LabelStyle:
    """How `cell_label` writes a cell: which axes, in which order, and where the wording differs
    from the table's own `Axis.label`.

    When both `optimizer` and `impl` are in `order`, the implementation is written with the
    optimizer: `sgd/foreach` (impl_join "slash") or `sgd [foreach]` with plain implementations left
    out ("bracket"). With `other_axes`, table axes the order does not name are appended (when the
    cell has them), so an axis added later still tells two cells apart.
    """

    order: tuple[str, ...]
    wording: Mapping[str, Labeller] = field(default_factory=dict)
    impl_join: str = "slash"
    separator: str = " "
    other_axes: bool = False


#: `Cell.label`: progress bars and the sweep summary.
PROGRESS_STYLE = LabelStyle(
    order=("model", "optimizer", "impl", "precision", "batch_norm", "batch_size", "device",
           "compile"),
    wording={"batch_norm": keyed("bn", "=", hidden=("n/a",)), "batch_size": keyed("bs", "="),
             "compile": switch("compiled-model")},
    other_axes=True,
)
#: `bigbench compare` and the exports: what `compare.cell_label` has always written.
COMPARE_STYLE = LabelStyle(
    order=("model", "optimizer", "impl", "precision", "device", "batch_size", "batch_norm",
           "compile"),
    wording={"batch_size": keyed("bs", ""),
             "batch_norm": switch("bn", on_values=LENIENT_ON_VALUES),
             "compile": switch("compiled", on_values=LENIENT_ON_VALUES)},
    other_axes=True,
)
#: The report's optimizer label (what figures colour by): `adam`, or `adam [fused]`.
OPTIMIZER_STYLE = LabelStyle(order=("optimizer", "impl"), impl_join="bracket")
#: The optimizer alone, for reports where every cell has the same implementation.
OPTIMIZER_ALONE_STYLE = LabelStyle(order=("optimizer",))


def value_label(name: str, value: Any) -> str:
    """One axis value as the report writes it (`BN on`, `bs 32`, `eager`); an axis without its own
    wording (or not in the table) reads as the value itself."""
    labeller = AXIS_BY_NAME[name].label if name in AXIS_BY_NAME else bare
    return labeller(value) or ""


def cell_label(axes: Mapping[str, Any], style: LabelStyle = PROGRESS_STYLE) -> str:
    """A one-line name of a cell from its axis values, written in `style`.

    The single label builder: `Cell.label` (PROGRESS_STYLE), the compare label (COMPARE_STYLE),
    the report's optimizer labels (OPTIMIZER_STYLE) all come from here.
    """
    order = list(style.order)
    if style.other_axes:
        order += [name for name in AXIS_NAMES if name not in order and name in axes]
    joined_impl = "optimizer" in order and "impl" in order
    parts: list[str] = []
    for name in order:
        if joined_impl and name == "impl":
            continue
        value = axes.get(name)
        if joined_impl and name == "optimizer":
            text: str | None = _optimizer_with_impl(value, axes.get("impl"), style.impl_join)
        else:
            labeller = style.wording.get(name) or (
                AXIS_BY_NAME[name].label if name in AXIS_BY_NAME else bare)
            text = labeller(value)
        if text is not None:
            parts.append(text)
    return style.separator.join(parts)


def _optimizer_with_impl(optimizer: Any, impl: Any, join: str) -> str:
    if join == "slash":
        return f"{optimizer}/{impl}"
    if join == "bracket":
        return str(optimizer) if str(impl).lower() in PLAIN_IMPLS else f"{optimizer} [{impl}]"
    raise ValueError(f"unknown impl_join {join!r}; valid: slash, bracket")


def compare_cell_label(axes: Mapping[str, Any]) -> str:
    """Exactly what `bigtrain.compare.cell_label` writes (`mlp:seed sgd/foreach fp32 cpu bs64 bn`):
    the label of compare tables, Markdown and the exports."""
    return cell_label(axes, COMPARE_STYLE)
