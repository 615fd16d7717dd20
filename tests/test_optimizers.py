"""The widened optimizer axis (issue 25): registry entries, per-cell hyper-parameters, honest
implementations, packages behind the `optimizers` extra (and their absence), Muon's split,
Schedule-Free's train/eval modes, and the memory anatomy checked where it is known exactly."""

from __future__ import annotations

import importlib.util

import pytest
import tomllib
import torch
from conftest import REPO, run_cli
from torch import nn

from bigtrain.cells.matrix import cell_id_for
from bigtrain.cells.spec import preset_toml
from bigtrain.common.errors import BadInput
from bigtrain.measure.anatomy import (
    optimizer_state_by_dtype,
    parameter_bytes,
    saved_activation_bytes,
)
from bigtrain.results.store import load_run
from bigtrain.training import optim_packages
from bigtrain.training.muon import MuonWithAdamW, split_parameters
from bigtrain.training.optim import (
    OPTIMIZERS,
    build_optimizer,
    canonical_optimizer,
    needs_train_eval_modes,
    optimizer_provenance,
    resolve_optimizer,
    set_train_mode,
    spec_impls,
    unsupported_reason,
)

NEW = ("adafactor", "muon", "nadam", "radam", "lion", "schedulefree-adamw", "soap", "shampoo",
       "adamw8bit")


def _installed(distribution: str) -> bool:
    return optim_packages.missing_reason(distribution) is None


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def _one_step(spec_text: str, model: nn.Module, impl: str | None = None):
    spec = resolve_optimizer(spec_text)
    optimizer, step = build_optimizer(spec, impl or spec_impls(spec)[0], model)
    inputs = torch.randn(8, 16)
    for _ in range(2):
        nn.functional.mse_loss(model(inputs), torch.zeros(8, 4)).backward()
        step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer


# -- the registry ---------------------------------------------------------------------------------
def test_every_new_optimizer_is_registered_and_the_old_ones_keep_their_names():
    names = OPTIMIZERS.names()
    assert names[:4] == ["sgd", "adam", "adamw", "rmsprop"]
    assert set(NEW) <= set(names)


def test_the_extra_pins_exactly_the_packages_the_module_resolves():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = pyproject["project"]["optional-dependencies"]["optimizers"]
    assert all("==" in pin for pin in pins)
    assert {pin.split("==")[0] for pin in pins} == set(optim_packages.PACKAGES)
    assert "optimizers" in (REPO / "setup.sh").read_text()


def test_a_bare_name_keeps_its_cell_id_and_hyper_parameters_make_a_new_one():
    axes = {"model": "mlp:seed", "optimizer": canonical_optimizer("adamw"), "impl": "foreach"}
    assert axes["optimizer"] == "adamw"
    plain = cell_id_for(axes)
    tuned = cell_id_for({**axes, "optimizer": canonical_optimizer("adamw:weight_decay=0.1")})
    assert plain != tuned
    # two spellings of one setting are one cell
    assert (canonical_optimizer("adamw:weight_decay=1e-1:lr=3e-4")
            == canonical_optimizer("adamw:lr=0.0003:weight_decay=0.1")
            == "adamw:lr=0.0003:weight_decay=0.1")
    spec = resolve_optimizer("adamw:weight_decay=0.1:betas=0.9/0.95")
    assert spec.name == "adamw"
    assert spec.hyperparams == {"lr": 1e-3, "weight_decay": 0.1, "betas": (0.9, 0.95)}
    optimizer, _ = build_optimizer(spec, "foreach", _mlp())
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)


@pytest.mark.parametrize("text, named", [
    ("adamw:momentum=0.9", "'momentum'"),
    ("adamw:lr=fast", "lr='fast'"),
    ("adamw:weight_decay", "'weight_decay' is not key=value"),
    ("muon:ns_steps=2.5", "ns_steps='2.5' is not a whole number"),
    ("adamw:lr=1:lr=2", "lr is given twice"),
])
def test_a_bad_hyper_parameter_names_the_value_and_the_valid_keys(text, named):
    with pytest.raises(BadInput) as caught:
        canonical_optimizer(text, "--optimizer")
    message = str(caught.value)
    assert "--optimizer" in message and named in message
    if "twice" not in named:
        assert "weight_decay (float)" in message  # the keys it does take


def test_a_bad_hyper_parameter_on_the_command_line_exits_2(tmp_path):
    result = run_cli("sweep", "--model", "mlp:seed", "--optimizer", "adamw:weight_decay=0.1,"
                     "sgd:gamma=2", "--dry-run", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "gamma" in result.output and "Traceback" not in result.output


# -- implementations ----------------------------------------------------------------------------
def test_impossible_optimizer_impl_pairs_are_unsupported_with_a_reason():
    muon = resolve_optimizer("muon")
    assert spec_impls(muon) == ("forloop",)
    assert "runs only as forloop" in unsupported_reason(muon, "foreach", "cpu")
    assert "native names a package" in unsupported_reason(resolve_optimizer("adamw"), "native",
                                                           "cpu")
    assert unsupported_reason(resolve_optimizer("adafactor"), "foreach", "cpu") is None
    assert "no fused Adafactor" in unsupported_reason(resolve_optimizer("adafactor"), "fused",
                                                      "cpu")
    lion = resolve_optimizer("lion")
    if _installed("lion-pytorch"):
        assert "runs only as native" in unsupported_reason(lion, "foreach", "cpu")
        assert unsupported_reason(lion, "native", "cpu") is None


def test_a_missing_package_is_bad_input_with_the_install_line(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lion_pytorch" else real(name, *a))
    reason = unsupported_reason(resolve_optimizer("lion"), "native", "cpu")
    assert reason == "the lion-pytorch package is not installed: pip install -e '.[optimizers]'"
    with pytest.raises(optim_packages.MissingPackage, match=r"\.\[optimizers\]"):
        build_optimizer(resolve_optimizer("lion"), "native", _mlp())
    # hyper-parameters cannot be checked without the package: bad input, with the install line
    with pytest.raises(BadInput, match=r"pip install -e '\.\[optimizers\]'"):
        canonical_optimizer("lion:lr=3e-4")
    # named in a sweep: exit 2 with the install line, before anything runs or is written
    result = run_cli("sweep", "--model", "mlp:seed", "--optimizer", "sgd,lion", "--impl", "native",
                     "--dry-run", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "optimizer lion: the lion-pytorch package is not installed" in result.output
    assert "pip install -e '.[optimizers]'" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def test_provenance_names_torch_or_the_package():
    assert optimizer_provenance(resolve_optimizer("muon")) == ("torch", torch.__version__)
    package, version = optimizer_provenance(resolve_optimizer("adamw8bit"))
    assert package == "torchao"
    assert (version is not None) == _installed("torchao")


# -- Muon ---------------------------------------------------------------------------------------
def test_muon_takes_hidden_matrices_and_leaves_embeddings_head_biases_norms_to_adamw():
    from bigtrain.workloads import resolve_model

    ref = resolve_model("transformer:tiny")
    workload = ref.family.build(ref.size.name, batch_size=2, batch_norm=False,
                                device=torch.device("cpu"), seed=0)
    model = workload.model
    muon, adamw, split = split_parameters(model)
    adamw_ids = {id(p) for p in adamw}
    assert id(model.token_embed.weight) in adamw_ids  # tied to the head
    assert id(model.position_embed.weight) in adamw_ids
    assert all(id(p) in adamw_ids for p in model.norm.parameters())
    assert all(p.ndim == 2 for p in muon) and muon
    assert split.muon_params + split.adamw_params == sum(p.numel() for p in model.parameters())
    # one shared state: Muon's momentum (1x) on its matrices, AdamW's two moments (2x) + counters
    optimizer = _one_step_lm(model, workload)
    state = sum(optimizer_state_by_dtype(optimizer).values())
    assert state == 4 * split.muon_params + 8 * split.adamw_params + 4 * split.adamw_tensors
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.split == split


def _one_step_lm(model, workload) -> MuonWithAdamW:
    optimizer, step = build_optimizer(resolve_optimizer("muon"), "forloop", model)
    workload.forward_loss().backward()
    step()
    optimizer.zero_grad(set_to_none=True)
    return optimizer


def test_the_lr_axis_reaches_both_muon_groups():
    from bigtrain.run.build import set_learning_rate

    optimizer, _ = build_optimizer(resolve_optimizer("muon"), "forloop", _mlp())
    set_learning_rate(optimizer, "0.02")
    assert {g["lr"] for g in optimizer.muon.param_groups + optimizer.adamw.param_groups} == {0.02}


def test_the_lr_axis_fills_a_tensor_lr_in_place():
    """torchao's 8-bit AdamW keeps its lr as a tensor and refuses a float in its place (found by
    `converge --tune-lr`, whose trials set the lr): the axis writes into the tensor instead."""
    from bigtrain.run.build import set_learning_rate

    parameter = torch.nn.Parameter(torch.ones(3))
    tensor_lr = torch.tensor(0.001)
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    optimizer.param_groups[0]["lr"] = tensor_lr
    assert set_learning_rate(optimizer, "0.02") == pytest.approx(0.02)
    assert optimizer.param_groups[0]["lr"] is tensor_lr and float(tensor_lr) == pytest.approx(0.02)


# -- the anatomy where it is known exactly --------------------------------------------------------
@pytest.mark.parametrize("name, ratio", [("adam", 2.0), ("adamw", 2.0), ("nadam", 2.0),
                                         ("radam", 2.0), ("sgd", 1.0), ("rmsprop", 1.0)])
def test_elementwise_state_is_an_exact_multiple_of_the_parameters(name, ratio):
    model = _mlp()
    optimizer = _one_step(name, model)
    params, grads = parameter_bytes(model)
    assert params == grads == 4 * sum(p.numel() for p in model.parameters())
    by_dtype = optimizer_state_by_dtype(optimizer)
    counters = 6 * 4 if name in ("adam", "adamw", "radam") else 0  # one fp32 step per tensor
    if name == "nadam":
        counters = 6 * 4 * 2  # step and mu_product
    if name == "rmsprop":
        counters = 6 * 4
    assert by_dtype == {"float32": int(ratio * params) + counters}


def test_adafactor_state_is_far_below_the_parameters_for_matrices():
    model = nn.Sequential(nn.Linear(256, 256, bias=False), nn.Linear(256, 256, bias=False))
    optimizer, step = build_optimizer(resolve_optimizer("adafactor"), "foreach", model)
    model(torch.randn(4, 256)).sum().backward()
    step()
    params, _ = parameter_bytes(model)
    state = sum(optimizer_state_by_dtype(optimizer).values())
    # a row and a column factor (256 + 256 floats) and a step counter per 256x256 matrix
    assert state == 2 * (256 + 256) * 4 + 2 * 4
    assert state / params < 0.01


@pytest.mark.skipif(not _installed("torchao"), reason="needs the optimizers extra (torchao)")
def test_8bit_state_is_counted_from_its_codes_and_scales_not_its_logical_dtype():
    from torchao.optim.subclass_8bit import OptimState8bit

    moment = OptimState8bit.zeros((512, 512), True, 256, "cpu")
    assert moment.dtype == torch.float32  # what a naive numel * element_size would count: 1 MiB
    holder = type("Optimizer", (), {"state": {"p": {"exp_avg": moment, "step": torch.zeros(())}}})
    by_dtype = optimizer_state_by_dtype(holder)
    qmap = moment.qmap.numel() * 4
    assert by_dtype == {"uint8": 512 * 512, "float32": 512 * 512 // 256 * 4 + qmap + 4}


@pytest.mark.slow  # torchao compiles its step (about 10 s on a 2-core CPU)
@pytest.mark.skipif(not _installed("torchao"), reason="needs the optimizers extra (torchao)")
def test_8bit_adamw_holds_one_byte_per_moment_plus_its_block_scales():
    model = nn.Sequential(nn.Linear(512, 512, bias=False))
    optimizer = _one_step_8bit(model)
    params, _ = parameter_bytes(model)
    by_dtype = optimizer_state_by_dtype(optimizer)
    assert by_dtype["uint8"] == 2 * 512 * 512  # two moments, one byte per element
    ratio = sum(by_dtype.values()) / params
    assert 0.5 < ratio < 0.52  # 0.5 plus fp32 scales per 256-element block and a step counter


def _one_step_8bit(model):
    optimizer, step = build_optimizer(resolve_optimizer("adamw8bit"), "native", model)
    model(torch.randn(4, 512)).sum().backward()
    step()
    return optimizer


def test_saved_activations_scale_with_the_batch_and_leave_out_parameters():
    class Step:
        micro_batches = 1

        def __init__(self, batch):
            self.workload = type("W", (), {})()
            self.workload.model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
            self.workload.inputs = torch.randn(batch, 16)
            self.workload.targets = None
            self.workload.forward_loss = lambda: self.workload.model(self.workload.inputs).sum()

        def autocast(self):
            return torch.autocast("cpu", enabled=False)

    small, large = saved_activation_bytes(Step(32)), saved_activation_bytes(Step(64))
    assert small == 32 * 64 * 4  # the ReLU output, saved once for ReLU and the second Linear
    assert large == 2 * small


# -- Schedule-Free -------------------------------------------------------------------------------
@pytest.mark.skipif(not _installed("schedulefree"), reason="needs the optimizers extra")
def test_schedulefree_evaluates_other_weights_than_it_trains():
    assert needs_train_eval_modes("schedulefree-adamw") and not needs_train_eval_modes("adamw")
    model = _mlp()
    optimizer = _one_step("schedulefree-adamw", model, "foreach")  # built in train mode
    training = [p.detach().clone() for p in model.parameters()]
    set_train_mode(optimizer, False)
    evaluated = [p.detach().clone() for p in model.parameters()]
    set_train_mode(optimizer, True)
    assert any(not torch.equal(a, b) for a, b in zip(training, evaluated))
    # back in training mode, the training weights again (up to the rounding of two lerps)
    assert all(torch.allclose(a, p, atol=1e-6) for a, p in zip(training, model.parameters()))


def test_set_train_mode_is_a_no_op_for_optimizers_without_modes():
    optimizer = _one_step("adamw", _mlp())
    set_train_mode(optimizer, False)  # torch's optimizers have no train/eval: nothing happens


# -- a real sweep records provenance and anatomy -------------------------------------------------
def test_a_real_sweep_records_package_and_anatomy(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text(preset_toml(
        model=["mlp:seed"], optimizer=["sgd", "muon", "adamw:weight_decay=0.1"],
        impl=["forloop"], measure={"warmup_s": 0.02, "duration_s": 0.05, "min_steps": 3,
                                   "repeats": 1, "cell_timeout_s": 60}))
    result = run_cli("sweep", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "r",
                     "--no-report")
    assert result.exit_code == 0, result.output
    records = {r.optimizer: r for r in load_run(tmp_path / "r").records}
    assert set(records) == {"sgd", "muon", "adamw:weight_decay=0.1"}
    for record in records.values():
        assert record.status == "ok"
        assert record.optimizer_package == "torch"
        assert record.optimizer_package_version == torch.__version__
        assert record.param_bytes == record.grad_bytes == 4 * record.param_count
        assert record.activation_bytes > 0 and "saved for backward" in record.activation_method
    assert records["sgd"].optimizer_state_ratio == 1.0
    adamw = records["adamw:weight_decay=0.1"]
    assert adamw.optimizer_state_dtype_bytes == {"float32": adamw.optimizer_state_bytes}
    assert adamw.optimizer_state_bytes == 2 * adamw.param_bytes + 4 * 4  # + 4 step counters
    muon = records["muon"]
    assert muon.muon_params == 10 * 20 and muon.muon_adamw_params == 20 + 20 + 1
    assert records["sgd"].muon_params is None


@pytest.mark.skipif(not _installed("schedulefree"), reason="needs the optimizers extra")
def test_a_schedulefree_converge_cell_steps_again_after_each_evaluation(tmp_path):
    # Schedule-Free refuses to step in eval mode: a cell that evaluates at steps 1, 2, 3 and
    # trains on after each only finishes if the loop put it back in training mode every time.
    preset = tmp_path / "c.toml"
    preset.write_text(preset_toml(
        model=["mlp:seed"], optimizer=["schedulefree-adamw"], impl=["foreach"],
        measure={"repeats": 1, "seed": 5, "cell_timeout_s": 120},
        converge={"max_steps": 4, "max_time_s": 30, "eval_every": 1}))
    result = run_cli("converge", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "sf",
                     "--no-report")
    assert result.exit_code == 0, result.output
    [record] = load_run(tmp_path / "sf").records
    assert record.status in ("ok", "not_reached"), record.reason
    assert record.curve["step"][:3] == [1.0, 2.0, 3.0]
    assert record.optimizer_package == "schedulefree"
    assert record.optimizer_package_version == optim_packages.package_version("schedulefree")


@pytest.mark.slow  # probes every optimizer's state once per machine (cached after)
def test_list_optimizers_shows_impls_package_and_state_per_parameter_byte():
    result = run_cli("list", "optimizers")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in NEW:
        [head] = [i for i, line in enumerate(lines) if line.split()[:1] == [name]]
        detail = lines[head + 1]
        assert "impls: " in detail and "package: " in detail and "state: " in detail
    muon = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["muon"]) + 1]
    assert "forloop[cpu]" in muon and f"torch {torch.__version__}" in muon
    adam = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["adam"]) + 1]
    assert "state: 2.00" in adam
    if _installed("lion-pytorch"):
        assert any("lion-pytorch 0.2.5" in line and "native[cpu]" in line for line in lines)
