"""Time to target in `bigbench report`: converge records (written through the real store from
seeded synthetic curves, tests/converge_runs.py) become tables, figures and summary lines whose
numbers are recomputed here by hand; step-time-only reports stay exactly as they were."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bigtrain.common.errors import BadInput
from bigtrain.report.convergence import median_band, median_counting_never
from bigtrain.results.curves import curve_frame, curve_rows
from bigtrain.results.frame import CONVERGE_FIELDS, load_frame
from bigtrain.results.parquet import write_parquet
from bigtrain.results.store import RunWriter, load_run
from conftest import REPO, run_cli
from converge_runs import (
    HOSTILE,
    SEEDS,
    TARGET,
    diverges,
    seed_outcome,
    settings,
    write_converge_run,
)

EXAMPLE_RUN = REPO / "results" / "cpu-2vcpu-quick"
EXAMPLE_REPORT = REPO / "reports" / "cpu-2vcpu-quick"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def as_float(text: str) -> float:
    return float(text) if text != "" else math.nan


@pytest.fixture(scope="module")
def converge_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic CPU converge run and its report, made by `bigbench report`."""
    root = tmp_path_factory.mktemp("converge")
    run = write_converge_run(root)
    result = run_cli("report", str(run), "-o", str(root / "report"))
    assert result.exit_code == 0, result.output
    return run, root / "report"


def expected_setting(model: str, optimizer: str, batch_norm: str, lr: float) -> dict:
    """Steps and seconds to target of one setting, by hand from the generator's seeds."""
    outcomes = [seed_outcome(model, optimizer, batch_norm, s, diverge=diverges(model, optimizer,
                                                                             lr, s))
                for s in SEEDS]
    steps = sorted(o.steps_to_target for o in outcomes if o.steps_to_target is not None)
    seconds = sorted(o.time_to_target_s for o in outcomes if o.time_to_target_s is not None)
    return {"reached": len(steps), "steps": steps, "seconds": seconds, "outcomes": outcomes}


# -- the statistics, on exact numbers ------------------------------------------------------------
def test_median_counts_seeds_that_never_reached_as_never() -> None:
    assert median_counting_never([30, 10, 20], 3) == 20
    assert median_counting_never([10, 20], 3) == 20  # [10, 20, never]
    assert math.isnan(median_counting_never([10], 3))  # [10, never, never]
    assert median_counting_never([10, 20, 30], 4) == 25  # [10, 20, 30, never]: middle two
    assert math.isnan(median_counting_never([10, 20], 4))  # [10, 20, never, never]
    assert median_counting_never([7.5], 1) == 7.5
    with pytest.raises(ValueError):
        median_counting_never([1, 2, 3], 2)


def test_median_band_is_over_the_seeds_still_training_at_each_point() -> None:
    curves = [([0, 10, 20], [1, 3, 5]), ([0, 10], [3, 5]), ([0, 10, 20, 30], [2, 2, 2, 2])]
    band = median_band(curves, [0, 5, 10, 20, 30, 40])
    assert band["x"].tolist() == [0, 5, 10, 20, 30]  # 40: no seed got there
    assert band["seeds"].tolist() == [3, 3, 3, 2, 1]
    # at 5: interpolated 2, 4 and 2
    assert band["median"].tolist() == [2, 2, 3, 3.5, 2]
    assert band["low"].tolist() == [1, 2, 2, 2, 2]
    assert band["high"].tolist() == [3, 4, 5, 5, 2]


def test_a_curve_with_columns_of_different_lengths_is_refused_naming_the_cell(
        tmp_path: Path) -> None:
    run = load_run(write_converge_run(tmp_path))
    record = run.records[0]
    bad = dict(record.curve)
    bad["eval_loss"] = list(bad["eval_loss"])[:-1]
    with pytest.raises(BadInput, match=r"cells.jsonl: cell conv0 repeat 0: curve columns differ "
                                       r"in length \(step \d+, .*eval_loss \d+"):
        curve_rows(dataclasses.replace(record, curve=bad), "results/x/cells.jsonl")
    del bad["eval_metric"]
    with pytest.raises(BadInput, match="curve lacks eval_metric"):
        curve_rows(dataclasses.replace(record, curve=bad), "results/x/cells.jsonl")


# -- the frame and its Parquet -------------------------------------------------------------------
def test_curve_frame_has_a_row_per_cell_seed_and_evaluation(converge_report) -> None:
    run, _ = converge_report
    frame = curve_frame([load_run(run)])
    expected = sum(len(expected_setting(m, o, b, lr)["outcomes"][s].steps)
                   for m, o, b, lr in settings() for s in SEEDS)
    assert len(frame) == expected
    one = frame[(frame["cell_id"] == "conv0") & (frame["repeat"] == 1)]
    outcome = seed_outcome("mlp:digits", "sgd", "on", 1)
    assert one["step"].tolist() == outcome.steps
    assert one["eval_metric"].tolist() == pytest.approx(outcome.metric)
    assert one["evaluation"].tolist() == list(range(len(outcome.steps)))
    assert set(one["seed"]) == {1}


def test_converge_columns_only_for_converge_records_and_typed_in_parquet(
        converge_report, tmp_path: Path) -> None:
    run, _ = converge_report
    step_time = load_frame([EXAMPLE_RUN])
    assert not set(CONVERGE_FIELDS) & set(step_time.columns)
    frame = load_frame([run])
    assert set(CONVERGE_FIELDS) <= set(frame.columns)
    write_parquet(frame, tmp_path / "f.parquet")
    schema = pq.read_schema(tmp_path / "f.parquet")
    assert str(schema.field("seed").type) == "int64"
    assert str(schema.field("steps_to_target").type) == "int64"  # null where not reached
    assert str(schema.field("time_to_target_s").type) == "double"
    assert str(schema.field("protocol").type) == "string"


# -- the report, through `bigbench report` -------------------------------------------------------
def test_time_to_target_table_holds_medians_over_seeds(converge_report) -> None:
    _, report = converge_report
    rows = read_csv(report / "tables" / "converge.csv")
    assert len(rows) == len(settings())
    by_setting = {(r["model"], r["optimizer"], r["batch norm"], float(r["lr"])): r for r in rows}
    for key in settings():
        row = by_setting[key]
        hand = expected_setting(*key)
        assert row["seeds reached"] == f"{hand['reached']}/{len(SEEDS)}"
        if hand["reached"] == len(SEEDS):
            assert as_float(row["steps to target"]) == statistics.median(hand["steps"])
            assert as_float(row["time to target (s, median)"]) == pytest.approx(
                statistics.median(hand["seconds"]))
            assert as_float(row["steps min"]) == hand["steps"][0]
            assert as_float(row["time (s, max)"]) == pytest.approx(hand["seconds"][-1])
    # 2 of 3 seeds reached: the median counts the third as never, so it is the slower of the two.
    two = by_setting[("mlp:digits", "rmsprop", "off", 0.01)]
    hand = expected_setting("mlp:digits", "rmsprop", "off", 0.01)
    assert (two["seeds reached"], as_float(two["steps to target"])) == ("2/3", hand["steps"][-1])
    # No seed reached: no median, no fastest seed; the setting is still listed.
    none = by_setting[("cnn:digits", "sgd", "off", 0.1)]
    assert none["seeds reached"] == "0/3" and none["steps to target"] == ""
    assert "energy to target (J, median)" not in rows[0]  # a CPU run measured no energy


def test_cells_that_did_not_reach_the_target_are_listed_with_best_value(converge_report) -> None:
    _, report = converge_report
    rows = read_csv(report / "tables" / "not_reached.csv")
    missed = [r for r in rows if r["status"] == "not_reached"]
    assert sorted(int(r["seed"]) for r in missed) == list(SEEDS)
    for row in missed:
        outcome = seed_outcome("cnn:digits", "sgd", "off", int(row["seed"]))
        assert (row["model"], row["optimizer"], row["batch norm"]) == ("cnn:digits", "sgd", "off")
        assert float(row["best value"]) == pytest.approx(outcome.best)
        assert float(row["best value"]) < TARGET
        assert row["target"] == f"accuracy ≥ {TARGET:g}"
        assert float(row["steps run"]) == outcome.steps[-1]
        assert f"{outcome.best:.3f} < target" in row["reason"]
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert [(r["model"], r["optimizer"], float(r["lr"]), r["seed"]) for r in diverged] == [
        ("mlp:digits", "rmsprop", 0.01, "1")]
    assert "NaN" in diverged[0]["reason"]
    markdown = (report / "report.md").read_text()
    assert "## Cells that did not reach the target" in markdown


def test_batch_norm_effect_on_steps_is_paired_on_the_other_axes(converge_report) -> None:
    _, report = converge_report
    rows = read_csv(report / "tables" / "converge_effects.csv")
    bn = [r for r in rows if r["change"] == "batch norm on vs off"]
    # pairs: every (model, optimizer) at its default lr; lr 0.01 has no BN-on partner
    assert len(bn) == 6
    adam = next(r for r in bn if (r["model"], r["optimizer"]) == ("mlp:digits", "adam"))
    on = statistics.median(expected_setting("mlp:digits", "adam", "on", 0.001)["steps"])
    off = statistics.median(expected_setting("mlp:digits", "adam", "off", 0.001)["steps"])
    assert float(adam["steps with / reference ×"]) == pytest.approx(on / off)
    assert on < off  # batch norm saves steps in the synthetic data
    sgd_cnn = next(r for r in bn if (r["model"], r["optimizer"]) == ("cnn:digits", "sgd"))
    assert sgd_cnn["steps with / reference ×"] == ""  # BN off never reached: no ratio
    assert sgd_cnn["seeds reached"] == "3/3 vs 0/3"


def test_figures_and_summary_lines_are_produced(converge_report) -> None:
    _, report = converge_report
    names = {p.name for p in (report / "figures").iterdir()}
    for model in ("mlp-digits", "cnn-digits"):
        for kind in ("loss-steps", "loss-seconds", "metric-steps"):
            assert f"converge-{kind}-{model}.png" in names
    assert "converge-to-target.png" in names
    for name in names:
        assert (report / "figures" / name).read_bytes().startswith(PNG_MAGIC)
    markdown = (report / "report.md").read_text()
    summary = markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in summary.splitlines() if line.startswith("- Time to target")]
    assert len(lines) == 2
    mlp = next(line for line in lines if "mlp:digits" in line)
    fastest = min(((statistics.median(expected_setting(*k)["seconds"]), k) for k in settings()
                   if k[0] == "mlp:digits" and expected_setting(*k)["reached"] == 3))
    assert f"fastest BN {fastest[1][2]} · {fastest[1][1]} · lr {fastest[1][3]:g}" in mlp
    assert "all 7 settings reached it" in mlp
    cnn = next(line for line in lines if "cnn:digits" in line)
    assert "1 of 6 settings did not reach it in most seeds" in cnn
    html = (report / "index.html").read_text()
    assert 'id="converge"' in html and 'id="fig-converge-loss-seconds-mlp-digits"' in html
    curves = pd.read_csv(report / "tables" / "curves.csv")
    assert {"source", "seed", "step", "wall_s", "train_loss", "eval_loss", "eval_metric"} <= set(
        curves.columns)


def test_energy_to_target_is_shown_where_measured(tmp_path: Path) -> None:
    run = write_converge_run(tmp_path, run_id="gpu-converge", energy_per_s_w=250.0)
    result = run_cli("report", str(run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "report" / "tables" / "converge.csv")
    row = next(r for r in rows if (r["model"], r["optimizer"], r["batch norm"]) ==
               ("cnn:digits", "adam", "on"))
    seconds = statistics.median(expected_setting("cnn:digits", "adam", "on", 0.001)["seconds"])
    assert float(row["energy to target (J, median)"]) == pytest.approx(250.0 * seconds)


def test_hostile_reasons_and_metric_names_stay_text(tmp_path: Path) -> None:
    run = write_converge_run(tmp_path, run_id="hostile", hostile=True)
    result = run_cli("report", str(run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "<script>" not in markdown and "</details> " not in markdown.replace(
        "</details>\n", "")
    # the reason is kept whole in the CSV (data, unformatted)
    rows = read_csv(tmp_path / "report" / "tables" / "not_reached.csv")
    assert all(r["reason"].endswith(HOSTILE) for r in rows)
    # a `$...$` in a metric name is printed, not parsed as mathtext: the figures still draw
    assert (tmp_path / "report" / "figures" / "converge-metric-steps-cnn-digits.png").exists()


def test_a_step_time_run_beside_a_converge_run_renders_both(converge_report,
                                                            tmp_path: Path) -> None:
    run, _ = converge_report
    fixture = REPO / "tests" / "fixtures" / "runs" / "cpu-2threads"
    result = run_cli("report", str(fixture), str(run), "-o", str(tmp_path / "both"))
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "both" / "tables" / "converge.csv")
    assert len(rows) == len(settings()) and "source" in rows[0]


# -- step-time reports are untouched -------------------------------------------------------------
def _without_images_and_time(html: str) -> str:
    html = re.sub(r'src="data:image/png;base64,[^"]*"', "", html)
    return re.sub(r"Generated .*? by", "Generated by", html)


def test_the_example_report_still_matches_a_fresh_render(tmp_path: Path) -> None:
    result = run_cli("report", str(EXAMPLE_RUN), "-o", str(tmp_path / "fresh"))
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh"
    assert (fresh / "report.md").read_text() == (EXAMPLE_REPORT / "report.md").read_text()
    committed_tables = sorted(p.name for p in (EXAMPLE_REPORT / "tables").iterdir())
    assert sorted(p.name for p in (fresh / "tables").iterdir()) == committed_tables
    for name in committed_tables:
        assert (fresh / "tables" / name).read_bytes() == (
            EXAMPLE_REPORT / "tables" / name).read_bytes(), name
    assert sorted(p.name for p in (fresh / "figures").iterdir()) == sorted(
        p.name for p in (EXAMPLE_REPORT / "figures").iterdir())
    assert _without_images_and_time((fresh / "index.html").read_text()) == \
        _without_images_and_time((EXAMPLE_REPORT / "index.html").read_text())
    assert "Time to target" not in (fresh / "index.html").read_text()


def test_csv_export_carries_the_converge_fields(converge_report) -> None:
    run, _ = converge_report
    result = run_cli("export", str(run), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.output.splitlines()))
    assert len(rows) == len(settings()) * len(SEEDS)
    reached = [r for r in rows if r["status"] == "ok"]
    outcome = seed_outcome(reached[0]["model"], reached[0]["optimizer"],
                           reached[0]["batch_norm"], int(reached[0]["seed"]))
    assert int(float(reached[0]["steps_to_target"])) == outcome.steps_to_target
    assert all(r["steps_to_target"] == "" for r in rows if r["status"] != "ok")


def test_a_run_where_no_seed_reached_anything_still_reports_every_seed(tmp_path: Path) -> None:
    source = load_run(write_converge_run(tmp_path / "src"))
    empty = {column: [] for column in ("step", "wall_s", "train_loss", "eval_loss",
                                       "eval_metric")}
    with RunWriter(tmp_path / "none") as writer:
        writer.write_manifest(dataclasses.replace(source.manifest, run_id="none"))
        for record in source.records:
            writer.append(dataclasses.replace(
                record, run_id="none", status="diverged", reason="loss diverged by step 10",
                steps_to_target=None, time_to_target_s=None, data_time_s=None, best_value=None,
                final_value=None, final_eval_loss=None, curve=empty))
    result = run_cli("report", str(tmp_path / "none"), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "report" / "tables" / "converge.csv")
    assert {r["seeds reached"] for r in rows} == {"0/3"}
    missed = read_csv(tmp_path / "report" / "tables" / "not_reached.csv")
    assert len(missed) == len(source.records)
    assert {r["best value"] for r in missed} == {""}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "no setting reached it in most seeds" in markdown
    assert not (tmp_path / "report" / "tables" / "curves.csv").exists()  # no evaluation at all


def test_an_lr_axis_is_named_once_beside_the_optimizer(tmp_path: Path) -> None:
    from bigtrain.report.convergence import setting_label, settings_frame
    from bigtrain.report.data import load_report_data

    run = write_converge_run(tmp_path, run_id="lr-grid", lr_axis=True)
    settings_by_lr = settings_frame(load_report_data([run]))
    labels = [setting_label(row) for _, row in settings_by_lr.iterrows()]
    assert "mlp:digits · BN off · rmsprop · lr 0.01" in labels
    assert "mlp:digits · BN off · rmsprop · lr 0.001" in labels
    assert all(label.count("lr ") == 1 for label in labels)
    # the lr axis does not split the batch-norm pairs: lr 0.01 simply has no BN-on partner
    result = run_cli("report", str(run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    effects = read_csv(tmp_path / "report" / "tables" / "converge_effects.csv")
    assert len([r for r in effects if r["change"] == "batch norm on vs off"]) == 6
