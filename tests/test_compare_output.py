"""`bigbench compare`'s output fixes and new inputs: no folding off a terminal, the quantities the
verdict is about, readable numbers, several folders a side, `--paired` on ab folders, and the
converge metrics."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bigtrain import compare as cmp
from bigtrain.cli import main
from bigtrain.results.schema import CellRecord
from paired_rounds import synthetic_rounds
from test_compare_support import failed_record, ok_record, repeated_cell, write_run

CELLS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def _invoke(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


@pytest.fixture
def six_cells(tmp_path):
    base = [r for cell in CELLS for r in repeated_cell("base", cell, 0.0123)]
    cand = [r for cell in CELLS for r in repeated_cell("cand", cell, 0.0123, seed=1)]
    return write_run(tmp_path, "base", base), write_run(tmp_path, "cand", cand)


# -- the table off a terminal ------------------------------------------------------------------
def test_off_a_terminal_each_row_is_one_line(six_cells):
    """6 cells folded to 80 columns made 346 lines: now one line per cell and metric."""
    result = _invoke(*six_cells)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "unchanged" in line and "│" in line]
    assert len(rows) == 6 * 4  # step_time, items_per_s, optimizer_time, peak_rss per cell
    assert len(result.output.splitlines()) < 6 * 4 + 12
    assert all("welch-t on log per-repeat values" in row for row in rows)  # not folded away


def test_on_a_terminal_the_table_still_fits_the_width():
    import io

    from rich.console import Console

    comparison = cmp.compare_records(
        [r for cell in CELLS for r in repeated_cell("base", cell, 0.0123)],
        [r for cell in CELLS for r in repeated_cell("cand", cell, 0.0123, seed=1)])
    out = io.StringIO()
    cmp.render_terminal(comparison, Console(file=out, width=100, force_terminal=True,
                                                    color_system=None))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 100


# -- the numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "unit", "text"), [
    (27720.4, "items/s", "27,720 items/s"),
    (412.345, "items/s", "412.3 items/s"),
    (0.012345, "J", "0.01235 J"),
    (0.0123456, "s", "12.35 ms"),
    (3.5, "s", "3.500 s"),
    (512 * 2**20, "bytes", "512.0 MiB"),
    (1234.0, "steps", "1,234 steps"),
])
def test_values_print_readably_without_exponents(value, unit, text):
    assert cmp.format_value(value, unit) == text


def test_columns_show_the_geometric_means_the_change_is_about(tmp_path):
    base = [ok_record("b", "c1", i, [t]) for i, t in enumerate((0.010, 0.040))]
    cand = [ok_record("c", "c1", i, [t]) for i, t in enumerate((0.020, 0.080))]
    comparison = cmp.compare_records(base, cand)
    row = next(r for r in cmp.table_rows(comparison) if r.metric == "step_time")
    # geometric means 20 ms and 40 ms (medians would be 25 and 50): the ratio 2.0 is theirs
    assert row.baseline == "20.00 ms (geomean)"
    assert row.candidate == "40.00 ms (geomean)"
    assert row.change.startswith("+100.0%")
    data = cmp.to_json(comparison)["cells"][0]["metrics"][0]
    assert data["center"] == "geomean"
    assert data["baseline_value"] == pytest.approx(0.020)
    assert data["baseline_median"] == pytest.approx(0.025)


def test_without_repeats_the_columns_are_medians_unlabelled():
    comparison = cmp.compare_records([ok_record("b", "c1", 0, [0.010] * 10)],
                                     [ok_record("c", "c1", 0, [0.010] * 10)])
    row = next(r for r in cmp.table_rows(comparison) if r.metric == "step_time")
    assert row.baseline == "10.00 ms"


# -- several folders a side ----------------------------------------------------------------------
def test_several_folders_a_side_are_pooled_as_repeats(tmp_path):
    base1 = write_run(tmp_path, "b1", repeated_cell("b1", "c1", 0.010, repeats=2))
    base2 = write_run(tmp_path, "b2", repeated_cell("b2", "c1", 0.010, repeats=2, seed=2))
    cand1 = write_run(tmp_path, "c1", repeated_cell("c1", "c1", 0.013, repeats=2, seed=3))
    cand2 = write_run(tmp_path, "c2", repeated_cell("c2", "c1", 0.013, repeats=2, seed=4))
    out = tmp_path / "cmp.json"
    result = _invoke("--baseline", base1, "--baseline", base2, "--candidate", cand1,
                     "--candidate", cand2, "--json", out)
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    cell = data["cells"][0]
    assert cell["verdict"] == "regressed"
    assert cell["baseline_repeats"] == cell["candidate_repeats"] == 4  # repeat 0, 1 of each
    assert data["baseline"]["run_id"] == "b1 + b2"


def test_two_positional_folders_still_work(six_cells):
    assert _invoke(*six_cells).exit_code == 0


@pytest.mark.parametrize("args", [
    ("one",),
    ("one", "two", "three"),
    ("one", "two", "--baseline", "x"),
    ("--baseline", "x"),
])
def test_bad_folder_forms_exit_2_naming_the_forms(args):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert "--baseline DIR" in result.output and "Traceback" not in result.output


def test_bad_alpha_exits_2(six_cells):
    result = _invoke(*six_cells, "--alpha", "2")
    assert result.exit_code == 2 and "--alpha 2.0" in result.output


# -- --paired on the two folders of an ab run ----------------------------------------------------
def _ab_folders(tmp_path, slowdown: float, n_rounds: int = 12):
    rounds = synthetic_rounds(3, n_rounds, cells=("c0", "c1"), slowdown=slowdown,
                              side_sigma=0.01, slow_mode_p=0.0)
    base = [r.baseline for rs in rounds.values() for r in rs]
    cand = [r.candidate for rs in rounds.values() for r in rs]
    return write_run(tmp_path, "ab-baseline", base), write_run(tmp_path, "ab-candidate", cand)


def test_paired_compare_judges_rounds(tmp_path):
    out = tmp_path / "cmp.json"
    result = _invoke("--paired", *_ab_folders(tmp_path, 1.3), "--json", out, "--threshold", "5%")
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    assert data["paired"]["rounds"] == 12
    assert {c["verdict"] for c in data["cells"]} == {"regressed"}
    metric = data["cells"][0]["metrics"][0]
    assert metric["method"] == "paired t on per-round log ratios"
    assert metric["mde_pct"] is not None and metric["rounds"] <= 12
    assert "paired rounds" in result.output


def test_paired_compare_needs_as_many_folders_a_side(tmp_path):
    base, cand = _ab_folders(tmp_path, 1.0)
    result = _invoke("--paired", "--baseline", base, "--baseline", base, "--candidate", cand)
    assert result.exit_code == 2
    assert "2 baseline and 1 candidate" in result.output


# -- converge records ----------------------------------------------------------------------------
def _converge(run_id, cell, repeat, seconds, steps, status="ok"):
    record = ok_record(run_id, cell, repeat, [0.01])
    fields = {**record.to_json(), "protocol": "converge", "time_to_target_s": seconds,
              "steps_to_target": steps}
    if status != "ok":
        fields = {**failed_record(run_id, cell, repeat).to_json(), "protocol": "converge",
                  "status": status, "reason": "budget spent at accuracy 0.81"}
    return CellRecord.from_json(fields)


def test_time_to_target_is_compared_and_step_time_records_do_not_count():
    base = [_converge("b", "c1", i, 10.0 + 0.1 * i, 100 + i) for i in range(4)]
    cand = [_converge("c", "c1", i, 14.0 + 0.1 * i, 140 + i) for i in range(4)]
    metrics = {m.metric.name: m.outcome for m in cmp.compare_records(base, cand).cells[0].metrics}
    assert metrics["time_to_target_s"] == "regressed"
    assert metrics["steps_to_target"] == "regressed"
    plain = cmp.compare_records(repeated_cell("b", "c1", 0.01), repeated_cell("c", "c1", 0.01))
    assert not {"time_to_target_s", "steps_to_target"} & {
        m.metric.name for m in plain.cells[0].metrics}


def test_a_target_not_reached_in_the_candidate_is_a_regression(tmp_path):
    base = [_converge("b", "c1", i, 10.0, 100) for i in range(3)]
    cand = [*(_converge("c", "c1", i, 10.0, 100) for i in range(2)),
            _converge("c", "c1", 2, None, None, status="not_reached")]
    result = _invoke(write_run(tmp_path, "b", base), write_run(tmp_path, "c", cand))
    assert result.exit_code == 1, result.output
    assert "target reached in the baseline, not in the candidate" in result.output
    assert "1 regressed" in result.output


def test_threshold_accepts_the_converge_metrics():
    assert cmp.parse_thresholds("time_to_target_s=10%")["time_to_target_s"] == 10.0
