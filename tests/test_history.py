"""`bigbench history`: the change-point statistics on seeded synthetic series (no timing), and
the plumbing (machines, ordering, flags, corrupt runs, gate, dashboard) on run folders made from
the real recorded runs in results/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.history.changepoints import IMPROVEMENT, NOT_ENOUGH_HISTORY, REGRESSION, detect
from bigtrain.history.load import load_history
from bigtrain.history.series import build_series
from bigtrain.history.synthetic import fake_commit, read_source, write_history
from conftest import REPO

SOURCE = REPO / "results" / "cpu-2vcpu-quick"
FIXTURES = REPO / "tests" / "fixtures" / "runs"


def _series(seed: int, n: int = 20, noise: float = 0.01, shift_at: int | None = None,
            shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.exp(rng.normal(0.0, noise, n)) * 0.05
    if shift_at is not None:
        values[shift_at:] *= 1 + shift
    return values


def test_a_planted_slowdown_is_found_at_its_commit_with_an_interval_around_its_size() -> None:
    found = detect(_series(1, shift_at=12, shift=0.10), higher_is_better=False)
    assert [c.index for c in found.change_points] == [12]
    change = found.change_points[0]
    assert change.verdict == REGRESSION
    assert change.low_pct < 10.0 < change.high_pct
    assert 7.0 < change.change_pct < 13.0


def test_direction_decides_regression_or_improvement() -> None:
    values = _series(2, shift_at=8, shift=0.10)
    assert detect(values, higher_is_better=True).change_points[0].verdict == IMPROVEMENT
    faster = _series(2, shift_at=8, shift=-0.10)
    assert detect(faster, higher_is_better=False).change_points[0].verdict == IMPROVEMENT


def test_noise_alone_gives_no_change_point() -> None:
    for seed in range(5):
        assert detect(_series(100 + seed), higher_is_better=False).change_points == ()


def test_the_step_spread_sets_a_floor_under_the_noise() -> None:
    # Run medians that happen to sit close together, but each run's steps spread 20%: a 3% shift
    # is inside what the steps can resolve with 30 samples, so no verdict on it.
    rng = np.random.default_rng(3)
    values = _series(3, noise=0.002, shift_at=10, shift=0.03)
    samples = [tuple(v * np.exp(rng.normal(0, 0.2, 30))) for v in values]
    assert detect(values, higher_is_better=False).change_points  # medians alone: a shift
    assert detect(values, samples, higher_is_better=False).change_points == ()


def test_fewer_points_than_detection_needs_is_not_a_verdict() -> None:
    found = detect(_series(4, n=5), higher_is_better=False)
    assert found.change_points == () and found.noise_pct is None
    assert found.not_enough.startswith(NOT_ENOUGH_HISTORY) and "needs 6" in found.not_enough


def test_synthetic_runs_keep_the_real_cells(tmp_path: Path) -> None:
    folders = write_history(SOURCE, tmp_path, commits=3, seed=5)
    runs, skipped = load_history([tmp_path])
    assert skipped == [] and [r.run.path for r in runs] == folders
    _, source_records = read_source(SOURCE)
    assert {r.cell_id for r in runs[0].run.records} == {r["cell_id"] for r in source_records}
    assert runs[1].commit == fake_commit(1, 5) and not runs[1].placed_by_time


def test_runs_are_ordered_by_commit_time_and_flagged(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path, commits=6, seed=6, dirty_at=[2], no_commit_at=[4])
    # A later-started run whose commit is older comes first: order is the commit's time.
    manifest_path = tmp_path / "synthetic-6-000" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["started_at"] = "2030-01-01T00:00:00+00:00"
    manifest_path.write_text(json.dumps(manifest))
    runs, _ = load_history([tmp_path])
    assert runs[0].run_id == "synthetic-6-000"
    by_id = {r.run_id: r for r in runs}
    assert by_id["synthetic-6-002"].dirty and by_id["synthetic-6-002"].commit_short.endswith("+dirty")
    assert by_id["synthetic-6-004"].placed_by_time and by_id["synthetic-6-004"].commit is None


def test_two_machines_never_share_a_series() -> None:
    runs, _ = load_history([FIXTURES / "cpu-1thread", FIXTURES / "cpu-2threads"])
    assert len({r.machine for r in runs}) == 2
    series = build_series(runs)
    assert series and all(len({p.run.machine for p in s.points}) == 1 for s in series)
    cells = {(s.cell_id, s.metric.name) for s in series}
    assert len(series) > len(cells)  # the shared cells got one series per machine


def test_a_software_change_is_marked_on_the_series(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path, commits=4, seed=7)
    manifest_path = tmp_path / "synthetic-7-002" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["environment"]["torch_version"] = "2.14.0+cpu"
    manifest_path.write_text(json.dumps(manifest))
    runs, _ = load_history([tmp_path])
    series = build_series(runs)[0]
    assert len({r.machine for r in runs}) == 1
    assert series.software_changes[0][0] == 2
    assert "torch_version: 2.13.0+cpu -> 2.14.0+cpu" in series.software_changes[0][1]


def test_a_corrupt_run_is_named_and_left_out_the_rest_goes_on(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path, commits=7, seed=8)
    cells = tmp_path / "synthetic-8-003" / "cells.jsonl"
    lines = cells.read_text().splitlines()
    lines[1] = "{not json"
    cells.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["history", str(tmp_path), "--metric", "step_time"])
    assert result.exit_code == 0, result.output
    assert f"{cells}:2: corrupt record" in result.output
    assert "6 run(s) on 1 machine(s)" in result.output


def _shifted_history(tmp_path: Path, *, seed: int = 9, shift_at: int = 9) -> str:
    _, records = read_source(SOURCE)
    cell = records[0]["cell_id"]
    write_history(SOURCE, tmp_path, commits=16, shift_at=shift_at, shift_pct=15.0,
                  shifted_cells=[cell], seed=seed)
    return cell


def test_gate_fails_on_a_regression_in_range_and_writes_markdown_and_json(tmp_path: Path) -> None:
    store = tmp_path / "store"
    cell = _shifted_history(store)
    md, js = tmp_path / "s.md", tmp_path / "s.json"
    result = CliRunner().invoke(main, [
        "history", str(store), "--metric", "step_time", "--fail-on-regression",
        "--since", fake_commit(5, 9)[:12], "--markdown", str(md), "--json", str(js)])
    assert result.exit_code == 1, result.output
    payload = json.loads(js.read_text())
    assert payload["gate_failed"] is True
    [finding] = payload["regressions_in_range"]
    assert finding["worse_pct"] > 5.0
    assert finding["commits"] == f"{fake_commit(8, 9)[:10]}..{fake_commit(9, 9)[:10]}"
    shifted = next(s for s in payload["series"] if s["cell_id"] == cell)
    assert shifted["change_points"][0]["after"]["commit"] == fake_commit(9, 9)
    assert "**FAIL**" in md.read_text()


def test_gate_passes_when_the_regression_is_before_the_range(tmp_path: Path) -> None:
    _shifted_history(tmp_path)
    result = CliRunner().invoke(main, ["history", str(tmp_path), "--metric", "step_time",
                                       "--fail-on-regression", "--since", fake_commit(12, 9)])
    assert result.exit_code == 0, result.output
    assert "gate: pass" in result.output


def test_gate_with_too_little_history_is_undecided_not_a_pass(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path, commits=3, seed=10)
    result = CliRunner().invoke(main, ["history", str(tmp_path), "--fail-on-regression"])
    assert result.exit_code == 3, result.output
    assert "not enough history" in result.output


@pytest.mark.parametrize("args, message", [
    (["--since", "abcd"], "--since sets the range of the gate"),
    (["--fail-on-regression", "--since", "deadbeef"], "no run in the history has that commit"),
    (["--fail-on-regression", "--since", "yesterday"], "give a number of days"),
    (["--metric", "speed"], "unknown; valid choices"),
])
def test_bad_flags_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    write_history(SOURCE, tmp_path, commits=2, seed=11)
    result = CliRunner().invoke(main, ["history", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_folder_without_runs_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["history", str(tmp_path)])
    assert result.exit_code == 2 and "neither a run folder" in result.output


def test_dashboard_pages_escape_every_string_from_a_file(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _shifted_history(store)
    for cells in store.glob("*/cells.jsonl"):
        records = [json.loads(line) for line in cells.read_text().splitlines()]
        records[0]["model"] = "<script>alert(1)</script>"
        cells.write_text("".join(json.dumps(r) + "\n" for r in records))
        manifest_path = cells.parent / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["run_id"] = f"<b onmouseover=x>{manifest['run_id']}"
        manifest["environment"]["cpu_model"] = "<img src=x onerror=alert(1)>"
        manifest_path.write_text(json.dumps(manifest))
    md = tmp_path / "summary.md"
    result = CliRunner().invoke(main, ["history", str(store), "--metric", "step_time",
                                       "-o", str(tmp_path / "site"), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    assert "<script" not in md.read_text() and "<img" not in md.read_text()
    pages = [tmp_path / "site" / "index.html", *(tmp_path / "site" / "series").glob("*.html")]
    assert len(pages) > 2
    text = "".join(page.read_text() for page in pages)
    assert "<script" not in text and "&lt;script&gt;" in text
    assert "<img" not in text and "<b onmouseover" not in text and "&lt;img src=x" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    index = pages[0].read_text()
    assert index.index("regression") < index.index("no change point")  # newest change first


def test_dashboard_links_a_run_report_held_beside_it(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path / "store", commits=6, seed=12)
    site = tmp_path / "site"
    (site / "reports" / "synthetic-12-002").mkdir(parents=True)
    (site / "reports" / "synthetic-12-002" / "index.html").write_text("<p>report</p>")
    result = CliRunner().invoke(main, ["history", str(tmp_path / "store"), "--metric",
                                       "step_time", "-o", str(site)])
    assert result.exit_code == 0, result.output
    page = next((site / "series").glob("*.html")).read_text()
    assert '<a href="../reports/synthetic-12-002/index.html">report</a>' in page
    assert page.count(">report</a>") == 1


def test_since_days_counts_back_from_now() -> None:
    from datetime import datetime, timezone

    from bigtrain.history.gate import parse_since

    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    assert parse_since("7d", now=now).after == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert parse_since("2", now=now).after == datetime(2026, 12, 5, tzinfo=timezone.utc)
    assert parse_since("100d", now=now).after == datetime(2026, 8, 29, tzinfo=timezone.utc)
    assert parse_since("1234abcd", now=now).commit == "1234abcd"
    assert parse_since("1234", now=now).commit == "1234"


def test_busy_runs_are_flagged_and_skip_busy_leaves_them_out(tmp_path: Path) -> None:
    write_history(SOURCE, tmp_path, commits=6, seed=13)
    cells = tmp_path / "synthetic-13-001" / "cells.jsonl"
    records = [json.loads(line) for line in cells.read_text().splitlines()]
    for record in records:
        record["host_load"] = {"loadavg_1m": 3.0, "other_cpu_s": 1.5, "other_cpu_cores": 1.5,
                               "steal_pct": 0.0, "gpu_other_processes": 0, "cores": 2,
                               "cores_used": 2, "busy": True}
    cells.write_text("".join(json.dumps(r) + "\n" for r in records))
    runs, skipped = load_history([tmp_path])
    assert skipped == []
    [series] = [s for s in build_series(runs) if s.metric.name == "step_time"][:1]
    assert [p.busy for p in series.points] == [False, True, False, False, False, False]
    [kept] = [s for s in build_series(runs, skip_busy=True) if s.metric.name == "step_time"][:1]
    assert [p.run.run_id for p in kept.points] == [
        f"synthetic-13-00{i}" for i in (0, 2, 3, 4, 5)]


def test_the_power_bench_wilson_interval_matches_the_textbook_values() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("history_power", REPO / "bench" / "history_power.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    low, high = bench.wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert bench.wilson(0, 20)[0] == 0.0 and round(bench.wilson(0, 20)[1], 4) == 0.1611
