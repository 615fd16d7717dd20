"""Hostile inputs get exit 2 with a message, never a traceback, before anything is written:
non-finite or out-of-range numbers from flags and presets, deeply nested JSON, a binary preset,
an empty `--threshold`, and a gate whose candidate ran nothing or fewer cells."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results.store import load_run
from bigtrain.cells.spec import spec_from_preset
from conftest import write_preset
from test_compare_support import repeated_cell, write_run


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


# -- item 4: every number finite and in range, before anything is written --------------------
@pytest.mark.parametrize("flag, value", [
    ("--duration", "inf"), ("--duration", "1e999"), ("--warmup", "inf"),
    ("--cell-timeout", "inf"), ("--cell-timeout", "1e300"), ("--duration", "nan"),
])
def test_a_non_finite_or_huge_number_flag_is_refused_before_the_run_folder(tmp_path, flag, value):
    preset = write_preset(tmp_path, ["mlp:seed"])
    out = tmp_path / "results"
    result = _invoke("sweep", "--preset", preset, flag, value, "--out", out, "--no-report")
    _refused(result, flag)
    assert not out.exists()


@pytest.mark.parametrize("line", ["duration_s = inf", "warmup_s = nan", "cell_timeout_s = 1e999",
                                  "repeats = 99999999999999999999"])
def test_a_non_finite_or_huge_number_in_a_preset_names_its_line(tmp_path, line):
    preset = write_preset(tmp_path, ["mlp:seed"])
    key = line.split(" = ")[0]
    text = "\n".join(f"{line}" if row.startswith(f"{key} =") else row
                     for row in preset.read_text().splitlines())
    preset.write_text(text)
    with pytest.raises(BadInput, match=rf"{preset.name}:\d+: {key} must be"):
        spec_from_preset(str(preset))


# -- item 9: tracebacks where exit 2 belongs ---------------------------------------------------
def test_a_deeply_nested_record_or_manifest_is_bad_input(tmp_path):
    run = write_run(tmp_path, "R", repeated_cell("R", "c1", 0.01))
    cells = run / "cells.jsonl"
    good = cells.read_bytes()
    cells.write_bytes(good + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    _refused(_invoke("export", run, "--format", "csv"), "nested too deeply", "cells.jsonl:6")
    cells.write_bytes(good)
    manifest = run / "manifest.json"
    manifest.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _refused(_invoke("export", run, "--format", "csv"), "manifest.json", "nested too deeply")


def test_a_binary_preset_is_bad_input(tmp_path):
    preset = tmp_path / "binary.toml"
    preset.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    _refused(_invoke("sweep", "--preset", preset, "--dry-run"), "binary.toml", "not UTF-8")


# -- item 10 -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "  ", "1" * 400 + "%"])
def test_an_empty_or_infinite_threshold_is_refused(tmp_path, value):
    a = write_run(tmp_path, "A", repeated_cell("A", "c1", 0.01))
    b = write_run(tmp_path, "B", repeated_cell("B", "c1", 0.01, seed=1))
    _refused(_invoke("compare", a, b, "--threshold", value), "--threshold")


@pytest.mark.parametrize("args, words", [
    (("--threshold", ""), ("--threshold", "empty")),
    (("--budget-s", "inf"), ("--budget-s", "finite")),
    (("--budget-s", "1e999"), ("--budget-s", "finite")),
    (("--budget-s", "1e12"), ("--budget-s", "at most")),
])
def test_ab_refuses_an_empty_threshold_and_a_non_finite_budget_before_any_folder(tmp_path, args,
                                                                                words):
    # `ab` took `--threshold ''` as its default and `--budget-s inf` into its manifest.
    out = tmp_path / "out"
    _refused(_invoke("ab", "--preset", "ci", "--out", out, "--run-id", "x", *args), *words)
    assert not out.exists()


# -- item 8: a gate never passes on nothing ----------------------------------------------------
@pytest.fixture
def base(tmp_path):
    return write_run(tmp_path, "base", [*repeated_cell("base", "c1", 0.01),
                                        *repeated_cell("base", "c2", 0.01)])


@pytest.mark.parametrize("how", ["empty", "deleted"])
def test_a_candidate_with_no_records_is_exit_2(tmp_path, base, how):
    cand = write_run(tmp_path, "cand", repeated_cell("cand", "c1", 0.01, seed=1))
    if how == "empty":
        (cand / "cells.jsonl").write_bytes(b"")
    else:
        (cand / "cells.jsonl").unlink()
    _refused(_invoke("compare", base, cand), "candidate", "holds no records")
    _refused(_invoke("compare", base, cand, "--allow-missing"), "holds no records")


def test_missing_candidate_cells_fail_the_gate_unless_allowed(tmp_path, base):
    cand = write_run(tmp_path, "cand", repeated_cell("cand", "c1", 0.01, seed=1))
    report = tmp_path / "gate.json"
    result = _invoke("compare", base, cand, "--json", report)
    assert result.exit_code == 1, result.output
    assert "--allow-missing" in result.output
    assert json.loads(report.read_text())["gate_failed"] is True
    result = _invoke("compare", base, cand, "--allow-missing", "--json", report)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["gate_failed"] is False
    assert len(load_run(cand).records) == 5
