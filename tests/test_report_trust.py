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
