"""The workload contract plugins build to: typed sizes that fail early, keyword inputs with a
model-computed loss, device moves for both input shapes, and a stable version stamp."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import keyword_workloads
from bigtrain.measure.step_loop import TrainingStep
from bigtrain.training.optim import build_optimizer, resolve_optimizer
from bigtrain.training.precision import resolve_precision
from bigtrain.workloads import (
    FAMILIES,
    CNNSize,
    MLPSize,
    RNNSize,
    SizeConfig,
    SizeConfigError,
    TransformerSize,
    Workload,
    WorkloadFamily,
    definition_version,
    resolve_model,
    workload_version,
)
from conftest import REPO, TESTS_DIR, write_preset

CPU = torch.device("cpu")


# -- typed sizes ---------------------------------------------------------------------------------

def _mlp(**changes: object) -> MLPSize:
    fields = dict(name="probe", default_batch_size=8, in_features=4, hidden=(8,), out_features=2,
                  task="classification")
    return MLPSize(**{**fields, **changes})


@pytest.mark.parametrize(("make", "field", "bad"), [
    (lambda: _mlp(hidden=(8, 0)), "hidden", "(8, 0)"),
    (lambda: _mlp(in_features=True), "in_features", "True"),
    (lambda: _mlp(task="ranking"), "task", "'ranking'"),
    (lambda: _mlp(default_batch_size=0), "default_batch_size", "0"),
    (lambda: TransformerSize(name="t", default_batch_size=1, vocab=10, width=10, layers=1,
                             heads=3, seq_len=4), "heads", "3"),
    (lambda: CNNSize(name="c", default_batch_size=1, image_px=8, classes=2, block="basic",
                     stem_width=4, widths=(4, 8), depths=(1,)), "depths", "(1,)"),
    (lambda: RNNSize(name="r", default_batch_size=1, cell="rnn", vocab=10, embed=4, hidden=4,
                     layers=1, seq_len=4), "cell", "'rnn'"),
])
def test_a_bad_size_field_fails_naming_it(make, field: str, bad: str) -> None:  # noqa: ANN001
    with pytest.raises(SizeConfigError) as caught:
        make()
    message = str(caught.value)
    assert f"field {field!r}" in message and message.endswith(f"got {bad}")
    assert "Size " in message  # the size's type and name lead the message


def test_a_misspelt_field_fails_on_construction() -> None:
    with pytest.raises(TypeError, match="vocabb"):
        TransformerSize(name="t", default_batch_size=1, vocabb=10, width=8, layers=1, heads=2,
                        seq_len=4)


def test_choices_are_listed_and_lists_become_tuples() -> None:
    with pytest.raises(SizeConfigError, match="must be one of regression, classification"):
        _mlp(task="ranking")
    size = _mlp(hidden=[8, 8])
    assert size.hidden == (8, 8) and hash(size) == hash(_mlp(hidden=(8, 8)))


def test_every_built_in_size_is_typed_and_lists_its_fields() -> None:
    for name, family in FAMILIES:
        if name in ("mlp", "cnn", "rnn", "transformer"):
            assert family.size_type is not SizeConfig
            for size in family.sizes.values():
                assert isinstance(size, family.size_type) and size.hyperparameters()
    assert resolve_model("mlp:seed").size.hyperparameters() == {
        "in_features": 10, "hidden": (20,), "out_features": 1, "task": "regression"}
    assert resolve_model("transformer:tiny").size.hyperparameters_text() == (
        "vocab=1024 width=64 layers=2 heads=2 seq_len=64")


def test_a_plain_size_config_still_serves_a_family_without_hyper_parameters() -> None:
    size = SizeConfig(name="one", default_batch_size=4)
    assert size.hyperparameters() == {} and size.hyperparameters_text() == ""


def test_a_family_refuses_sizes_of_the_wrong_type_or_under_the_wrong_key() -> None:
    build = keyword_workloads.FAMILY.build_fn
    with pytest.raises(TypeError, match="not a KeywordSize"):
        WorkloadFamily(name="x", sizes={"probe": _mlp()}, default_size="probe",
                       item_unit="samples", build_fn=build, size_type=keyword_workloads.KeywordSize)
    with pytest.raises(ValueError, match="registered as 'other' is named 'probe'"):
        WorkloadFamily(name="x", sizes={"other": _mlp()}, default_size="other",
                       item_unit="samples", build_fn=build)


# -- keyword inputs and a model-computed loss ----------------------------------------------------

def _reference_loss(workload: Workload) -> torch.Tensor:
    inputs = workload.inputs
    model = workload.model
    image = model.image(inputs["pixel_values"]).mean(dim=(2, 3))
    logits = model.head(model.embed(inputs["input_ids"]) + image[:, None, :])
    per_token = nn.functional.cross_entropy(logits.transpose(1, 2), inputs["labels"],
                                            reduction="none")
    mask = inputs["attention_mask"]
    return (per_token * mask).sum() / mask.sum()


@pytest.mark.parametrize("returns", keyword_workloads.RETURNS)
def test_forward_loss_calls_with_keywords_and_takes_the_models_loss(returns: str) -> None:
    workload = keyword_workloads.FAMILY.build(returns, seed=1)
    assert workload.loss_fn is None and workload.targets is None
    loss = workload.forward_loss()
    assert loss.dim() == 0
    assert torch.allclose(loss, _reference_loss(workload))


@pytest.mark.parametrize("returns", keyword_workloads.RETURNS)
def test_a_keyword_workload_trains_in_the_step_loop(returns: str) -> None:
    workload = keyword_workloads.FAMILY.build(returns, seed=0)
    opt, opt_step = build_optimizer(resolve_optimizer("adam"), "foreach",
                                    workload.model.parameters())
    step = TrainingStep(workload, opt, opt_step, resolve_precision("fp32"), CPU)
    losses = [float(step().detach()) for _ in range(8)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses


def test_moving_a_keyword_workload_moves_every_tensor_and_reformats_only_images() -> None:
    workload = keyword_workloads.FAMILY.build("attribute").to("meta", channels_last=True)
    assert all(t.device.type == "meta" for t in workload.inputs.values())
    assert all(p.device.type == "meta" for p in workload.model.parameters())
    cpu = keyword_workloads.FAMILY.build("attribute").to(CPU, channels_last=True)
    pixels = cpu.inputs["pixel_values"]
    assert pixels.is_contiguous(memory_format=torch.channels_last) and not pixels.is_contiguous()
    assert cpu.inputs["input_ids"].is_contiguous()  # 2-D inputs keep their layout
    assert cpu.model.image.weight.is_contiguous(memory_format=torch.channels_last)


def test_moving_a_tensor_workload_moves_inputs_and_targets() -> None:
    ref = resolve_model("cnn:tiny")
    workload = ref.family.build("tiny", batch_size=2).to("meta", channels_last=True)
    assert workload.inputs.device.type == workload.targets.device.type == "meta"
    cpu = ref.family.build("tiny", batch_size=2).to(CPU, channels_last=True)
    assert cpu.inputs.is_contiguous(memory_format=torch.channels_last)


def test_a_model_output_without_a_loss_is_a_clear_error() -> None:
    logits_only = Workload(model=nn.Linear(3, 2), inputs=torch.ones(4, 3), items_per_step=4,
                           item_unit="samples")
    with pytest.raises(TypeError, match=r"shape \(4, 2\), not a scalar loss; give the Workload"):
        logits_only.forward_loss()


@pytest.mark.parametrize(("changes", "message"), [
    ({"inputs": [torch.ones(2)]}, "must be a tensor or a mapping of tensors, got list"),
    ({"inputs": {"x": 1.0}}, r"inputs\['x'\]: must map names to tensors, got float"),
    ({"inputs": {}}, "empty mapping"),
    ({"loss_fn": nn.functional.mse_loss}, "a loss_fn needs targets"),
    ({"items_per_step": 0}, "items_per_step: must be a positive integer, got 0"),
])
def test_a_malformed_workload_fails_on_construction(changes: dict, message: str) -> None:
    fields = dict(model=nn.Linear(3, 1), inputs=torch.ones(2, 3), items_per_step=2,
                  item_unit="samples")
    with pytest.raises((TypeError, ValueError), match=message):
        Workload(**{**fields, **changes})


def test_a_keyword_workload_runs_in_a_sweep(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset

    # Workers are fresh processes: the env var tells them to import the test family.
    monkeypatch.setenv("BIGTRAIN_PLUGINS", "keyword_workloads")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO)]))
    preset = write_preset(tmp_path, ["kw:attribute"], optimizers=["adam"])
    outcome = run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="kw"))
    [record] = outcome.records
    assert (record.model, record.status, record.item_unit) == ("kw:attribute", "ok", "tokens")
    assert record.items_per_step == 4 * 6 and record.loss_first is not None


# -- the version stamp ---------------------------------------------------------------------------

MODELS = ["mlp:seed", "cnn:resnet50", "rnn:gru-small", "transformer:gpt2-small"]


def test_the_stamp_is_short_and_tells_sizes_apart() -> None:
    stamps = [workload_version(name) for name in MODELS]
    assert all(len(s) == 12 and int(s, 16) >= 0 for s in stamps)
    assert len(set(stamps)) == len(stamps)
    assert workload_version("mlp") == workload_version("mlp:seed")  # the default size


def test_the_stamp_is_the_same_in_a_fresh_interpreter() -> None:
    code = ("from bigtrain.workloads import workload_version\n"
            f"print(' '.join(workload_version(m) for m in {MODELS!r}))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env=env)
    assert out.stdout.split() == [workload_version(m) for m in MODELS]


def test_the_stamp_changes_with_a_config_field_and_not_with_prose_or_default_batch() -> None:
    ref = resolve_model("transformer:tiny")
    stamp = definition_version(ref.family, ref.size)
    assert definition_version(ref.family, dataclasses.replace(ref.size, seq_len=65)) != stamp
    assert definition_version(ref.family, dataclasses.replace(ref.size, heads=4)) != stamp
    unchanged = dataclasses.replace(ref.size, description="reworded", default_batch_size=99)
    assert definition_version(ref.family, unchanged) == stamp


def test_the_stamp_changes_when_code_the_builder_reaches_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "stamp_probe.py"
    template = textwrap.dedent('''
        import torch
        from torch import nn
        from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(3, 1)

            def forward(self, x):
                return self.linear(x) * SCALE

        def _build(config, *, batch_size, batch_norm, device, seed):
            x = torch.ones(batch_size, 3)
            return Workload(model=Net(), inputs=x, targets=x[:, :1],
                            loss_fn=nn.functional.mse_loss, items_per_step=batch_size,
                            item_unit="samples").to(device)

        FAMILY = WorkloadFamily(name="probe", sizes={"one": SizeConfig(name="one",
                                default_batch_size=2)}, default_size="one", item_unit="samples",
                                build_fn=_build)
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def stamp(scale: str) -> str:
        module.write_text(template.replace("SCALE", scale))
        probe = importlib.reload(sys.modules["stamp_probe"]) if "stamp_probe" in sys.modules \
            else importlib.import_module("stamp_probe")
        return definition_version(probe.FAMILY, probe.FAMILY.sizes["one"])

    try:
        first = stamp("1.0")
        assert stamp("1.0") == first
        assert stamp("2.50") != first  # a change in the model class, not in the builder itself
        assert stamp("1.0  # reworded comment") == first  # comments are not the definition
    finally:
        sys.modules.pop("stamp_probe", None)


def test_the_documented_plugin_example_builds_and_trains(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "docs" / "reference" / "plugins.md").read_text()
    start = text.index("# mypkg/bench.py")
    (tmp_path / "readme_plugin.py").write_text(text[start:text.index("```", start)])
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugin = importlib.import_module("readme_plugin")
        plugin.register_workloads()
        ref = resolve_model("linear:wide")
        assert ref.size.hyperparameters() == {"width": 4096}
        workload = ref.family.build("wide", batch_size=8)
        assert workload.forward_loss().dim() == 0 and len(workload_version("linear:wide")) == 12
    finally:
        sys.modules.pop("readme_plugin", None)
        FAMILIES._items.pop("linear", None)  # leave the registry as the other tests expect it
