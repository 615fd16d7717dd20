"""The hardware-comparison summary, comparability, prices and escaping of `bigbench report`.

Three synthetic machines (tests/report_machines.py) with throughputs set by hand, so every
expected number here is computed from those inputs, not by the report's own code.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.markdown_escape import escape_markdown
from bigtrain.report import figures as report_figures
from bigtrain.report import write_report
from bigtrain.report.data import load_report_data
from bigtrain.report.prices import parse_prices
from bigtrain.report.tables import step_time_table, throughput_table
from bigtrain.results.schema import StepTimeStats
from bigtrain.results.store import RunWriter, load_run

from report_machines import FAMILY_FACTOR, THREE, cells, items_per_s, write_machines

COUNT = 66
#: What must not survive raw; a `</details>` from the data shows up as an unbalanced count.
HOSTILE_PIECES = ("<script", "<img", "`tick`", "[a](http", "| `")


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_machines(tmp_path_factory.mktemp("machines"), count=COUNT)


@pytest.fixture(scope="module")
def report(machines: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(machines, out, baseline=machines[0])
    return out


def hand_speedups(machine_index: int) -> dict[int, float]:
    """Per matched cell index: items/s on the machine over items/s on the CPU baseline."""
    base, other = THREE[0], THREE[machine_index]
    out = {}
    for i, (model, _, _, batch_size) in enumerate(cells(COUNT)):
        if i in base.failed or i in other.failed:
            continue
        out[i] = items_per_s(i, model, batch_size, other) / items_per_s(i, model, batch_size, base)
    return out


def geo(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def summary_rows(report: Path) -> pd.DataFrame:
    return pd.read_csv(report / "tables" / "summary.csv")


# -- the summary numbers -----------------------------------------------------------------------
def test_summary_geometric_mean_spread_and_counts_match_a_hand_computation(report: Path) -> None:
    frame = summary_rows(report)
    for index in (1, 2):
        machine = THREE[index]
        rows = frame[frame["machine"].str.contains(machine.gpu)]
        overall = rows[rows["cells"] == "all cells"].iloc[0]
        ratios = list(hand_speedups(index).values())
        assert overall["speedup ×"] == pytest.approx(geo(ratios), rel=1e-9)
        assert overall["slowest cell ×"] == pytest.approx(min(ratios), rel=1e-9)
        assert overall["fastest cell ×"] == pytest.approx(max(ratios), rel=1e-9)
        logs = [math.log(r) for r in ratios]
        assert overall["spread (geometric SD) ×"] == pytest.approx(
            math.exp(statistics.stdev(logs)), rel=1e-9)
        assert overall["matched cells"] == len(ratios)
        # failed on either side: cells measured ok on one side only
        unmatched = len(THREE[0].failed ^ machine.failed)
        assert overall["unmatched cells"] == unmatched


def test_summary_per_family_and_per_precision(report: Path) -> None:
    frame = summary_rows(report)
    speedups = hand_speedups(1)
    rows = frame[frame["machine"].str.contains("H200")].set_index("cells")
    for family in FAMILY_FACTOR:
        wanted = [r for i, r in speedups.items() if cells(COUNT)[i][0].startswith(family + ":")]
        assert rows.loc[f"family {family}", "speedup ×"] == pytest.approx(geo(wanted), rel=1e-9)
        assert rows.loc[f"family {family}", "matched cells"] == len(wanted)
    for precision in ("fp32", "bf16"):
        wanted = [r for i, r in speedups.items() if cells(COUNT)[i][2] == precision]
        assert rows.loc[f"precision {precision}", "speedup ×"] == pytest.approx(geo(wanted),
                                                                                 rel=1e-9)


def test_fastest_machine_per_family_and_a_verdict_per_machine(machines: list[Path]) -> None:
    from bigtrain.report.summary import fastest_per_family, verdict_lines

    data = load_report_data(machines, machines[0])
    fastest = fastest_per_family(data)
    assert set(fastest) == set(FAMILY_FACTOR)
    assert all("H200" in source for source in fastest.values())  # 100x beats 30x everywhere
    lines = verdict_lines(data)
    assert len(lines) == 2
    h200 = next(line for line in lines if "H200" in line)
    assert f"{geo(list(hand_speedups(1).values())):.0f}× faster than the baseline" in h200
    assert "fastest on cnn, mlp, transformer" in h200
    assert "matched cells" in h200


def test_a_slower_machine_is_called_slower(tmp_path: Path) -> None:
    from bigtrain.report.summary import verdict_lines

    runs = write_machines(tmp_path, THREE[:2], count=12)
    data = load_report_data(runs, runs[1])  # the H200 as the baseline: the CPU is slower
    (line,) = verdict_lines(data)
    assert "slower than the baseline" in line and line.startswith("AMD EPYC")


def test_summary_opens_both_html_and_markdown(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert page.index('id="summary"') < page.index('id="runs"')
    md = (report / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Runs and machines")
    assert "faster than the baseline" in md and "faster than the baseline" in page
    assert "Fastest per model family" in md and "Fastest per model family" in page


def test_markdown_summary_fits_a_pr_comment(report: Path) -> None:
    md = (report / "report.md").read_text()
    before = md.split("<details>", 1)[0]
    assert len(before.splitlines()) <= 60
    assert "speedup ×" in before  # the summary table itself is in the open at this size
    assert "<details>" in md


def test_one_run_still_has_a_summary(tmp_path: Path) -> None:
    (run,) = write_machines(tmp_path / "runs", THREE[:1], count=6)
    index = write_report([run], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Summary" in md and "nothing to compare it with" in md
    assert "nothing to compare it with" in index.read_text()
    assert not (tmp_path / "out" / "tables" / "summary.csv").exists()


# -- comparability -----------------------------------------------------------------------------
def test_every_differing_setting_is_named_in_plain_words(report: Path) -> None:
    page = (report / "index.html").read_text()
    md = (report / "report.md").read_text()
    for words in ("warm-up time differs: 0.2 s on", "torch version differs: 2.13.0+cpu on",
                  "torch thread count differs: 2 on", "CUDA version differs: not recorded on",
                  "GPU driver differs"):
        assert words in page, words
        assert escape_markdown(words) in md, words
    assert "Warning: the runs differ in" in page
    warning = next(line for line in md.splitlines() if "Warning:" in line)
    assert md.index(warning) < md.index("<details>")


def test_identical_settings_give_no_warning(tmp_path: Path) -> None:
    same = [dataclasses.replace(m, torch="2.13.0+cpu", threads=2, warmup_s=0.2, gpu=None,
                                host=f"box{i}") for i, m in enumerate(THREE[:2])]
    runs = write_machines(tmp_path / "runs", same, count=6)
    write_report(runs, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Warning" not in md
    assert "share every measure and software setting" in md
    assert "share every measure and software setting" in (tmp_path / "out" / "index.html").read_text()


# -- efficiency and prices ---------------------------------------------------------------------
def test_prices_give_items_per_dollar_and_dollars_per_million_items(machines: list[Path],
                                                                    tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", *map(str, machines), "--baseline", str(machines[0]),
                                       "--price", "NVIDIA H200=3.50, cpu=0.10",
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    price = pd.read_csv(tmp_path / "out" / "tables" / "price.csv")
    assert set(price["source"]) == {"NVIDIA H200 (gpu-a)", "AMD EPYC (vm)"}  # no A100 price
    h200 = price[price["source"] == "NVIDIA H200 (gpu-a)"]
    assert (h200["USD per hour"] == 3.5).all()
    assert h200["items per USD"].tolist() == pytest.approx((h200["items/s"] * 3600 / 3.5).tolist())
    assert h200["USD per million items"].tolist() == pytest.approx(
        (3.5 / 3600 / h200["items/s"] * 1e6).tolist())


def test_no_price_given_means_no_price_figures(report: Path) -> None:
    assert not (report / "tables" / "price.csv").exists()
    assert "Price-performance" not in (report / "index.html").read_text()


@pytest.mark.parametrize(("price", "words"), [
    ("TPU v5=1.0", ["'TPU v5' matches no machine", "NVIDIA H200 (gpu-a)", "AMD EPYC (vm)"]),
    ("H200=cheap", ["'H200=cheap'", "'cheap' is not a number"]),
    ("H200=-1", ["positive number"]),
    ("H200", ["not MACHINE=USD_PER_HOUR"]),
    ("NVIDIA=1,H200=2", ["matched by both 'NVIDIA' and 'H200'"]),
])
def test_bad_prices_exit_2_naming_the_entry(machines: list[Path], tmp_path: Path, price: str,
                                            words: list[str]) -> None:
    result = CliRunner().invoke(main, ["report", *map(str, machines), "--price", price,
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


def test_parse_prices_reads_names_with_spaces() -> None:
    assert parse_prices("NVIDIA H200=3.50,cpu=0.10") == {"NVIDIA H200": 3.5, "cpu": 0.1}


def test_items_per_watt_where_power_was_measured(tmp_path: Path) -> None:
    from test_report import telemetry_run

    run = telemetry_run(tmp_path)
    write_report([run], tmp_path / "out")
    efficiency = pd.read_csv(tmp_path / "out" / "tables" / "efficiency.csv",
                             keep_default_na=False)
    telemetry = pd.read_csv(tmp_path / "out" / "tables" / "telemetry.csv")
    # both tables list the cells in the same order; throughput is the median over the repeats
    by_cell: dict[tuple, list[float]] = {}
    for r in load_run(run).records:
        if r.status == "ok":
            by_cell.setdefault((r.model, r.optimizer, r.precision, r.batch_norm), []).append(
                r.items_per_s)
    rates = [statistics.median(by_cell[(m, o.split(" [")[0], p, b)]) for m, o, p, b in zip(
        efficiency["model"], efficiency["optimizer"], efficiency["precision"],
        efficiency["batch norm"], strict=True)]
    power = telemetry["power_from_energy_w"] if "power_from_energy_w" in telemetry \
        else telemetry["power_mean_w"]
    assert efficiency["items/s per W"].astype(float).tolist() == pytest.approx(
        [rate / watts for rate, watts in zip(rates, power, strict=True)])
    # bookkeeping of the energy counter is not physics: not a telemetry table column
    assert "energy_tick_s" not in telemetry and "energy_uncertainty_j" not in telemetry


# -- figures -----------------------------------------------------------------------------------
def test_speedup_dots_and_throughput_share_one_log_axis(machines: list[Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_png = report_figures._png

    def keep(fig, **options):  # noqa: ANN001, ANN003, ANN202 - observe before encoding
        seen.append((fig.texts[0].get_text() if fig.texts else "", fig.axes))
        return real_png(fig, **options)

    monkeypatch.setattr(report_figures, "_png", keep)
    write_report(machines, tmp_path / "out", baseline=machines[0])
    throughput = [axes for title, axes in seen if title.startswith("Throughput")]
    speedup = [axes for title, axes in seen if title.startswith("Speedup")]
    assert throughput and speedup
    for axes in throughput:
        (ax,) = axes  # one panel: every machine on the same axis
        assert ax.get_xscale() == "log"
        assert len(ax.collections) == 3  # a marker set per machine
    for axes in speedup:
        (ax,) = axes
        assert ax.get_xscale() == "log"
        assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.get_lines())  # the 1x line
        # one colour per optimizer, times the two machines
        assert len(ax.collections) == 3 * 2


# -- issue 12 item 13: throughput and step time agree with an even number of repeats ----------
def test_even_repeats_throughput_and_step_time_agree(tmp_path: Path) -> None:
    source = load_run(write_machines(tmp_path / "src", THREE[:1], count=1)[0])
    template = source.records[0]
    dest = tmp_path / "even"
    step_s = (0.010, 0.100)  # a noisy pair: the medians of t and of 1/t differ most here
    with RunWriter(dest) as writer:
        writer.write_manifest(source.manifest)
        for repeat, t in enumerate(step_s):
            steps = (t,) * 5
            writer.append(dataclasses.replace(
                template, repeat=repeat, step_time_s=StepTimeStats.from_samples(steps),
                step_times_s=steps, items_per_s=template.items_per_step / t))
    data = load_report_data([dest])
    throughput = throughput_table(data).frame.iloc[0, -1]
    step_ms = step_time_table(data).frame["median (ms)"].iloc[0]
    assert throughput == pytest.approx(statistics.median(
        template.items_per_step / t for t in step_s))
    assert template.items_per_step / (step_ms / 1e3) == pytest.approx(throughput, rel=1e-12)


# -- issue 12 item 3: hostile text stays text -----------------------------------------------
def test_escape_markdown_exact() -> None:
    assert escape_markdown("<script>a|b</script>") == "&lt;script>a\\|b&lt;/script>"
    assert escape_markdown("x_y *z* [l](u) `c` ~s~ a&b\\") == \
        "x\\_y \\*z\\* \\[l\\](u) \\`c\\` \\~s\\~ a&amp;b\\\\"
    assert escape_markdown("two\nlines\r") == "two lines "
    assert escape_markdown("plain text 1.5×") == "plain text 1.5×"


def test_hostile_strings_never_reach_markdown_or_html_raw(tmp_path: Path) -> None:
    runs = write_machines(tmp_path / "runs", THREE, count=12, hostile=True)
    write_report(runs, tmp_path / "out", baseline=runs[0])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "alert(1)" in md and "onerror" in md  # the text is there, as text
    for piece in HOSTILE_PIECES:
        assert piece not in md, piece
    assert md.count("<details>") == md.count("</details>")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert page.count("<details") == page.count("</details>")


def test_compare_markdown_escapes_hostile_strings(tmp_path: Path) -> None:
    runs = write_machines(tmp_path / "runs", THREE[:2], count=12, hostile=True)
    out = tmp_path / "cmp.md"
    result = CliRunner().invoke(main, ["compare", *map(str, runs), "--allow-different-hardware",
                                       "--markdown", str(out)])
    assert result.exit_code in (0, 1), result.output
    md = out.read_text()
    assert "alert(1)" in md
    for piece in HOSTILE_PIECES:
        assert piece not in md, piece
    assert md.count("<details>") == md.count("</details>")



# -- the committed example ---------------------------------------------------------------------
def _summary_block(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index("## Summary") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("## "))
    return [line for line in lines[start:end] if line.strip()]


def test_committed_example_and_report_page_show_the_current_summary(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    write_report([root / "results" / "cpu-2vcpu-quick"], tmp_path / "out")
    fresh = _summary_block((tmp_path / "out" / "report.md").read_text())
    committed = _summary_block((root / "reports" / "cpu-2vcpu-quick" / "report.md").read_text())
    assert fresh == committed, "regenerate reports/cpu-2vcpu-quick (see reports/README.md)"
    page = (root / "docs" / "reports" / "report.md").read_text()  # where the README's text moved
    for line in committed:
        assert f"> {line}" in page, line


# -- issue 30: the summary carries compare's statistics ------------------------------------------
def _noise_runs(tmp_path: Path, ratios: Sequence[float], *, repeats: int = 1,
                repeat_spread: float = 0.0) -> list[Path]:
    """Two runs of the same machine (same environment): cell i of run b runs `ratios[i]` times the
    throughput of run a. Families alternate cnn/mlp; every step spread by 1% (seeded)."""
    import random

    from test_compare_support import ok_record, steps, write_run

    rng = random.Random(30)
    runs = []
    for run_id, factor in (("a", None), ("b", ratios)):
        records = []
        for i, ratio in enumerate(ratios):
            for repeat in range(repeats):
                median = 0.010 * (1 + rng.uniform(-repeat_spread, repeat_spread))
                if factor is not None:
                    median /= ratio
                record = ok_record(run_id, f"c{i}", repeat, steps(median, seed=rng.randrange(9**9)))
                records.append(dataclasses.replace(
                    record, model=("cnn:tiny", "mlp:small")[i % 2], batch_size=8 * (i + 1)))
        runs.append(write_run(tmp_path, run_id, records))
    return runs


def test_noise_between_two_runs_is_not_headlined_as_a_result(tmp_path: Path) -> None:
    from bigtrain.compare import compare_run_dirs
    from bigtrain.report.summary import NO_CLEAR_WINNER, fastest_per_family, verdict_lines

    # the pair: the same 6 cells a minute apart, per cell 0.0095x to 2.78x
    ratios = [0.0095, 2.78, 1.0, 1.02, 0.98, 0.5]
    runs = _noise_runs(tmp_path, ratios)
    data = load_report_data(runs, runs[0])
    (line,) = verdict_lines(data)
    assert "no difference detectable from the baseline" in line, line
    assert "slower than" not in line and "faster than" not in line
    assert "spans 1×" in line and "6 of them with one repeat a side" in line
    # never a winner inside the noise
    assert fastest_per_family(data) == {"cnn": NO_CLEAR_WINNER, "mlp": NO_CLEAR_WINNER}
    # the per-cell counts are compare's own verdicts on the same pair
    counts = compare_run_dirs(runs[0], runs[1]).counts()
    expected = [f"{counts['improved']} faster", f"{counts['regressed']} slower",
                f"{counts['unchanged']} unchanged", f"{counts['undecided']} undecided"]
    assert f"per cell as compare decides: {', '.join(e for e in expected if e[0] != '0')}" in line


def test_a_real_speedup_is_called_with_its_interval(tmp_path: Path) -> None:
    import random

    from bigtrain.report.summary import fastest_per_family, geomean_interval, verdict_lines

    rng = random.Random(7)
    ratios = [2.0 * (1 + rng.uniform(-0.03, 0.03)) for _ in range(6)]
    runs = _noise_runs(tmp_path, ratios)
    data = load_report_data(runs, runs[0])
    (line,) = verdict_lines(data)
    # each cell's measured throughput ratio (the medians of jittered steps, near the ratio written)
    rates = [{r.cell_id: r.items_per_s for r in load_run(run).records} for run in runs]
    measured = [rates[1][cell] / rates[0][cell] for cell in sorted(rates[0])]
    interval = geomean_interval(measured, alpha=0.01)
    assert interval.low > 1
    assert line.startswith(f"{data.sources[1]}: {geo(measured):.2f}× faster than the baseline")
    assert f"99% interval {interval.low:.2f}× to {interval.high:.2f}×" in line
    assert fastest_per_family(data) == {"cnn": data.sources[1], "mlp": data.sources[1]}
    rows = pd.read_csv(_write(runs, tmp_path) / "tables" / "summary.csv").set_index("cells")
    assert rows.loc["all cells", "verdict"] == "faster"
    assert rows.loc["all cells", "99% interval low ×"] == pytest.approx(interval.low, rel=1e-9)


def _write(runs: list[Path], tmp_path: Path) -> Path:
    out = tmp_path / "report"
    write_report(runs, out, baseline=runs[0])
    return out


def test_one_cell_of_one_repeat_says_noise_not_measured(tmp_path: Path) -> None:
    from bigtrain.report.summary import NO_CLEAR_WINNER, fastest_per_family, verdict_lines

    runs = _noise_runs(tmp_path, [1.5])
    data = load_report_data(runs, runs[0])
    (line,) = verdict_lines(data)
    assert "one repeat: noise not measured" in line and "faster than" not in line
    assert fastest_per_family(data) == {"cnn": NO_CLEAR_WINNER}


def test_one_cell_with_repeats_uses_compares_interval(tmp_path: Path) -> None:
    from bigtrain.report.summary import speedup_summaries
    from bigtrain.compare.stats import welch_log_ratio_test

    runs = _noise_runs(tmp_path, [1.5], repeats=3, repeat_spread=0.02)
    data = load_report_data(runs, runs[0])
    overall = next(r for r in speedup_summaries(data) if r.scope == "all cells")
    rates = [[r.items_per_s for r in load_run(run).records] for run in runs]
    test = welch_log_ratio_test(rates[0], rates[1], alpha=0.01)
    assert (overall.geomean, overall.ci_low, overall.ci_high) == pytest.approx(
        (test.ratio, test.ratio_low, test.ratio_high), rel=1e-12)
    assert overall.verdict == "faster"


def test_noisy_repeats_are_counted_undecided_per_cell(tmp_path: Path) -> None:
    """Issue 30: an A/A pair whose repeats scatter by +-40% is not "unchanged" per cell: compare
    calls it undecided (its interval reaches past the band), and the report counts it so."""
    from bigtrain.compare import compare_run_dirs
    from bigtrain.report.summary import verdict_lines

    runs = _noise_runs(tmp_path, [1.0, 1.0], repeats=3, repeat_spread=0.4)
    counts = compare_run_dirs(runs[0], runs[1]).counts()
    assert counts["undecided"] == 2 and counts["unchanged"] == 0
    (line,) = verdict_lines(load_report_data(runs, runs[0]))
    assert "per cell as compare decides: 2 undecided" in line, line
    assert "unchanged" not in line


def test_geomean_interval_is_the_t_interval_on_logs() -> None:
    import random

    from scipy.stats import t as student_t

    from bigtrain.report.summary import geomean_interval, interval_verdict

    rng = random.Random(11)
    ratios = [math.exp(rng.gauss(0.3, 0.2)) for _ in range(8)]
    logs = [math.log(r) for r in ratios]
    half = student_t.ppf(0.995, 7) * statistics.stdev(logs) / math.sqrt(8)
    got = geomean_interval(ratios, alpha=0.01)
    assert got.ratio == pytest.approx(math.exp(statistics.fmean(logs)), rel=1e-12)
    assert got.low == pytest.approx(math.exp(statistics.fmean(logs) - half), rel=1e-12)
    assert got.high == pytest.approx(math.exp(statistics.fmean(logs) + half), rel=1e-12)
    assert geomean_interval([1.3], alpha=0.01).low is None
    assert interval_verdict(geomean_interval([1.3], alpha=0.01)) == "one repeat: noise not measured"
    assert interval_verdict(geomean_interval([0.5, 2.0], alpha=0.01)) == "no difference detectable"
    assert interval_verdict(geomean_interval([1.2, 1.2], alpha=0.01)) == "faster"
    with pytest.raises(ValueError, match="positive"):
        geomean_interval([1.0, 0.0], alpha=0.01)


def test_geomean_interval_covers_the_true_ratio_at_its_level() -> None:
    import random

    from bigtrain.report.summary import geomean_interval

    rng = random.Random(2026)
    trials, covered = 2000, 0
    for _ in range(trials):
        ratios = [math.exp(rng.gauss(math.log(1.7), 0.3)) for _ in range(6)]
        interval = geomean_interval(ratios, alpha=0.05)
        covered += interval.low <= 1.7 <= interval.high
    assert 0.935 <= covered / trials <= 0.965


# -- issue 30: a busy machine is named where the report states a result ---------------------------
_BUSY = {"loadavg_1m": 7.5, "other_cpu_s": 1.7, "other_cpu_cores": 1.7, "steal_pct": 0.0,
         "gpu_other_processes": 0, "cores": 2, "cores_used": 1, "busy": True}


def test_a_run_measured_on_a_busy_machine_is_named_in_its_verdict(tmp_path: Path) -> None:
    from bigtrain.report.summary import overview, verdict_lines

    a, b = _noise_runs(tmp_path, [1.0, 1.0, 1.0])
    busy_dir = tmp_path / "busy"
    records = [dataclasses.replace(r, run_id="busy", host_load=_BUSY) for r in load_run(b).records]
    from test_compare_support import write_run

    busy = write_run(tmp_path, "busy", records)
    (line,) = verdict_lines(load_report_data([a, busy], a))
    assert "3 of 3 measurement(s) measured on a busy machine" in line, line
    assert "measure the machine as much as the code" in line
    (quiet_line,) = verdict_lines(load_report_data([a, b], a))
    assert "busy" not in quiet_line
    # a report of the busy run alone says it too (there is no verdict line to carry it)
    alone = load_report_data([busy])
    assert any("busy machine" in v for v in overview(alone, []).verdicts)
    assert busy_dir.exists()
