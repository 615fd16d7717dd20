"""Sweep specifications: presets (TOML), command-line overrides, validation.

A preset names the axes of the matrix and the measurement settings:

    description = "what this preset is for"
    [axes]
    model = ["mlp:seed", "cnn:tiny"]
    optimizer = ["sgd", "adam"]
    impl = ["foreach"]
    batch_norm = ["on", "off"]
    precision = ["fp32", "bf16"]
    device = ["auto"]
    batch_size = ["default"]
    compile = ["off"]
    cuda_graphs = ["off"]     # optional (added later): left out, it is ["off"]
    lr = ["default"]          # optional: learning rates, or each optimizer's own
    world_size = [1]          # optional (added later): data-parallel ranks per cell
    checkpointing = ["off"]   # optional: activation checkpointing per block
    grad_accum = [1]          # optional: micro-batches per optimizer step
    parallel = ["ddp"]        # optional: ddp, fsdp or fsdp-offload for world_size > 1 cells
    framework = ["torch"]     # optional: torch, jax, tensorflow (bigtrain.frameworks)
    [measure]
    warmup_s = 0.25
    duration_s = 1.0
    min_steps = 10
    repeats = 1
    cell_timeout_s = 600
    [converge]                # optional: the cells train to a target (`bigbench converge`)
    max_steps = 2000
    max_time_s = 60
    eval_every = 25

Every value is validated when the spec is built; errors name the file and line, the bad value and
the valid choices. Unknown keys are rejected, not ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.cells.axes import AXIS_BY_NAME, AXIS_NAMES, AXIS_TABLE, spec_axis_fields
from bigtrain.cells.settings import CONVERGE, CONVERGE_KEYS, ConvergeSettings
from bigtrain.common.errors import BadInput, unknown_choice

# The axes themselves (names, parsing, choices, defaults) live in bigtrain.cells.axes.
AXIS_KEYS = AXIS_NAMES
PRESETS_ENV = "BIGTRAIN_PRESETS"


#: Settings that are counts (integers); every other number setting is seconds.
_COUNT_KEYS = ("min_steps", "repeats", "seed", "max_steps", "eval_every")
#: The largest number of seconds a setting takes (~116 days): anything above is a typo, and
#: `inf` or `1e999` would only fail mid-cell (OverflowError) after the run folder was written.
MAX_SECONDS = 1e7
#: The largest count (steps, repeats, a seed): every JSON reader holds it exactly.
MAX_COUNT = 2**53


def number_problem(key: str, value: Any) -> str | None:
    """Why a measure or converge number is unusable (not finite, out of range), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # the type check is the caller's, which knows where the value came from
    if not math.isfinite(value):
        return f"{key} must be a finite number, got {value!r}"
    limit = MAX_COUNT if key in _COUNT_KEYS else MAX_SECONDS
    if abs(value) > limit:
        unit = "" if key in _COUNT_KEYS else " seconds"
        return f"{key} must be at most {limit:g}{unit}, got {value!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class MeasureSettings:
    """How each cell is measured."""

    warmup_s: float = 0.25
    duration_s: float = 1.0
    min_steps: int = 10
    repeats: int = 1
    cell_timeout_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.warmup_s >= 0:
            raise BadInput(f"warmup must be >= 0 seconds, got {self.warmup_s}")
        if not self.duration_s > 0:
            raise BadInput(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.min_steps < 1:
            raise BadInput(f"min_steps must be >= 1, got {self.min_steps}")
        if self.repeats < 1:
            raise BadInput(f"repeats must be >= 1, got {self.repeats}")
        if not self.cell_timeout_s > 0:
            raise BadInput(f"cell timeout must be > 0 seconds, got {self.cell_timeout_s}")
        for name in ("warmup_s", "duration_s", "cell_timeout_s", "min_steps", "repeats", "seed"):
            problem = number_problem(name, getattr(self, name))
            if problem:
                raise BadInput(problem)


class _SweepSpecMethods:
    """What a SweepSpec does; its fields are made below (the axes from the axis table)."""

    @property
    def protocol(self) -> str:
        """The measurement protocol of every cell: `converge` or `step_time`."""
        return CONVERGE if self.converge is not None else "step_time"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's `spec`). A converge spec adds `protocol` and
        `converge`; a step-time spec is written as before they existed, so older runs resume."""
        out = dataclasses.asdict(self)
        # None stands for an axis's "default" (the model's own batch size), written as in presets.
        for name in AXIS_NAMES:
            out[name] = ["default" if v is None else v for v in getattr(self, name)]
        del out["converge"]
        if self.converge is not None:
            out["protocol"] = CONVERGE
            out["converge"] = self.converge.to_json()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


#: The whole matrix to run and how to measure it: the preset's name and description, one tuple of
#: values per axis of `bigtrain.axes.AXIS_TABLE` (made from the table, in its order; never written
#: out here), the measure settings, and the converge settings (set: every cell trains to its target,
#: the `converge` protocol; None: step time).
SweepSpec = dataclasses.make_dataclass(
    "SweepSpec",
    [("preset", "str", dataclasses.field()),
     ("description", "str", dataclasses.field(default="")),
     *spec_axis_fields(),
     ("measure", "MeasureSettings", dataclasses.field(default=MeasureSettings())),
     ("converge", "ConvergeSettings | None", dataclasses.field(default=None))],
    bases=(_SweepSpecMethods,),
    namespace={"__doc__": "The whole matrix to run and how to measure it (axis fields from "
                          "bigtrain.axes.AXIS_TABLE).", "__module__": __name__},
    frozen=True,
    kw_only=True,
)


# -- presets -----------------------------------------------------------------------------------
def presets_dir() -> Path:
    """Where named presets live: $BIGTRAIN_PRESETS, else bench/presets of the checkout the
    package runs from (an editable install), else bench/presets under the current folder (a
    regular install run from a checkout, as tox does)."""
    override = os.environ.get(PRESETS_ENV)
    if override:
        return Path(override)
    beside_package = Path(__file__).resolve().parents[2] / "bench" / "presets"
    if beside_package.is_dir():
        return beside_package
    return Path.cwd() / "bench" / "presets"


def preset_names() -> list[str]:
    """Names of the presets shipped in the presets folder."""
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def preset_path(name_or_path: str) -> Path:
    """Resolve a preset name (`quick`) or a path to a TOML file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        if not candidate.is_file():
            raise BadInput(f"preset file {name_or_path} does not exist")
        return candidate
    path = presets_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        raise unknown_choice("preset", name_or_path, preset_names())
    return path


def _line_of(text: str, key: str, table: str | None) -> int | None:
    """The 1-based line where `key` is set (inside `[table]` when given), for error messages."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[([^\[\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            if table is None and current == key:
                return number
            continue
        if current == table and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


def _where(path: Path, text: str, key: str, table: str | None) -> str:
    line = _line_of(text, key, table)
    return f"{path}:{line}" if line else str(path)


def load_preset(name_or_path: str) -> tuple[Path, dict[str, Any], str]:
    """Read a preset; returns (path, parsed TOML, text). Malformed TOML names file:line:column."""
    path = preset_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a TOML preset: byte {exc.start} is not UTF-8 text "
                       f"(a binary file?)") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise BadInput(f"{path}: malformed TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        if match:
            location = f"{path}:{match.group(1)}:{match.group(2)}"
        else:  # "(at end of document)": point at the end of the last line
            lines = text.splitlines() or [""]
            location = f"{path}:{len(lines)}:{len(lines[-1]) + 1}"
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise BadInput(f"{location}: malformed TOML: {message}") from None
    return path, data, text


_TOP_KEYS = ("description", "axes", "measure", "converge")
_MEASURE_KEYS = tuple(f.name for f in dataclasses.fields(MeasureSettings))


def spec_from_preset(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Build a validated SweepSpec from a preset plus command-line overrides.

    `overrides` maps axis names to comma-separated strings (or lists) and measure settings to
    numbers; None values are ignored. Errors from the file name file:line; errors from a flag
    name the flag.
    """
    path, data, text = load_preset(name_or_path)
    for key in data:
        if key not in _TOP_KEYS:
            raise BadInput(
                f"{_where(path, text, key, None)}: unknown preset key {key!r}; "
                f"valid keys: {', '.join(_TOP_KEYS)}"
            )
    axes_table = data.get("axes", {})
    measure_table = data.get("measure", {})
    converge_table = data.get("converge")
    for table_name, table, valid in (("axes", axes_table, AXIS_KEYS),
                                     ("measure", measure_table, _MEASURE_KEYS),
                                     ("converge", {} if converge_table is None else converge_table,
                                      CONVERGE_KEYS)):
        if not isinstance(table, dict):
            raise BadInput(f"{_where(path, text, table_name, None)}: [{table_name}] must be a table")
        for key in table:
            if key not in valid:
                raise BadInput(
                    f"{_where(path, text, key, table_name)}: unknown key {key!r} in "
                    f"[{table_name}]; valid keys: {', '.join(valid)}"
                )
    axes: dict[str, tuple] = {}
    for axis in AXIS_TABLE:
        key = axis.name
        if key not in axes_table:
            if axis.required_in_preset:
                raise BadInput(f"{path}: [axes] lacks {key!r}; every axis must be listed")
            axes[key] = axis.parse_values(list(axis.default or ()), f"{path}: default {key}")
            continue
        raw, where = axes_table[key], _where(path, text, key, "axes")
        if not isinstance(raw, list):
            raise BadInput(f"{where}: {key} must be a list, got {raw!r}")
        axes[key] = _validate_axis(key, raw, where)

    measure_values: dict[str, Any] = {}
    for key, value in measure_table.items():
        where = _where(path, text, key, "measure")
        _check_number(key, value, where)
        measure_values[key] = value
    try:
        measure = MeasureSettings(**measure_values)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from None

    converge = None
    if converge_table is not None:
        for key, value in converge_table.items():
            _check_number(key, value, _where(path, text, key, "converge"))
        try:
            converge = ConvergeSettings(**converge_table)
        except BadInput as exc:
            raise BadInput(f"{path}: [converge]: {exc}") from None

    spec = SweepSpec(preset=str(name_or_path), description=str(data.get("description", "")),
                     measure=measure, converge=converge, **axes)
    return apply_overrides(spec, overrides or {})


def apply_overrides(spec: SweepSpec, overrides: Mapping[str, Any]) -> SweepSpec:
    """A copy of `spec` with command-line overrides applied; errors name the flag."""
    given = {k: v for k, v in overrides.items() if v is not None}
    axes = {axis.name: _validate_axis(axis.name, _split(given[axis.name]), axis.flag)
            for axis in AXIS_TABLE if axis.name in given}
    measure = spec.measure
    for key in _MEASURE_KEYS:
        if key in given:
            _check_number(key, given[key], _flag(key))
            try:
                measure = dataclasses.replace(measure, **{key: given[key]})
            except BadInput as exc:
                raise BadInput(f"{_flag(key)}: {exc}") from None
    converge = _converge_overrides(spec, given)
    if converge is not None and converge.max_time_s >= measure.cell_timeout_s:
        raise BadInput(
            f"the converge time budget ({converge.max_time_s:g} s a cell) must be shorter than the "
            f"cell timeout ({measure.cell_timeout_s:g} s), or every cell that misses its target is "
            f"killed instead of recorded: lower --max-time-s or raise --cell-timeout")
    return dataclasses.replace(spec, measure=measure, converge=converge, **axes)


def _converge_overrides(spec: SweepSpec, given: Mapping[str, Any]) -> ConvergeSettings | None:
    """The spec's converge settings with `--max-steps`, `--max-time-s`, `--eval-every` applied;
    `protocol="converge"` (what `bigbench converge` passes) turns a step-time preset's cells
    into converge cells with the default budgets."""
    converge = spec.converge
    if "protocol" in given:
        if given["protocol"] != CONVERGE:
            raise BadInput(f"protocol {given['protocol']!r} cannot be set here; valid: {CONVERGE}")
        converge = converge or ConvergeSettings()
    for key in CONVERGE_KEYS:
        if key in given:
            flag = "--" + key.replace("_", "-")
            if converge is None:
                raise BadInput(f"{flag} is a converge budget: use `bigbench converge` or a preset "
                               f"with a [converge] table")
            _check_number(key, given[key], flag)
            try:
                converge = dataclasses.replace(converge, **{key: given[key]})
            except BadInput as exc:
                raise BadInput(f"{flag}: {exc}") from None
    return converge


def _flag(key: str) -> str:
    """The command-line flag that sets measure setting `key` (`duration_s` -> `--duration`)."""
    return f"--{key.removesuffix('_s').replace('_', '-')}"


def _check_number(key: str, value: Any, where: str) -> None:
    """BadInput naming `where` unless `value` is a number of the key's type, finite and in
    range: checked for every number from a flag or a preset before anything is written."""
    expected = int if key in _COUNT_KEYS else (int, float)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise BadInput(f"{where}: {key} must be a number, got {value!r}")
    problem = number_problem(key, value)
    if problem:
        raise BadInput(f"{where}: {problem}")


def _split(value: str | Sequence[Any]) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return list(value)


def _validate_axis(key: str, raw: Sequence[Any], where: str) -> tuple:
    """Parse one axis's values with the table's parser; errors name `where`, value and choices."""
    return AXIS_BY_NAME[key].parse_values(raw, where)


#: Axes a generated preset gets unless told otherwise: one plain CPU configuration.
PRESET_TOML_DEFAULTS: Mapping[str, Sequence[Any]] = {
    axis.name: list(axis.default) for axis in AXIS_TABLE if axis.default is not None
}


def preset_toml(*, model: Sequence[str], optimizer: Sequence[str], measure: Mapping[str, Any],
                description: str = "", converge: Mapping[str, Any] | None = None,
                **axes: Sequence[Any]) -> str:
    """A preset file's text (for scripts and tests): the given models and optimizers, the other
    axes from `axes` or PRESET_TOML_DEFAULTS, `measure` settings, and `converge` budgets (a
    `[converge]` table) when given."""
    values = {**PRESET_TOML_DEFAULTS, **axes, "model": model, "optimizer": optimizer}
    lines = [f"description = {json.dumps(description)}", "[axes]"]
    lines += [f"{key} = {json.dumps(list(values[key]))}" for key in AXIS_KEYS]
    lines.append("[measure]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in measure.items()]
    if converge is not None:
        lines.append("[converge]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in converge.items()]
    return "\n".join(lines) + "\n"


def spec_from_json(data: Mapping[str, Any]) -> SweepSpec:
    """Rebuild a SweepSpec from a manifest's `spec` (used by --resume)."""
    axes = {}
    for axis in AXIS_TABLE:
        # An axis added after the run was made is absent from its manifest: the default applies.
        values = data[axis.name] if axis.required_in_preset else data.get(axis.name, axis.default)
        # "default" is written for the axis's own default: None for batch_size, "default" for lr.
        axes[axis.name] = tuple(axis.parse(v, "manifest") if v == "default" else v for v in values)
    converge = data.get("converge")
    return SweepSpec(
        preset=str(data.get("preset", "")),
        description=str(data.get("description", "")),
        measure=MeasureSettings(**dict(data.get("measure", {}))),
        converge=ConvergeSettings.from_json(converge) if converge is not None else None,
        **axes,
    )
