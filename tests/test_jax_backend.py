"""Issue 28, the `jax` framework: Flax NNX twins with the torch models' parameter counts, Optax
optimizers that take the same steps as torch's at the registry's settings, the cells its backend
cannot run marked before anything runs, and real jax cells measured through a sweep (plumbing: no
timing is asserted)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import numpy as np
import torch
from conftest import REPO

from bigtrain.cells.matrix import Cell, DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import spec_from_preset
from bigtrain.frameworks.jax_backend import BACKEND, TWIN_FAMILIES, optax_twin
from bigtrain.frameworks.jax_models import abstract_param_count
from bigtrain.results.store import load_run
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.training.optim import OPTIMIZERS, build_optimizer, resolve_optimizer
from bigtrain.workloads import FAMILIES, resolve_model

CPU_ONLY = DeviceInventory(cuda_count=0)


def _torch_param_count(family_name: str, size_name: str, batch_norm: bool) -> int:
    """The torch twin's trainable parameters, its model built on the meta device (no memory)."""
    family = FAMILIES.get(family_name)
    size = family.sizes[size_name]
    from bigtrain.workloads import cnn, mlp, rnn, transformer

    if family_name == "mlp":  # built inside its family's build (data too): on a tiny batch
        return sum(p.numel() for p in mlp._build(size, batch_size=1, batch_norm=batch_norm,
                                                 device=torch.device("cpu"),
                                                 seed=0).model.parameters())
    with torch.device("meta"):
        model = (cnn.ResidualNet(size, batch_norm) if family_name == "cnn"
                 else rnn.RecurrentLM(size) if family_name == "rnn" else transformer.GPT(size))
    return sum(p.numel() for p in model.parameters())


def _supported_sizes() -> list[tuple[str, str, bool]]:
    out = []
    for family_name, family in FAMILIES:
        if family_name not in TWIN_FAMILIES:
            continue
        for size_name, size in family.sizes.items():
            for batch_norm in ((True, False) if size.has_batch_norm else (False,)):
                if family_name == "mlp" and size_name == "large":
                    continue  # 235M parameters built for real on the CPU: counted apart below
                out.append((family_name, size_name, batch_norm))
    return out


@pytest.mark.parametrize("family, size, batch_norm", _supported_sizes())
def test_every_twin_has_its_torch_models_parameter_count(family: str, size: str,
                                                         batch_norm: bool) -> None:
    config = FAMILIES.get(family).sizes[size]
    assert abstract_param_count(family, config, batch_norm=batch_norm) == \
        _torch_param_count(family, size, batch_norm)


def test_the_backend_names_exactly_the_families_the_models_module_builds() -> None:
    from flax import nnx

    from bigtrain.frameworks.jax_models import make_model

    for family in TWIN_FAMILIES:
        size = FAMILIES.get(family).sizes[FAMILIES.get(family).default_size]
        assert isinstance(nnx.eval_shape(lambda f=family, s=size: make_model(
            f, s, batch_norm=False, dtype=None, rngs=nnx.Rngs(0))), nnx.Module)
    with pytest.raises(ValueError, match="no Flax twin of family 'tv'; valid: mlp, cnn, "
                                         "transformer, rnn"):
        make_model("tv", None, batch_norm=False, dtype=None, rngs=nnx.Rngs(0))


def test_the_seed_net_and_the_large_mlp_count_as_torch_does() -> None:
    seed = FAMILIES.get("mlp").sizes["seed"]
    assert abstract_param_count("mlp", seed, batch_norm=False) == 10 * 20 + 20 + 20 + 1 == 241
    large = FAMILIES.get("mlp").sizes["large"]  # torch: Linear(no bias) + BN(2 per unit) per layer
    widths = (4096, *large.hidden)
    expected = sum(a * b + 2 * b for a, b in itertools.pairwise(widths)) + 8192 * 1000 + 1000
    assert abstract_param_count("mlp", large, batch_norm=True) == expected


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_each_optax_twin_takes_the_steps_torch_takes_at_the_registry_settings(name: str) -> None:
    import jax.numpy as jnp
    import optax

    start = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    grads = [np.array(g, dtype=np.float32) for g in
             ([0.3, -0.1, 0.2, 0.05], [0.1, 0.4, -0.3, 0.2], [-0.2, 0.1, 0.1, -0.4])]
    weight = torch.nn.Parameter(torch.tensor(start))
    _, step = build_optimizer(resolve_optimizer(name), "foreach", [weight])
    params = jnp.asarray(start)
    tx = optax_twin(name)
    state = tx.init(params)
    for grad in grads:
        weight.grad = torch.tensor(grad)
        step()
        updates, state = tx.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
    moved = weight.detach().numpy() - start
    assert np.abs(moved).max() > 1e-4  # the optimizer did move the weights
    np.testing.assert_allclose(np.asarray(params), weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert set(OPTIMIZERS.names()) >= {"sgd", "adam", "adamw", "rmsprop"}


def _cell(**axes) -> Cell:
    base = {"cell_id": "c", "model": "mlp:seed", "optimizer": "sgd", "impl": "foreach",
            "batch_norm": "n/a", "precision": "fp32", "device": "cpu", "batch_size": 64,
            "compile": "off", "framework": "jax"}
    return Cell(**{**base, **axes})


@pytest.mark.parametrize("axes, words", [
    ({"model": "tv:resnet18-tiny"}, "no Flax twin of the tv family"),
    ({"impl": "fused"}, "impl 'fused' has no jax counterpart"),
    ({"precision": "fp16"}, "precision 'fp16' has no jax twin"),
    ({"compile": "on"}, "always compiled whole"),
    ({"grad_accum": 2}, "grad_accum 2 is a torch lever"),
    ({"world_size": 2}, "world_size 2 is a torch lever"),
])
def test_cells_the_backend_cannot_run_are_unsupported_with_a_reason(axes: dict,
                                                                    words: str) -> None:
    assert words in BACKEND.unsupported_reason(_cell(**axes))
    assert BACKEND.unsupported_reason(_cell()) is None
    assert BACKEND.unsupported_reason(_cell(model="cnn:tiny", batch_norm="on",
                                            precision="bf16", optimizer="adamw")) is None


def test_the_matrix_marks_a_family_without_a_twin_before_anything_runs() -> None:
    spec = spec_from_preset("ci", {"model": "tv:resnet18-tiny,mlp:seed", "optimizer": "adam",
                                   "precision": "fp32", "device": "cpu", "framework": "jax"})
    by_model = {c.model: c for c in expand(spec, CPU_ONLY)}
    assert by_model["tv:resnet18-tiny"].status == "unsupported"
    assert "no Flax twin" in by_model["tv:resnet18-tiny"].reason
    assert by_model["mlp:seed"].status == "pending"


def test_one_cell_measures_with_compile_time_cost_analysis_and_threads() -> None:
    settings = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=4)
    opened: list[str] = []
    measurement = BACKEND.measure(_cell(optimizer="adam"), settings, 0,
                                  on_window_open=lambda: opened.append("open"),
                                  on_window_close=lambda: opened.append("close"))
    assert opened == ["open", "close"]
    assert len(measurement.step_times_s) >= 4 and all(t > 0 for t in measurement.step_times_s)
    assert measurement.compile_s > 0 and measurement.param_count == 241
    assert measurement.flops_source == "framework-cost-analysis" and measurement.flops_per_step > 0
    assert len(measurement.losses) == len(measurement.step_times_s)
    assert all(np.isfinite(measurement.losses))
    assert measurement.losses[-1] < measurement.losses[0]  # adam on a linear target learns
    assert measurement.threads["torch_intra_op_threads"] >= 1
    assert measurement.versions["jax"] and measurement.versions["backend"] == "cpu"


def test_bf16_cells_compute_in_bf16_and_keep_fp32_parameters() -> None:
    import jax
    from flax import nnx

    from bigtrain.frameworks.jax_models import build_twin

    ref = resolve_model("mlp:digits")
    twin = build_twin("mlp", ref.size, batch_size=4, batch_norm=True, dtype=jax.numpy.bfloat16,
                      seed=0, device=jax.devices("cpu")[0])
    params = jax.tree.leaves(nnx.state(twin.model, nnx.Param))
    assert {p.dtype for p in params} == {np.dtype("float32")}
    assert twin.model(twin.inputs).dtype == jax.numpy.bfloat16


def test_a_sweep_runs_torch_and_jax_twins_in_separate_workers(tmp_path) -> None:
    spec = spec_from_preset("ci", {"model": "mlp:seed,mlp:digits", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cpu",
                                   "framework": "torch,jax", "warmup_s": 0.0,
                                   "duration_s": 0.02, "min_steps": 3})
    spec = dataclasses.replace(spec, measure=dataclasses.replace(spec.measure, repeats=1))
    outcome = run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="fw"))
    run = load_run(outcome.run_dir)
    by = {(r.model, r.framework): r for r in run.records}
    assert len(by) == 4 and all(r.status == "ok" for r in by.values()), \
        [(r.model, r.framework, r.status, r.reason) for r in run.records]
    for model in ("mlp:seed", "mlp:digits"):
        torch_record, jax_record = by[(model, "torch")], by[(model, "jax")]
        assert jax_record.param_count == torch_record.param_count
        assert jax_record.items_per_step == torch_record.items_per_step
        assert jax_record.framework_version and jax_record.compile_s > 0
        assert jax_record.flops_source == "framework-cost-analysis"
        assert torch_record.framework_version is None and torch_record.compile_s is None
        assert jax_record.worker_pid != torch_record.worker_pid
    assert by[("mlp:seed", "jax")].worker_pid == by[("mlp:digits", "jax")].worker_pid


def test_a_one_thread_torch_setting_gives_the_jax_worker_one_core_before_jax_starts() -> None:
    import json
    import os
    import subprocess
    import sys

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable cores to see the mask shrink")
    code = ("import json, os\nfrom bigtrain.frameworks.jax_backend import configure_cpu_threads\n"
            "threads = configure_cpu_threads()\nimport jax\njax.devices()\n"
            "print(json.dumps({**threads, 'mask': len(os.sched_getaffinity(0))}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XLA_FLAGS": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, check=True, timeout=120)
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert threads["torch_intra_op_threads"] == 1 and threads["mask"] == 1
    assert threads["cpu_affinity"] == 1 and threads["matched_by"] == "affinity mask"
    assert "intra_op_parallelism_threads=1" in threads["xla_flags"]


def test_a_batch_norm_cell_trains_its_statistics_inside_the_jitted_step() -> None:
    settings = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=3)
    cell = _cell(model="mlp:digits", batch_norm="on", batch_size=16)
    measurement = BACKEND.measure(cell, settings, 0)
    assert measurement.param_count == _torch_param_count("mlp", "digits", True)
    assert all(np.isfinite(measurement.losses)) and len(measurement.losses) >= 3


def test_bigbench_list_frameworks_shows_jaxs_versions_and_devices() -> None:
    from conftest import run_cli

    result = run_cli("list", "frameworks")
    assert result.exit_code == 0, result.output
    [jax_line] = [line for line in result.output.splitlines() if line.strip().startswith("jax ")]
    assert "installed: jax 0.10.2" in jax_line and "flax 0.12.8" in jax_line
    assert "backend cpu; devices: cpu:0" in result.output  # asked in a fresh interpreter


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_recurrent_twin_computes_torchs_lstm_and_gru(cell: str) -> None:
    """torch's own layer's weights copied into the twin give torch's outputs: the same equations,
    gate order and both bias vectors."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from bigtrain.frameworks.jax_models import TorchFormRecurrent

    torch.manual_seed(0)
    layer = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(6, 5, batch_first=True)
    twin = TorchFormRecurrent(cell, 6, 5, None, nnx.Rngs(0))
    twin.w_ih[...] = jnp.asarray(layer.weight_ih_l0.detach().numpy().T)
    twin.w_hh[...] = jnp.asarray(layer.weight_hh_l0.detach().numpy().T)
    twin.b_ih[...] = jnp.asarray(layer.bias_ih_l0.detach().numpy())
    twin.b_hh[...] = jnp.asarray(layer.bias_hh_l0.detach().numpy())
    x = torch.randn(3, 7, 6)
    expected, _ = layer(x)
    got = np.asarray(twin(jnp.asarray(x.numpy())))
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_an_rnn_cell_measures_and_learns_its_fixed_batch() -> None:
    job_cell = _cell(model="rnn:copy", batch_size=8, optimizer="adam", batch_norm="n/a")
    settings = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=20)
    result = BACKEND.measure(job_cell, settings, seed=0)
    assert len(result.step_times_s) >= 20 and result.compile_s > 0
    assert result.param_count == _torch_param_count("rnn", "copy", False)
    assert result.losses[-1] < result.losses[0]
