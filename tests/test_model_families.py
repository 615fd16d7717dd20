"""The `tv:` and `hf:` families: registered through bigtrain's own entry points, unavailable (with
the install command) without their library, the libraries' own parameter counts, and tiny twins
that train on the CPU."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import bigtrain.common.registry as registry
from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.workloads import FAMILIES, UNAVAILABLE_FAMILIES, resolve_model
from bigtrain.workloads.libraries import INSTALL_COMMAND, installed
from conftest import REPO, TESTS_DIR

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FAMILY_NAMES = ("tv", "hf")


def _write_bigtrain_metadata(folder: Path) -> Path:
    """A `bigtrain` dist-info carrying the entry points pyproject.toml declares, as `pip install`
    writes them: put first on the path, it is what importlib.metadata reads for bigtrain even
    where the installed copy was made from an older pyproject."""
    dist = folder / "bigtrain-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bigtrain\nVersion: 0.1.0\n")
    lines = []
    for group, entries in PYPROJECT["project"]["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
        lines.append("")
    scripts = PYPROJECT["project"].get("scripts", {})
    if scripts:
        lines += ["[console_scripts]", *(f"{k} = {v}" for k, v in scripts.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return folder


def _forget_families() -> None:
    for name in FAMILY_NAMES:
        FAMILIES._items.pop(name, None)
        UNAVAILABLE_FAMILIES._items.pop(name, None)


@pytest.fixture
def entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """bigtrain's declared entry points, seen by this process and by spawned workers; plugins are
    read afresh, and the two families are forgotten afterwards."""
    folder = _write_bigtrain_metadata(tmp_path / "meta")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(folder), str(TESTS_DIR), str(REPO), os.environ.get("PYTHONPATH", "")]))
    _forget_families()
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield folder
    _forget_families()


@pytest.fixture
def libraries_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision and transformers look uninstalled (None in sys.modules: import fails)."""
    for module in ("torchvision", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)


needs_torchvision = pytest.mark.skipif(not installed("torchvision"),
                                       reason=f"torchvision not installed ({INSTALL_COMMAND})")
needs_transformers = pytest.mark.skipif(not installed("transformers"),
                                        reason=f"transformers not installed ({INSTALL_COMMAND})")


# -- packaging ---------------------------------------------------------------------------------
def test_pyproject_declares_the_families_as_entry_points_and_a_pinned_extra() -> None:
    project = PYPROJECT["project"]
    assert project["entry-points"]["bigtrain.workloads"] == {
        "tv": "bigtrain.workloads.tv:register", "hf": "bigtrain.workloads.hf:register"}
    extra = project["optional-dependencies"]["models"]
    assert sorted(extra) == ["torchvision==0.28.0", "transformers==5.24.0"]
    # The core never depends on them: they come with the extra only.
    assert not any(d.startswith(("torchvision", "transformers")) for d in project["dependencies"])


def test_setup_installs_the_models_extra_with_the_test_tools() -> None:
    # Other extras (ray, ...) may ride on the same install line.
    assert re.search(r"-e '\.\[test,models(,[a-z]+)*\]'", (REPO / "setup.sh").read_text())


def test_registering_the_families_imports_neither_library(entry_points: Path) -> None:
    # The hooks run in every process that reads a registry: they only look for the packages.
    code = ("import sys, bigtrain.workloads as w; "
            "print(sorted(n for n in ('tv', 'hf') if w.FAMILIES.get(n) or w.UNAVAILABLE_FAMILIES.get(n)), "
            "[m for m in ('torchvision', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=os.environ, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['hf', 'tv'] []"


# -- registration through the entry points -----------------------------------------------------
@needs_torchvision
@needs_transformers
def test_the_entry_points_register_both_families(entry_points: Path) -> None:
    from bigtrain.workloads import hf, tv

    assert FAMILIES.get("tv") is tv.FAMILY
    assert FAMILIES.get("hf") is hf.FAMILY
    assert resolve_model("tv:resnet50").size.params_published == 25_557_032
    assert UNAVAILABLE_FAMILIES.get("tv") is None


def test_without_the_libraries_the_families_are_listed_unavailable(
        entry_points: Path, libraries_missing: None) -> None:
    assert FAMILIES.get("tv") is None and FAMILIES.get("hf") is None
    result = CliRunner().invoke(main, ["list", "models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  tv:*  unavailable: torchvision not installed; install with: {INSTALL_COMMAND}" in lines
    assert (f"  hf:*  unavailable: transformers not installed; install with: {INSTALL_COMMAND}"
            in lines)


def test_without_the_libraries_a_sweep_naming_them_exits_2(
        entry_points: Path, libraries_missing: None) -> None:
    with pytest.raises(BadInput, match=r"--model: model family 'tv' is unavailable: torchvision "
                                       r"not installed; install with: pip install 'bigtrain\[models\]'"):
        resolve_model("tv:resnet50", "--model")
    result = CliRunner().invoke(main, ["sweep", "--preset", "ci", "--model", "hf:gpt2-tiny",
                                       "--dry-run"])
    assert result.exit_code == 2
    assert ("--model: model family 'hf' is unavailable: transformers not installed; install "
            f"with: {INSTALL_COMMAND}") in result.output
    assert "Traceback" not in result.output


# -- parameter counts: the libraries' own ------------------------------------------------------
@needs_torchvision
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vit_b_16", "efficientnet_b0",
                                  "mobilenet_v3_large", "convnext_tiny"])
def test_tv_parameter_counts_are_torchvisions_own(name: str) -> None:
    from bigtrain.workloads import tv
    from bigtrain.workloads.libraries import import_torchvision

    torchvision = import_torchvision()
    config = tv.SIZES[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = tv.build_model(config, batch_norm=True)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    assert sum(p.numel() for p in model.parameters()) == published == config.params_published


def _hf_reference(name: str):  # noqa: ANN202 - a transformers model
    """The library's own model of that name, built from its config classes directly."""
    from bigtrain.workloads.libraries import import_transformers

    t = import_transformers()
    return {
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config()),
        "gpt2-medium": lambda: t.GPT2LMHeadModel(t.GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
        "bert-base": lambda: t.BertForMaskedLM(t.BertConfig()),
        "t5-small": lambda: t.T5ForConditionalGeneration(t.T5Config(decoder_start_token_id=0)),
        "vit-base": lambda: t.ViTForImageClassification(t.ViTConfig(num_labels=1000)),
        "llama-1b": lambda: t.LlamaForCausalLM(t.LlamaConfig(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64,
            tie_word_embeddings=True)),
    }[name]()


@needs_transformers
@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "bert-base", "t5-small", "vit-base",
                                  "llama-1b"])
def test_hf_parameter_counts_are_the_published_models(name: str) -> None:
    from bigtrain.workloads import hf

    config = hf.SIZES[name]
    with torch.device("meta"):  # a 1B model in seconds, without its 5 GB
        model, notes = hf.build_model(config)
        reference = _hf_reference(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == config.params_published
    assert type(model) is type(reference)
    assert notes["attention_implementation"] == "sdpa"


@needs_transformers
def test_llama_160m_is_about_160m_parameters() -> None:
    from bigtrain.workloads import hf

    with torch.device("meta"):
        model, _ = hf.build_model(hf.SIZES["llama-160m"])
    assert sum(p.numel() for p in model.parameters()) == 162_417_408


# -- tiny twins train on the CPU ----------------------------------------------------------------
def _train_two_steps(workload) -> tuple[float, float]:  # noqa: ANN001
    optimizer = torch.optim.SGD(workload.model.parameters(), lr=0.01)
    losses = []
    for _ in range(2):
        loss = workload.forward_loss()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())
    return losses[0], losses[1]


def _tiny(family: str) -> list[str]:
    from bigtrain.workloads import hf, tv

    sizes = (tv if family == "tv" else hf).SIZES
    return [name for name in sizes if name.endswith("-tiny")]


@needs_torchvision
@pytest.mark.parametrize("size", ["resnet18-tiny", "resnet50-tiny", "vit_b_16-tiny",
                                  "efficientnet_b0-tiny", "mobilenet_v3_large-tiny",
                                  "convnext_tiny-tiny"])
def test_tv_tiny_twins_train_on_the_cpu(size: str) -> None:
    from bigtrain.workloads import tv

    assert size in _tiny("tv")
    workload = tv.FAMILY.build(size, batch_norm=True, seed=3)
    assert workload.item_unit == "images" and workload.items_per_step == 4
    assert tuple(workload.inputs.shape) == (4, 3, 32, 32)
    first, second = _train_two_steps(workload)
    assert math.isfinite(first) and math.isfinite(second)
    assert workload.notes["library_versions"]["torchvision"].startswith("0.28")
    again = tv.FAMILY.build(size, batch_norm=True, seed=3)
    assert torch.equal(again.inputs, workload.inputs) and torch.equal(again.targets, workload.targets)


def test_a_tv_size_with_bad_stages_names_the_field() -> None:
    from bigtrain.workloads import SizeConfigError
    from bigtrain.workloads.tv import TorchvisionSize

    with pytest.raises(SizeConfigError, match=r"TorchvisionSize 'x': field 'stage_widths' must "
                                              r"have one entry per stage depth, got \(8,\)"):
        TorchvisionSize(name="x", default_batch_size=1, architecture="convnext_tiny",
                        image_px=32, classes=10, stage_depths=(1, 1), stage_widths=(8,))
    with pytest.raises(SizeConfigError, match=r"field 'stage_depths' applies to resnet18, "
                                              r"resnet50, convnext_tiny only"):
        TorchvisionSize(name="x", default_batch_size=1, architecture="efficientnet_b0",
                        image_px=32, classes=10, stage_depths=(1,))


@needs_torchvision
@pytest.mark.parametrize(("size", "has_bn"), [("resnet18-tiny", True), ("efficientnet_b0-tiny", True),
                                              ("mobilenet_v3_large-tiny", True),
                                              ("vit_b_16-tiny", False), ("convnext_tiny-tiny", False)])
def test_tv_batch_norm_off_swaps_the_norm_layer(size: str, has_bn: bool) -> None:
    from bigtrain.workloads import tv

    def batch_norms(batch_norm: bool) -> int:
        model = tv.build_model(tv.SIZES[size], batch_norm=batch_norm)
        return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())

    assert tv.SIZES[size].has_batch_norm is has_bn
    assert (batch_norms(True) > 0) is has_bn
    assert batch_norms(False) == 0
    workload = tv.FAMILY.build(size, batch_norm=False)
    assert math.isfinite(workload.forward_loss().detach().item())


@needs_transformers
@pytest.mark.parametrize(("size", "unit", "items"), [
    ("gpt2-tiny", "tokens", 4 * 64), ("bert-tiny", "tokens", 4 * 64),
    ("llama-tiny", "tokens", 4 * 64), ("t5-tiny", "tokens", 4 * (64 + 16)),
    ("vit-tiny", "images", 4)])
def test_hf_tiny_twins_train_on_the_cpu(size: str, unit: str, items: int) -> None:
    from bigtrain.workloads import hf

    assert size in _tiny("hf")
    workload = hf.FAMILY.build(size, seed=5)
    assert workload.loss_fn is None  # the model computes its own loss from `labels`
    assert (workload.item_unit, workload.items_per_step) == (unit, items)
    first, second = _train_two_steps(workload)
    assert math.isfinite(first) and math.isfinite(second)
    assert workload.notes["attention_implementation"] == "sdpa"
    assert workload.notes["library_versions"]["transformers"] == "5.24.0"
    again = hf.FAMILY.build(size, seed=5)
    assert all(torch.equal(again.inputs[k], workload.inputs[k]) for k in workload.inputs)


@needs_transformers
def test_hf_masked_lm_labels_only_the_masked_positions() -> None:
    from bigtrain.workloads import hf

    workload = hf.FAMILY.build("bert-tiny", seed=0)
    labels, inputs = workload.inputs["labels"], workload.inputs["input_ids"]
    masked = labels != hf.IGNORE_INDEX
    assert 0.05 < masked.float().mean().item() < 0.30  # about 15% of 256 positions
    assert bool((inputs[masked] == 1023).all())


@needs_transformers
def test_an_attention_implementation_the_architecture_lacks_falls_back_to_eager(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from bigtrain.workloads import hf

    config = dataclasses.replace(hf.SIZES["gpt2-tiny"], attention="flash_attention_2")
    model, notes = hf.build_model(config)  # flash-attn is not installed on a CPU box
    assert notes["attention_requested"] == "flash_attention_2"
    assert notes["attention_implementation"] == "eager"
    assert notes["attention_fallback_reason"]


# -- a real sweep (plumbing only) ---------------------------------------------------------------
@needs_torchvision
@needs_transformers
def test_tv_and_hf_cells_run_in_a_sweep(entry_points: Path, tmp_path: Path) -> None:
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset
    from conftest import write_preset

    preset = write_preset(tmp_path, ["tv:resnet18-tiny", "hf:gpt2-tiny"], optimizers=["adamw"],
                          timeout=300)
    outcome = run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="m"))
    by_model = {r.model: r for r in outcome.records}
    assert [(r.model, r.status) for r in outcome.records] == [
        ("tv:resnet18-tiny", "ok"), ("hf:gpt2-tiny", "ok")], [r.reason for r in outcome.records]
    assert by_model["tv:resnet18-tiny"].item_unit == "images"
    assert by_model["tv:resnet18-tiny"].param_count == 4_910_922
    assert by_model["hf:gpt2-tiny"].item_unit == "tokens"
    assert by_model["hf:gpt2-tiny"].extra["attention_implementation"] == "sdpa"
    assert by_model["hf:gpt2-tiny"].flops_per_step and by_model["hf:gpt2-tiny"].flops_per_step > 0
    assert all(r.workload_version for r in outcome.records)


def test_report_and_compare_stay_free_of_torch_with_the_entry_points(entry_points: Path,
                                                                     tmp_path: Path) -> None:
    runs = REPO / "tests" / "fixtures" / "runs" / "cpu-2threads"
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom bigtrain.cli import main\n"
        f"r = CliRunner().invoke(main, ['report', '{runs}', '-o', '{tmp_path / 'rep'}'])\n"
        "assert r.exit_code == 0, r.output\n"
        # the fixture's repeats are noisy: --undecided pass keeps this about imports
        f"c = CliRunner().invoke(main, ['compare', '{runs}', '{runs}', '--undecided', 'pass'])\n"
        "assert c.exit_code == 0, c.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=os.environ)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
