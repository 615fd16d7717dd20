"""`bigbench converge` end to end on a tiny preset: records, manifest, seeds, resume, bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bigtrain.results.store import load_run, read_manifest
from bigtrain.cells.spec import preset_toml
from conftest import run_cli


def _converge_preset(folder: Path, *, seeds: int = 2, models: tuple[str, ...] = ("mlp:seed",),
                     optimizers: tuple[str, ...] = ("sgd",)) -> Path:
    path = folder / "tiny-converge.toml"
    path.write_text(preset_toml(
        description="test converge preset", model=list(models), optimizer=list(optimizers),
        measure={"repeats": seeds, "seed": 5, "cell_timeout_s": 120},
        converge={"max_steps": 20, "max_time_s": 30, "eval_every": 10}))
    return path


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]


def test_converge_runs_a_preset_end_to_end_with_one_record_per_seed(tmp_path: Path) -> None:
    preset = _converge_preset(tmp_path)
    result = run_cli("converge", "--preset", str(preset), "--out", str(tmp_path / "results"),
                     "--run-id", "c1", "--no-report", "--model", "mlp:seed,transformer:tiny")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "results" / "c1"
    manifest = read_manifest(run_dir)
    assert manifest.spec["protocol"] == "converge"
    assert manifest.spec["converge"] == {"max_steps": 20, "max_time_s": 30, "eval_every": 10}
    records = load_run(run_dir).records
    measured = sorted((r.seed, r.repeat) for r in records if r.model == "mlp:seed")
    assert measured == [(5, 0), (6, 1)]  # seed = spec seed + repeat
    for record in records:
        assert record.protocol == "converge"
    [unsupported] = [r for r in records if r.model == "transformer:tiny"]
    assert unsupported.status == "unsupported"
    assert "has no converge task" in unsupported.reason and "mlp:digits" in unsupported.reason
    for record in (r for r in records if r.model == "mlp:seed"):
        assert record.status in ("ok", "not_reached"), record.reason
        assert record.curve["step"][0] == 10


def test_flags_override_the_budgets_and_seeds(tmp_path: Path) -> None:
    preset = _converge_preset(tmp_path)
    result = run_cli("converge", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "c2",
                     "--no-report", "--max-steps", "3", "--eval-every", "1", "--seeds", "1",
                     "--lr", "0.001")
    assert result.exit_code == 0, result.output
    [record] = load_run(tmp_path / "c2").records
    assert record.status == "not_reached"
    assert record.curve["step"] == [1.0, 2.0, 3.0]
    assert record.lr == "0.001" and record.lr_used == 0.001


def test_resume_runs_only_the_seeds_without_a_record(tmp_path: Path) -> None:
    preset = _converge_preset(tmp_path)
    first = run_cli("converge", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "c3",
                    "--no-report")
    assert first.exit_code == 0, first.output
    cells = tmp_path / "c3" / "cells.jsonl"
    lines = cells.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["repeat"] == 0]
    cells.write_text("\n".join(kept) + "\n")  # as if stopped after the first seed

    resumed = run_cli("converge", "--resume", "c3", "--out", str(tmp_path), "--no-report")
    assert resumed.exit_code == 0, resumed.output
    records = _records(tmp_path / "c3")
    assert [(r["repeat"], r["seed"]) for r in records] == [(0, 5), (1, 6)]
    assert records[0] == json.loads(kept[0])  # the first seed's record was not redone


def test_a_step_time_run_cannot_be_resumed_as_converge_unnoticed(tmp_path: Path) -> None:
    preset = tmp_path / "st.toml"
    preset.write_text(preset_toml(description="", model=["mlp:seed"], optimizer=["sgd"],
                                  measure={"warmup_s": 0.01, "duration_s": 0.02, "min_steps": 2}))
    first = run_cli("sweep", "--preset", str(preset), "--out", str(tmp_path), "--run-id", "s1",
                    "--no-report")
    assert first.exit_code == 0, first.output
    [record] = load_run(tmp_path / "s1").records
    assert record.protocol == "step_time" and record.lr == "default" and record.lr_used == 0.01
    assert "protocol" not in read_manifest(tmp_path / "s1").spec  # step-time specs as before
    again = run_cli("converge", "--resume", "s1", "--out", str(tmp_path), "--no-report")
    assert again.exit_code == 2
    assert "converge: None ->" in again.output


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-steps", "0"], "--max-steps"),
    (["--max-time-s", "-1"], "--max-time-s"),
    (["--eval-every", "x"], "--eval-every"),
    (["--seeds", "0"], "--seeds"),
    (["--lr", "fast"], "--lr: learning rate 'fast' is not a number or 'default'"),
    (["--lr", "-0.1"], "--lr: learning rate must be a finite number > 0 or 'default', got '-0.1'"),
    (["--model", "mlp:nope"], "unknown size for mlp 'nope'"),
])
def test_bad_flags_exit_2_with_a_message(tmp_path: Path, flags: list[str], message: str) -> None:
    result = run_cli("converge", "--out", str(tmp_path), "--dry-run", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_converge_budget_given_to_a_step_time_spec_is_bad_input(tmp_path: Path) -> None:
    from bigtrain.common.errors import BadInput
    from bigtrain.cells.spec import spec_from_preset

    with pytest.raises(BadInput, match="--max-steps is a converge budget"):
        spec_from_preset("quick", {"max_steps": 5})


def test_a_bad_converge_table_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = _converge_preset(tmp_path)
    path.write_text(path.read_text().replace("eval_every = 10", "eval_each = 10"))
    result = run_cli("converge", "--preset", str(path), "--dry-run")
    assert result.exit_code == 2
    assert f"{path}:" in result.output and "'eval_each'" in result.output
    assert "max_steps, max_time_s, eval_every" in result.output


def test_dry_run_lists_cells_and_marks_models_without_a_task(tmp_path: Path) -> None:
    result = run_cli("converge", "--dry-run", "--model", "mlp:digits,cnn:tiny",
                     "--optimizer", "adam")
    assert result.exit_code == 0, result.output
    assert "has no converge task" in result.output


def test_a_time_budget_past_the_cell_timeout_is_bad_input(tmp_path: Path) -> None:
    result = run_cli("converge", "--dry-run", "--max-time-s", "500", "--cell-timeout", "100")
    assert result.exit_code == 2
    assert "must be shorter than the cell timeout (100 s)" in result.output


def test_dry_run_states_the_converge_budgets() -> None:
    result = run_cli("converge", "--dry-run", "--max-steps", "7")
    assert result.exit_code == 0, result.output
    assert "train to target: <= 7 steps" in result.output
