"""The TensorFlow backend of the framework axis: Keras twins, optimizers, the measured step.

TensorFlow is an optional extra: the tests that need it ask the module-scoped `tf` fixture, which
skips them cleanly without it (importing TensorFlow takes seconds, so it is imported once). The
missing-package path is faked at the import boundary and runs either way.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch

from bigtrain.cells.matrix import DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import preset_toml, spec_from_preset
from bigtrain.frameworks.base import FLOPS_SOURCES, FrameworkMeasurement
from bigtrain.frameworks.tf_backend import (
    BACKEND,
    FAMILIES,
    INSTALL_LINE,
    keras_optimizer_kwargs,
)
from bigtrain.common.errors import CellSkipped
from bigtrain.workloads import FAMILIES as TORCH_FAMILIES

#: A few steps, no warm-up budget: plumbing, not timing.
SHORT = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=12)
#: Sizes whose twins take 15 s or more (and a gigabyte or more) to build: the slow test.
LARGE = {"mlp:large", "rnn:lstm-medium", "transformer:gpt2-small", "transformer:gpt2-medium"}


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tf_models(tf):
    from bigtrain.frameworks import tf_models

    return tf_models


def cells(tmp_path, *, model, optimizer=("sgd",), **axes):
    """The project's own cells (preset -> spec -> matrix) for the torch framework: the backend
    reads their axis values and never their framework."""
    preset = tmp_path / "tf.toml"
    preset.write_text(preset_toml(model=list(model), optimizer=list(optimizer),
                                  measure={"warmup_s": 0.0, "duration_s": 0.01, "min_steps": 5},
                                  **axes))
    return [c for c in expand(spec_from_preset(str(preset)), DeviceInventory(cuda_count=0))
            if c.status == "pending"]


def one_cell(tmp_path, model, **axes):
    (cell,) = cells(tmp_path, model=[model], **axes)
    return cell


# -- without TensorFlow: the import boundary ------------------------------------------------------
def test_a_missing_tensorflow_names_the_install_line(monkeypatch, tmp_path):
    cell = one_cell(tmp_path, "mlp:seed")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails, as uninstalled
    reason = BACKEND.missing_reason()
    assert reason == f"tensorflow is not installed: {INSTALL_LINE}"
    assert BACKEND.version_info() == {"tensorflow": "not installed"}
    with pytest.raises(CellSkipped, match=INSTALL_LINE.replace("[", r"\[").replace(".", r"\.")):
        BACKEND.measure(cell, SHORT, seed=0)


def test_keras_below_3_is_refused(monkeypatch):
    from bigtrain.frameworks import tf_backend

    monkeypatch.setattr(tf_backend, "_find_spec", lambda module: object())
    monkeypatch.setattr(tf_backend, "_distribution_version",
                        lambda name: "2.15.0" if name == "keras" else None)
    assert "need Keras 3" in BACKEND.missing_reason()


def test_the_backend_names_its_axis_value_and_install_line():
    assert BACKEND.name == "tensorflow"
    assert BACKEND.install_line == "pip install -e '.[tensorflow]'"


def test_the_backend_takes_the_window_hooks_so_instruments_span_only_the_window():
    """Without them the worker's RSS, telemetry and load instruments covered the whole measure
    call: TensorFlow's import, tracing and warm-up included."""
    from bigtrain.run.framework_cell import _takes_window_hooks

    assert _takes_window_hooks(BACKEND)


def test_unsupported_reasons_name_what_tensorflow_runs(tmp_path):
    base = one_cell(tmp_path, "mlp:small", optimizer=("adam",))
    assert BACKEND.unsupported_reason(base) is None
    for change, words in (
        ({"impl": "fused"}, "impl foreach"),
        ({"impl": "forloop"}, "one optimizer implementation"),
        ({"precision": "fp16"}, "LossScaleOptimizer"),
        ({"world_size": 2}, "world_size 1"),
        ({"grad_accum": 2}, "grad_accum 1"),
        ({"checkpointing": "on"}, "checkpointing off"),
        ({"cuda_graphs": "on"}, "cuda_graphs off"),
        ({"optimizer": "lion"}, "sgd, adam, adamw, rmsprop"),
    ):
        reason = BACKEND.unsupported_reason(dataclasses.replace(base, **change))
        assert reason is not None and words in reason, (change, reason)
    for family in TORCH_FAMILIES.names():
        model = f"{family}:{TORCH_FAMILIES.get(family).default_size}"
        reason = BACKEND.unsupported_reason(dataclasses.replace(base, model=model))
        assert (reason is None) == (family in FAMILIES), (model, reason)


def test_a_gpu_cell_needs_the_cuda_build(tmp_path, monkeypatch):
    from bigtrain.frameworks import tf_backend

    cell = dataclasses.replace(one_cell(tmp_path, "mlp:seed"), device="cuda")
    monkeypatch.setattr(tf_backend, "_tf_distribution", lambda: "tensorflow-cpu")
    assert "no CUDA kernels" in BACKEND.unsupported_reason(cell)
    monkeypatch.setattr(tf_backend, "_tf_distribution", lambda: "tensorflow")
    assert BACKEND.unsupported_reason(cell) is None  # decided when measured: CellSkipped if unseen


def test_keras_arguments_carry_torchs_hyperparameters():
    assert keras_optimizer_kwargs("sgd") == {"learning_rate": 0.01, "momentum": 0.9,
                                             "nesterov": False}
    adam = keras_optimizer_kwargs("adam")
    assert (adam["epsilon"], adam["beta_1"], adam["beta_2"]) == (1e-8, 0.9, 0.999)
    assert keras_optimizer_kwargs("adamw", "0.5")["weight_decay"] == 0.01
    assert keras_optimizer_kwargs("adamw", "0.5")["learning_rate"] == 0.5
    assert keras_optimizer_kwargs("rmsprop")["rho"] == 0.99  # torch's alpha; Keras's own is 0.9


# -- with TensorFlow ----------------------------------------------------------------------------
def test_an_installed_tensorflow_reports_its_versions(tf):
    import keras

    assert BACKEND.missing_reason() is None
    info = BACKEND.version_info()
    assert info["tensorflow"] == tf.__version__
    assert info["keras"] == keras.__version__


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_keras_optimizers_take_torchs_steps(tf, optimizer):
    """Three updates of one parameter under fixed gradients land where torch's land."""
    import keras

    from bigtrain.frameworks.tf_backend import _keras_optimizer
    from bigtrain.training.optim import build_optimizer, resolve_optimizer

    rng = np.random.default_rng(3)
    start = rng.standard_normal(6).astype(np.float32)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(3)]
    param = torch.nn.Parameter(torch.tensor(start))
    _, torch_step = build_optimizer(resolve_optimizer(optimizer), "foreach", [param])
    variable = keras.Variable(start)
    keras_opt = _keras_optimizer(optimizer, "default")
    for grad in grads:
        param.grad = torch.tensor(grad)
        torch_step()
        keras_opt.apply([tf.constant(grad)], [variable])
    np.testing.assert_allclose(np.asarray(variable), param.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(start, param.detach().numpy())  # the steps moved it


def _torch_params(model: str, batch_norm: bool) -> int:
    """The torch model's own count; its cnn, rnn and transformer nets are built on the meta device
    (no memory: GPT-2 medium is 350M parameters)."""
    from bigtrain.workloads import resolve_model
    from bigtrain.workloads.cnn import ResidualNet
    from bigtrain.workloads.rnn import RecurrentLM
    from bigtrain.workloads.transformer import GPT

    ref = resolve_model(model)
    if ref.family.name == "mlp":  # its net is built together with its batch: a batch of one
        net = ref.family.build(ref.size.name, batch_size=1, batch_norm=batch_norm).model
    else:
        with torch.device("meta"):
            net = {"cnn": lambda: ResidualNet(ref.size, batch_norm and ref.size.has_batch_norm),
                   "rnn": lambda: RecurrentLM(ref.size),
                   "transformer": lambda: GPT(ref.size)}[ref.family.name]()
    return sum(p.numel() for p in net.parameters())


def _twin_models():
    out = []
    for family in FAMILIES:
        for size, config in TORCH_FAMILIES.get(family).sizes.items():
            for bn in ((True, False) if config.has_batch_norm else (False,)):
                out.append((f"{family}:{size}", bn))
    return out


def _param_parity(tf_models, model: str, batch_norm: bool) -> None:
    from bigtrain.workloads import resolve_model

    ref = resolve_model(model)
    twin = tf_models.build(ref.family.name, ref.size, batch_size=2, batch_norm=batch_norm, seed=0)
    assert tf_models.trainable_param_count(twin.model) == _torch_params(model, batch_norm), model


@pytest.mark.parametrize(("model", "batch_norm"),
                         [m for m in _twin_models() if m[0] not in LARGE])
def test_every_twin_has_its_torch_models_parameter_count(tf_models, model, batch_norm):
    _param_parity(tf_models, model, batch_norm)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "batch_norm"), [m for m in _twin_models() if m[0] in LARGE])
def test_every_large_twin_has_its_torch_models_parameter_count(tf_models, model, batch_norm):
    _param_parity(tf_models, model, batch_norm)


def test_a_twin_is_the_same_for_the_same_seed(tf_models):
    from bigtrain.workloads import resolve_model

    ref = resolve_model("mlp:seed")
    first, again, other = (tf_models.build("mlp", ref.size, batch_size=4, batch_norm=False,
                                           seed=seed) for seed in (1, 1, 2))
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.inputs, again.inputs)
    assert not np.array_equal(first.inputs, other.inputs)


def _check_fields(result: FrameworkMeasurement, cell) -> None:
    assert len(result.step_times_s) >= SHORT.min_steps
    assert all(t > 0 for t in result.step_times_s)
    assert len(result.losses) == len(result.step_times_s)
    assert all(math.isfinite(x) for x in result.losses)
    assert result.compile_s is not None and result.compile_s > 0
    assert result.warmup_s > 0
    assert result.samples_per_step == cell.batch_size
    assert result.flops_source in FLOPS_SOURCES
    assert result.peak_memory_bytes is None  # a CPU cell: TensorFlow keeps no peak there
    assert set(result.threads) >= {"intra_op", "inter_op", "note"}
    assert result.versions["keras_backend"] == "tensorflow"
    assert result.versions["device"] == "cpu"


def test_a_measured_cell_fills_the_contract_and_its_loss_falls(tf, tmp_path):
    cell = one_cell(tmp_path, "mlp:seed")  # the 10 -> 20 -> 1 regression net, SGD momentum 0.9
    events: list[str] = []
    result = BACKEND.measure(cell, SHORT, seed=0, on_window_open=lambda: events.append("open"),
                             on_window_close=lambda: events.append("close"))
    assert events == ["open", "close"]  # the worker's instruments span the window only
    _check_fields(result, cell)
    assert result.param_count == 10 * 20 + 20 + 20 * 1 + 1
    assert result.losses[-1] < 0.5 * result.losses[0]
    # The torch twin's count: forward 2*B*(10*20 + 20*1); backward the weight gradients of both
    # layers and the input gradient of the second (the batch needs none).
    # (TensorFlow's own count is another convention: the backend leaves it to the run side)
    from bigtrain.run.measured import torch_twin_flops

    batch = cell.batch_size
    assert result.flops_per_step is None and result.flops_source == "none"
    assert torch_twin_flops(cell) == 2 * (2 * batch * (10 * 20 + 20)) + 2 * batch * 20
    assert "graph executor" in result.versions["train_step"]
    torch_threads = result.threads["torch_intra_op"]
    if result.threads["note"].startswith("set"):
        assert result.threads["intra_op"] == torch_threads


@pytest.mark.parametrize(("model", "optimizer", "axes"), [
    ("mlp:small", "adamw", {"batch_norm": ["on"], "compile": ["on"]}),
    ("cnn:tiny", "sgd", {"batch_norm": ["on"]}),
    ("cnn:tiny", "rmsprop", {"batch_norm": ["off"]}),
    ("transformer:tiny", "adam", {}),
    ("rnn:gru-tiny", "sgd", {}),
    ("rnn:lstm-tiny", "adam", {"batch_size": [4]}),
])
def test_each_family_measures_and_learns_its_fixed_batch(tf, tmp_path, monkeypatch, model,
                                                         optimizer, axes):
    # gru-small (the rnn family's one GRU) takes a minute here: a GRU as small as lstm-tiny
    # stands in, registered as a plugin's size would be.
    from bigtrain.workloads import rnn

    monkeypatch.setitem(rnn.FAMILY.sizes, "gru-tiny", rnn.RNNSize(
        name="gru-tiny", default_batch_size=4, cell="gru", vocab=64, embed=16, hidden=32,
        layers=2, seq_len=8))
    cell = one_cell(tmp_path, model, optimizer=(optimizer,), **axes)
    result = BACKEND.measure(cell, SHORT, seed=0)
    _check_fields(result, cell)
    assert result.param_count == _torch_params(model, cell.batch_norm == "on")
    assert result.losses[-1] < result.losses[0]
    assert ("XLA" in result.versions["train_step"]) == (cell.compile == "on")


def test_bf16_twins_compute_in_bf16_and_keep_fp32_weights_and_loss(tf, tf_models):
    """The bf16 precision is Keras's mixed_bfloat16 policy: bf16 compute, fp32 variables, and the
    loss taken on fp32 logits."""
    from bigtrain.workloads import resolve_model

    ref = resolve_model("mlp:small")
    twin = tf_models.build("mlp", ref.size, batch_size=8, batch_norm=True, seed=0,
                           dtype_policy="mixed_bfloat16")
    outputs = twin.model(tf.constant(twin.inputs), training=True)
    assert outputs.dtype == tf.bfloat16
    assert {v.dtype for v in twin.model.trainable_weights} == {"float32"}
    loss = twin.loss_fn(outputs, tf.constant(twin.targets))
    assert loss.dtype == tf.float32 and math.isfinite(float(loss))


def test_the_torch_form_lstm_cell_computes_torchs_lstm(tf, tf_models):
    """With torch's weights copied in (W_ih, W_hh transposed; b_ih, b_hh), the Keras cell under
    Keras's RNN loop gives torch's LSTM outputs: same gates, same order, both biases."""
    import keras

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 7, batch_first=True)
    x = torch.randn(3, 4, 5)
    expected, _ = lstm(x)
    cell = tf_models.TorchFormLSTMCell(7, unit_forget_bias=False)
    layer = keras.layers.RNN(cell, return_sequences=True)
    layer.build((3, 4, 5))
    cell.kernel.assign(lstm.weight_ih_l0.detach().numpy().T)
    cell.recurrent_kernel.assign(lstm.weight_hh_l0.detach().numpy().T)
    cell.bias.assign(lstm.bias_ih_l0.detach().numpy())
    cell.recurrent_bias.assign(lstm.bias_hh_l0.detach().numpy())
    got = layer(tf.constant(x.numpy()))
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
