"""`bigbench profile-diff`, and the op-level diffs `compare` and `ab` add for regressed cells
(issue 24, item 6). Seeded synthetic profiled runs (tests/profile_fixtures.py); the candidate's
`aten::mm` is made 3x slower, so the diff must name it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bigtrain.ab.report import outcome_json, outcome_markdown
from bigtrain.compare import compare_run_dirs, render_markdown, to_json
from bigtrain.profiles.gate import ab_op_diffs
from conftest import run_cli
from profile_fixtures import MLP_OPS, op_rows, profiled_run

HOSTILE_OP = "<script>alert(1)</script> [bold]x[/bold] | `tick`"


@pytest.fixture
def runs(tmp_path):
    """Two runs of cells `slow` (aten::mm 3x, +30% step time) and `same`; a hostile op name in
    the slow cell of both sides, slowed too."""
    hostile = MLP_OPS + ((HOSTILE_OP, "forward", "other", 1, 4.0, 0, "[]"),)
    base = profiled_run(tmp_path, "base", {
        "slow": {"rows": op_rows(hostile), "step_s": 0.0010},
        "same": {"rows": op_rows(MLP_OPS), "step_s": 0.0010},
    })
    cand = profiled_run(tmp_path, "cand", {
        "slow": {"rows": op_rows(hostile, scale={"aten::mm": 3.0, HOSTILE_OP: 2.0}),
                 "step_s": 0.0013},
        "same": {"rows": op_rows(MLP_OPS), "step_s": 0.0010},
    })
    return base, cand


def test_profile_diff_names_the_slowed_op_first_in_every_output(runs, tmp_path):
    base, cand = runs
    md, js = tmp_path / "diff.md", tmp_path / "diff.json"
    result = run_cli("profile-diff", str(base), str(cand), "--markdown", str(md), "--json", str(js))
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    (slow,) = data["slower_cells"]
    assert slow["cell_id"] == "slow" and slow["regression_us_per_step"] == pytest.approx(124.0)
    top = slow["ops"][0]
    assert (top["op"], top["phase"], top["added_us_per_step"]) == ("aten::mm", "backward", 120.0)
    assert top["share_of_regression"] == pytest.approx(120 / 124)
    assert [c["cell_id"] for c in data["other_cells"]] == ["same"]
    # the terminal shows the op name as it is: rich reads no markup in it
    assert "[bold]x[/bold]" in result.output and "aten::mm" in result.output
    text = md.read_text()
    assert "| aten::mm | backward | matmul/conv | +120 | 97% |" in text
    assert "<script>" not in text and "\\[bold\\]" in text and "\\|" in text


def test_a_truncated_profile_marks_its_cell_invalid_and_the_rest_is_diffed(runs):
    base, cand = runs
    ops = cand / "profiles" / "same" / "ops.csv"
    ops.write_text(ops.read_text()[:60])
    result = run_cli("profile-diff", str(base), str(cand))
    assert result.exit_code == 0, result.output
    assert "invalid profile, candidate same:" in result.output and "aten::mm" in result.output


def test_runs_without_profiles_or_common_cells_exit_2_naming_what_is_missing(runs, tmp_path):
    from test_compare_support import repeated_cell, write_run

    base, _ = runs
    plain = write_run(tmp_path, "plain", repeated_cell("plain", "slow", 0.001, repeats=1))
    result = run_cli("profile-diff", str(base), str(plain))
    assert result.exit_code == 2
    assert f"the candidate {plain} holds no usable profile" in result.output
    other = profiled_run(tmp_path, "other", {"elsewhere": {"rows": op_rows(MLP_OPS)}})
    result = run_cli("profile-diff", str(base), str(other))
    assert result.exit_code == 2 and "share no profiled cell" in result.output
    assert "candidate cells: elsewhere" in result.output
    missing = run_cli("profile-diff", str(base), str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_profile_diff_never_writes_onto_a_runs_own_files(runs):
    base, cand = runs
    before = (cand / "cells.jsonl").read_bytes()
    result = run_cli("profile-diff", str(base), str(cand), "--json", str(cand / "cells.jsonl"))
    assert result.exit_code == 2 and "refusing to write" in result.output
    into_profiles = run_cli("profile-diff", str(base), str(cand), "--markdown",
                            str(cand / "profiles" / "x.md"))
    assert into_profiles.exit_code == 2
    assert (cand / "cells.jsonl").read_bytes() == before


def test_compare_names_the_ops_behind_each_regressed_cell(runs, tmp_path):
    base, cand = runs
    md, js = tmp_path / "gate.md", tmp_path / "gate.json"
    result = run_cli("compare", str(base), str(cand), "--markdown", str(md), "--json", str(js),
                     "--undecided", "pass")
    assert result.exit_code == 1, result.output
    assert "op diff: mlp:small" in result.output and "aten::mm (backward) +120" in result.output
    text = md.read_text()
    section = text.index("### What made the regressed cells slower")
    # right after the regressions table, before the folded rest
    assert text.index("### Regressions and failures") < section < text.index("All other results")
    assert "aten::mm (backward) +120 µs/step (97% of the regression)" in text
    data = json.loads(js.read_text())
    assert [c["cell_id"] for c in data["op_diffs"]["cells"]] == ["slow"]


def test_without_profiles_compare_and_ab_say_exactly_what_they_said_before(tmp_path):
    from test_compare_support import repeated_cell, write_run

    base = write_run(tmp_path, "b", repeated_cell("b", "c", 0.0010))
    cand = write_run(tmp_path, "c", repeated_cell("c", "c", 0.0013, seed=1))
    md, js = tmp_path / "gate.md", tmp_path / "gate.json"
    result = run_cli("compare", str(base), str(cand), "--markdown", str(md), "--json", str(js))
    assert result.exit_code == 1 and "op diff" not in result.output
    comparison = compare_run_dirs(base, cand)
    assert md.read_text() == render_markdown(comparison)
    assert "op_diffs" not in json.loads(js.read_text())
    assert set(json.loads(js.read_text())) == set(to_json(comparison))


def _ab_outcome(result, base, cand):
    return SimpleNamespace(rounds_used=3, max_rounds=10, elapsed_s=10.0, budget_s=60.0,
                           mode="interleave", order_seed=1, stop_reason="decided", result=result,
                           run_dirs={"baseline": base, "candidate": cand}, exit_code=1,
                           to_json=lambda: {"stop_reason": "decided"})


def test_ab_adds_the_op_diff_when_both_sides_were_profiled(runs):
    base, cand = runs
    outcome = _ab_outcome(compare_run_dirs(base, cand), base, cand)
    assert [d.cell_id for d in ab_op_diffs(outcome).diffs] == ["slow"]
    text = outcome_markdown(outcome)
    assert "### What made the regressed cells slower" in text and "**bigbench ab**" in text
    assert outcome_json(outcome)["op_diffs"]["cells"][0]["ops"][0]["op"] == "aten::mm"
    # sides without a profiles folder: nothing added
    bare = _ab_outcome(compare_run_dirs(base, cand), base / "nowhere", cand)
    assert ab_op_diffs(bare).empty and "op_diffs" not in outcome_json(bare)


def test_a_truncated_trace_marks_its_cell_invalid(runs):
    base, cand = runs
    trace = cand / "profiles" / "slow" / "trace.json.gz"
    trace.write_bytes(trace.read_bytes()[:-12])
    result = run_cli("profile-diff", str(base), str(cand))
    # `same` is still diffed (and did not get slower); `slow` is named with its reason
    assert result.exit_code == 0, result.output
    assert f"invalid profile, candidate slow: {trace}: truncated" in result.output.replace("\n", "")
