"""`bigbench report` on committed fixture runs (real CPU sweeps; see fixtures/runs/make_fixtures.sh).

The two fixture runs come from this box: `cpu-2threads` (torch on 2 threads) and `cpu-1thread`
(OMP_NUM_THREADS=1), standing in for two machines; each holds failed cells (an injected fault,
a real divergence) and matrix-skipped fp16 cells. Expected numbers are computed here by hand from
the raw cells.jsonl lines, not through the report's own code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bigtrain.cells.axes import AXIS_BY_NAME
from bigtrain.cli import main
from bigtrain.report import write_report
from bigtrain.report import figures as report_figures
from bigtrain.report.data import load_report_data
from bigtrain.report.style import optimizer_palette
from bigtrain.report.tables import geometric_mean
from bigtrain.results.frame import load_frame
from bigtrain.results.schema import AXES
from bigtrain.results.store import RunWriter, load_run

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
RUN_NAMES = ("cpu-2threads", "cpu-1thread")


def fixture_runs() -> list[Path]:
    """The committed fixture run folders, baseline first."""
    return [FIXTURES / name for name in RUN_NAMES]


def raw_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "cells.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(fixture_runs(), out, baseline=fixture_runs()[0])
    return out


# -- the fixtures are what the tests claim -------------------------------------------------------
def test_fixtures_are_two_runs_with_failures_and_different_thread_counts() -> None:
    threads = []
    for run in fixture_runs():
        loaded = load_run(run)
        threads.append(loaded.manifest.environment["torch_num_threads"])
        statuses = {r.status for r in loaded.records}
        assert "ok" in statuses and "skipped" in statuses
        assert statuses & {"error", "diverged"}
    assert threads == [2, 1]


# -- loading -------------------------------------------------------------------------------------
def test_frame_has_a_row_per_record_and_the_documented_columns() -> None:
    frame = load_frame(fixture_runs())
    expected_rows = sum(len(raw_records(run)) for run in fixture_runs())
    assert len(frame) == expected_rows
    for column in (*AXES, "run_id", "cell_id", "repeat", "status", "reason", "items_per_s",
                   "step_time_median_s", "phase_optimizer_s", "peak_rss_bytes", "step_times_s",
                   "machine", "torch_version", "torch_num_threads"):
        assert column in frame.columns, column
    assert pd.api.types.is_numeric_dtype(frame["items_per_s"])
    assert set(frame["run_id"]) == set(RUN_NAMES)
    by_run = frame.groupby("run_id")["torch_num_threads"].first().to_dict()
    assert by_run == {"cpu-2threads": 2, "cpu-1thread": 1}


def test_sources_are_named_apart_when_the_machine_is_the_same() -> None:
    data = load_report_data(fixture_runs())
    assert len(data.sources) == 2
    assert all(name in source for name, source in zip(RUN_NAMES, data.sources, strict=True))
    assert data.baseline == data.sources[0]


# -- speedup against a hand computation ----------------------------------------------------------
def hand_speedups() -> dict[tuple, float]:
    """items/s of cpu-1thread over cpu-2threads, per cell (axes but device), medians over repeats."""
    medians = []
    for run in fixture_runs():
        values: dict[tuple, list[float]] = defaultdict(list)
        for rec in raw_records(run):
            if rec["status"] == "ok":
                # An axis added after these runs were recorded reads as its default, as in a record.
                key = tuple(str(rec[a] if a in rec else AXIS_BY_NAME[a].default[0])
                            for a in AXES if a != "device")
                values[key].append(rec["items_per_s"])
        medians.append({k: statistics.median(v) for k, v in values.items()})
    base, other = medians
    return {k: other[k] / base[k] for k in base.keys() & other.keys()}


def test_speedup_table_matches_hand_computation(report_dir: Path) -> None:
    expected = hand_speedups()
    assert len(expected) >= 10
    table = pd.read_csv(report_dir / "tables" / "speedup.csv", keep_default_na=False)
    column = next(c for c in table.columns if "cpu-1thread" in c)
    rows = table[table["model"] != "all matched cells (geometric mean)"]
    assert len(rows) == len(expected)
    opt_axes = ("model", "optimizer", "precision", "batch norm")
    got = {}
    for _, row in rows.iterrows():
        optimizer = row["optimizer"].split(" [")[0]
        got[(row["model"], optimizer, row["precision"], row["batch norm"])] = float(row[column])
    for key, ratio in expected.items():
        axes = dict(zip([a for a in AXES if a != "device"], key, strict=True))
        lookup = (axes["model"], axes["optimizer"], axes["precision"], axes["batch_norm"])
        assert got[lookup] == pytest.approx(ratio, rel=1e-12), (opt_axes, lookup)
    geo_row = table[table["model"] == "all matched cells (geometric mean)"].iloc[0]
    hand_geo = math.exp(statistics.fmean(math.log(r) for r in expected.values()))
    assert float(geo_row[column]) == pytest.approx(hand_geo, rel=1e-12)


def test_geometric_mean_of_reciprocal_ratios_is_one() -> None:
    assert geometric_mean([2.0, 0.5]) == pytest.approx(1.0)
    assert geometric_mean([4.0, 1.0]) == pytest.approx(2.0)
    assert math.isnan(geometric_mean([]))


# -- outputs -------------------------------------------------------------------------------------
def test_every_output_is_written(report_dir: Path) -> None:
    assert (report_dir / "index.html").is_file()
    assert (report_dir / "report.md").is_file()
    csvs = {p.stem for p in (report_dir / "tables").glob("*.csv")}
    assert {"runs", "throughput", "speedup", "memory", "phases", "step_time", "not_ok",
            "batch_norm", "precision"} <= csvs
    pngs = list((report_dir / "figures").glob("*.png"))
    assert any(p.name.startswith("throughput-") for p in pngs)
    assert any(p.name.startswith("speedup-") for p in pngs)
    assert any(p.name.startswith("step-times-") for p in pngs)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    parquet = pd.read_parquet(report_dir / "frame.parquet")
    assert len(parquet) == sum(len(raw_records(r)) for r in fixture_runs())
    first_ok = next(r for r in raw_records(fixture_runs()[0]) if r["status"] == "ok")
    row = parquet[(parquet["run_id"] == first_ok["run_id"]) & (parquet["cell_id"] == first_ok["cell_id"])
                  & (parquet["repeat"] == first_ok["repeat"])].iloc[0]
    assert list(row["step_times_s"]) == pytest.approx(first_ok["step_times_s"])


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Every table in a Markdown file by the heading above it, as rows of cells."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("| ") and heading:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            tables.setdefault(heading, []).append(cells)
    return tables


def test_markdown_tables_are_well_formed_and_complete(report_dir: Path) -> None:
    tables = markdown_tables((report_dir / "report.md").read_text())
    assert "Throughput" in tables and "Cells that did not finish ok" in tables
    for heading, rows in tables.items():
        widths = {len(r) for r in rows}
        assert len(widths) == 1, f"ragged table under {heading}"
        assert set(rows[1]) <= {"---", "---:"}, heading
    throughput = tables["Throughput"]
    ok_cells = {
        (r["model"], r["optimizer"], r["precision"], r["batch_norm"])
        for run in fixture_runs() for r in raw_records(run) if r["status"] == "ok"
    }
    assert len(throughput) - 2 == len(ok_cells)
    # every non-ok record is listed, with its status and its reason
    not_ok = tables["Cells that did not finish ok"]
    header = not_ok[0]
    expected = [r for run in fixture_runs() for r in raw_records(run) if r["status"] != "ok"]
    assert len(not_ok) - 2 == len(expected)
    listed = {(row[header.index("status")], row[header.index("reason")]) for row in not_ok[2:]}
    for rec in expected:
        assert (rec["status"], rec["reason"].replace("|", "\\|").replace("\n", " ")) in listed


def test_markdown_speedup_row_shows_ratio(report_dir: Path) -> None:
    tables = markdown_tables((report_dir / "report.md").read_text())
    speed = next(rows for heading, rows in tables.items() if heading.startswith("Speedup"))
    geo = speed[-1]
    assert geo[0] == "all matched cells (geometric mean)"
    expected = geometric_mean(list(hand_speedups().values()))
    assert geo[-1] == f"{expected:.2f}×"


def test_html_is_self_contained(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == len(list((report_dir / "figures").glob("*.png")))
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    # each figure and table has a caption
    assert page.count("<figcaption>") == len(sources)
    assert page.count('<p class="caption">') == page.count("<h3>")


# -- robustness: odd runs still render ----------------------------------------------------------
def copy_run(source: Path, dest: Path, keep) -> Path:  # noqa: ANN001 - a predicate on records
    dest.mkdir(parents=True)
    shutil.copy(source / "manifest.json", dest / "manifest.json")
    lines = [json.dumps(r) for r in raw_records(source) if keep(r)]
    (dest / "cells.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def test_single_cell_run_renders(tmp_path: Path) -> None:
    first = next(r for r in raw_records(fixture_runs()[0]) if r["status"] == "ok")
    run = copy_run(fixture_runs()[0], tmp_path / "one",
                   lambda r: (r["cell_id"], r["repeat"]) == (first["cell_id"], first["repeat"]))
    index = write_report([run], tmp_path / "out")
    page = index.read_text()
    assert "Speedup needs two or more runs" in page
    throughput = pd.read_csv(tmp_path / "out" / "tables" / "throughput.csv")
    assert len(throughput) == 1
    assert throughput.iloc[0, -1] == pytest.approx(first["items_per_s"])


def test_run_where_every_cell_failed_renders(tmp_path: Path) -> None:
    run = copy_run(fixture_runs()[0], tmp_path / "failed", lambda r: r["status"] != "ok")
    write_report([run], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "No cell finished ok" in page
    not_ok = pd.read_csv(tmp_path / "out" / "tables" / "not_ok.csv")
    assert len(not_ok) == len(raw_records(run))
    assert not list((tmp_path / "out" / "figures").glob("*.png"))


def test_empty_run_renders(tmp_path: Path) -> None:
    run = copy_run(fixture_runs()[0], tmp_path / "empty", lambda r: False)
    index = write_report([run], tmp_path / "out")
    assert "0 records" in index.read_text()


def telemetry_run(tmp_path: Path) -> Path:
    """A run whose ok records carry telemetry shaped by the real sampler's `summarise_window`.

    Synthetic numbers (this box has no GPU); the shape is the measuring side's, not a guess.
    """
    from bigtrain.measure.telemetry import (EnergyEstimate, TelemetrySample, WindowReadings,
                                            WindowWork, summarise_window)

    source = load_run(fixture_runs()[0])
    dest = tmp_path / "with-telemetry"
    records = []
    for i, record in enumerate(r for r in source.records if r.status == "ok"):
        samples = [
            TelemetrySample(t_s=0.1 * k, util_pct=80.0 + k % 7, power_w=250.0 + 3 * k,
                            sm_clock_mhz=1980.0 if k % 5 else None)
            for k in range(30)
        ]
        energy = EnergyEstimate(energy_j=600.0 + i, window_s=3.0, method="tick_aligned")
        tel = summarise_window(
            WindowReadings(samples=samples, interval_s=0.1, energy=energy),
            WindowWork(window_s=3.0, min_window_s=1.0, steps=100, items=100 * 64),
        ).as_dict()
        records.append(dataclasses.replace(record, telemetry=tel, telemetry_reason=None))
    with RunWriter(dest) as writer:
        writer.write_manifest(source.manifest)
        for record in records:
            writer.append(record)
    return dest


def test_telemetry_fields_become_tables_and_timelines(tmp_path: Path) -> None:
    run = telemetry_run(tmp_path)
    write_report([run], tmp_path / "out")
    telemetry = pd.read_csv(tmp_path / "out" / "tables" / "telemetry.csv")
    assert {"util_mean_pct", "power_mean_w", "energy_j", "items_per_j"} <= set(telemetry.columns)
    efficiency = pd.read_csv(tmp_path / "out" / "tables" / "efficiency.csv")
    # items per joule is the sampler's own figure: items / energy
    assert efficiency["items per J"].tolist() == pytest.approx(telemetry["items_per_j"].tolist())
    assert (tmp_path / "out" / "figures" / "timelines.png").is_file()
    assert any(p.name.startswith("energy-efficiency-")
               for p in (tmp_path / "out" / "figures").glob("*.png"))


def test_report_without_telemetry_says_why(report_dir: Path) -> None:
    missing = pd.read_csv(report_dir / "tables" / "telemetry_missing.csv")
    assert missing["cells"].sum() > 0
    assert not (report_dir / "figures" / "timelines.png").exists()


# -- legibility ---------------------------------------------------------------------------------
def test_each_optimizer_keeps_one_colour_and_colours_differ() -> None:
    first = optimizer_palette(["adam", "sgd", "adamw [fused]"])
    again = optimizer_palette(["sgd", "adamw [fused]", "adam", "sgd"])
    assert first == again
    assert len(set(first.values())) == 3


def test_sixty_cells_have_no_overlapping_tick_labels(tmp_path: Path, monkeypatch) -> None:
    """60 configs of one model in one figure: every y tick label must clear its neighbours."""
    source = load_run(fixture_runs()[0])
    template = next(r for r in source.records if r.status == "ok")
    dest = tmp_path / "sixty"
    with RunWriter(dest) as writer:
        writer.write_manifest(source.manifest)
        for i in range(60):
            writer.append(dataclasses.replace(
                template, cell_id=f"c{i}", batch_size=8 * (i + 1),
                items_per_s=template.items_per_s * (1 + i / 60),
            ))
    captured = []
    real_png = report_figures._png

    def keep(fig, **options):  # noqa: ANN001, ANN003, ANN202 - observe before encoding
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
            captured.append((fig.get_label(), ax.get_title(), boxes))
            # no label may be cut off at the figure's edge (figures lay out without a tight box)
            texts = [*ax.get_yticklabels(), ax.xaxis.label, ax.title]
            for text in (t for t in texts if t.get_text() and t.get_visible()):
                extent = text.get_window_extent(renderer)
                assert extent.x0 >= -1 and extent.x1 <= fig.bbox.width + 1, text.get_text()
                assert extent.y0 >= -1 and extent.y1 <= fig.bbox.height + 1, text.get_text()
        return real_png(fig, **options)

    monkeypatch.setattr(report_figures, "_png", keep)
    write_report([dest], tmp_path / "out")
    checked = 0
    for _, _, boxes in captured:
        ordered = sorted(boxes, key=lambda b: b.y0)
        for lower, upper in zip(ordered, ordered[1:]):
            assert lower.y1 <= upper.y0 + 0.5, "tick labels overlap"
        checked += len(boxes) >= 60
    assert checked, "no figure had 60 labelled rows"


# -- command line --------------------------------------------------------------------------------
def test_cli_writes_to_reports_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", *map(str, fixture_runs())])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "cpu-2threads-vs-cpu-1thread" / "index.html").is_file()


def test_cli_names_the_bad_file_and_line(tmp_path: Path) -> None:
    bad = copy_run(fixture_runs()[0], tmp_path / "bad", lambda r: True)
    lines = (bad / "cells.jsonl").read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "status": "exploded"})
    (bad / "cells.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["report", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{bad / 'cells.jsonl'}:3" in result.output
    assert "exploded" in result.output and "ok" in result.output


def test_cli_rejects_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.output and "not a run folder" in result.output


def test_report_side_never_imports_torch() -> None:
    code = ("import sys, bigtrain.report, bigtrain.commands.report, bigtrain.report.figures; "
            "print(sorted(m for m in ('torch', 'pynvml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_box_statistics_match_a_hand_computation() -> None:
    import numpy as np

    from bigtrain.report.figures import box_stats

    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0])
    stats = box_stats(values)
    # numpy's linear quantiles: q1 at position 2.25 -> 3.25, q3 at 6.75 -> 7.75; IQR 4.5
    assert (stats["q1"], stats["median"], stats["q3"]) == pytest.approx((3.25, 5.5, 7.75))
    assert (stats["low"], stats["high"]) == (1.0, 9.0)  # 100 is beyond 7.75 + 6.75
    assert stats["fliers"].tolist() == [100.0]


def test_labels_sort_numbers_by_value() -> None:
    from bigtrain.report.style import natural_key

    labels = ["bs 128", "bs 16", "bs 8", "bf16 · bs 32"]
    assert sorted(labels, key=natural_key) == ["bf16 · bs 32", "bs 8", "bs 16", "bs 128"]
