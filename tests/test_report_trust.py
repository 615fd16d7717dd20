"""Issue 30, "numbers a user can trust at a glance": the report's data-parallel caveat, figures and
energy section. Synthetic runs with known numbers; nothing here depends on timing noise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from bigtrain.report import write_report
from bigtrain.report.data import load_report_data
from test_compare_support import ENVIRONMENT, ok_record, steps, write_run


def _dp_run(tmp_path: Path, *, threads: int, cores: int, ratio: float) -> Path:
    """A CPU run with one cell at world size 1 and 2; world size 2 runs `ratio` x the items/s."""
    one = ok_record("dp", "one", 0, steps(0.010))
    two = dataclasses.replace(ok_record("dp", "two", 0, steps(0.010)), world_size=2)
    # items/s over both ranks: `ratio` times world size 1's
    two = dataclasses.replace(two, items_per_s=one.items_per_s * ratio)
    env = {**ENVIRONMENT, "torch_num_threads": threads, "cpu_cores_logical": cores}
    return write_run(tmp_path, "dp", [one, two], environment=env)


def test_data_parallel_efficiency_says_when_not_like_for_like(tmp_path: Path) -> None:
    from bigtrain.report.scaling import scaling_table

    run = _dp_run(tmp_path, threads=2, cores=2, ratio=5.0)  # 250%: the 233-283%
    table = scaling_table(load_report_data([run]))
    rows = table.frame.set_index("world size")
    assert rows.loc[2, "scaling efficiency (%)"] == pytest.approx(250)
    assert rows.loc[2, "like for like"] == (
        "no: world size 1 ran one process of 2 threads, each rank 1 thread")
    assert rows.loc[1, "like for like"] == "yes"
    assert any("not scaling beyond ideal" in n and "250%" in n for n in table.notes)
    out = tmp_path / "report"
    write_report([run], out)
    assert "not like for like" in (out / "report.md").read_text().lower()


def test_like_for_like_runs_have_no_caveat(tmp_path: Path) -> None:
    from bigtrain.report.scaling import like_for_like, scaling_table

    run = _dp_run(tmp_path, threads=1, cores=4, ratio=1.8)
    table = scaling_table(load_report_data([run]))
    assert set(table.frame["like for like"]) == {"yes"} and table.notes == ()
    assert like_for_like("cpu", 4, {"torch_num_threads": 1, "cpu_cores_logical": 2}) == (
        "no: 4 ranks shared 2 cores")
    assert like_for_like("cuda:0", 2, {"torch_num_threads": 16}) == "yes"


# -- figures ----------------------------------------------------------------------------------------
class _Captured:
    """Every matplotlib figure the report encodes, inspected before it is closed."""

    def __init__(self) -> None:
        self.figures: list[dict] = []

    def inspect(self, fig) -> None:  # noqa: ANN001
        from matplotlib.text import Text

        fig.canvas.draw()
        dpi = fig.get_dpi()
        sizes = [t.get_fontsize() * dpi / 72 for t in fig.findobj(Text)
                 if t.get_visible() and t.get_text().strip()]
        panels = [ax for ax in fig.axes if ax.get_visible()]
        self.figures.append({
            "min_text_px": min(sizes) if sizes else None,
            "xlims": [tuple(ax.get_xlim()) for ax in panels],
            "ylabels": [ax.get_ylabel() for ax in panels],
            "lines": [line for ax in panels for line in ax.get_lines()],
            "title": fig._suptitle.get_text() if fig._suptitle else "",
            "xticks": [list(ax.get_xticks()) for ax in panels],
            "xlim_log": [ax.get_xscale() == "log" for ax in panels],
        })


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> _Captured:
    from bigtrain.report import convergence_figures, figures

    seen = _Captured()
    for module in (figures, convergence_figures):
        original = module._png

        def wrapped(fig, *args, _original=original, **kwargs):  # noqa: ANN001, ANN202
            seen.inspect(fig)
            return _original(fig, *args, **kwargs)

        monkeypatch.setattr(module, "_png", wrapped)
    return seen


def test_machine_panels_share_axes_and_text_is_legible(tmp_path: Path, captured) -> None:
    from report_machines import THREE, write_machines

    runs = write_machines(tmp_path / "runs", THREE[:2], count=12)
    write_report(runs, tmp_path / "report", baseline=runs[0])
    # The memory trade-off figure's two panels are two quantities (peak, peak per sample), not
    # two machines: each has its own x range by design.
    panelled = [f for f in captured.figures if len(f["xlims"]) == 2
                and not f["title"].startswith("Memory trade-off")]
    assert panelled, "two machines give two-panel figures"
    for figure in panelled:
        # two panels of one cell on one x range
        assert figure["xlims"][0] == pytest.approx(figure["xlims"][1]), figure["title"]
    # >= 11 px text everywhere when the PNG is shown at 100%
    assert min(f["min_text_px"] for f in captured.figures) >= 11


def test_log_axis_captions_describe_the_real_ticks(tmp_path: Path, captured) -> None:
    import math

    from report_machines import THREE, write_machines

    runs = write_machines(tmp_path / "runs", THREE[:2], count=12)  # CPU and H200: 2+ decades
    out = tmp_path / "report"
    write_report(runs, out, baseline=runs[0])
    md = (out / "report.md").read_text()
    throughput = [f for f in captured.figures if f["title"].startswith("Throughput")]
    assert throughput
    for figure in throughput:
        low, high = figure["xlims"][0]
        ticks = [t for t in figure["xticks"][0] if low <= t <= high]
        logs = [math.log10(t) for t in ticks]
        if math.log10(high / low) >= 2:
            # every power of ten, none skipped: one grid line really is 10x
            assert all(abs(b - a - 1) < 1e-9 for a, b in zip(logs, logs[1:])), ticks
            assert len(ticks) >= 2
    assert "one grid line is 10×" in md
    assert "a step of one grid line is 10x" not in md


def test_converge_lines_end_with_a_marker_and_show_the_target(tmp_path: Path, captured) -> None:
    from converge_runs import TARGET, write_converge_run

    run = write_converge_run(tmp_path)
    write_report([run], tmp_path / "report")
    metric = [f for f in captured.figures if "against steps" in f["title"]
              and "loss" not in f["title"]]
    assert metric
    for figure in metric:
        # the dashed target line
        assert any(line.get_linestyle() == "--" and set(line.get_ydata()) == {TARGET}
                   for line in figure["lines"])
    markers = {line.get_marker() for f in captured.figures if "held-out" in f["title"]
               for line in f["lines"] if line.get_linestyle() == "None"}
    # reached (dot) and stopped before the target (cross: SGD without BN on the CNN plateaus)
    assert {"o", "X"} <= markers
    md = (tmp_path / "report" / "report.md").read_text()
    assert "with a cross where they stopped before it" in md


def test_a_cpu_only_energy_section_says_so_in_words(tmp_path: Path) -> None:
    from bigtrain.report.tables import efficiency_table, flops_unit

    record = dataclasses.replace(ok_record("cpu", "x", 0, steps(0.01)), achieved_tflops=8.03e-07)
    run = write_run(tmp_path, "cpu", [record])
    table = efficiency_table(load_report_data([run]))
    assert "no energy counters on this machine" in table.title
    assert any("no energy counters on this machine" in n for n in table.notes)
    # proper units instead of 8.03e-07
    assert "kFLOP/s" in table.frame and table.frame["kFLOP/s"].iloc[0] == pytest.approx(803)
    assert flops_unit(pd.Series([142.0, 8.03e-07 * 1e6])) == ("GFLOP/s", 1e3)
    assert flops_unit(pd.Series([142.0, 3.0])) == ("TFLOP/s", 1.0)
