"""`bigbench compare`: verdicts, thresholds, hardware check, exit codes and every output format."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from bigtrain import compare as cmp
from bigtrain.compare import stats
from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results.store import load_run
from test_compare_support import (
    ENVIRONMENT,
    failed_record,
    ok_record,
    repeated_cell,
    steps,
    write_run,
)


@pytest.fixture
def runs(tmp_path):
    """A baseline and a candidate whose cells cover every verdict.

    same: unchanged; slow: +20% step time; fast: -20%; gone: only in the baseline;
    fresh: only in the candidate; broken: ok before, oom now.
    """
    base = [
        *repeated_cell("base", "same", 0.010),
        *repeated_cell("base", "slow", 0.010),
        *repeated_cell("base", "fast", 0.010),
        *repeated_cell("base", "gone", 0.010),
        *repeated_cell("base", "broken", 0.010),
    ]
    cand = [
        *repeated_cell("cand", "same", 0.010, seed=1),
        *repeated_cell("cand", "slow", 0.012, seed=1),
        *repeated_cell("cand", "fast", 0.008, seed=1),
        *repeated_cell("cand", "fresh", 0.010, seed=1),
        failed_record("cand", "broken", 0),
    ]
    return write_run(tmp_path, "base", base), write_run(tmp_path, "cand", cand)


def _by_id(comparison):
    return {cell.cell_id: cell for cell in comparison.cells}


def test_every_cell_verdict(runs):
    comparison = cmp.compare_run_dirs(*runs)
    cells = _by_id(comparison)
    assert {k: c.outcome for k, c in cells.items()} == {
        "same": "unchanged", "slow": "regressed", "fast": "improved", "gone": "missing",
        "fresh": "new", "broken": "failed",
    }
    assert "oom" in cells["broken"].note
    assert comparison.gate_failed
    assert comparison.counts() == {"regressed": 1, "failed": 1, "missing": 1, "new": 1,
                                   "undecided": 0, "improved": 1, "unchanged": 1}


def test_each_metric_has_its_direction(runs):
    slow = _by_id(cmp.compare_run_dirs(*runs))["slow"]
    verdicts = {m.metric.name: m.verdict for m in slow.metrics}
    # step time up 20% (worse), throughput down by 1/1.2 (worse), both by the repeat test
    assert verdicts["step_time"].outcome == "regressed"
    assert verdicts["step_time"].change_pct == pytest.approx(20, abs=2)
    assert verdicts["items_per_s"].outcome == "regressed"
    assert verdicts["items_per_s"].change_pct == pytest.approx(-100 / 6, abs=2)
    assert verdicts["step_time"].method == cmp.decide.__globals__["METHOD_REPEATS"]
    assert verdicts["step_time"].p_value < 0.01
    # memory did not move
    assert verdicts["peak_rss"].outcome == "unchanged"


def test_metrics_absent_in_either_run_are_skipped(tmp_path):
    base = write_run(tmp_path, "b", [ok_record("b", "c1", 0, steps(0.01),
                                               telemetry={"energy_j": 30.0})])
    cand = write_run(tmp_path, "c", [ok_record("c", "c1", 0, steps(0.01, seed=3))])
    metrics = {m.metric.name for m in cmp.compare_run_dirs(base, cand).cells[0].metrics}
    assert "energy_per_step" not in metrics  # only the baseline had telemetry
    assert "peak_mem" not in metrics  # neither has device memory (CPU run)
    assert {"step_time", "items_per_s", "optimizer_time", "peak_rss"} <= metrics


def _sampler_telemetry(energy_j: float, steps: int = 30, window_s: float = 3.0) -> dict:
    """Telemetry shaped by the real sampler's summarise_window() (synthetic numbers: no GPU here)."""
    from bigtrain.measure.telemetry import (EnergyEstimate, TelemetrySample, WindowReadings,
                                            WindowWork, summarise_window)

    samples = [TelemetrySample(t_s=0.1 * k, util_pct=90.0, power_w=energy_j / window_s)
               for k in range(int(window_s * 10))]
    energy = EnergyEstimate(energy_j=energy_j, window_s=window_s, method="tick_aligned")
    return summarise_window(
        WindowReadings(samples=samples, interval_s=0.1, energy=energy),
        WindowWork(window_s=window_s, min_window_s=1.0, steps=steps, items=steps * 64),
    ).as_dict()


def test_energy_per_step_gates_only_with_repeats(tmp_path):
    one_base = write_run(tmp_path, "b1", [ok_record("b1", "c1", 0, steps(0.01),
                                                    telemetry=_sampler_telemetry(30.0))])
    one_cand = write_run(tmp_path, "c1", [ok_record("c1", "c1", 0, steps(0.01, seed=3),
                                                    telemetry=_sampler_telemetry(45.0))])
    cell = cmp.compare_run_dirs(one_base, one_cand).cells[0]
    energy = next(m.verdict for m in cell.metrics if m.metric.name == "energy_per_step")
    assert energy.baseline_median == pytest.approx(30.0 / 30)  # 30 J over 30 steps
    # +50%, but one noisy value a side is no evidence: reported, not gated.
    assert energy.outcome == "unchanged"
    assert energy.method == stats.METHOD_NO_NOISE_ESTIMATE

    base = write_run(tmp_path, "b", [ok_record("b", "c1", r, steps(0.01, seed=r),
                                               telemetry=_sampler_telemetry(30.0 + r))
                                     for r in range(3)])
    cand = write_run(tmp_path, "c", [ok_record("c", "c1", r, steps(0.01, seed=r),
                                               telemetry=_sampler_telemetry(45.0 + r))
                                     for r in range(3)])
    cell = cmp.compare_run_dirs(base, cand).cells[0]
    energy = next(m.verdict for m in cell.metrics if m.metric.name == "energy_per_step")
    assert energy.outcome == "regressed"
    assert energy.method == stats.METHOD_REPEATS


def test_energy_from_a_window_too_short_for_nvml_is_not_compared(tmp_path):
    short = _sampler_telemetry(30.0, window_s=0.5)
    assert short["valid"] is False
    base = write_run(tmp_path, "b", [ok_record("b", "c1", 0, steps(0.01), telemetry=short)])
    cand = write_run(tmp_path, "c", [ok_record("c", "c1", 0, steps(0.01), telemetry=short)])
    metrics = {m.metric.name for m in cmp.compare_run_dirs(base, cand).cells[0].metrics}
    assert "energy_per_step" not in metrics


def test_single_repeat_uses_the_step_test(tmp_path):
    base = write_run(tmp_path, "b", [ok_record("b", "c1", 0, steps(0.010))])
    cand = write_run(tmp_path, "c", [ok_record("c", "c1", 0, steps(0.013, seed=4))])
    cell = cmp.compare_run_dirs(base, cand).cells[0]
    step = next(m.verdict for m in cell.metrics if m.metric.name == "step_time")
    assert step.outcome == "regressed"
    assert step.method.startswith("mann-whitney")
    assert (step.baseline_n, step.candidate_n) == (30, 30)


def test_failed_in_both_is_not_a_new_failure(tmp_path):
    base = write_run(tmp_path, "b", [failed_record("b", "c1")])
    cand = write_run(tmp_path, "c", [failed_record("c", "c1", status="error")])
    cell = cmp.compare_run_dirs(base, cand).cells[0]
    assert cell.outcome == "unchanged"
    assert "oom -> error" in cell.note


def test_later_record_of_a_repeat_replaces_earlier(tmp_path):
    # a resumed run may record a repeat again; the last line is the one that counts
    base = write_run(tmp_path, "b", [ok_record("b", "c1", 0, steps(0.01))])
    cand = write_run(tmp_path, "c", [failed_record("c", "c1"), ok_record("c", "c1", 0,
                                                                         steps(0.01, seed=2))])
    assert cmp.compare_run_dirs(base, cand).cells[0].outcome == "unchanged"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, {name: 5.0 for name in cmp.METRIC_NAMES}),
        ("3%", {name: 3.0 for name in cmp.METRIC_NAMES}),
        ("2.5", {name: 2.5 for name in cmp.METRIC_NAMES}),
        ("step_time=5%,peak_mem=2%", {**{n: 5.0 for n in cmp.METRIC_NAMES}, "peak_mem": 2.0}),
        ("10%,step_time=3%", {**{n: 10.0 for n in cmp.METRIC_NAMES}, "step_time": 3.0}),
    ],
)
def test_parse_thresholds(spec, expected):
    assert cmp.parse_thresholds(spec) == expected


@pytest.mark.parametrize("spec", ["fast=5%", "step_time=lots", "5%,,", "-3%", "step_time"])
def test_bad_threshold_names_the_valid_metrics(spec):
    with pytest.raises(BadInput) as info:
        cmp.parse_thresholds(spec)
    message = str(info.value)
    assert spec.split(",")[0] in message or spec in message
    if spec == "fast=5%":
        assert "unknown metric 'fast'" in message
    assert "step_time" in message and "peak_mem" in message


def test_per_metric_threshold_changes_the_verdict(runs):
    loose = cmp.compare_run_dirs(*runs, thresholds_pct=cmp.parse_thresholds(
        "step_time=50%,items_per_s=50%,optimizer_time=50%"))
    assert _by_id(loose)["slow"].outcome == "unchanged"


def test_different_hardware_is_refused_with_what_differs(tmp_path):
    other = {**ENVIRONMENT, "cpu_model": "Other CPU", "torch_version": "2.5.0",
             "gpus": [{"index": 0, "name": "NVIDIA H200"}]}
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.01))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.01), environment=other)
    with pytest.raises(BadInput) as info:
        cmp.compare_run_dirs(base, cand)
    message = str(info.value)
    assert "cpu_model: 'Test CPU 9000' -> 'Other CPU'" in message
    assert "torch_version: '2.13.0' -> '2.5.0'" in message
    assert "gpus: [] -> ['NVIDIA H200']" in message
    assert "--allow-different-hardware" in message
    allowed = cmp.compare_run_dirs(base, cand, allow_different_hardware=True)
    assert len(allowed.hardware_differences) == 3
    # a different host alone is the same hardware (CI runners change names)
    same_kind = write_run(tmp_path, "d", repeated_cell("d", "c1", 0.01),
                          environment={**ENVIRONMENT, "host": "elsewhere"})
    assert cmp.compare_run_dirs(base, same_kind).hardware_differences == ()


def test_incomplete_run_is_warned_about(tmp_path):
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.01))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.01), state="interrupted")
    assert any("interrupted" in w for w in cmp.compare_run_dirs(base, cand).warnings)


# -- the command line ----------------------------------------------------------------------------
def _invoke(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_cli_regression_exits_1_and_lists_regressions_first(runs):
    result = _invoke(*runs)
    assert result.exit_code == 1, result.output
    out = result.output
    assert out.index("regressed") < out.index("unchanged")
    assert out.index("failed") < out.index("improved")
    assert "1 regressed, 1 failed, 1 missing, 1 new, 1 improved, 1 unchanged" in out


@pytest.mark.parametrize(
    ("cells", "exit_code"),
    [
        ({"c1": 0.010}, 0),  # unchanged
        ({"c1": 0.008}, 0),  # improved
        ({"c1": 0.010, "extra": 0.01}, 0),  # new
        ({}, 2),  # a candidate with no records at all: nothing compared is bad input
        ({"extra": 0.01}, 2),  # no cell in common: nothing compared
        ({"c1": 0.013}, 1),  # regressed
        ({"c1": None}, 1),  # failed
    ],
)
def test_cli_exit_code_per_verdict(tmp_path, cells, exit_code):
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.010))
    records = []
    for cell_id, median in cells.items():
        if median is None:
            records.append(failed_record("c", cell_id, status="crashed"))
        else:
            records.extend(repeated_cell("c", cell_id, median, seed=7))
    cand = write_run(tmp_path, "c", records)
    result = _invoke(base, cand)
    assert result.exit_code == exit_code, result.output


def _noisy_a_a(tmp_path, spread: float = 0.5):
    """The same cell measured twice with 3 repeats whose medians scatter by +-spread (a busy box)."""
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.010, repeats=3,
                                                  repeat_spread=spread))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.010, repeats=3, seed=3,
                                                  repeat_spread=spread))
    return base, cand


def test_noisy_repeats_make_an_undecided_cell_with_its_interval(tmp_path):
    comparison = cmp.compare_run_dirs(*_noisy_a_a(tmp_path))
    (cell,) = comparison.cells
    assert cell.outcome == "undecided" and not comparison.all_decided
    assert not comparison.gate_failed  # not a regression: the --undecided policy decides
    step = {m.metric.name: m.verdict for m in cell.metrics}["step_time"]
    assert step.outcome == "undecided"
    assert step.ratio_low < 1 / 1.05 or step.ratio_high > 1.05
    assert step.mde_pct > 5
    assert comparison.counts()["undecided"] == 1


def test_a_regression_beside_an_undecided_metric_makes_the_cell_regressed(tmp_path):
    # step time 2x slower with tight repeats; peak memory (steady, threshold only) is unchanged
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.010, repeats=3))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.020, repeats=3, seed=3))
    (cell,) = cmp.compare_run_dirs(base, cand).cells
    assert cell.outcome == "regressed"
    # and the noisy pair: undecided outranks unchanged and improved, never a regression
    (noisy,) = cmp.compare_run_dirs(*_noisy_a_a(tmp_path / "noisy")).cells
    outcomes = {m.outcome for m in noisy.metrics}
    assert "undecided" in outcomes and "regressed" not in outcomes
    assert noisy.outcome == "undecided"


def test_cli_undecided_exits_3_unless_passed_with_a_warning(tmp_path):
    base, cand = _noisy_a_a(tmp_path)
    md, out = tmp_path / "cmp.md", tmp_path / "cmp.json"
    closed = _invoke(base, cand, "--markdown", md, "--json", out)
    assert closed.exit_code == 3, closed.output
    assert "gate FAILED (exit 3): 1 cell(s) undecided" in closed.output
    assert "--repeats" in closed.output and "--budget-s" not in closed.output
    assert "1 undecided (of 1 cells); undecided: the repeats are too noisy" in closed.output
    assert "could detect >=" in closed.output
    text = md.read_text()
    assert ":warning:" in text and ":white_check_mark:" not in text
    assert "### Undecided (the repeats are too noisy to decide" in text
    data = json.loads(out.read_text())
    assert data["counts"]["undecided"] == 1 and data["gate_failed"] is False
    step = next(m for m in data["cells"][0]["metrics"] if m["metric"] == "step_time")
    assert step["verdict"] == "undecided" and step["mde_pct"] > 5
    assert len(step["ratio_interval"]) == 2
    opened = _invoke(base, cand, "--undecided", "pass")
    assert opened.exit_code == 0, opened.output
    assert "warning: 1 cell(s) undecided, passed only because --undecided pass" in opened.output


def test_cli_tight_a_a_pair_is_unchanged_and_passes(tmp_path):
    base, cand = _noisy_a_a(tmp_path, spread=0.001)
    result = _invoke(base, cand)
    assert result.exit_code == 0, result.output
    assert "1 unchanged (of 1 cells)" in result.output and "undecided" not in result.output


def test_cli_markdown_shows_regressions_and_folds_the_rest(runs, tmp_path):
    md = tmp_path / "summary.md"
    md.write_text("earlier step output\n")
    result = _invoke(*runs, "--markdown", md)
    assert result.exit_code == 1
    text = md.read_text()
    assert text.startswith("earlier step output\n")  # appended, as $GITHUB_STEP_SUMMARY needs
    open_part, folded = text.split("<details>")
    assert "### Regressions and failures" in open_part
    assert "| regressed |" in open_part and "| failed |" in open_part
    assert "| improved |" not in open_part and "| unchanged |" not in open_part
    assert "| improved |" in folded and "| unchanged |" in folded and "| missing |" in folded
    assert "</details>" in folded
    assert "welch-t on log per-repeat values; p=" in open_part


def test_cli_markdown_without_regressions_says_so(tmp_path):
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.010))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.010, seed=3))
    md = tmp_path / "s.md"
    assert _invoke(base, cand, "--markdown", md).exit_code == 0
    text = md.read_text()
    assert ":white_check_mark:" in text and "No regressions or failures." in text


def test_cli_json_is_complete(runs, tmp_path):
    out = tmp_path / "cmp.json"
    result = _invoke(*runs, "--json", out)
    assert result.exit_code == 1
    data = json.loads(out.read_text())
    assert data["gate_failed"] is True
    assert data["counts"]["regressed"] == 1
    assert data["cells"][0]["verdict"] == "regressed"  # worst first
    slow = next(c for c in data["cells"] if c["cell_id"] == "slow")
    step = next(m for m in slow["metrics"] if m["metric"] == "step_time")
    assert step["verdict"] == "regressed"
    assert step["method"].startswith("welch")
    low, high = step["ratio_interval"]
    assert low < step["ratio"] < high
    assert step["confidence"] == pytest.approx(0.99)
    assert data["thresholds_pct"]["step_time"] == 5.0


def test_cli_bad_threshold_exits_2(runs):
    result = _invoke(*runs, "--threshold", "speed=5%")
    assert result.exit_code == 2
    assert "bigbench: error:" in result.output and "step_time" in result.output


def test_cli_unreadable_input_exits_2(tmp_path, runs):
    result = _invoke(runs[0], tmp_path / "nope")
    assert result.exit_code == 2
    assert "manifest.json" in result.output
    broken = runs[1] / "cells.jsonl"
    broken.write_text("{not json}\n" + broken.read_text())
    result = _invoke(runs[0], runs[1])
    assert result.exit_code == 2
    assert "cells.jsonl:1" in result.output


def test_cli_different_hardware_exits_2_unless_allowed(tmp_path):
    base = write_run(tmp_path, "b", repeated_cell("b", "c1", 0.010))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c1", 0.010, seed=2),
                     environment={**ENVIRONMENT, "cpu_model": "Other CPU"})
    refused = _invoke(base, cand)
    assert refused.exit_code == 2
    assert "cpu_model" in refused.output
    allowed = _invoke(base, cand, "--allow-different-hardware")
    assert allowed.exit_code == 0, allowed.output
    assert "Other CPU" in allowed.output


def test_cli_unwritable_output_exits_2(runs, tmp_path):
    result = _invoke(*runs, "--json", tmp_path / "no" / "such" / "dir" / "x.json")
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_compare_does_not_import_torch(runs):
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from bigtrain.cli import main
        result = CliRunner().invoke(main, ["compare", {str(runs[0])!r}, {str(runs[1])!r}])
        assert result.exit_code == 1, result.output
        heavy = sorted(m for m in ("torch", "pynvml", "pandas") if m in sys.modules)
        print("HEAVY:", heavy)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY: []" in done.stdout


def test_loaded_run_round_trip_keeps_repeats(runs):
    loaded = load_run(runs[0])
    assert {r.repeat for r in loaded.records if r.cell_id == "same"} == {0, 1, 2, 3, 4}
