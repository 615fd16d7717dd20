"""Issue 28's report side: each jax or tensorflow cell against its torch twin (same axes, same run),
the speedup and its geometric mean per framework and family. Synthetic runs with known step times;
nothing here depends on timing."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from test_compare_support import ok_record, steps, write_run

from bigtrain.report import write_report
from bigtrain.report.data import load_report_data
from bigtrain.report.frameworks import frameworks_table, geometric_mean


def _record(cell_id: str, model: str, framework: str, median_s: float, repeat: int):
    record = ok_record("fw", cell_id, repeat, steps(median_s, seed=repeat))
    extra = {} if framework == "torch" else {
        "compile_s": 1.5, "flops_source": "framework-cost-analysis", "framework_version": "0.10.2"}
    # every cell the same but for model and framework, so a twin differs by framework alone
    return dataclasses.replace(record, model=model, framework=framework, optimizer="adam", **extra)


def _run(tmp_path: Path) -> Path:
    records = []
    for repeat in (0, 1):
        records += [
            _record("m-torch", "mlp:small", "torch", 0.010, repeat),
            _record("m-jax", "mlp:small", "jax", 0.005, repeat),         # 2x faster
            _record("s-torch", "mlp:seed", "torch", 0.002, repeat),
            _record("s-jax", "mlp:seed", "jax", 0.001, repeat),          # 2x faster
            _record("t-torch", "transformer:tiny", "torch", 0.020, repeat),
            _record("t-jax", "transformer:tiny", "jax", 0.040, repeat),  # half as fast
            _record("c-jax", "cnn:tiny", "jax", 0.030, repeat),          # no torch twin
            _record("r-torch", "rnn:lstm-tiny", "torch", 0.030, repeat),  # torch only: no row
        ]
    return write_run(tmp_path, "fw", records)


def test_each_cell_is_compared_with_its_torch_twin_and_families_are_averaged(tmp_path) -> None:
    table = frameworks_table(load_report_data([_run(tmp_path)]))
    frame = table.frame.set_index(["cell", "framework"])
    speedup = "speedup vs torch ×"
    rows = {(cell.split()[0], fw): row for (cell, fw), row in frame.iterrows()}
    assert rows[("mlp:small", "jax")][speedup] == pytest.approx(2.0, rel=0.02)
    assert rows[("mlp:small", "torch")][speedup] == pytest.approx(1.0)
    assert rows[("transformer:tiny", "jax")][speedup] == pytest.approx(0.5, rel=0.02)
    assert math.isnan(rows[("cnn:tiny", "jax")][speedup])
    assert ("rnn:lstm-tiny", "torch") not in rows  # nothing to compare it with
    assert rows[("mlp:small", "jax")]["repeats"] == 2
    assert rows[("mlp:small", "jax")]["compile (s)"] == 1.5
    assert rows[("mlp:small", "jax")]["FLOPs from"] == "framework-cost-analysis"
    assert rows[("mlp:small", "torch")]["FLOPs from"] == "torch counter"
    assert 0 < rows[("mlp:small", "jax")]["spread p10-p90 (%)"] < 3  # steps() scatters +-1%
    notes = " ".join(table.notes)
    assert "jax over torch on mlp cells: 2.00×" in notes
    assert "jax over torch on transformer cells: 0.50×" in notes
    assert "no ok torch twin" in notes
    mlp_rows = table.frame[table.frame["cell"].str.startswith("mlp:small")]
    assert list(mlp_rows["framework"]) == ["torch", "jax"]  # torch's row first


def test_the_report_has_the_section_only_for_runs_with_another_framework(tmp_path) -> None:
    run = _run(tmp_path)
    out = tmp_path / "report"
    write_report([run], out)
    assert "Frameworks compared" in (out / "report.md").read_text()
    torch_only = write_run(tmp_path, "t", [_record("a", "mlp:small", "torch", 0.01, 0)])
    assert frameworks_table(load_report_data([torch_only])) is None


def test_geometric_mean_of_speedups() -> None:
    assert geometric_mean([2.0, 0.5]) == pytest.approx(1.0)
    assert geometric_mean([4.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="positive ratios"):
        geometric_mean([1.0, 0.0])
