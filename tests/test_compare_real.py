"""compare and export on a real (small) run made by `bigbench sweep`, not on hand-made records."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.results.schema import StepTimeStats
from bigtrain.results.store import load_run
from test_compare_support import write_run

BIGBENCH = Path(sys.executable).with_name("bigbench")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Path:
    """Two cells x 2 repeats of the ci preset on the CPU, as short as the sweep allows."""
    out = tmp_path_factory.mktemp("real-runs")
    command = [str(BIGBENCH), "sweep", "--preset", "ci", "--model", "mlp:seed",
               "--optimizer", "sgd,adam", "--device", "cpu", "--repeats", "2",
               "--warmup", "0.05", "--duration", "0.2", "--out", str(out), "--run-id", "real",
               "--no-report"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "real"


def _steady_run(real_run: Path, tmp_path: Path) -> Path:
    """The real run with every repeat a copy of its cell's first repeat (real records, no spread
    between repeats): against itself every interval is the point 1, so the verdicts are exact.

    Plumbing only: two real repeats on this busy box drift apart by anything up to 10x, and
    compare rightly calls such a pair undecided (issue 30); the statistics of that are tested on
    seeded samples (test_stats, test_compare)."""
    loaded = load_run(real_run)
    firsts = {r.cell_id: r for r in loaded.records if r.repeat == 0}
    records = [dataclasses.replace(firsts[r.cell_id], repeat=r.repeat) for r in loaded.records]
    return write_run(tmp_path, "steady", records, environment=loaded.manifest.environment)


def test_real_run_against_itself_is_unchanged(real_run, tmp_path):
    out = tmp_path / "cmp.json"
    steady = _steady_run(real_run, tmp_path)
    result = CliRunner().invoke(main, ["compare", str(steady), str(steady), "--json",
                                       str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["counts"]["unchanged"] == len(data["cells"]) == 2
    for cell in data["cells"]:
        assert cell["baseline_repeats"] == cell["candidate_repeats"] == 2
        metrics = {m["metric"]: m for m in cell["metrics"]}
        assert {"step_time", "items_per_s", "optimizer_time", "peak_rss"} <= set(metrics)
        assert metrics["step_time"]["method"].startswith("welch")
        assert metrics["step_time"]["p_value"] == 1.0


def _with_times(record, run_id: str, times_s: tuple[float, ...], factor: float = 1.0):
    """`record` with its step times replaced by `times_s` scaled by `factor`."""
    scaled = tuple(t * factor for t in times_s)
    return dataclasses.replace(
        record, run_id=run_id, step_times_s=scaled,
        step_time_s=StepTimeStats.from_samples(scaled),
        items_per_s=record.items_per_step / StepTimeStats.from_samples(scaled).median,
    )


def test_real_run_slowed_down_is_caught(real_run, tmp_path):
    """Real records through the CLI: the adam cell made 1.5x slower is caught, sgd is unchanged.

    Plumbing only: the gate's statistics are tested on seeded samples (test_stats, test_compare).
    So that this outcome cannot hang on how far this box's two real repeats happened to drift
    apart, each side's repeats are copies of the first repeat's real record (no spread between
    repeats in any metric), and the candidate's adam times are exactly 1.5x those.
    """
    loaded = load_run(_steady_run(real_run, tmp_path / "steady"))
    first_times = {r.cell_id: r.step_times_s for r in loaded.records if r.repeat == 0}
    baseline, slowed = [], []
    for record in loaded.records:
        times = first_times[record.cell_id]
        baseline.append(_with_times(record, "base", times))
        factor = 1.5 if record.optimizer == "adam" else 1.0
        slowed.append(_with_times(record, "slow", times, factor))
    environment = loaded.manifest.environment
    base_dir = write_run(tmp_path, "base", baseline, environment=environment)
    candidate = write_run(tmp_path, "slow", slowed, environment=environment)
    result = CliRunner().invoke(main, ["compare", str(base_dir), str(candidate)])
    assert result.exit_code == 1, result.output
    assert "1 regressed, 1 unchanged" in result.output


def test_real_run_pooled_and_paired_plumbing(real_run, tmp_path):
    """Plumbing only: several folders a side and --paired read a real run. The same folder on both
    sides makes every outcome exact: pooled, the ratios are 1 with no spread (unchanged, on the
    steady copy: see _steady_run); paired, 2 rounds are too few to decide anything (undecided,
    which fails closed: exit 3 under the default --undecided fail)."""
    out = tmp_path / "pooled.json"
    steady = _steady_run(real_run, tmp_path)
    pooled = CliRunner().invoke(main, ["compare", "--baseline", str(steady), "--baseline",
                                       str(steady), "--candidate", str(steady), "--json",
                                       str(out)])
    assert pooled.exit_code == 0, pooled.output
    data = json.loads(out.read_text())
    assert data["counts"]["unchanged"] == len(data["cells"]) == 2
    assert all(c["baseline_repeats"] == 4 and c["candidate_repeats"] == 2 for c in data["cells"])
    out = tmp_path / "paired.json"
    paired = CliRunner().invoke(main, ["compare", "--paired", str(real_run), str(real_run),
                                       "--json", str(out)])
    assert paired.exit_code == 3, paired.output
    data = json.loads(out.read_text())
    assert data["paired"]["rounds"] == 2
    assert data["counts"]["undecided"] == len(data["cells"]) == 2
    assert "2 undecided (of 2 cells) after 2 paired rounds" in paired.output


def test_real_run_exports(real_run, tmp_path):
    gab = CliRunner().invoke(main, ["export", str(real_run), "--format",
                                    "github-action-benchmark"])
    assert gab.exit_code == 0, gab.output
    names = [e["name"] for e in json.loads(gab.output)]
    assert sum(n.endswith(":: step_time") for n in names) == 2
    saved = tmp_path / "0001_real.json"
    pb = CliRunner().invoke(main, ["export", str(real_run), "--format", "pytest-benchmark", "-o",
                                   str(saved)])
    assert pb.exit_code == 0, pb.output
    done = subprocess.run([str(BIGBENCH.with_name("pytest-benchmark")), "compare", str(saved)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "step[mlp:seed sgd/foreach" in done.stdout
