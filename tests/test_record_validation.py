"""Result files that were hand-edited, truncated or written by another tool: every record and
manifest field is checked on load (bigtrain/results/validation.py, the tables in schema.py), and a
bad value is exit 2 naming file, line, field, the value and what is allowed, never a traceback,
and nothing recorded is changed."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bigtrain.common import exit_codes
from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import (
    MANIFEST_RULES,
    MEASURE_RULES,
    RECORD_RULES,
    CellRecord,
    Manifest,
    SchemaError,
)
from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME, load_run
from test_compare_support import ENVIRONMENT, failed_record, ok_record, steps, write_run

#: Stands for the bad value in a record's JSON text, replaced by the raw text (NaN is no Python
#: value json.dumps would write in a strict file).
BAD = "@@BAD@@"


def _good_records(run_id: str = "r") -> list[CellRecord]:
    telemetry = {"joules_per_step": 0.1, "energy_j": 3.0, "valid": True, "note": "ok",
                 "unsupported": {"sm_active_pct": "no GPM"}, "timeline": {"power_w": [1.0, 2.0]}}
    return [ok_record(run_id, "a", 0, steps(0.01), telemetry=telemetry),
            failed_record(run_id, "b")]


def _with_bad_line(tmp_path: Path, field: str, raw: str, *, base: int = 0) -> Path:
    """A good run, then one more line: record `base` with `field` (dotted) set to raw JSON text."""
    run_dir = write_run(tmp_path, "r", _good_records())
    record = _good_records()[base].to_json()
    target = record
    *parents, leaf = field.split(".")
    for key in parents:
        target = target[key]
    target[leaf] = BAD
    line = json.dumps(record).replace(json.dumps(BAD), raw)
    cells = run_dir / CELLS_NAME
    cells.write_text(cells.read_text() + line + "\n")
    return run_dir


# -- one table covers every field ------------------------------------------------------------------
def test_every_record_and_manifest_field_has_a_rule():
    assert set(RECORD_RULES) == {f.name for f in dataclasses.fields(CellRecord)}
    assert set(MANIFEST_RULES) == {f.name for f in dataclasses.fields(Manifest)}


def test_measure_rules_are_the_measure_settings():
    from bigtrain.cells.spec import MeasureSettings

    assert set(MEASURE_RULES) == {f.name for f in dataclasses.fields(MeasureSettings)}


def test_real_runs_still_load():
    root = Path(__file__).resolve().parents[1]
    for run in (root / "results" / "cpu-2vcpu-quick", root / "tests/fixtures/runs/cpu-1thread",
                root / "tests/fixtures/runs/cpu-2threads"):
        assert load_run(run).records


# -- bad record values -----------------------------------------------------------------------------
BAD_RECORD_VALUES = [
    # field, raw JSON text, what the message says is allowed
    ("step_time_s.median", "NaN", "a finite number > 0"),
    ("step_time_s.median", "Infinity", "a finite number > 0"),
    ("step_time_s.median", "1e999", "a finite number > 0"),
    ("step_time_s.median", "-0.01", "a finite number > 0"),
    ("step_time_s.median", '"fast"', "a finite number > 0"),
    ("step_time_s.p90", "0", "a finite number > 0"),
    ("step_time_s.mean", "1" + "0" * 400, "a finite number > 0"),  # exact, but no float holds it
    ("step_times_s", "[0.01, 1" + "0" * 400 + "]", "a finite number > 0"),
    ("step_time_s.n", "2.5", "an integer >= 1"),
    ("step_time_s", '{"median": 0.01}', "a finite number > 0"),  # step_time_s.mean is missing
    ("phase_time_s", '{"forward": 0, "backward": 0, "optimizer": 0, "zero_grad": 0}',
     "absent (not a key of this object; its keys are forward, backward, optimizer)"),
    ("step_time_s", "[0.01]", "an object with median"),
    ("step_times_s", "[0.01, -0.01]", "a finite number > 0"),
    ("step_times_s", "[0.01, NaN]", "a finite number > 0"),
    ("step_times_s", '"0.01"', "a list of numbers"),
    ("phase_time_s.forward", '"1ms"', "a finite number >= 0"),
    ("phase_times_s", '{"optimizer": [0.001, Infinity]}', "a finite number >= 0"),
    ("repeat", '"zero"', "an integer >= 0"),
    ("repeat", "-1", "an integer >= 0"),
    ("repeat", "true", "an integer >= 0"),
    ("batch_size", "0", "an integer >= 1"),
    ("model", "7", "a string"),
    ("status", '"exploded"', "one of ok, oom, error"),
    ("started_at", '"yesterday"', "an ISO 8601 time"),
    ("items_per_s", "-5", "a finite number >= 0"),
    ("mfu_pct", "NaN", "a finite number >= 0"),
    ("peak_rss_bytes", "1.5", "an integer >= 0"),
    ("loss_last", "Infinity", "a finite number"),
    ("telemetry", "[1, 2]", "an object"),
    ("telemetry.joules_per_step", '"lots"', "a finite number >= 0"),
    ("telemetry.joules_per_step", "-0.1", "a finite number >= 0"),
    ("telemetry.valid", '"yes"', "true or false"),
    ("telemetry.unsupported", '{"sm_active_pct": 3}', "a string"),
    ("telemetry.timeline", '{"power_w": [1.0, NaN]}', "no NaN or Infinity"),
    ("hardware_reasons", '{"mfu_pct": 3}', "a string"),
    ("extra", '{"deep": {"x": [Infinity]}}', "no NaN or Infinity"),
    ("extra", '"text"', "an object"),
]


@pytest.mark.parametrize(("field", "raw", "allowed"), BAD_RECORD_VALUES,
                         ids=[f"{f}={r}" for f, r, _ in BAD_RECORD_VALUES])
def test_a_bad_record_value_names_file_line_field_value_and_what_is_allowed(
        tmp_path, field, raw, allowed):
    run_dir = _with_bad_line(tmp_path, field, raw)
    with pytest.raises(BadInput) as caught:
        load_run(run_dir)
    message = str(caught.value)
    assert message.startswith(f"{run_dir / CELLS_NAME}:3: ")
    assert allowed in message
    assert "got" in message
    # the field at fault is named, down to the nested key or list item
    named = message.split(":3: ", 1)[1].split(" must be ", 1)[0]
    assert named.startswith(field) or field.startswith(named), message


def test_the_message_quotes_the_bad_value_as_json_spells_it(tmp_path):
    cases = [("step_time_s.median", "NaN",
              "step_time_s.median must be a finite number > 0, got NaN"),
             ("step_time_s.median", "1e999",
              "step_time_s.median must be a finite number > 0, got Infinity"),
             ("repeat", '"zero"', 'repeat must be an integer >= 0, got "zero"'),
             ("reason", "5", "reason must be a string or null, got 5"),
             ("step_times_s", "[0.01, 0.02, -3]",
              "step_times_s[2] must be a finite number > 0, got -3")]
    for field, raw, expected in cases:
        run_dir = _with_bad_line(tmp_path / field / raw.strip('"'), field, raw,
                                 base=1 if field == "reason" else 0)
        with pytest.raises(BadInput, match=":3: " + _literal(expected)):
            load_run(run_dir)


def _literal(text: str) -> str:
    return re.escape(text)


def test_a_number_python_will_not_read_is_a_corrupt_line_not_a_traceback(tmp_path):
    run_dir = _with_bad_line(tmp_path, "repeat", "1" * 5000)  # over Python's int-digit limit
    cells = run_dir / CELLS_NAME
    cells.write_text(cells.read_text() + json.dumps(_good_records()[1].to_json()) + "\n")
    with pytest.raises(BadInput, match=rf"{CELLS_NAME}:3: corrupt record"):
        load_run(run_dir)
    manifest = run_dir / MANIFEST_NAME
    huge = '"cells_total": ' + "2" * 5000
    manifest.write_text(manifest.read_text().replace('"cells_total": 2', huge))
    with pytest.raises(BadInput, match=rf"{MANIFEST_NAME}: unreadable JSON"):
        load_run(run_dir)


def test_a_key_from_a_newer_writer_is_kept_but_must_be_strict_json(tmp_path):
    record = {**_good_records()[0].to_json(), "future_figure_s": 1.5}
    assert CellRecord.from_json(record).extra["future_figure_s"] == 1.5
    with pytest.raises(SchemaError, match="future_figure_s must be a finite number"):
        CellRecord.from_json({**record, "future_figure_s": float("inf")})


def test_good_edge_values_are_accepted():
    record = _good_records()[0].to_json()
    # integers where numbers are allowed, zero-length phases, nulls where a field is optional
    record["step_time_s"] = {"median": 1, "mean": 1, "p10": 1, "p90": 1, "iqr": 0, "n": 1}
    record["step_times_s"] = [1]
    record["phase_time_s"] = {"forward": 0, "backward": 0.5, "optimizer": 0}
    record.update(loss_first=-2.5, mfu_pct=None, telemetry=None, extra=None, worker_pid=None,
                  started_at="2025-01-01T00:00:00Z")
    parsed = CellRecord.from_json(record)
    assert parsed.step_time_s.median == 1 and parsed.loss_first == -2.5


# -- the commands say so and exit 2 ----------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["compare", "{run}", "{run}"],
    ["compare", "{run}", "{run}", "--json", "{tmp}/c.json"],
    ["export", "{run}", "--format", "github-action-benchmark"],
    ["export", "{run}", "--format", "pytest-benchmark"],
    ["export", "{run}", "--format", "parquet", "-o", "{tmp}/x.parquet"],
    ["report", "{run}", "-o", "{tmp}/report"],
])
def test_commands_refuse_a_bad_record_with_exit_2(tmp_path, command):
    run_dir = _with_bad_line(tmp_path, "step_time_s.median", "NaN")
    before = (run_dir / CELLS_NAME).read_bytes()
    args = [a.format(run=run_dir, tmp=tmp_path) for a in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exit_codes.EXIT_USAGE, result.output
    assert f"{CELLS_NAME}:3: step_time_s.median must be a finite number > 0, got NaN" in result.output
    assert "Traceback" not in result.output
    assert (run_dir / CELLS_NAME).read_bytes() == before


def _resumable_manifest(run_dir: Path) -> None:
    """Give a test run a spec `sweep --resume` can rebuild (one tiny CPU cell)."""
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    manifest["spec"] = {"preset": "test", "model": ["mlp:seed"], "optimizer": ["sgd"],
                        "impl": ["foreach"], "batch_norm": ["off"], "precision": ["fp32"],
                        "device": ["cpu"], "batch_size": [64], "compile": ["off"],
                        "measure": {"warmup_s": 0.0, "duration_s": 0.05, "repeats": 1}}
    manifest["state"] = "interrupted"
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_resume_refuses_a_record_with_a_text_repeat_and_keeps_the_file(tmp_path):
    run_dir = _with_bad_line(tmp_path, "repeat", '"zero"')
    _resumable_manifest(run_dir)
    before = (run_dir / CELLS_NAME).read_bytes()
    result = CliRunner().invoke(main, ["sweep", "--resume", "r", "--out", str(tmp_path),
                                       "--force", "--no-report"])
    assert result.exit_code == exit_codes.EXIT_USAGE, result.output
    assert f"{CELLS_NAME}:3: repeat must be an integer >= 0, got \"zero\"" in result.output
    assert "Traceback" not in result.output
    assert (run_dir / CELLS_NAME).read_bytes() == before


# -- bad manifest values ---------------------------------------------------------------------------
def _with_manifest(tmp_path: Path, change: dict[str, Any]) -> Path:
    run_dir = write_run(tmp_path, "m", _good_records("m"))
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    for dotted, value in change.items():
        target = manifest
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return run_dir


BAD_MANIFEST_VALUES = [
    ("spec", "hello", "spec must be an object"),
    ("environment", [1, 2], "environment must be an object"),
    ("environment.gpus", 3, "environment.gpus must be a list or null, got 3"),
    ("environment.gpus", [{"name": 5}], "environment.gpus[0].name must be a string or null"),
    ("environment.gpu_count", "one", "environment.gpu_count must be an integer >= 0"),
    ("environment.host", ["a"], "environment.host must be a string or null"),
    ("spec.measure", "fast", "spec.measure must be an object"),
    ("spec.measure.repeats", "two", 'spec.measure.repeats must be an integer >= 1, got "two"'),
    ("spec.measure.duration_s", 0, "spec.measure.duration_s must be a finite number > 0"),
    ("spec.model", "mlp:seed", "spec.model must be a list"),
    ("repaired_lines", "12", 'repaired_lines must be a list or null, got "12"'),
    ("repaired_lines", [0], "repaired_lines[0] must be an integer >= 1"),
    ("state", "done", "state must be one of running, complete, interrupted"),
    ("started_at", 5, "started_at must be an ISO 8601 time"),
    ("cells_total", -1, "cells_total must be an integer >= 0"),
    ("run_id", None, "run_id must be a string"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD_MANIFEST_VALUES,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_MANIFEST_VALUES])
def test_a_bad_manifest_value_names_file_line_and_field(tmp_path, field, value, expected):
    run_dir = _with_manifest(tmp_path, {field: value})
    with pytest.raises(BadInput) as caught:
        load_run(run_dir)
    message = str(caught.value)
    assert expected in message
    # the line is the one that holds the field's (innermost) key
    path, line = message.split(": ", 1)[0].rsplit(":", 1)
    assert path == str(run_dir / MANIFEST_NAME)
    named = expected.split(" must be ", 1)[0]  # e.g. environment.gpus[0].name
    leaf = re.sub(r"\[\d+\]", "", named).rsplit(".", 1)[-1]
    assert f'"{leaf}":' in (run_dir / MANIFEST_NAME).read_text().splitlines()[int(line) - 1]


@pytest.mark.parametrize("command", [
    ["compare", "{run}", "{run}"],
    ["export", "{run}", "--format", "csv"],
    ["report", "{run}", "-o", "{tmp}/report"],
])
@pytest.mark.parametrize(("field", "value"), [("environment.gpus", 3), ("spec", "hello"),
                                             ("repaired_lines", "12")])
def test_commands_refuse_a_bad_manifest_with_exit_2(tmp_path, command, field, value):
    run_dir = _with_manifest(tmp_path, {field: value})
    args = [a.format(run=run_dir, tmp=tmp_path) for a in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == exit_codes.EXIT_USAGE, result.output
    assert f"{MANIFEST_NAME}:" in result.output and f"{field} must be" in result.output
    assert "Traceback" not in result.output


def test_resume_refuses_a_manifest_with_a_text_measure(tmp_path):
    run_dir = write_run(tmp_path, "r", _good_records())
    _resumable_manifest(run_dir)
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text())
    manifest["spec"]["measure"] = "fast"
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = CliRunner().invoke(main, ["sweep", "--resume", "r", "--out", str(tmp_path), "--force"])
    assert result.exit_code == exit_codes.EXIT_USAGE, result.output
    assert 'spec.measure must be an object, got "fast"' in result.output
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_environment_with_unknown_gpu_names_still_loads(tmp_path):
    # NVML may fail to name a GPU: a null name is data, not a broken file
    env = {**ENVIRONMENT, "gpus": [{"index": 0, "name": None, "uuid": None},
                                   {"index": 1, "name": "NVIDIA H100", "uuid": "GPU-2"}],
           "gpu_count": 2,
           "cudnn_version": 90100}
    run_dir = write_run(tmp_path, "g", _good_records("g"), environment=env)
    assert load_run(run_dir).manifest.environment["gpu_count"] == 2
    for args in (["report", str(run_dir), "-o", str(tmp_path / "rep")],
                 ["export", str(run_dir), "--format", "csv"], ["compare", str(run_dir), str(run_dir)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args[0], result.output, result.exception)


def test_an_upgrade_step_failing_on_a_broken_manifest_is_a_clear_error(tmp_path, monkeypatch):
    from bigtrain.results import migrations, versions

    run_dir = _with_manifest(tmp_path, {"environment": [1, 2]})
    monkeypatch.setattr(versions, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(migrations, "STEPS", {})
    # a step written for well-formed data, as real steps are
    migrations.register_step(1, manifest=lambda data: {**data, "environment": {
        **data["environment"], "upgraded_from": 1}})
    with pytest.raises(BadInput, match=rf"{MANIFEST_NAME}: manifest of schema_version 1 cannot be "
                                       r"upgraded to 2: TypeError"):
        load_run(run_dir)
