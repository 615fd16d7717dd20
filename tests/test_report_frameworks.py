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


def test_a_speedup_is_called_faster_or_slower_only_beyond_the_noise(tmp_path) -> None:
    records = []
    # torch's two repeats far apart (a loaded box): a 1.33x median speedup that the repeats cannot
    # tell from noise; beside it a clear 2x, and an equal cell whose repeats agree
    for repeat, torch_s, jax_s in ((0, 0.010, 0.008), (1, 0.030, 0.022)):
        records += [_record("n-torch", "mlp:small", "torch", torch_s, repeat),
                    _record("n-jax", "mlp:small", "jax", jax_s, repeat)]
    for repeat in (0, 1, 2):
        records += [_record("c-torch", "cnn:tiny", "torch", 0.020, repeat),
                    _record("c-jax", "cnn:tiny", "jax", 0.010, repeat),
                    _record("t-torch", "transformer:tiny", "torch", 0.020, repeat),
                    _record("t-jax", "transformer:tiny", "jax", 0.0201, repeat)]
    table = frameworks_table(load_report_data([write_run(tmp_path, "noisy", records)]))
    verdicts = {(cell.split()[0], fw): v for cell, fw, v in
                table.frame[["cell", "framework", "vs torch"]].itertuples(index=False)}
    assert verdicts[("mlp:small", "jax")] == "inside the noise"
    assert verdicts[("cnn:tiny", "jax")] == "faster"
    assert verdicts[("transformer:tiny", "jax")] == "within 5%"
    assert verdicts[("mlp:small", "torch")] == ""
    notes = " ".join(table.notes)
    assert "on mlp cells: 1.33× (0 of 1 cells faster or slower beyond the noise)" in notes
    assert "on cnn cells: 2.00× (1 of 1 cells" in notes
