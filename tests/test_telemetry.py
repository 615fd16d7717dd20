"""NVML telemetry on the CPU, with a fake `pynvml` at the import boundary (tests/fake_nvml.py)."""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import time

import pytest
from fake_nvml import (  # noqa: F401 - fixtures
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_TIMEOUT,
    FakeGpu,
    FakeNvml,
    fake_nvml,
    install,
    no_nvml,
)

from bigtrain.measure import telemetry
from bigtrain.measure.telemetry import (
    EnergyEstimate,
    GpmResult,
    TelemetrySample,
    TelemetrySampler,
    WindowReadings,
    WindowWork,
    nvml_inventory,
    summarise_window,
)

FAST = 0.005  # sampling interval for tests: many samples in a short sleep


def run_window(sampler: TelemetrySampler, gpu: FakeGpu | None = None, *, energy_mj: int = 0,
               hold_s: float = 0.06) -> None:
    sampler.start()
    if gpu is not None:
        gpu.energy_mj += energy_mj  # what the counter moved by during the window
    time.sleep(hold_s)
    sampler.stop()


def test_importing_telemetry_does_not_import_pynvml():
    code = "import sys, bigtrain.measure.telemetry; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cpu_has_no_telemetry_and_no_window_floor(fake_nvml):
    sampler = TelemetrySampler.for_device("cpu")
    assert sampler.min_window_s == 0.0
    sampler.start()
    sampler.stop()
    assert sampler.result(2.0, 10, 100) == (None, "no NVML telemetry on the CPU")
    assert fake_nvml.calls["nvmlInit"] == 0  # the CPU never touches NVML


def test_full_window_aggregates_what_nvml_returned(fake_nvml):
    gpu = fake_nvml.gpus[0]
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler, gpu, energy_mj=250_000)
    data, reason = sampler.result(window_s=2.0, steps=10, items=640)

    assert reason is None
    util = gpu.returned["util_pct"]
    power_w = [mw / 1000 for mw in gpu.returned["power_mw"]]
    assert data["samples"] == len(util) >= 3
    assert data["util_mean_pct"] == pytest.approx(statistics.fmean(util))
    assert data["util_max_pct"] == max(util)
    assert data["power_mean_w"] == pytest.approx(statistics.fmean(power_w))
    assert data["power_max_w"] == max(power_w)
    assert data["mem_used_max_bytes"] == max(gpu.returned["mem_used_bytes"])
    assert data["sm_clock_mean_mhz"] == pytest.approx(statistics.fmean(gpu.returned["sm_clock_mhz"]))
    assert data["mem_clock_mean_mhz"] == 2619
    assert data["temperature_max_c"] == max(gpu.returned["temperature_c"])
    assert data["throttle_reasons_seen"] == ["sw_power_cap"]  # 0x4 was among the masks returned
    # energy: the delta of the total-energy counter (mJ -> J), read only at the two edges
    assert data["energy_j"] == 250.0
    assert data["joules_per_step"] == 25.0
    assert data["items_per_j"] == pytest.approx(640 / 250)
    assert data["power_from_energy_w"] == pytest.approx(250.0 / data["energy_window_s"])
    # the measuring thread reads the counter only at the two edges (the sampler thread may poll it)
    assert fake_nvml.thread_calls["MainThread"]["nvmlDeviceGetTotalEnergyConsumption"] == 2
    # GPM metrics from the two edge samples
    assert data["sm_active_pct"] == 83.5
    assert data["sm_occupancy_pct"] == 41.0
    assert data["tensor_active_pct"] == 37.25
    assert data["dram_bw_util_pct"] == 22.0
    assert fake_nvml.calls["nvmlGpmSampleGet"] == 2
    assert data["valid"] is True and data["invalid_reason"] is None
    assert data["unsupported"] == {}
    assert data["gpu_name"] == "NVIDIA H200"
    assert data["interval_s"] == FAST
    timeline = data["timeline"]
    assert timeline["util_pct"] == util
    assert timeline["power_w"] == power_w
    assert len(timeline["t_s"]) == len(timeline["sm_clock_mhz"]) == len(util)
    assert timeline["t_s"] == sorted(timeline["t_s"]) and timeline["t_s"][0] >= 0


def test_sampling_stops_with_stop(fake_nvml):
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    reads = fake_nvml.calls["nvmlDeviceGetUtilizationRates"]
    time.sleep(0.05)
    assert fake_nvml.calls["nvmlDeviceGetUtilizationRates"] == reads
    assert not any(t.name == "bigtrain-telemetry" for t in __import__("threading").enumerate())


def test_interval_sets_the_sampling_rate(fake_nvml):
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=0.05)
    run_window(sampler, hold_s=0.32)
    data, _ = sampler.result(2.0, 1, 1)
    # one sample at the start, then one every 50 ms: 7 in 0.32 s, give or take scheduler jitter
    assert 4 <= data["samples"] <= 9


def test_not_supported_field_is_null_with_reason_and_not_asked_again(fake_nvml):
    gpu = fake_nvml.gpus[0]
    gpu.unsupported.add("nvmlDeviceGetPowerUsage")
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler, gpu, energy_mj=1000)
    data, reason = sampler.result(2.0, 1, 1)

    assert reason is None
    assert data["power_mean_w"] is None and data["power_max_w"] is None
    assert "Not Supported" in data["unsupported"]["power_mean_w"]
    assert "nvmlDeviceGetPowerUsage" in data["unsupported"]["power_max_w"]
    assert all(p is None for p in data["timeline"]["power_w"])
    assert fake_nvml.calls["nvmlDeviceGetPowerUsage"] == 1  # unsupported once is unsupported
    assert data["util_mean_pct"] is not None  # the other fields are unaffected
    assert data["samples"] > 1


def test_transient_error_is_retried_not_remembered(fake_nvml):
    gpu = fake_nvml.gpus[0]
    gpu.failing["nvmlDeviceGetUtilizationRates"] = NVML_ERROR_TIMEOUT
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["util_mean_pct"] is None
    assert data["unsupported"]["util_mean_pct"] == "every read failed"
    assert fake_nvml.calls["nvmlDeviceGetUtilizationRates"] == data["samples"]
    assert data["transient_read_errors"] == data["samples"]


def test_energy_counter_not_supported(fake_nvml):
    fake_nvml.gpus[0].unsupported.add("nvmlDeviceGetTotalEnergyConsumption")
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 10, 100)
    for field in ("energy_j", "joules_per_step", "items_per_j", "power_from_energy_w"):
        assert data[field] is None
        assert "nvmlDeviceGetTotalEnergyConsumption" in data["unsupported"][field]
    assert data["power_mean_w"] is not None


def test_gpm_unsupported_device(fake_nvml):
    fake_nvml.gpus[0].gpm_supported = False
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 1, 1)
    for field in ("sm_active_pct", "sm_occupancy_pct", "tensor_active_pct", "dram_bw_util_pct"):
        assert data[field] is None
        assert "GPM unsupported" in data["unsupported"][field]
    assert fake_nvml.calls["nvmlGpmSampleGet"] == 0
    assert data["util_mean_pct"] is not None


def test_one_gpm_metric_unsupported(fake_nvml):
    del fake_nvml.gpus[0].gpm_values[10]  # DRAM bandwidth
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["dram_bw_util_pct"] is None
    assert "NVML error 3" in data["unsupported"]["dram_bw_util_pct"]
    assert data["sm_active_pct"] == 83.5
    assert fake_nvml.calls["nvmlGpmSampleFree"] == 2


def test_short_window_is_marked_not_zeroed(fake_nvml):
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    assert sampler.min_window_s == pytest.approx(1.0)  # 5 x 200 ms, and at least 1 s
    run_window(sampler, fake_nvml.gpus[0], energy_mj=40_000)
    data, reason = sampler.result(window_s=0.4, steps=4, items=4)
    assert reason is None
    assert data["valid"] is False
    assert data["invalid_reason"].startswith("window_too_short: 0.400 s")
    assert data["util_mean_pct"] > 0 and data["energy_j"] == 40.0  # kept, but marked


def test_slow_util_period_raises_the_window_floor(monkeypatch):
    gpu = FakeGpu(util_sample_stamps_us=[500_000 * i for i in range(1, 10)])
    install(monkeypatch, FakeNvml([gpu]))
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    assert sampler.min_window_s == pytest.approx(2.5)
    telemetry._forget_nvml_state()


def test_unknown_util_period_assumes_the_documented_worst_case(monkeypatch):
    gpu = FakeGpu()
    gpu.unsupported.add("nvmlDeviceGetSamples")
    install(monkeypatch, FakeNvml([gpu]))
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    assert sampler.min_window_s == pytest.approx(5.0)
    run_window(sampler)
    data, _ = sampler.result(6.0, 1, 1)
    assert data["util_sample_period_source"].startswith("documented worst case")
    telemetry._forget_nvml_state()


def test_throttle_reasons_fall_back_to_the_old_name(fake_nvml):
    fake_nvml.gpus[0].unsupported.add("nvmlDeviceGetCurrentClocksEventReasons")
    fake_nvml.gpus[0].throttle_mask = [0x40 | 0x1]
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["throttle_reasons_seen"] == ["gpu_idle", "hw_thermal_slowdown"]
    assert fake_nvml.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] >= 1


def test_nvml_missing_gives_a_reason_and_one_warning(no_nvml, caplog):
    caplog.set_level(logging.WARNING, logger="bigtrain.measure.telemetry")
    first = TelemetrySampler.for_device("cuda:0")
    second = TelemetrySampler.for_device("cuda:1")
    inventory = nvml_inventory()
    for sampler in (first, second):
        assert sampler.min_window_s == 0.0
        sampler.start()
        sampler.stop()
        data, reason = sampler.result(5.0, 10, 10)
        assert data is None
        assert reason.startswith("NVML unavailable: nvidia-ml-py (pynvml) cannot be imported")
    assert inventory["gpus"] == [] and "pynvml" in inventory["nvml_reason"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_nvml_init_failure_is_unavailable_not_a_crash(monkeypatch):
    install(monkeypatch, FakeNvml(init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    data, reason = TelemetrySampler.for_device("cuda:0").result(5.0, 1, 1)
    assert data is None
    assert reason == "NVML unavailable: nvmlInit failed: NVML Shared Library Not Found (NVML error 12)"
    telemetry._forget_nvml_state()


def test_cuda_visible_devices_maps_to_nvml_index(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert telemetry.nvml_device_ref("cuda:1") == 1
    assert telemetry.nvml_device_ref("cuda") == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert telemetry.nvml_device_ref("cuda:0") == 2
    assert telemetry.nvml_device_ref("cuda:1") == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,1")
    assert telemetry.nvml_device_ref("cuda:0") == "GPU-abc"
    with pytest.raises(telemetry.DeviceNotVisible, match="lists 2 device"):
        telemetry.nvml_device_ref("cuda:2")
    with pytest.raises(ValueError, match="not a CUDA device"):
        telemetry.nvml_device_ref("tpu:0")


def test_sampler_reads_the_visible_device(monkeypatch):
    gpus = [FakeGpu(name="NVIDIA A100-SXM4-80GB", uuid="GPU-a"), FakeGpu(name="NVIDIA H200", uuid="GPU-h")]
    install(monkeypatch, FakeNvml(gpus))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["gpu_name"] == "NVIDIA H200" and data["nvml_device"] == 1
    assert "util_pct" not in gpus[0].returned and gpus[1].returned["util_pct"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a")
    assert TelemetrySampler.for_device("cuda:0").available
    hidden = TelemetrySampler.for_device("cuda:1")
    assert hidden.result(2.0, 1, 1)[1].startswith("NVML unavailable: cuda:1 is not visible")
    telemetry._forget_nvml_state()


def test_misuse_is_an_error(fake_nvml):
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    with pytest.raises(RuntimeError, match="needs start"):
        sampler.result(1.0, 1, 1)
    sampler.start()
    with pytest.raises(RuntimeError, match="twice"):
        sampler.start()
    sampler.stop()
    with pytest.raises(ValueError, match="interval_s"):
        TelemetrySampler.for_device("cuda:0", interval_s=0)


def test_sampler_can_measure_a_second_window(fake_nvml):
    gpu = fake_nvml.gpus[0]
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler, gpu, energy_mj=5_000)
    run_window(sampler, gpu, energy_mj=7_000)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["energy_j"] == 7.0


def test_inventory_lists_gpus(monkeypatch):
    gpus = [FakeGpu(), FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-2", power_limit_mw=650_000)]
    gpus[1].unsupported.add("nvmlDeviceGetEnforcedPowerLimit")
    install(monkeypatch, FakeNvml(gpus, driver_version="570.1", cuda_driver_version=12040))
    inventory = nvml_inventory()
    assert inventory["driver_version"] == "570.1"
    assert inventory["cuda_driver_version"] == "12.4"
    assert inventory["gpus"] == [
        {"index": 0, "name": "NVIDIA H200", "uuid": gpus[0].uuid,
         "memory_total_bytes": gpus[0].memory_total_bytes, "power_limit_w": 700.0},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-2",
         "memory_total_bytes": gpus[1].memory_total_bytes, "power_limit_w": 650.0},  # fallback call
    ]
    telemetry._forget_nvml_state()


def test_aggregate_exact_numbers():
    samples = [
        TelemetrySample(t_s=0.0, util_pct=80, mem_used_bytes=10, power_w=300.0, power_instant_w=310.0, sm_clock_mhz=1900,
                        mem_clock_mhz=2600, temperature_c=50, throttle_mask=0),
        TelemetrySample(t_s=0.1, util_pct=100, mem_used_bytes=30, power_w=500.0, power_instant_w=490.0, sm_clock_mhz=1700,
                        mem_clock_mhz=2600, temperature_c=60, throttle_mask=0x4 | 0x20),
        TelemetrySample(t_s=0.2, util_pct=None, mem_used_bytes=20, power_w=400.0, power_instant_w=430.0, sm_clock_mhz=1800,
                        mem_clock_mhz=2600, temperature_c=55, throttle_mask=0x800),
    ]
    out = summarise_window(
        WindowReadings(samples=samples, interval_s=0.1,
                       energy=EnergyEstimate(energy_j=1200.0, window_s=3.0, method="edge_reads"),
                       gpm=GpmResult(values={"sm_active_pct": 70.0})),
        WindowWork(window_s=3.0, min_window_s=1.0, steps=6, items=600),
    ).as_dict()
    assert out["util_mean_pct"] == 90.0 and out["util_max_pct"] == 100
    assert out["power_mean_w"] == 400.0 and out["power_max_w"] == 500.0
    assert out["power_from_energy_w"] == 400.0
    assert out["power_instant_mean_w"] == pytest.approx(410.0)
    assert out["mem_used_max_bytes"] == 30
    assert out["sm_clock_mean_mhz"] == 1800.0
    assert out["temperature_max_c"] == 60
    assert out["throttle_reasons_seen"] == ["sw_power_cap", "sw_thermal_slowdown", "unknown_0x800"]
    assert out["joules_per_step"] == 200.0 and out["items_per_j"] == 0.5
    assert out["sm_active_pct"] == 70.0
    assert set(out["unsupported"]) == {"sm_occupancy_pct", "tensor_active_pct", "dram_bw_util_pct"}
    assert out["timeline"]["util_pct"] == [80, 100, None]
    assert out["valid"] is True


def test_aggregate_without_samples_says_why():
    out = summarise_window(
        WindowReadings(samples=[], interval_s=0.1,
                       energy=EnergyEstimate(energy_j=0.0, window_s=3.0, method="edge_reads")),
        WindowWork(window_s=3.0, min_window_s=1.0, steps=0, items=0),
    ).as_dict()
    assert out["samples"] == 0
    assert out["unsupported"]["util_mean_pct"] == "no samples in the window"
    assert out["joules_per_step"] is None and out["items_per_j"] is None
    assert out["unsupported"]["items_per_j"] == "zero steps, items or energy in the window"


# --------------------------------------------------------------------------------------------------
# bench/gpu_check.py: the CPU-side logic of the GPU check, on records shaped like a real H200 cell


def load_gpu_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def gpu_record(**telemetry_overrides):
    samples = [TelemetrySample(t_s=0.1 * i, util_pct=99, mem_used_bytes=60 << 30, power_w=600.0,
                               sm_clock_mhz=1980, mem_clock_mhz=2619, temperature_c=60,
                               throttle_mask=0) for i in range(50)]
    data = summarise_window(
        WindowReadings(samples=samples, interval_s=0.1,
                       energy=EnergyEstimate(energy_j=3050.0, window_s=5.01, method="tick_aligned"),
                       gpm=GpmResult(values={"sm_active_pct": 92.0, "sm_occupancy_pct": 40.0,
                                             "tensor_active_pct": 55.0, "dram_bw_util_pct": 30.0})),
        WindowWork(window_s=5.0, min_window_s=1.0, steps=100, items=100 * 8192),
    ).as_dict()
    data.update(telemetry_overrides)
    return {"cell_id": "abc", "model": "transformer:gpt2-small", "precision": "bf16",
            "device": "cuda:0", "device_name": "NVIDIA H200", "status": "ok", "window_s": 5.0,
            "telemetry": data, "flops_per_step": 2.0e13, "achieved_tflops": 400.0,
            "mfu_pct": 40.4, "pct_of_measured_peak": 55.0, "hardware_reasons": None}


def test_gpu_check_accepts_a_plausible_record():
    check = load_gpu_check()
    lines, problems = check.check_records([gpu_record()], power_limits_w={"NVIDIA H200": 700.0})
    assert problems == []
    assert "energy 3050.0 J (power x window 3000.0 J)" in lines[0]
    assert "MFU 40.4%" in lines[0]


def test_gpu_check_flags_implausible_records():
    check = load_gpu_check()
    assert check.check_record(gpu_record(energy_j=3400.0)) == [
        "energy 3400.0 J differs from mean power x window 3000.0 J by 13.3% (> 10%)"
    ]
    problems = check.check_record(gpu_record(sm_active_pct=None, unsupported={"sm_active_pct": "GPM x"}))
    assert problems == ["sm_active_pct = None is not in (0, 100] GPM x"]
    short = check.check_record(gpu_record(valid=False, invalid_reason="window_too_short: 0.5 s"))
    assert short == ["telemetry not valid: window_too_short: 0.5 s"]
    no_mfu = {**gpu_record(), "mfu_pct": None, "hardware_reasons": {"mfu_pct": "no datasheet peak"}}
    assert check.check_record(no_mfu) == ["mfu_pct = None is not in (0, 100] no datasheet peak"]
    assert check.check_record(gpu_record(), power_limit_w=500.0) == [
        "power_mean_w 600 W is above the 500 W power limit"
    ]
    lines, problems = check.check_records([{**gpu_record(), "device": "cpu"}])
    assert problems == ["no cells on a CUDA device in this run"]
    failed = {**gpu_record(), "status": "oom", "reason": "CUDA out of memory"}
    assert check.check_records([failed])[1] == ["abc transformer:gpt2-small bf16: status oom: CUDA out of memory"]


def test_gpu_check_flags_energy_measured_from_edge_reads_only():
    check = load_gpu_check()
    assert check.check_record(gpu_record(energy_method="edge_reads")) == [
        "energy_method = 'edge_reads', not tick_aligned: the energy counter's steps were not timed"
    ]
    line = check.summary_line(gpu_record(energy_uncertainty_j=4.25))
    assert "[tick_aligned ±4.2 J]" in line


def test_gpu_check_reads_a_run_folder(tmp_path, capsys):
    from bigtrain.results.schema import CellRecord, Manifest, StepTimeStats
    from bigtrain.results.store import RunWriter

    check = load_gpu_check()
    fields = {k: v for k, v in gpu_record().items() if k != "window_s"}
    record = CellRecord(run_id="r", repeat=0, optimizer="adamw", impl="foreach", batch_norm="on",
                        batch_size=8, compile="off", window_s=5.0,
                        step_time_s=StepTimeStats.from_samples([0.05, 0.05]), **fields)
    environment = {"gpus": [{"index": 0, "name": "NVIDIA H200", "power_limit_w": 700.0}]}
    with RunWriter(tmp_path / "r") as writer:
        writer.write_manifest(Manifest(run_id="r", bigtrain_version="0", spec={},
                                       environment=environment, started_at="2025-01-01T00:00:00Z"))
        writer.append(record)
    assert check.main([str(tmp_path / "r")]) == 0
    assert "1 GPU cell(s), 0 problem(s)" in capsys.readouterr().out
    assert check.main([str(tmp_path / "missing")]) == 2


def test_other_device_types_have_no_telemetry(fake_nvml):
    data, reason = TelemetrySampler.for_device("mps").result(2.0, 1, 1)
    assert data is None and reason == "no NVML telemetry for device 'mps' (only cuda devices have it)"


def test_energy_counter_going_backwards_is_not_negative_energy(fake_nvml):
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler, fake_nvml.gpus[0], energy_mj=-500)
    data, _ = sampler.result(2.0, 1, 1)
    assert data["energy_j"] is None
    assert data["unsupported"]["energy_j"] == "the total-energy counter went backwards during the window"


def test_a_broken_read_stops_sampling_but_keeps_the_window(fake_nvml, monkeypatch):
    gpu = fake_nvml.gpus[0]
    gpu.temperature_c = ["hot"]  # float("hot") raises ValueError inside the thread
    sampler = TelemetrySampler.for_device("cuda:0", interval_s=FAST)
    run_window(sampler, gpu, energy_mj=2000)
    data, reason = sampler.result(2.0, 1, 1)
    assert reason is None
    assert data["sampler_error"].startswith("ValueError")
    assert data["samples"] == 0 and data["energy_j"] == 2.0  # the edges are still measured
