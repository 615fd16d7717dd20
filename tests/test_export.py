"""`bigbench export`: github-action-benchmark, pytest-benchmark (read back by its own tool), CSV, Parquet."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from test_compare_support import failed_record, ok_record, repeated_cell, steps, write_run

PYTEST_BENCHMARK = Path(sys.executable).with_name("pytest-benchmark")


@pytest.fixture
def run_pair(tmp_path):
    """Two runs of the same cells: 'a' at 10 ms, 'b' at 10 ms; run b's 'b' is 30% slower."""
    def make(run_id, slow_factor):
        return write_run(tmp_path, run_id, [
            *repeated_cell(run_id, "a", 0.010, repeats=3),
            *repeated_cell(run_id, "b", 0.010 * slow_factor, repeats=3),
            failed_record(run_id, "c"),
        ])
    return make("base", 1.0), make("cand", 1.3)


def _export(run, *args):
    result = CliRunner().invoke(main, ["export", str(run), *map(str, args)])
    return result


def test_github_action_benchmark_smaller_is_better(run_pair):
    result = _export(run_pair[0], "--format", "github-action-benchmark")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    names = [e["name"] for e in entries if not e["name"].endswith(":: failed")]
    # one entry per ok cell and lower-is-better metric; failed cell c has only its status entry
    assert all(set(e) >= {"name", "unit", "value"} for e in entries)
    assert not any("items_per_s" in n for n in names)
    assert sum(n.endswith(":: step_time") for n in names) == 2
    assert len(names) == len(set(names))
    step = next(e for e in entries if e["name"].endswith(":: step_time") and "cell_id=a;" in
                e["extra"])
    assert step["unit"] == "s"
    assert step["range"].startswith("± ")
    # the value is the median of the three repeats' medians
    from bigtrain.results.store import load_run
    medians = [r.step_time_s.median for r in load_run(run_pair[0]).records if r.cell_id == "a"]
    assert step["value"] == pytest.approx(statistics.median(medians))


def test_github_action_benchmark_names_are_stable_across_runs(run_pair):
    def names(run):
        return [e["name"] for e in json.loads(
            _export(run, "--format", "github-action-benchmark").output)]
    assert names(run_pair[0]) == names(run_pair[1])


def test_github_action_benchmark_bigger_is_better(run_pair):
    result = _export(run_pair[0], "--format", "github-action-benchmark", "--bigger-is-better")
    entries = json.loads(result.output)
    metrics = [e for e in entries if not e["name"].endswith(":: ok")]
    assert [e["name"].split(" :: ")[1] for e in metrics] == ["items_per_s", "items_per_s"]
    assert all(e["unit"] == "items/s" for e in metrics)
    # the status entries: a, b ok (1), c failed (0)
    assert sorted(e["value"] for e in entries if e["name"].endswith(":: ok")) == [0, 1, 1]


def test_pytest_benchmark_compare_reads_our_runs(run_pair, tmp_path):
    files = []
    for run in run_pair:
        out = tmp_path / f"0001_{run.name}.json"
        result = _export(run, "--format", "pytest-benchmark", "-o", out)
        assert result.exit_code == 0, result.output
        files.append(out)
    done = subprocess.run(
        [str(PYTEST_BENCHMARK), "compare", "--columns=median,rounds", "--name=short",
         "--csv", str(tmp_path / "cmp"), *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to load" not in done.stdout + done.stderr
    rows = pd.read_csv(tmp_path / "cmp.csv")
    # both runs, both ok cells; each cell's rounds are all its steps (3 repeats x 30)
    assert len(rows) == 4
    assert set(rows["rounds"]) == {90}
    # the same stable name in both runs, so the tool lines them up; cell b is 30% slower in cand
    medians = rows.groupby("name")["median"].apply(sorted)
    assert len(medians) == 2
    ratios = sorted(high / low for low, high in medians)
    assert ratios[0] == pytest.approx(1.0, abs=0.03)
    assert ratios[1] == pytest.approx(1.3, rel=0.03)
    data = json.loads(files[1].read_text())
    slow = next(b for b in data["benchmarks"] if b["param"] == "b")
    fast = next(b for b in data["benchmarks"] if b["param"] == "a")
    assert slow["stats"]["median"] / fast["stats"]["median"] == pytest.approx(1.3, rel=0.03)
    assert slow["extra_info"]["step_time_s"] > 0 and "items_per_s" in slow["extra_info"]


def test_pytest_benchmark_stats_match_the_samples(tmp_path):
    samples = [0.010, 0.011, 0.012, 0.013, 0.050]
    run = write_run(tmp_path, "r", [ok_record("r", "x", 0, samples)])
    stats = json.loads(_export(run, "--format", "pytest-benchmark").output)["benchmarks"][0][
        "stats"]
    assert stats["rounds"] == 5 and stats["iterations"] == 1
    assert stats["median"] == 0.012 and stats["min"] == 0.010 and stats["max"] == 0.050
    assert stats["mean"] == pytest.approx(0.0192)
    # pytest-benchmark's own quartiles (statistics.quantiles' exclusive method), not the
    # interpolated ones this export used to compute (0.011, 0.013)
    assert stats["q1"] == pytest.approx(0.01075) and stats["q3"] == pytest.approx(0.02225)
    # 0.050 lies beyond q3 + 1.5 * iqr = 0.0395: one Tukey outlier, and hd15iqr is 0.013
    assert stats["iqr_outliers"] == 1 and stats["hd15iqr"] == 0.013
    assert stats["total"] == pytest.approx(0.096)
    assert stats["ops"] == pytest.approx(5 / 0.096)
    assert stats["data"] == samples


def test_csv_has_a_row_per_record(run_pair):
    result = _export(run_pair[0], "--format", "csv")
    assert result.exit_code == 0
    frame = pd.read_csv(io.StringIO(result.output))
    assert len(frame) == 7  # 2 cells x 3 repeats + the failed cell
    assert {"cell_id", "repeat", "status", "step_time_median_s", "items_per_s"} <= set(frame)
    assert "step_times_s" not in frame
    assert (frame["status"] == "oom").sum() == 1


def test_parquet_keeps_raw_step_times(run_pair, tmp_path):
    out = tmp_path / "run.parquet"
    result = _export(run_pair[0], "--format", "parquet", "-o", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 7
    ok = frame[frame["status"] == "ok"]
    assert all(len(x) == 30 for x in ok["step_times_s"])


def test_parquet_needs_an_output_file(run_pair):
    result = _export(run_pair[0], "--format", "parquet")
    assert result.exit_code == 2
    assert "-o" in result.output


def test_export_bad_input_exits_2(run_pair, tmp_path):
    assert _export(run_pair[0], "--format", "xml").exit_code == 2
    missing = _export(tmp_path / "nope", "--format", "csv")
    assert missing.exit_code == 2 and "manifest.json" in missing.output
    wrong_flag = _export(run_pair[0], "--format", "csv", "--bigger-is-better")
    assert wrong_flag.exit_code == 2


def test_export_writes_to_a_file(tmp_path):
    run = write_run(tmp_path, "r", [ok_record("r", "x", 0, steps(0.01))])
    out = tmp_path / "gab.json"
    assert _export(run, "--format", "github-action-benchmark", "-o", out).exit_code == 0
    names = [e["name"] for e in json.loads(out.read_text())]
    assert sum(n.endswith(":: step_time") for n in names) == 1


def test_export_does_not_import_torch(run_pair):
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from bigtrain.cli import main
        for fmt in ("github-action-benchmark", "pytest-benchmark"):
            result = CliRunner().invoke(main, ["export", {str(run_pair[0])!r}, "--format", fmt])
            assert result.exit_code == 0, result.output
        print("HEAVY:", sorted(m for m in ("torch", "pynvml") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY: []" in done.stdout


# -- issue 30: numbers a user can trust --------------------------------------------------------------
def _gab(run, *args):
    result = _export(run, "--format", "github-action-benchmark", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_github_action_benchmark_names_encode_every_axis(tmp_path):
    from bigtrain.results.schema import AXES
    from dataclasses import replace

    on = ok_record("r", "bn-on", 0, steps(0.01))
    off = replace(ok_record("r", "bn-off", 0, steps(0.01)), batch_norm="off")
    on = replace(on, batch_norm="on")
    entries = _gab(write_run(tmp_path, "r", [on, off]))
    step_names = [e["name"] for e in entries if e["name"].endswith(":: step_time")]
    assert len(step_names) == 2 and len(set(step_names)) == 2
    for name in step_names:
        cell = name.split(" :: ")[0]
        # every axis, named, in the axis table's order: no undocumented suffix
        assert [part.split("=", 1)[0] for part in cell.split(",")] == list(AXES)
        assert not name.split(" :: ")[0].endswith(" bn")
    assert {n.split("batch_norm=")[1].split(",")[0] for n in step_names} == {"on", "off"}


def test_github_action_benchmark_keeps_a_failed_cell_visible(tmp_path):
    base = write_run(tmp_path, "base", [ok_record("base", "x", 0, steps(0.01))])
    crashed = write_run(tmp_path, "cand", [failed_record("cand", "x", status="crashed")])
    before = {e["name"]: e for e in _gab(base)}
    after = {e["name"]: e for e in _gab(crashed)}
    status = next(n for n in before if n.endswith(":: failed"))
    # the same name in both runs, 0 -> 1: the action's ratio alert fires on it
    assert before[status]["value"] == 0 and after[status]["value"] == 1
    assert "crashed" in after[status]["extra"]
    # the all-failed run exports its status entries, not []
    assert len(after) == 1
    bigger = _gab(crashed, "--bigger-is-better")
    assert [(e["name"].endswith(":: ok"), e["value"]) for e in bigger] == [(True, 0)]


def test_github_action_benchmark_refuses_an_empty_export(tmp_path):
    empty = write_run(tmp_path, "empty", [])
    result = _export(empty, "--format", "github-action-benchmark")
    assert result.exit_code == 2
    assert "no cells" in result.output and "Traceback" not in result.output


def test_pytest_benchmark_stats_are_pytest_benchmarks_own(tmp_path):
    import random

    from pytest_benchmark.stats import Stats

    rng = random.Random(3)
    # a seeded sample with a tail: where hand-made quartiles differ from the tool's
    samples = [0.01 * (1 + rng.gauss(0, 0.05)) for _ in range(40)] + [0.03, 0.031, 0.005]
    run = write_run(tmp_path, "r", [ok_record("r", "x", 0, samples)])
    stats = json.loads(_export(run, "--format", "pytest-benchmark").output)["benchmarks"][0][
        "stats"]
    reference = Stats()
    for sample in samples:
        reference.update(sample)
    expected = reference.as_dict()
    assert {k: stats[k] for k in expected} == expected
    assert stats["data"] == samples and stats["iterations"] == 1


def test_pytest_benchmark_machine_info_names_the_machine(tmp_path):
    env = {"host": "box", "os": "Linux-6.18.44-fc-v657-x86_64-with-glibc2.36",
           "python_version": "3.11.7", "cpu_model": "AMD EPYC", "gpus": []}
    old = write_run(tmp_path, "old", [ok_record("old", "x", 0, steps(0.01))], environment=env)
    info = json.loads(_export(old, "--format", "pytest-benchmark").output)["machine_info"]
    # read back out of the recorded platform string, as platform.* gave them on that machine
    assert (info["system"], info["release"], info["machine"]) == (
        "Linux", "6.18.44-fc-v657", "x86_64")
    new_env = {**env, "os_system": "Linux", "os_release": "6.1.0-rt", "machine": "aarch64"}
    new = write_run(tmp_path, "new", [ok_record("new", "x", 0, steps(0.01))],
                    environment=new_env)
    info = json.loads(_export(new, "--format", "pytest-benchmark").output)["machine_info"]
    assert (info["system"], info["release"], info["machine"]) == ("Linux", "6.1.0-rt", "aarch64")


def test_environment_records_what_pytest_benchmark_reports():
    import platform

    from bigtrain.measure.envinfo import collect_environment

    env = collect_environment()
    assert (env["os_system"], env["os_release"], env["machine"]) == (
        platform.system(), platform.release(), platform.machine())
