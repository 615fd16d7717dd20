"""`bigbench calibrate` on the CPU: it measures, stores, and reloads for the same fingerprint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.measure import calibration as cal


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BIGTRAIN_CALIBRATION_DIR", str(tmp_path / "calibration"))
    return tmp_path / "calibration"


def test_calibrate_writes_and_reloads(cache_dir):
    assert cal.load_calibration("cpu") is None  # nothing stored yet
    result = cal.calibrate("cpu", sizes=(64, 128), repeats=2, warmup=1, copy_bytes=4 << 20)
    path = cal.save_calibration(result)
    assert path.parent == cache_dir
    assert path.name == f"{result.fingerprint_key}.json"

    loaded = cal.load_calibration("cpu")
    assert loaded == result
    assert set(loaded.matmul_tflops) == {"fp32", "bf16"}
    assert set(loaded.matmul_tflops_by_size["fp32"]) == {"64", "128"}
    # the kept rate is the best size's median, and it is a real, positive rate
    assert loaded.matmul_tflops["fp32"] == max(loaded.matmul_tflops_by_size["fp32"].values()) > 0
    assert loaded.copy_bandwidth_bytes_per_s > 1e8  # any machine copies faster than 100 MB/s
    assert loaded.fingerprint["device_type"] == "cpu"
    assert loaded.fingerprint["torch_num_threads"] >= 1


def test_another_fingerprint_does_not_load(cache_dir, monkeypatch):
    result = cal.calibrate("cpu", sizes=(64,), repeats=1, warmup=0, copy_bytes=1 << 20,
                           precisions=("fp32",))
    cal.save_calibration(result)
    monkeypatch.setattr(cal, "cpu_model", lambda: "Some Other CPU")
    assert cal.load_calibration("cpu") is None


def test_corrupt_calibration_is_ignored(cache_dir, caplog):
    result = cal.calibrate("cpu", sizes=(64,), repeats=1, warmup=0, copy_bytes=1 << 20,
                           precisions=("fp32",))
    path = cal.save_calibration(result)
    path.write_text("{not json")
    assert cal.load_calibration("cpu") is None
    assert "unreadable calibration" in caplog.text


def test_matmul_rate_is_the_flop_count_over_the_time(monkeypatch):
    monkeypatch.setattr(cal, "time_op", lambda op, device, repeats, warmup: [0.5, 0.25, 1.0])
    # 2 * 100^3 FLOPs in the median 0.5 s
    assert cal.measure_matmul_tflops("cpu", "fp32", 100) == pytest.approx(2 * 100**3 / 0.5 / 1e12)
    assert cal.measure_copy_bandwidth("cpu", 4000) == pytest.approx(2 * 4000 / 0.5)


def test_resolve_device():
    assert cal.resolve_device("cpu") == "cpu"
    assert cal.resolve_device("auto") in ("cpu", "cuda:0")
    with pytest.raises(BadInput, match="valid choices: auto, cpu"):
        cal.resolve_device("cuda:99")
    with pytest.raises(BadInput, match="'tpu'"):
        cal.resolve_device("tpu")


def test_cli_calibrate_cpu(cache_dir):
    result = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--sizes", "128", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    assert "matmul  fp32" in result.output and "copy bandwidth" in result.output
    stored = list(cache_dir.glob("*.json"))
    assert len(stored) == 1
    assert cal.load_calibration("cpu").matmul_tflops_by_size["fp32"].keys() == {"128"}


def test_cli_calibrate_json(cache_dir):
    result = CliRunner().invoke(main, ["calibrate", "--device", "cpu", "--sizes", "64", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["device"] == "cpu" and data["path"].startswith(str(cache_dir))


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "12x"], "--sizes: bad matrix size '12x'"),
    (["--sizes", "8"], "--sizes: bad matrix size '8'"),
    (["--device", "gpu7"], "--device: unknown or absent device 'gpu7'"),
])
def test_cli_bad_input_exits_2(cache_dir, args, message):
    result = CliRunner().invoke(main, ["calibrate", *args])
    assert result.exit_code == 2
    assert message in result.output
