"""bench/compare_power.py on ab A/A folders written here in the layout `bigbench ab` writes
(`<id>-baseline`, `<id>-candidate`, records with repeat = round): plumbing, the injection's
arithmetic, and that resampling keeps rounds whole. Seeded synthetic rounds; nothing is timed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bigtrain.results.schema import Manifest, PhaseTimes, StepTimeStats
from bigtrain.results.store import RunWriter
from paired_rounds import synthetic_rounds
from test_compare_support import ENVIRONMENT, ok_record

REPO = Path(__file__).resolve().parent.parent


def _load_power():
    spec = importlib.util.spec_from_file_location("compare_power",
                                                  REPO / "bench" / "compare_power.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_power"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


power = _load_power()


def _write_side(folder: Path, records, minutes: int) -> None:
    with RunWriter(folder) as writer:
        writer.write_manifest(Manifest(
            run_id=folder.name, bigtrain_version="0.1.0", spec={"preset": "ci"},
            environment=dict(ENVIRONMENT), started_at="2026-11-28T10:00:00+00:00",
            ended_at=f"2026-11-28T10:{minutes:02d}:00+00:00", state="complete",
            cells_total=len(records)))
        for record in records:
            writer.append(record)


def write_ab_run(root: Path, run_id: str, seed: int, n_rounds: int = 10, minutes: int = 5):
    """An A/A ab run: `n_rounds` rounds of 3 cells taking `minutes` in all."""
    rounds = synthetic_rounds(seed, n_rounds, cells=("c0", "c1", "c2"))
    _write_side(root / f"{run_id}-baseline",
                [r.baseline for rs in rounds.values() for r in rs], minutes)
    _write_side(root / f"{run_id}-candidate",
                [r.candidate for rs in rounds.values() for r in rs], minutes)
    return root / run_id


def test_the_injection_slows_the_optimizer_phase_and_the_step_by_its_share():
    record = ok_record("c", "c0", 0, [0.010, 0.012, 0.011], optimizer_s=0.004)
    slowed = power.slow_optimizer(record, 1.10)
    assert slowed.phase_time_s.optimizer == pytest.approx(0.0044)
    # no per-step phases here: every step grows by 10% of the median optimizer phase
    assert slowed.step_times_s == pytest.approx((0.0104, 0.0124, 0.0114))
    assert slowed.step_time_s.median == pytest.approx(0.0114)
    assert slowed.items_per_s == pytest.approx(record.items_per_step / 0.0114)
    assert slowed.peak_rss_bytes == record.peak_rss_bytes
    assert power.slow_optimizer(record, 1.0) is record


def test_the_injection_uses_each_steps_own_optimizer_time():
    base = ok_record("c", "c0", 0, [0.010, 0.020])
    record = base.__class__.from_json({**base.to_json(),
                                       "phase_times_s": {"optimizer": [0.002, 0.010]}})
    slowed = power.slow_optimizer(record, 1.5)
    assert slowed.step_times_s == pytest.approx((0.011, 0.025))
    assert list(slowed.phase_times_s["optimizer"]) == pytest.approx([0.003, 0.015])


def test_resampled_rounds_stay_whole(tmp_path):
    run = power.find_ab_runs([str(write_ab_run(tmp_path, "aa1", seed=1))], None)
    pool = power.pool_rounds(run)
    assert len(pool) == 10
    for round_ in pool:
        assert set(round_) == {"c0", "c1", "c2"}
        # both sides of every cell of a round carry that round's repeat number
        assert len({p.baseline.repeat for p in round_.values()}
                   | {p.candidate.repeat for p in round_.values()}) == 1
    prepared = power.variants(pool, (1.1,))
    swapped = prepared[0, True, 1.0]["c0"]
    assert swapped.baseline is pool[0]["c0"].candidate


def test_round_duration_comes_from_the_manifests(tmp_path):
    runs = power.find_ab_runs([str(write_ab_run(tmp_path, "aa1", seed=1, minutes=5))], None)
    assert power.round_seconds(runs[0]) == pytest.approx(300 / 10)


def test_the_report_end_to_end(tmp_path, capsys):
    for i in range(3):
        write_ab_run(tmp_path / "results", f"aa{i}", seed=i)
    out = tmp_path / "power.json"
    code = power.main(["--results", str(tmp_path / "results"), "--trials", "20",
                       "--curve-trials", "10", "--curve-rounds", "5,12", "--budget-s", "300",
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["pool_rounds"] == 30 and report["round_s"] == pytest.approx(30)
    assert report["budget_rounds"] == 10  # 300 s at 30 s a round
    at_budget = report["at_budget"]
    assert at_budget["aa_any_alarm"]["trials"] == 20
    assert set(at_budget) >= {"optimizer_10pct_slower", "optimizer_5pct_slower"}
    low, high = at_budget["aa_any_alarm"]["wilson95"]
    assert 0 <= low <= high <= 1
    assert [row["rounds"] for row in report["curve"]] == [5, 12]
    printed = capsys.readouterr().out
    assert "A/A any alarm" in printed and "(budget 300 s)" in printed


def test_a_strong_slowdown_is_caught_and_aa_is_quiet(tmp_path):
    """Plumbing with a margin no noise reaches: 3x slower optimizer step, quiet synthetic rounds."""
    for i in range(2):
        write_ab_run(tmp_path, f"aa{i}", seed=10 + i, n_rounds=15)
    runs = power.find_ab_runs([str(tmp_path / "aa0"), str(tmp_path / "aa1-candidate")], None)
    report = power.analyse(runs, trials=20, curve_trials=5, budget_s=600, curve_rounds=[],
                           thresholds={"step_time": 2.0, "items_per_s": 2.0,
                                       "optimizer_time": 2.0, "peak_rss": 2.0},
                           alpha=0.01, seed=0, factors=(3.0,))
    entry = report["at_budget"]
    assert entry["optimizer_200pct_slower"]["gate_failed"]["hits"] == 20
    assert entry["aa_any_alarm"]["hits"] == 0


def test_bad_input_exits_2(tmp_path, capsys):
    assert power.main([str(tmp_path / "nothing")]) == 2
    assert "no folder" in capsys.readouterr().err
    assert power.main([]) == 2


def test_trials_draw_distinct_rounds_while_the_pool_allows():
    import random

    rng = random.Random(0)
    assert sorted(power.draw_rounds(10, 10, rng)) == list(range(10))
    assert len(set(power.draw_rounds(10, 4, rng))) == 4
    beyond = power.draw_rounds(3, 12, rng)
    assert len(beyond) == 12 and set(beyond) <= {0, 1, 2}
