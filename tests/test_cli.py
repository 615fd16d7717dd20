"""The command line through Click's runner: outputs, files written, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigtrain.results.store import load_run
from conftest import run_cli as _run, write_preset


@pytest.mark.parametrize(("topic", "expected"), [
    ("models", ["mlp:seed", "cnn:resnet50", "rnn:gru-small", "transformer:gpt2-small",
                "transformer:gpt2-medium"]),
    ("optimizers", ["sgd", "adam", "adamw", "rmsprop", "fused[", "compiled["]),
    ("schedules", ["constant", "cosine", "warmup-cosine", "converge cells only"]),
    ("precisions", ["fp32", "tf32", "fp16", "bf16"]),
    ("devices", ["cpu", "auto"]),
    ("presets", ["quick", "full", "gpu", "ci"]),
])
def test_list(topic: str, expected: list[str]) -> None:
    result = _run("list", topic)
    assert result.exit_code == 0
    for word in expected:
        assert word in result.output


def test_env_json_has_the_fingerprint() -> None:
    result = _run("env", "--json")
    assert result.exit_code == 0
    info = json.loads(result.output)
    for key in ("torch_version", "python_version", "cpu_model", "ram_bytes", "host", "gpus",
                "git_commit", "bigtrain_version", "driver_version"):
        assert key in info
    assert info["ram_bytes"] > 0


def test_dry_run_prints_cells_and_skips_without_running(tmp_path: Path) -> None:
    result = _run("sweep", "--model", "mlp:seed,mlp:small", "--optimizer", "sgd",
                  "--precision", "fp32,fp16", "--device", "cpu", "--dry-run", cwd=tmp_path)
    assert result.exit_code == 0
    assert "fp16 needs cuda, not cpu" in result.output
    assert "mlp:small" in result.output and "n/a" in result.output
    assert "3 to run, 3 skipped/unsupported" in result.output
    assert not list(tmp_path.rglob("cells.jsonl"))


def test_gpu_preset_dry_run_on_a_cpu_box(tmp_path: Path) -> None:
    from conftest import REPO

    result = _run("sweep", "--preset", "bench/presets/gpu.toml", "--dry-run", cwd=REPO)
    assert result.exit_code == 0
    assert "transformer:gpt2-small" in result.output and "cnn:resnet50" in result.output
    import torch

    if not torch.cuda.is_available():
        assert "0 to run" in result.output and "no CUDA device is visible" in result.output


def test_end_to_end_sweep_writes_valid_records(tmp_path: Path, tiny_preset: Path) -> None:
    result = _run("sweep", "--preset", str(tiny_preset), "--out", str(tmp_path / "res"),
                  "--run-id", "e2e", "--no-report")
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "res" / "e2e")
    assert run.manifest.state == "complete"
    assert run.manifest.environment["torch_version"]
    assert run.manifest.spec["model"] == ["mlp:seed", "transformer:tiny"]
    assert [r.status for r in run.records] == ["ok", "ok"]
    for record in run.records:
        assert record.step_time_s.n == len(record.step_times_s) >= 3
        assert record.items_per_s == pytest.approx(record.items_per_step / record.step_time_s.median)
        assert record.phase_time_s.forward > 0 and record.phase_time_s.optimizer > 0
        assert record.peak_rss_bytes > 0 and record.loss_first is not None
        assert record.telemetry is None and "CPU" in record.telemetry_reason
        assert record.flops_per_step > 0
        assert record.achieved_tflops == pytest.approx(
            record.flops_per_step / record.step_time_s.median / 1e12)
        assert record.mfu_pct is None  # no datasheet peak for a CPU: no guess
    assert "bigbench sweep" in result.output  # the summary table
    # The same run id again is refused, and nothing is overwritten.
    before = (tmp_path / "res" / "e2e" / "cells.jsonl").read_bytes()
    again = _run("sweep", "--preset", str(tiny_preset), "--out", str(tmp_path / "res"),
                 "--run-id", "e2e", "--no-report")
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert (tmp_path / "res" / "e2e" / "cells.jsonl").read_bytes() == before


def test_failed_cell_makes_the_sweep_exit_1_and_stand_out(tmp_path: Path, faults: None) -> None:
    preset = write_preset(tmp_path, ["fault:raise", "mlp:seed"])
    result = _run("sweep", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "f",
                  "--no-report")
    assert result.exit_code == 1
    assert "1 cell(s) failed" in result.output
    assert "injected failure" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "vgg"], "unknown model family 'vgg'; valid choices: mlp, cnn, rnn, transformer"),
    (["--model", "mlp:xl"], "unknown size for mlp 'xl'"),
    (["--optimizer", "lamb"], "unknown optimizer 'lamb'"),
    (["--impl", "triton"], "unknown optimizer implementation 'triton'"),
    (["--precision", "int8"], "unknown precision 'int8'"),
    (["--device", "npu"], "unknown device 'npu'"),
    (["--batch-size", "0"], "batch size must be > 0"),
    (["--duration", "0"], "duration must be > 0"),
    (["--optimizer", ""], "axis is empty"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--preset", "missing/preset.toml"], "preset file missing/preset.toml does not exist"),
    (["--retry-failed"], "--retry-failed needs --resume"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run("sweep", *args, "--dry-run", cwd=tmp_path)
    assert result.exit_code == 2
    assert "bigbench: error:" in result.output
    assert message in result.output


def test_malformed_preset_names_file_line_column(tmp_path: Path) -> None:
    preset = tmp_path / "broken.toml"
    preset.write_text('[axes]\nmodel = ["mlp:seed"\n')
    result = _run("sweep", "--preset", str(preset), "--dry-run")
    assert result.exit_code == 2
    assert f"{preset}:2:" in result.output and "malformed TOML" in result.output


def test_resume_of_a_missing_run_is_bad_input(tmp_path: Path) -> None:
    result = _run("sweep", "--resume", "ghost", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "ghost" in result.output and "no such file" in result.output
