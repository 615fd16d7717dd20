"""The datasheet peak table, its name matching, and the derived hardware metrics."""

from __future__ import annotations

import dataclasses

import pytest

from bigtrain.measure.calibration import Calibration
from bigtrain.measure.derived import hardware_metrics, optimizer_bytes_per_param
from bigtrain.measure.peaks import PRECISIONS, _TABLE, lookup_peak, normalise_name
from bigtrain.results.schema import CellRecord, StepTimeStats


@pytest.mark.parametrize(
    ("nvml_name", "matched"),
    [
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA GH200 144G HBM3e", "GH200"),  # NVML's name for the 144 GB part: 'G', not 'GB'
        ("NVIDIA GH200 96GB HBM3", "GH200"),
        ("NVIDIA GH200", "GH200"),
        ("NVIDIA H100", "H100 SXM"),  # bare: PCIe and NVL parts always say so
        ("NVIDIA H100 80GB", "H100 SXM"),
        ("NVIDIA H100 SXM5 80GB", "H100 SXM"),
        ("NVIDIA H100 80GB HBM2e PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL 94GB", "H100 NVL"),
        ("NVIDIA H200 141GB HBM3e", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A30", "A30"),
        ("NVIDIA A40", "A40"),
        ("Tesla V100-SXM2-32GB", "V100 SXM2"),
        ("Tesla V100-PCIE-16GB", "V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "V100S PCIe"),
        ("Tesla T4", "T4"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
    ],
)
def test_nvml_names_match_the_right_entry(nvml_name, matched):
    peak = lookup_peak(nvml_name, "fp32")
    assert peak is not None and peak.matched_name == matched


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A10G",  # AWS part, rates unpublished
        "NVIDIA A100-SXM4-40GB MIG 1g.5gb",  # a slice, not the whole chip
        "Quadro RTX 6000",  # Turing, not the Ada card
        "NVIDIA H800",
        # whole-name matching: a name that merely starts or ends like a known one is no match
        "NVIDIA H20",  # not an H200
        "NVIDIA H1000",  # not an H100
        "NVIDIA H100X",
        "NVIDIA GH2000",
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",  # a slice
        "NVIDIA GH200 144G HBM3e MIG 3g.48gb",
        "NVIDIA A1000",
        "NVIDIA L40G",
        "NVIDIA GeForce RTX 4080",
        "Intel(R) Xeon(R) Platinum 8480+",
        "cpu",
        "",
    ],
)
def test_unknown_devices_get_no_peak(name):
    assert lookup_peak(name, "bf16") is None
    assert lookup_peak(name, "fp32") is None


def test_peaks_are_dense_datasheet_values():
    h100_sxm = lookup_peak("NVIDIA H100 80GB HBM3", "bf16")
    h100_pcie = lookup_peak("NVIDIA H100 PCIe", "bf16")
    assert h100_sxm.tflops == 989.5  # 1,979 with sparsity, halved
    assert h100_pcie.tflops == 756.5
    assert lookup_peak("NVIDIA H200", "fp32").tflops == 67.0
    assert lookup_peak("NVIDIA H200", "tf32").tflops == 494.5
    assert lookup_peak("NVIDIA A100-SXM4-80GB", "tf32").tflops == 156.0
    assert "datasheet" in h100_sxm.source


def test_no_unit_means_no_peak():
    assert lookup_peak("Tesla V100-SXM2-16GB", "bf16") is None
    assert lookup_peak("Tesla V100-SXM2-16GB", "tf32") is None
    assert lookup_peak("Tesla V100-SXM2-16GB", "fp16").tflops == 125.0
    assert lookup_peak("NVIDIA H200", "fp8") is None  # not a precision bigtrain measures


def test_table_is_consistent():
    for entry in _TABLE:
        assert set(entry.tflops) <= set(PRECISIONS), entry.name
        assert entry.source, entry.name
        # tensor-core rates are never below plain fp32 and fp16 == bf16 where both exist
        for precision in ("tf32", "fp16", "bf16"):
            if precision in entry.tflops:
                assert entry.tflops[precision] >= entry.tflops["fp32"], entry.name
        if "bf16" in entry.tflops:
            assert entry.tflops["bf16"] == entry.tflops["fp16"], entry.name


def test_normalise_name():
    assert normalise_name("NVIDIA A100-SXM4-80GB") == "a100 sxm4 80gb"
    assert normalise_name("  Tesla  V100S-PCIE-32GB ") == "v100s pcie 32gb"


# --------------------------------------------------------------------------------------------------
# derived metrics


def calibration(**overrides) -> Calibration:
    values = dict(
        device="cuda:0", device_name="NVIDIA H200", fingerprint={"device_name": "NVIDIA H200"},
        fingerprint_key="abc123", created_at="2025-01-01T00:00:00+00:00",
        matmul_tflops={"bf16": 800.0, "fp32": 50.0}, matmul_tflops_by_size={},
        copy_bandwidth_bytes_per_s=4.0e12, copy_bytes=1 << 30, repeats=5,
    )
    values.update(overrides)
    return Calibration(**values)


def test_hardware_metrics_on_a_known_gpu():
    out = hardware_metrics(
        device_name="NVIDIA H200", precision="bf16", optimizer="adamw", param_count=124_000_000,
        flops_per_step=4.0e14, median_step_s=1.0, optimizer_phase_s=0.004, calibration=calibration(),
    )
    assert out["achieved_tflops"] == pytest.approx(400.0)
    assert out["mfu_pct"] == pytest.approx(100 * 400 / 989.5)
    assert out["mfu_peak_tflops"] == 989.5
    assert out["mfu_peak_source"].startswith("H200 SXM bf16: NVIDIA H200 datasheet")
    assert out["measured_peak_tflops"] == 800.0
    assert out["pct_of_measured_peak"] == pytest.approx(50.0)
    # AdamW: 7 fp32 tensors of parameter size read or written = 28 bytes a parameter
    assert out["optimizer_bytes_per_step"] == 28 * 124_000_000
    assert out["optimizer_floor_s"] == pytest.approx(28 * 124_000_000 / 4.0e12)
    assert out["optimizer_floor_ratio"] == pytest.approx(0.004 / (28 * 124_000_000 / 4.0e12))
    assert out["calibration_id"] == "abc123"
    assert out["hardware_reasons"] is None


def test_hardware_metrics_on_the_cpu_without_calibration():
    out = hardware_metrics(
        device_name=None, precision="fp32", optimizer="sgd", param_count=1000,
        flops_per_step=2.0e9, median_step_s=0.01, optimizer_phase_s=0.001, calibration=None,
    )
    assert out["achieved_tflops"] == pytest.approx(0.2)
    assert out["mfu_pct"] is None and out["mfu_peak_tflops"] is None
    assert "no datasheet peak" in out["hardware_reasons"]["mfu_pct"]
    assert out["pct_of_measured_peak"] is None
    assert "bigbench calibrate" in out["hardware_reasons"]["pct_of_measured_peak"]
    assert out["optimizer_bytes_per_step"] == 20 * 1000  # SGD momentum: 5 tensors
    assert out["optimizer_floor_s"] is None


def test_hardware_metrics_without_flops_or_known_optimizer():
    out = hardware_metrics(
        device_name="NVIDIA H200", precision="tf32", optimizer="lion", param_count=10,
        flops_per_step=None, median_step_s=1.0, optimizer_phase_s=None, calibration=calibration(),
    )
    assert out["achieved_tflops"] is None and out["mfu_pct"] is None
    assert out["mfu_peak_tflops"] == 494.5  # the peak is still recorded
    assert out["hardware_reasons"]["mfu_pct"] == "FLOPs per step were not counted"
    assert out["hardware_reasons"]["pct_of_measured_peak"] == "the calibration has no tf32 matmul rate"
    assert "lion" in out["hardware_reasons"]["optimizer_floor_s"]
    assert optimizer_bytes_per_param("lion") is None


def test_hardware_metrics_merge_into_a_record():
    record = CellRecord(
        run_id="r", cell_id="c", model="mlp:seed", optimizer="adam", impl="foreach", batch_norm="off",
        precision="bf16", device="cuda:0", batch_size=8, compile="off", status="ok",
        step_time_s=StepTimeStats.from_samples([0.1, 0.2]),
    )
    metrics = hardware_metrics(
        device_name="NVIDIA H200", precision="bf16", optimizer="adam", param_count=100,
        flops_per_step=1e12, median_step_s=0.15, optimizer_phase_s=0.01, calibration=None,
    )
    merged = dataclasses.replace(record, **metrics)
    back = CellRecord.from_json(merged.to_json())
    assert back.mfu_pct == pytest.approx(metrics["mfu_pct"])
    assert back.hardware_reasons == metrics["hardware_reasons"]
    assert back.extra == {}
