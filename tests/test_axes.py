"""The axis table: every axis shows up everywhere it must, and the labels built from it keep the
exact text each caller has always written."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from types import SimpleNamespace

import pytest

from bigtrain.cells.axes import (
    AXIS_BY_NAME,
    AXIS_NAMES,
    AXIS_TABLE,
    OPTIMIZER_ALONE_STYLE,
    OPTIMIZER_STYLE,
    PROGRESS_STYLE,
    Axis,
    LabelStyle,
    axis,
    cell_label,
    compare_cell_label,
    keyed,
    record_axis_fields,
    spec_axis_fields,
    value_label,
)
from bigtrain.commands.sweep import sweep
from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import Cell, DeviceInventory, expand
from bigtrain.results.schema import AXES, CellRecord
from bigtrain.cells.spec import (
    AXIS_KEYS,
    PRESET_TOML_DEFAULTS,
    SweepSpec,
    preset_names,
    preset_toml,
    spec_from_json,
    spec_from_preset,
)
from conftest import REPO


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# -- a half-added axis fails here ------------------------------------------------------------------
def test_every_table_axis_is_a_sweep_flag_named_after_it() -> None:
    options = {p.name: p for p in sweep.params}
    for entry in AXIS_TABLE:
        assert entry.name in options, f"no --{entry.name} flag"
        assert options[entry.name].opts == [entry.flag]
        assert entry.help in options[entry.name].help


def test_the_spec_cell_and_record_axis_fields_are_made_from_the_table() -> None:
    assert AXIS_KEYS == AXIS_NAMES
    assert AXES == AXIS_NAMES
    # The dataclasses hold exactly the table's axes, in table order, besides their own fields.
    assert [f for f in _fields(SweepSpec) if f not in ("preset", "description", "measure",
                                                 "converge")] == \
        list(AXIS_NAMES)
    assert [f for f in _fields(Cell) if f not in ("cell_id", "status", "reason")] == list(AXIS_NAMES)
    record_fields = _fields(CellRecord)
    for entry in AXIS_TABLE:
        assert entry.name in record_fields, f"CellRecord lacks the {entry.name} axis"
    assert record_fields[record_fields.index("repeat") + 1:][:len(AXIS_NAMES)] == list(AXIS_NAMES)
    # ... and no module writes them out: each dataclass's axis fields are the derived ones.
    derived = {name: spec for name, _, spec in record_axis_fields()}
    for cls in (Cell, CellRecord):
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for name, spec in derived.items():
            assert (by_name[name].default, by_name[name].type) == \
                (spec.default, AXIS_BY_NAME[name].record_type.__name__), (cls.__name__, name)
    spec_fields = {f.name: f for f in dataclasses.fields(SweepSpec)}
    for name, annotation, spec in spec_axis_fields():
        assert (spec_fields[name].default, spec_fields[name].type) == (spec.default, annotation)


def test_an_axis_added_to_a_table_becomes_a_field_with_its_default() -> None:
    extra = Axis(name="example_axis", help="1, 4", parse=lambda value, where: int(value),
                 choices=("1", "4"), default=(1,), record_type=int, required_in_preset=False)
    table = (*AXIS_TABLE, extra)
    record = dataclasses.make_dataclass("R", record_axis_fields(table), frozen=True, kw_only=True)
    spec = dataclasses.make_dataclass("S", spec_axis_fields(table), frozen=True, kw_only=True)
    assert _fields(record) == [*AXIS_NAMES, "example_axis"]
    assert {f.name: f.default for f in dataclasses.fields(record)}["example_axis"] == 1
    assert {f.name: f.default for f in dataclasses.fields(spec)}["example_axis"] == (1,)
    # a required axis has no default: leaving it out is an error naming it
    with pytest.raises(TypeError, match="model"):
        record(**{name: "x" for name in AXIS_NAMES if name != "model"})


def test_an_axis_a_preset_may_leave_out_has_defaults_everywhere() -> None:
    record_defaults = {f.name: f.default for f in dataclasses.fields(CellRecord)}
    for entry in AXIS_TABLE:
        if not entry.required_in_preset:
            assert entry.default is not None, entry.name
            assert record_defaults[entry.name] is not dataclasses.MISSING, entry.name


def test_every_table_axis_is_in_the_shipped_presets_or_optional() -> None:
    from bigtrain.cells.spec import load_preset

    for name in preset_names():
        _, data, _ = load_preset(name)
        for entry in AXIS_TABLE:
            assert entry.name in data["axes"] or not entry.required_in_preset, (name, entry.name)


def test_a_generated_preset_and_a_manifest_carry_every_axis(tmp_path) -> None:  # noqa: ANN001
    text = preset_toml(model=["mlp:seed"], optimizer=["sgd"], measure={"duration_s": 0.1})
    for entry in AXIS_TABLE:
        assert f"\n{entry.name} = " in text
        if entry.default is not None:
            assert PRESET_TOML_DEFAULTS[entry.name] == list(entry.default)
    path = tmp_path / "p.toml"
    path.write_text(text)
    spec = spec_from_preset(str(path))
    assert set(spec.to_json()) >= set(AXIS_NAMES)
    assert spec_from_json(spec.to_json()) == spec


def test_every_axis_has_choices_and_an_error_naming_them() -> None:
    for entry in AXIS_TABLE:
        assert entry.choice_list(), entry.name
        with pytest.raises(BadInput) as caught:
            entry.parse_values(["no-such-value"], entry.flag)
        message = str(caught.value)
        assert message.startswith(f"{entry.flag}: ")
        assert "no-such-value" in message


def test_cell_axes_and_records_read_the_table() -> None:
    cells = expand(spec_from_preset("ci"), DeviceInventory(cuda_count=0))
    assert all(list(c.axes()) == list(AXIS_NAMES) for c in cells)


def test_unknown_axis_names_the_axes() -> None:
    assert axis("batch_norm").flag == "--batch-norm"
    with pytest.raises(BadInput, match=r"unknown axis 'world_siz'; valid choices: model, optimizer"):
        axis("world_siz")


def test_the_axis_table_loads_neither_torch_nor_pandas() -> None:
    code = ("import sys, bigtrain.cells.axes; "
            "print([m for m in ('torch', 'pandas', 'pynvml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- cell ids stay what they were ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "count", "digest"),
    [("quick", 36, "05968bdb173a5850"), ("ci", 6, "9f522bcb310090fb")],
)
def test_cell_ids_and_their_order_are_pinned(preset: str, count: int, digest: str) -> None:
    # Pinned from the code before the axis table existed: the same cells, ids and order.
    cells = expand(spec_from_preset(preset), DeviceInventory(cuda_count=2, cuda_bf16=(True, True)))
    ids = ",".join(c.cell_id for c in cells)
    assert len(cells) == count
    assert hashlib.sha256(ids.encode()).hexdigest()[:16] == digest


# -- labels: one builder, every caller's text unchanged --------------------------------------------
def _pinned_cells() -> list[Cell]:
    spec = spec_from_preset("ci", {"model": "cnn:tiny,mlp:seed", "compile": "on,off",
                                   "device": "cpu,cuda:1", "batch_size": "default,8"})
    return expand(spec, DeviceInventory(cuda_count=2, cuda_bf16=(True, False)))


# (cell_id, Cell.label, compare label) as the code before the table wrote them.
PINNED_LABELS = [
    ("2dae36b1ca5f", "cnn:tiny sgd/foreach fp32 bn=on bs=32 cpu compiled-model",
     "cnn:tiny sgd/foreach fp32 cpu bs32 bn compiled"),
    ("b2fb6696885e", "cnn:tiny sgd/foreach fp32 bn=on bs=32 cpu",
     "cnn:tiny sgd/foreach fp32 cpu bs32 bn"),
    ("3744767d15c9", "cnn:tiny sgd/foreach fp32 bn=on bs=8 cpu compiled-model",
     "cnn:tiny sgd/foreach fp32 cpu bs8 bn compiled"),
    ("1ef6b5449c69", "mlp:seed adam/foreach fp32 bs=64 cuda:1",
     "mlp:seed adam/foreach fp32 cuda:1 bs64"),
    ("56e1abcd7490", "mlp:seed adam/foreach fp32 bs=8 cuda:1 compiled-model",
     "mlp:seed adam/foreach fp32 cuda:1 bs8 compiled"),
    ("2648303b44cf", "mlp:seed adam/foreach fp32 bs=8 cuda:1",
     "mlp:seed adam/foreach fp32 cuda:1 bs8"),
]


def test_cell_labels_and_compare_labels_are_pinned() -> None:
    cells = _pinned_cells()
    got = [(c.cell_id, c.label, compare_cell_label(c.axes())) for c in cells[:3] + cells[-3:]]
    assert got == PINNED_LABELS


def test_compare_cell_label_matches_compare_module() -> None:
    from bigtrain.compare import cell_label as compare_module_label

    odd = [
        {},
        {"model": "", "batch_norm": True, "compile": "true"},
        {"model": "m", "optimizer": "o", "impl": "i", "precision": "p", "device": "d",
         "batch_size": 3, "batch_norm": "off", "compile": "True"},
        {"model": "m", "batch_norm": "n/a", "compile": "off"},
    ]
    for axes in [c.axes() for c in _pinned_cells()] + odd:
        assert compare_cell_label(axes) == compare_module_label(axes)
    assert compare_cell_label({}) == "None None/None None None bsNone"
    assert compare_cell_label({"model": "", "batch_norm": True, "compile": "true"}) == \
        " None/None None None bsNone bn compiled"


@pytest.mark.parametrize(
    ("name", "value", "label"),
    [("batch_norm", "on", "BN on"), ("batch_norm", "n/a", "BN n/a"), ("batch_size", 32, "bs 32"),
     ("compile", "on", "compiled"), ("compile", "True", "eager"), ("compile", "off", "eager"),
     ("model", "mlp:seed", "mlp:seed"), ("not_an_axis", 2, "2")],
)
def test_report_value_labels_are_pinned(name: str, value: object, label: str) -> None:
    from bigtrain.report.data import axis_value_label

    assert value_label(name, value) == label
    assert axis_value_label(name, value) == label


@pytest.mark.parametrize(
    ("impl", "label"),
    [("foreach", "adam [foreach]"), ("fused", "adam [fused]"), ("default", "adam"),
     ("", "adam"), ("None", "adam")],
)
def test_optimizer_labels_are_pinned(impl: str, label: str) -> None:
    from bigtrain.report.figures import _opt_label

    assert _opt_label(SimpleNamespace(optimizer="adam", impl=impl)) == label
    assert cell_label({"optimizer": "adam", "impl": impl}, OPTIMIZER_STYLE) == label
    assert cell_label({"optimizer": "adam", "impl": impl}, OPTIMIZER_ALONE_STYLE) == "adam"


def test_a_table_axis_a_style_does_not_name_is_appended_so_cells_stay_apart() -> None:
    # As if `compile` were an axis added to the table after the style was written.
    axes = {**_pinned_cells()[0].axes(), "not_in_table": 2}
    order = tuple(name for name in PROGRESS_STYLE.order if name != "compile")
    appended = dataclasses.replace(PROGRESS_STYLE, order=order)
    assert cell_label(axes, appended) == "cnn:tiny sgd/foreach fp32 bn=on bs=32 cpu compiled-model"
    closed = dataclasses.replace(appended, other_axes=False)
    assert cell_label(axes, closed) == "cnn:tiny sgd/foreach fp32 bn=on bs=32 cpu"
    assert cell_label(axes, LabelStyle(order=("model",), wording={"model": keyed("m", "=")})) == \
        "m=cnn:tiny"


def test_axis_records_need_the_table_type() -> None:
    entry: Axis = axis("batch_size")
    assert entry.record_type is int
    record = CellRecord(run_id="r", cell_id="c", model="mlp:seed", optimizer="sgd", impl="foreach",
                        batch_norm="n/a", precision="fp32", device="cpu", batch_size=64,
                        compile="off", status="skipped", reason="test").to_json()
    for name, bad in (("batch_size", "64"), ("batch_size", True), ("compile", False)):
        from bigtrain.results.schema import SchemaError

        with pytest.raises(SchemaError, match=rf"{name} must be"):
            CellRecord.from_json({**record, name: bad})
