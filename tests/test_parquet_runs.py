"""Parquet files a user loads together: a CPU run without calibration, a calibrated GPU-like run
and one whose telemetry window was invalid, each exported, plus a report's frame.parquet of all
three: every file has one type per column name, nothing bigtrain writes is left untyped, times are
timestamps, and pyarrow.dataset reads them together. Also `export -o` into folders not yet made."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.results.frame import frame_of_runs
from bigtrain.results.parquet import TIMESTAMP, write_parquet
from bigtrain.results.schema import CellRecord
from bigtrain.results.store import load_run
from test_compare_support import ENVIRONMENT, failed_record, ok_record, steps, write_run

_NOT_CALIBRATED = "no calibration for this machine (run `bigbench calibrate`)"


def _telemetry(*, valid: bool) -> dict:
    """The shape bigtrain.measure.telemetry writes (numbers are synthetic: no GPU here)."""
    return {
        "util_mean_pct": 97.0, "util_max_pct": 100.0, "sm_active_pct": None, "power_mean_w": 310.0,
        "energy_j": 12.5 if valid else None, "energy_method": "counter", "joules_per_step": 0.25,
        "items_per_j": 256.0, "sm_clock_mean_mhz": 1980.0, "temperature_max_c": 61.0,
        "throttle_reasons_seen": ["sw_power_cap"] if valid else [], "samples": 40,
        "interval_s": 0.025, "window_s": 1.0, "min_window_s": 1.0, "valid": valid,
        "invalid_reason": None if valid else "window shorter than 5 sample periods",
        "unsupported": {"sm_active_pct": "GPM not supported"},
        "timeline": {"t_s": [0.0, 0.5], "power_w": [300.0, 320.0]},
        "gpu_name": "NVIDIA H100 80GB HBM3", "nvml_device": 0, "util_sample_period_s": 0.1667,
        "util_sample_period_source": "nvml", "transient_read_errors": 0, "sampler_error": None,
    }


def _cpu_run(tmp_path):
    records = [
        CellRecord.from_json({
            **ok_record("cpu", "x", repeat, steps(0.02, seed=repeat)).to_json(),
            "hardware_reasons": {"mfu_pct": "no datasheet peak for Test CPU 9000 in fp32",
                                 "pct_of_measured_peak": _NOT_CALIBRATED},
            "extra": {"warmup_settled": True, "peak_rss_method": "ru_maxrss"},
            "started_at": "2025-01-01T00:00:0%d+00:00" % repeat,
        })
        for repeat in range(2)
    ]
    return write_run(tmp_path, "cpu", [*records, failed_record("cpu", "y")])


def _gpu_run(tmp_path, run_id: str, *, valid: bool, calibrated: bool):
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1",
           "memory_total_bytes": 80 * 2**30, "power_limit_w": 700.0}
    env = {**ENVIRONMENT, "gpus": [gpu], "gpu_count": 1, "driver_version": "550.54"}
    fields = {"device_name": "NVIDIA H100 80GB HBM3", "peak_mem_allocated_bytes": 2**30,
              "peak_mem_reserved_bytes": 2**31, "flops_per_step": 1.0e12, "achieved_tflops": 100.0,
              "mfu_pct": 10.1, "mfu_peak_tflops": 989.5, "mfu_peak_source": "datasheet",
              "started_at": "2025-02-01T10:00:00Z",
              "extra": {"warmup_settled": False, "peak_rss_method": "ru_maxrss",
                        "flops_convention": "causal"}}
    if calibrated:
        fields.update(calibration_id="cal-1", measured_peak_tflops=700.0, pct_of_measured_peak=14.3,
                      optimizer_bytes_per_step=4096, optimizer_floor_s=0.0001,
                      optimizer_floor_ratio=3.0)
    else:
        fields["hardware_reasons"] = {"pct_of_measured_peak": _NOT_CALIBRATED}
    record = CellRecord.from_json({
        **ok_record(run_id, "x", 0, steps(0.01), telemetry=_telemetry(valid=valid)).to_json(),
        **fields})
    return write_run(tmp_path, run_id, [record], environment=env,
                     state="complete" if valid else "running")


def _export(run, out):
    result = CliRunner().invoke(main, ["export", str(run), "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _files(tmp_path):
    runs = [_cpu_run(tmp_path), _gpu_run(tmp_path, "gpu", valid=True, calibrated=True),
            _gpu_run(tmp_path, "gpu-short", valid=False, calibrated=False)]
    files = [_export(run, tmp_path / f"{run.name}.parquet") for run in runs]
    frame_file = tmp_path / "frame.parquet"
    write_parquet(frame_of_runs([load_run(run) for run in runs]), frame_file)
    return files, frame_file


def test_every_column_has_one_type_across_files_and_none_is_left_untyped(tmp_path):
    files, frame_file = _files(tmp_path)
    seen: dict[str, pa.DataType] = {}
    for path in [*files, frame_file]:
        for field in pq.read_schema(path):
            # every column these runs hold is one bigtrain writes: each has a real type, even where
            # one run holds only nulls (sampler_error, invalid_reason of a valid window, ...)
            assert field.type != pa.null(), (path.name, field.name)
            assert seen.setdefault(field.name, field.type) == field.type, (path.name, field.name)
    assert seen["telemetry_valid"] == pa.bool_()
    assert seen["telemetry_invalid_reason"] == pa.string()
    assert seen["telemetry_samples"] == pa.int64()
    assert seen["extra_warmup_settled"] == pa.bool_()
    assert seen["hw_reason_pct_of_measured_peak"] == pa.string()
    for name in ("started_at", "run_started_at", "run_ended_at"):
        assert seen[name] == TIMESTAMP, name


def test_pyarrow_dataset_reads_calibrated_uncalibrated_cpu_and_gpu_runs_together(tmp_path):
    files, frame_file = _files(tmp_path)
    for paths in (files, list(reversed(files))):
        schema = pa.unify_schemas([pq.read_schema(p) for p in paths])
        frame = ds.dataset(paths, schema=schema).to_table().to_pandas()
        assert sorted(frame["run_id"]) == ["cpu", "cpu", "cpu", "gpu", "gpu-short"]
        by_run = frame.set_index(["run_id", "cell_id", "repeat"])
        assert by_run.loc[("gpu", "x", 0), "measured_peak_tflops"] == 700.0
        assert pd.isna(by_run.loc[("gpu-short", "x", 0), "measured_peak_tflops"])
        assert not by_run.loc[("gpu-short", "x", 0), "telemetry_valid"]
        assert by_run.loc[("gpu", "x", 0), "started_at"] == pd.Timestamp("2025-02-01T10:00:00Z")
        assert by_run.loc[("gpu-short", "x", 0), "run_ended_at"] == pd.Timestamp(
            "2025-01-01T00:10:00Z")
        assert pd.isna(by_run.loc[("cpu", "y", 0), "peak_mem_allocated_bytes"])
    # the report's frame.parquet joins the exports too
    every = [*files, frame_file]
    schema = pa.unify_schemas([pq.read_schema(p) for p in every])
    table = ds.dataset(every, schema=schema).to_table()
    assert table.num_rows == 10


def test_export_makes_the_folders_its_output_path_names(tmp_path):
    run = _cpu_run(tmp_path)
    out = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit" / "0001_main.json"
    result = CliRunner().invoke(main, ["export", str(run), "--format", "pytest-benchmark",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["benchmarks"]
    # only the folders the path names: nothing beside them
    assert sorted(p.name for p in (tmp_path / ".benchmarks").iterdir()) == [
        "Linux-CPython-3.11-64bit"]


def test_export_into_a_path_under_a_file_is_a_clear_error(tmp_path):
    run = _cpu_run(tmp_path)
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    result = CliRunner().invoke(main, ["export", str(run), "--format", "csv",
                                       "-o", str(blocker / "out.csv")])
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and "Traceback" not in result.output
