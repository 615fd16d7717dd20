"""The report's "Where the time goes" section (issue 24, item 7): present only with profiles,
hostile op names escaped in HTML and Markdown, links relative and inside the run folder, the
"why" line in the terminal. Seeded synthetic profiled runs (tests/profile_fixtures.py)."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import run_cli
from profile_fixtures import BN_OPS, MLP_OPS, op_rows, profiled_run

HOSTILE_OP = "<script>alert(1)</script> [bold]x[/bold] | $a$"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiled")
    run_dir = profiled_run(root, "prof", {
        # calibrated: 0.1 TFLOP/s and 1e6 bytes in 100 µs (10 GB/s): the ridge at 10 FLOP/byte
        "bnoff": {"rows": op_rows(MLP_OPS), "step_s": 0.0010,
                  "axes": {"model": "cnn:tiny", "batch_norm": "off", "optimizer": "adam"},
                  "record": {"measured_peak_tflops": 0.1, "optimizer_bytes_per_step": 1_000_000,
                             "optimizer_floor_s": 1e-4}},
        "bnon": {"rows": op_rows(MLP_OPS + BN_OPS), "step_s": 0.0014,
                 "axes": {"model": "cnn:tiny", "batch_norm": "on", "optimizer": "adam"}},
        "hostile": {"rows": op_rows(MLP_OPS + ((HOSTILE_OP, "forward", "other", 1, 500.0, 0,
                                                "[]"),)),
                    "step_s": 0.0010, "axes": {"optimizer": "sgd"}},
        "crashed": {"status": "failed", "reason": "profiler <b>crashed</b>",
                    "axes": {"optimizer": "rmsprop"}},
    })
    # a memory timeline in one cell; in another, a summary naming a file out of its folder
    shutil.copytree(run_dir / "profiles" / "bnoff", root / "outside")
    (run_dir / "profiles" / "bnon" / "memory.html").write_text("<html></html>")
    for cell, name in (("bnon", "memory.html"), ("hostile", "../../../outside/trace.json.gz")):
        path = run_dir / "profiles" / cell / "summary.json"
        path.write_text(path.read_text().replace('"memory_snapshot": null',
                                                 f'"memory_snapshot": "{name}"'))
    out = root / "report"
    result = run_cli("report", str(run_dir), "-o", str(out))
    assert result.exit_code == 0, result.output
    return run_dir, out, result.output


def test_the_section_holds_bars_top_ops_launches_why_and_roofline(report):
    _, out, _ = report
    html = (out / "index.html").read_text()
    assert '<section id="profiles">' in html and "Where the time goes" in html
    for title in ("Step time by op category", "Top ops",
                  "Launches per step by optimizer implementation",
                  "Why one cell is slower than its neighbour", "Roofline per category",
                  "Cells without a usable profile", "Step time by category and phase",
                  "Roofline per cell"):
        assert title in html, title
    assert (out / "figures" / "profile-time-by-category-1.png").stat().st_size > 1000
    assert (out / "figures" / "profile-roofline-1.png").stat().st_size > 1000
    assert "batch norm on vs off: +" in html and "% of it in normalization (backward)" in html
    assert "needs the profile extra" in html  # no HTA here
    launches = (out / "tables" / "profile_launches.csv").read_text()
    header, *rows = launches.splitlines()
    assert header == ("cell,optimizer,impl,forward launches,backward launches,"
                      "optimizer launches,other launches")
    # the fixture's MLP: 4 forward calls, 5 backward, 3 optimizer, 3 other; batch norm adds
    # one forward and one backward, the hostile op one forward
    assert sorted(row.split(",", 3)[3] for row in rows) == ["4.0,5.0,3.0,3.0", "5.0,5.0,3.0,3.0",
                                                            "5.0,6.0,3.0,3.0"]


def test_hostile_op_names_and_reasons_are_escaped_everywhere(report):
    _, out, _ = report
    html = (out / "index.html").read_text()
    assert "<script>alert(1)" not in html and "<b>crashed" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [bold]x[/bold] | $a$" in html
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "\\[bold\\]x\\[/bold\\] \\|" in md


def test_traces_are_linked_relative_to_the_report_and_only_inside_the_run(report):
    run_dir, out, _ = report
    html = (out / "index.html").read_text()
    hrefs = re.findall(r'<a href="([^"]+)">[^<]*trace', html)
    assert sorted(hrefs) == [f"../{run_dir.name}/profiles/{cell}/trace.json.gz"
                             for cell in ("bnoff", "bnon", "hostile")]
    for href in hrefs:
        assert (out / href).resolve().is_file()
    memory = re.findall(r'<a href="([^"]+)">[^<]*memory timeline', html)
    assert memory == [f"../{run_dir.name}/profiles/bnon/memory.html"]  # not the one outside
    md = (out / "report.md").read_text()
    assert f"(<../{run_dir.name}/profiles/bnon/trace.json.gz>)" in md


def test_the_terminal_prints_the_why_line(report):
    _, _, output = report
    assert re.search(r"why: batch norm on vs off: \+\d+% step time, \d+% of it in normalization "
                     r"\(backward\)", output)


def test_a_report_without_profiles_has_no_such_section(tmp_path):
    from test_compare_support import repeated_cell, write_run

    run_dir = write_run(tmp_path, "plain", repeated_cell("plain", "c", 0.001, repeats=1))
    result = run_cli("report", str(run_dir), "-o", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "rep" / "index.html").read_text()
    assert 'id="profiles"' not in html and "Where the time goes" not in html
    assert "why:" not in result.output


def test_the_roofline_reads_each_category_against_the_calibrated_ridge(report):
    _, out, _ = report
    import csv

    rows = {(r["cell"], r["category"]): r
            for r in csv.DictReader((out / "tables" / "profile_roofline.csv").open())}
    calibrated = "cnn:tiny adam/foreach fp32 cpu bs64"
    # the fixture's matmuls: 153,600 FLOPs over 30,560 input bytes (5.03 FLOP/byte < 10)
    matmul = rows[(calibrated, "matmul/conv")]
    assert float(matmul["FLOP/byte (est.)"]) == pytest.approx(153600 / 30560)
    assert matmul["bound"] == "memory-bound" and float(matmul["% of roof"]) > 0
    assert rows[(calibrated, "loss")]["bound"] == "memory-bound"  # no FLOPs at all
    assert rows[(f"{calibrated} bn", "matmul/conv")]["bound"] == "unknown"  # no calibration
