"""Presets, overrides and every kind of bad input to a spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.cells.spec import preset_names, spec_from_json, spec_from_preset


def test_shipped_presets_all_load() -> None:
    names = preset_names()
    assert {"quick", "full", "gpu", "ci"} <= set(names)
    for name in names:
        spec = spec_from_preset(name)
        assert spec.model and spec.optimizer


def test_quick_preset_covers_the_promised_matrix() -> None:
    spec = spec_from_preset("quick")
    families = {m.split(":")[0] for m in spec.model}
    assert families == {"mlp", "cnn", "rnn", "transformer"}
    assert set(spec.optimizer) == {"sgd", "adam", "rmsprop"}
    assert set(spec.batch_norm) == {"on", "off"}
    assert len(spec.precision) == 2


def test_flags_override_axes_with_comma_lists() -> None:
    spec = spec_from_preset("quick", {"model": "mlp, cnn:resnet18", "optimizer": "adamw",
                                      "batch_size": "16,default", "duration_s": 2.5})
    assert spec.model == ("mlp:seed", "cnn:resnet18")  # a bare family gets its default size
    assert spec.optimizer == ("adamw",)
    assert spec.batch_size == (16, None)
    assert spec.measure.duration_s == 2.5


def test_spec_round_trips_through_the_manifest_form() -> None:
    spec = spec_from_preset("ci", {"batch_size": "default,4"})
    assert spec_from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"model": "resnet"}, ["--model", "unknown model family 'resnet'", "mlp, cnn, rnn"]),
        ({"model": "cnn:huge"}, ["unknown size for cnn 'huge'", "cnn:resnet50"]),
        ({"optimizer": "adamax"}, ["--optimizer", "'adamax'", "sgd, adam, adamw, rmsprop"]),
        ({"impl": "cuda-graph"}, ["'cuda-graph'", "forloop, foreach, fused, compiled"]),
        ({"precision": "fp8"}, ["'fp8'", "fp32, tf32, fp16, bf16"]),
        ({"device": "tpu"}, ["unknown device 'tpu'", "auto, cpu, cuda, cuda:N"]),
        ({"batch_norm": "maybe"}, ["'maybe'", "on, off"]),
        ({"compile": "yes"}, ["'yes'", "off, on"]),
        ({"batch_size": "0"}, ["--batch-size", "must be > 0"]),
        ({"batch_size": "-3"}, ["must be > 0, got -3"]),
        ({"batch_size": "ten"}, ["'ten' is not a whole number"]),
        ({"optimizer": ""}, ["--optimizer", "axis is empty"]),
        ({"optimizer": ","}, ["axis is empty"]),
        ({"duration_s": 0}, ["duration must be > 0"]),
        ({"duration_s": -1.0}, ["duration must be > 0"]),
        ({"repeats": 0}, ["repeats must be >= 1"]),
    ],
)
def test_bad_flags_name_the_value_and_the_choices(overrides: dict, fragments: list[str]) -> None:
    with pytest.raises(BadInput) as caught:
        spec_from_preset("ci", overrides)
    for fragment in fragments:
        assert fragment in str(caught.value)


def _preset(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


GOOD_AXES = """[axes]
model = ["mlp:seed"]
optimizer = ["sgd"]
impl = ["foreach"]
batch_norm = ["on"]
precision = ["fp32"]
device = ["cpu"]
batch_size = ["default"]
compile = ["off"]
"""


def test_malformed_toml_names_file_line_and_column(tmp_path: Path) -> None:
    path = _preset(tmp_path, GOOD_AXES + 'warmup_s = [1,\n  "x" = 3\n')
    with pytest.raises(BadInput) as caught:
        spec_from_preset(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:11:")  # file:line:column
    assert "malformed TOML" in message


def test_unknown_key_in_a_table_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = _preset(tmp_path, GOOD_AXES + "[measure]\nduration_s = 1\nwarmpu_s = 2\n")
    with pytest.raises(BadInput) as caught:
        spec_from_preset(path)
    assert f"{path}:12: unknown key 'warmpu_s' in [measure]" in str(caught.value)
    assert "warmup_s" in str(caught.value)  # the valid keys are listed


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    path = _preset(tmp_path, 'descripton = "typo"\n' + GOOD_AXES)
    with pytest.raises(BadInput, match=r":1: unknown preset key 'descripton'"):
        spec_from_preset(path)


def test_bad_value_in_a_preset_names_its_line(tmp_path: Path) -> None:
    path = _preset(tmp_path, GOOD_AXES.replace('optimizer = ["sgd"]', 'optimizer = ["sgd", "lamb"]'))
    with pytest.raises(BadInput, match=r"p\.toml:3: unknown optimizer 'lamb'; valid choices: sgd"):
        spec_from_preset(path)


def test_missing_axis_is_an_error(tmp_path: Path) -> None:
    path = _preset(tmp_path, GOOD_AXES.replace('compile = ["off"]\n', ""))
    with pytest.raises(BadInput, match="lacks 'compile'"):
        spec_from_preset(path)


def test_unknown_preset_name_lists_presets() -> None:
    with pytest.raises(BadInput, match=r"unknown preset 'quik'; valid choices: .*quick"):
        spec_from_preset("quik")
