"""The instantaneous power field (NVML_FI_DEV_POWER_INSTANT) beside the ~1 s averaged power reading,
with a fake `pynvml` at the import boundary (tests/fake_nvml.py)."""

from __future__ import annotations

import statistics
import time

import pytest
from fake_nvml import fake_nvml  # noqa: F401 - fixture

from bigtrain.measure.telemetry import TelemetrySampler

FAST = 0.005


def _window(sampler: TelemetrySampler) -> dict:
    sampler.start()
    time.sleep(0.06)
    sampler.stop()
    data, reason = sampler.result(window_s=2.0, steps=10, items=640)
    assert reason is None
    return data


def test_instant_power_is_the_mean_of_the_field_values_read(fake_nvml):
    gpu = fake_nvml.gpus[0]
    data = _window(TelemetrySampler.for_device("cuda:0", interval_s=FAST))
    instant_w = [mw / 1000 for mw in gpu.returned["power_instant_mw"]]
    averaged_w = [mw / 1000 for mw in gpu.returned["power_mw"]]
    assert len(instant_w) == data["samples"] >= 3
    assert data["power_instant_mean_w"] == pytest.approx(statistics.fmean(instant_w))
    # the two readings stay apart: the averaged one is still power_mean_w
    assert data["power_mean_w"] == pytest.approx(statistics.fmean(averaged_w))
    assert "power_instant_mean_w" not in data["unsupported"]


def test_a_driver_without_the_field_gives_null_with_a_reason_and_is_not_asked_again(fake_nvml):
    gpu = fake_nvml.gpus[0]
    gpu.power_instant_mw = None          # the call succeeds, the field's entry says NOT_SUPPORTED
    data = _window(TelemetrySampler.for_device("cuda:0", interval_s=FAST))
    assert data["power_instant_mean_w"] is None
    assert "NVML_FI_DEV_POWER_INSTANT" in data["unsupported"]["power_instant_mean_w"]
    assert fake_nvml.calls["nvmlDeviceGetFieldValues"] == 1
    assert data["power_mean_w"] is not None and data["samples"] > 1


def test_a_binding_without_field_values_gives_null_with_a_reason(fake_nvml):
    fake_nvml.gpus[0].unsupported.add("nvmlDeviceGetFieldValues")
    data = _window(TelemetrySampler.for_device("cuda:0", interval_s=FAST))
    assert data["power_instant_mean_w"] is None
    assert "nvmlDeviceGetFieldValues" in data["unsupported"]["power_instant_mean_w"]
