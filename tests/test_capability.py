"""The capability probe: what this CPU's torch cannot train is `unsupported` before anything runs.

The faulty models (tests/fault_workloads.py) stand in for a CPU without a kernel: `fault:no-bf16`
fails only under autocast, as oneDNN's bf16 LSTM does on an EPYC without AVX-512 BF16.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigtrain.cells.matrix import DeviceInventory, expand
from bigtrain.cells.spec import spec_from_preset
from bigtrain.workloads import capability
from bigtrain.workloads.capability import ProbeKey, unsupported_reasons
from conftest import write_preset

CPU_ONLY = DeviceInventory(cuda_count=0)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("BIGTRAIN_CACHE_DIR", str(folder))
    return folder


def _cells(tmp_path: Path, models: list[str], precisions: list[str]) -> dict[tuple[str, str], object]:
    preset = write_preset(tmp_path, models)
    spec = spec_from_preset(str(preset), {"precision": precisions, "device": ["cpu"]})
    return {(c.model, c.precision): c for c in expand(spec, CPU_ONLY)}


def test_a_precision_this_cpu_cannot_train_is_unsupported_with_the_reason(
        tmp_path: Path, faults: None, own_cache: Path) -> None:
    cells = _cells(tmp_path, ["fault:no-bf16", "mlp:seed"], ["fp32", "bf16"])
    bad = cells[("fault:no-bf16", "bf16")]
    assert bad.status == "unsupported"
    assert "could not create a primitive descriptor for the faulty layer" in bad.reason
    assert "fp32 trains" in bad.reason and "ONEDNN_VERBOSE" not in bad.reason  # first sentence
    assert cells[("fault:no-bf16", "fp32")].status == "pending"
    assert cells[("mlp:seed", "bf16")].status == "pending"


def test_a_model_that_fails_in_fp32_too_is_left_to_report_its_own_error(
        tmp_path: Path, faults: None, own_cache: Path) -> None:
    # A broken model is a bug its cell's `error` record must show, never a "capability".
    cells = _cells(tmp_path, ["fault:raise"], ["fp32", "bf16"])
    assert {c.status for c in cells.values()} == {"pending"}


def test_a_probe_that_kills_its_process_leaves_the_rest_decided(faults: None,
                                                               own_cache: Path) -> None:
    keys = [ProbeKey("fault:segv", False, "bf16"), ProbeKey("fault:no-bf16", False, "bf16")]
    reasons = unsupported_reasons(keys)
    assert list(reasons) == [ProbeKey("fault:no-bf16", False, "bf16")]
    cached = json.loads(next(own_cache.glob("capabilities-*.json")).read_text())["answers"]
    assert "fault:segv|bn=off|bf16" not in cached  # undecided is not cached: probed again next time
    assert cached["fault:no-bf16|bn=off|fp32"] is None


def test_answers_are_cached_per_machine_and_a_corrupt_cache_is_ignored(
        faults: None, own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ProbeKey("fault:no-bf16", False, "bf16")
    assert key in unsupported_reasons([key])
    [path] = own_cache.glob("capabilities-*.json")
    assert capability.machine_key() in path.name

    def no_probe(keys, timeout_s):  # noqa: ANN001, ANN202 - the second call must not spawn
        raise AssertionError(f"probed again: {keys}")

    real_probe = capability._probe_in_child
    monkeypatch.setattr(capability, "_probe_in_child", no_probe)
    assert key in unsupported_reasons([key])
    path.write_text("{not json")
    monkeypatch.setattr(capability, "_probe_in_child", real_probe)
    assert key in unsupported_reasons([key])  # probed again, cache rewritten
    assert json.loads(path.read_text())["answers"]


def test_lstm_bf16_on_this_cpu_matches_what_training_does(own_cache: Path) -> None:
    # The real case: whatever this CPU is, the probe's verdict on the LSTM agrees with a real
    # training step (unsupported on an EPYC without AVX-512 BF16, pending elsewhere).
    import torch

    from bigtrain.training.precision import resolve_precision
    from bigtrain.workloads import resolve_model

    key = ProbeKey("rnn:lstm-tiny", False, "bf16")
    verdict = unsupported_reasons([key])
    workload = resolve_model(key.model).family.build("lstm-tiny", batch_size=2)
    try:
        with resolve_precision("bf16").autocast("cpu"):
            loss = workload.forward_loss()
        loss.float().backward()
        trains = True
    except RuntimeError:
        trains = False
    assert trains == (key not in verdict), verdict
    assert torch.__version__ in verdict.get(key, torch.__version__)


def test_a_large_size_is_probed_as_its_declared_smaller_twin(
        own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GPT-2 small's bf16 probe took minutes on a CPU without bf16 units: the probe builds
    # transformer:tiny (the same layers) instead, and the reason says so.
    probed: list[ProbeKey] = []

    def fake_child(keys, timeout_s):  # noqa: ANN001, ANN202 - the process boundary
        probed.extend(keys)
        return {k: ("RuntimeError: no bf16 kernel" if k.precision == "bf16" else None)
                for k in keys}

    monkeypatch.setattr(capability, "_probe_in_child", fake_child)
    asked = [ProbeKey("transformer:gpt2-small", False, "bf16"),
             ProbeKey("transformer:small", False, "bf16")]
    reasons = unsupported_reasons(asked)
    assert {k.model for k in probed} == {"transformer:tiny"}
    assert set(reasons) == set(asked)
    assert "cannot train transformer:gpt2-small in bf16" in reasons[asked[0]]
    assert "capability probe on transformer:tiny" in reasons[asked[0]]


def test_every_stand_in_is_a_size_of_its_family_with_the_same_batch_norm_slots() -> None:
    from bigtrain.workloads import FAMILIES
    from bigtrain.workloads.base import WorkloadFamily
    from bigtrain.workloads.mlp import SIZES as MLP_SIZES

    for name in FAMILIES.names():
        family = FAMILIES.get(name)
        for size, config in family.sizes.items():
            twin = family.sizes[family.probe_size(size)]
            assert twin.has_batch_norm == config.has_batch_norm and not twin.probe_as
    assert capability.probe_model("transformer:gpt2-medium") == "transformer:tiny"
    assert capability.probe_model("cnn:resnet50") == "cnn:resnet50"  # no smaller bottleneck net
    import dataclasses
    broken = dict(MLP_SIZES, medium=dataclasses.replace(MLP_SIZES["medium"], probe_as="seed"))
    with pytest.raises(ValueError, match="batch-norm slots differ"):
        WorkloadFamily(name="mlp2", sizes=broken, default_size="seed", item_unit="samples",
                       build_fn=lambda *a, **k: None)
