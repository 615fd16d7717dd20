"""`--undecided fail|pass`: an undecided paired gate is no silent green (issue 30).

Seeded synthetic rounds only (tests/paired_rounds.py): no timing noise reaches an assertion.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from bigtrain.common import exit_codes
from bigtrain.compare.undecided import DEFAULT_UNDECIDED, gate_exit_code
from bigtrain.ab.report import detectable_lines, outcome_json, outcome_lines
from bigtrain.compare import render_markdown
from bigtrain.compare.paired import PairedRound, compare_paired
from paired_rounds import synthetic_rounds


def _outcome(result, code=0):
    return SimpleNamespace(rounds_used=result.rounds, max_rounds=100, elapsed_s=240.0,
                           budget_s=240.0, mode="interleave", order_seed=1, stop_reason="budget",
                           result=result, run_dirs={}, exit_code=code,
                           to_json=lambda: {"stop_reason": "budget"})


def _slower_adam_rounds():
    # The case: the optimizer step 15% slower, 9 rounds on a noisy box.
    return synthetic_rounds(seed=30, n_rounds=9, optimizer_slowdown=1.15, side_sigma=0.08,
                            slow_mode_p=0.2)


def test_the_default_fails_closed():
    assert DEFAULT_UNDECIDED == "fail"
    assert exit_codes.EXIT_UNDECIDED == 3
    assert len({exit_codes.EXIT_OK, exit_codes.EXIT_FAILED, exit_codes.EXIT_USAGE,
                exit_codes.EXIT_UNDECIDED, exit_codes.EXIT_INTERRUPTED}) == 5


def test_an_undecided_gate_exits_3_by_default_and_0_only_when_asked():
    result = compare_paired(_slower_adam_rounds(), thresholds="2%")
    assert not result.all_decided and not result.gate_failed  # the state: nothing decided
    assert gate_exit_code(result, exit_codes.EXIT_OK) == exit_codes.EXIT_UNDECIDED
    assert gate_exit_code(result, exit_codes.EXIT_OK, undecided="pass") == exit_codes.EXIT_OK
    # a regression or an interrupt is never turned into anything else
    assert gate_exit_code(result, exit_codes.EXIT_REGRESSION) == exit_codes.EXIT_REGRESSION
    assert gate_exit_code(None, exit_codes.EXIT_INTERRUPTED) == exit_codes.EXIT_INTERRUPTED
    with pytest.raises(ValueError):
        gate_exit_code(result, 0, undecided="maybe")


def test_a_decided_gate_is_not_touched_by_the_policy():
    rounds = synthetic_rounds(seed=3, n_rounds=4, side_sigma=0.0, slow_mode_p=0.0)
    same = {cell: [PairedRound(round_index=r.round_index, baseline=r.baseline,
                               candidate=r.baseline) for r in rs] for cell, rs in rounds.items()}
    result = compare_paired(same)
    assert result.all_decided
    assert gate_exit_code(result, 0) == gate_exit_code(result, 0, undecided="pass") == 0


def test_every_summary_states_each_cells_smallest_detectable_change():
    result = compare_paired(_slower_adam_rounds(), thresholds="2%")
    per_cell = detectable_lines(result)
    assert len(per_cell) == len(result.cells)
    for line, cell in zip(per_cell, result.sorted_cells()):
        mde = next(m.verdict.mde_pct for m in cell.metrics if m.metric.name == "step_time")
        assert math.isfinite(mde) and mde > 2  # wider than the band: why it stayed undecided
        assert line.startswith(f"{cell.label}: undecided after 9 round(s)")
        assert f"step_time {mde:.3g}%" in line
    failed = outcome_lines(_outcome(result))
    assert any("gate FAILED (exit 3)" in line and "6 cell(s) undecided" in line
               for line in failed), failed
    passed = outcome_lines(_outcome(result), "pass")
    assert any(line.startswith("ab: warning: 6 cell(s) undecided, passed only because "
                               "--undecided pass") for line in passed), passed
    facts = outcome_json(_outcome(result))["ab"]
    assert facts["undecided_policy"] == "fail" and facts["exit_code"] == 3
    assert outcome_json(_outcome(result), "pass")["ab"]["exit_code"] == 0


def test_markdown_never_shows_a_green_tick_over_undecided_cells():
    result = compare_paired(_slower_adam_rounds(), thresholds="2%")
    text = render_markdown(result)
    assert ":white_check_mark:" not in text and ":warning:" in text
    assert "could detect >= " in text  # the per-row evidence carries the detectable change


# -- `bigbench compare --paired` reads the same policy as `bigbench ab` ---------------------------
def _paired_folders(tmp_path, rounds):
    import dataclasses

    from test_compare_support import write_run

    folders = []
    for side in ("baseline", "candidate"):
        records = [dataclasses.replace(getattr(r, side), run_id=f"ab-{side}",
                                       repeat=r.round_index)
                   for rs in rounds.values() for r in rs]
        folders.append(str(write_run(tmp_path, f"ab-{side}", records)))
    return folders


def test_compare_paired_fails_closed_on_undecided_cells_and_passes_only_when_asked(tmp_path):
    from conftest import run_cli

    base, cand = _paired_folders(tmp_path, _slower_adam_rounds())
    closed = run_cli("compare", base, cand, "--paired", "--threshold", "2%")
    assert closed.exit_code == exit_codes.EXIT_UNDECIDED, closed.output
    assert "gate FAILED (exit 3)" in closed.output and "undecided" in closed.output
    opened = run_cli("compare", base, cand, "--paired", "--threshold", "2%", "--undecided", "pass")
    assert opened.exit_code == exit_codes.EXIT_OK, opened.output
    assert "passed only because --undecided pass" in opened.output


def test_undecided_is_the_unpaired_gates_policy_too(tmp_path):
    """Without --paired the same folders are separate runs: their noisy repeats leave cells
    undecided, and the one policy decides the exit code there as well."""
    from conftest import run_cli

    base, cand = _paired_folders(tmp_path, _slower_adam_rounds())
    closed = run_cli("compare", base, cand, "--threshold", "2%", "--undecided", "fail")
    assert closed.exit_code == exit_codes.EXIT_UNDECIDED, closed.output
    assert "gate FAILED (exit 3)" in closed.output and "--repeats" in closed.output
    opened = run_cli("compare", base, cand, "--threshold", "2%", "--undecided", "pass")
    assert opened.exit_code == exit_codes.EXIT_OK, opened.output
    assert "passed only because --undecided pass" in opened.output
