"""The analysing half of profiles (issue 24): reading the artifact contract, the "why" line,
the op-level diff, the roofline and the HTA guard. Seeded synthetic profiles only
(tests/profile_fixtures.py): every expected number is worked out from the rows by hand."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from bigtrain.profiles import hta
from bigtrain.profiles.breakdown import one_axis_pairs, time_by_category_phase, why
from bigtrain.profiles.diff import diff_cell
from bigtrain.profiles.load import CellProfile, OpRow, load_cell_profile, load_profiles
from bigtrain.profiles.roofline import (
    COMPUTE_BOUND,
    MEMORY_BOUND,
    UNKNOWN,
    ceilings_for,
    roofline,
    shape_elements,
)
from profile_fixtures import BN_OPS, MLP_OPS, op_rows, profiled_run, write_profile_folder


def _row(op, phase, category, us, calls=1.0, flops=None, shapes="", device=None):
    return OpRow(op=op, phase=phase, category=category, calls_per_step=calls,
                 self_host_us_per_step=us, self_device_us_per_step=device, flops_per_step=flops,
                 input_shapes=shapes, share_of_step=None)


def _profile(cell_id, rows, *, step_s=None, profiled_s=None, axes=None, figures=None):
    summary = {"schema": 1, "cell_id": cell_id}
    if profiled_s is not None:
        summary["step_time_s_profiled"] = profiled_s
    return CellProfile(cell_id=cell_id, folder=Path("/nonexistent"), summary=summary,
                       ops=tuple(rows), axes=axes or {}, step_time_s=step_s,
                       record_figures=figures or {})


# -- reading the contract ----------------------------------------------------------------------
@pytest.fixture
def run(tmp_path):
    return profiled_run(tmp_path, "prof", {
        "bnoff": {"rows": op_rows(MLP_OPS), "step_s": 0.001,
                  "axes": {"model": "cnn:tiny", "batch_norm": "off"}},
        "bnon": {"rows": op_rows(MLP_OPS + BN_OPS), "step_s": 0.0014,
                 "axes": {"model": "cnn:tiny", "batch_norm": "on"}},
        "crashed": {"status": "failed", "reason": "the profiler ran out of memory"},
    })


def test_a_run_folder_loads_each_profiled_cell_with_its_axes_and_timed_step(run):
    found = load_profiles(run)
    assert sorted(found.profiles) == ["bnoff", "bnon"]
    bn = found.profiles["bnon"]
    assert bn.axes["batch_norm"] == "on" and bn.axes["model"] == "cnn:tiny"
    assert bn.step_time_s == pytest.approx(0.0014, rel=0.02)  # median of its repeats' medians
    assert len(bn.ops) == len(MLP_OPS) + len(BN_OPS) and bn.time_basis == "host"
    assert found.not_profiled == {"crashed": "profile failed: the profiler ran out of memory"}
    assert found.invalid == {}


def test_a_truncated_summary_marks_only_that_cell_invalid_naming_file_and_line(run):
    summary = run / "profiles" / "bnon" / "summary.json"
    summary.write_text(summary.read_text()[:40])
    found = load_profiles(run)
    assert sorted(found.profiles) == ["bnoff"]
    assert str(summary) in found.invalid["bnon"] and "line 1" in found.invalid["bnon"]
    assert "truncated" in found.invalid["bnon"]


def test_a_bad_category_names_the_line_the_value_and_the_choices(run):
    ops = run / "profiles" / "bnoff" / "ops.csv"
    lines = ops.read_text().splitlines()
    lines[3] = lines[3].replace("loss", "lossy")
    ops.write_text("\n".join(lines) + "\n")
    reason = load_profiles(run).invalid["bnoff"]
    assert f"{ops}: line 4: field category 'lossy'; valid: matmul/conv" in reason


def test_a_profile_path_out_of_the_run_folder_is_never_followed(tmp_path):
    outside = write_profile_folder(tmp_path / "elsewhere", "c1", op_rows(MLP_OPS))
    run_dir = profiled_run(tmp_path, "r", {"c1": {"rows": op_rows(MLP_OPS)}})
    shutil.rmtree(run_dir / "profiles" / "c1")
    (run_dir / "profiles" / "c1").symlink_to(outside)
    found = load_profiles(run_dir)
    assert found.profiles == {} and "not a folder inside the run folder" in found.invalid["c1"]


def test_parquet_alone_reads_the_same_rows_as_the_csv(run):
    folder = run / "profiles" / "bnon"
    from_csv = load_cell_profile(folder).ops
    (folder / "ops.csv").unlink()
    assert load_cell_profile(folder).ops == from_csv


def test_records_without_profile_fields_still_find_the_profiles_folder(tmp_path):
    from test_compare_support import repeated_cell, write_run

    run_dir = write_run(tmp_path, "old", repeated_cell("old", "c1", 0.002, repeats=1))
    write_profile_folder(run_dir / "profiles" / "c1", "c1", op_rows(MLP_OPS))
    found = load_profiles(run_dir)
    assert list(found.profiles) == ["c1"] and found.profiles["c1"].axes["model"] == "mlp:small"
    # a profiles folder, and one cell's folder, are accepted as they are
    assert list(load_profiles(run_dir / "profiles").profiles) == ["c1"]
    assert list(load_profiles(run_dir / "profiles" / "c1").profiles) == ["c1"]


# -- the "why" line ------------------------------------------------------------------------------
def test_the_why_line_says_which_category_and_phase_took_the_difference():
    off = [_row("aten::mm", "forward", "matmul/conv", 100.0),
           _row("aten::mm", "backward", "matmul/conv", 200.0)]
    on = [*off, _row("aten::native_batch_norm", "forward", "normalization", 30.0),
          _row("aten::native_batch_norm_backward", "backward", "normalization", 90.0)]
    base = _profile("off", off, step_s=0.0010, profiled_s=400e-6, axes={"batch_norm": "off"})
    cand = _profile("on", on, step_s=0.0014, profiled_s=550e-6, axes={"batch_norm": "on"})
    answer = why(base, cand, "batch_norm")
    # +150 µs of profiled step: 90 of it in normalization backward (60%), 30 forward (20%)
    assert answer.delta_us == pytest.approx(150.0)
    assert [(c, p, round(s, 3)) for c, p, _, s in answer.parts] == [
        ("normalization", "backward", 0.6), ("normalization", "forward", 0.2)]
    assert answer.line == ("batch norm on vs off: +40% step time, 60% of it in normalization "
                           "(backward)")


def test_without_profiled_step_times_the_shares_are_of_the_op_time():
    base = _profile("a", [_row("x", "optimizer", "optimizer", 10.0)], axes={"impl": "foreach"})
    cand = _profile("b", [_row("x", "optimizer", "optimizer", 40.0),
                          _row("y", "forward", "elementwise/activation", 10.0)],
                    axes={"impl": "for-loop"})
    answer = why(base, cand, "impl")
    assert answer.delta_us == 40.0 and answer.parts[0][3] == 0.75
    assert answer.line == ("implementation for-loop vs foreach: +40.0 µs per step, 75% of it "
                           "in optimizer (optimizer)")


def test_a_share_never_passes_all_of_it_when_other_categories_got_faster():
    base = _profile("a", [_row("bn", "backward", "normalization", 10.0),
                          _row("relu", "forward", "elementwise/activation", 100.0)],
                    step_s=0.0010, profiled_s=200e-6, axes={"batch_norm": "off"})
    cand = _profile("b", [_row("bn", "backward", "normalization", 110.0),
                          _row("relu", "forward", "elementwise/activation", 40.0)],
                    step_s=0.0011, profiled_s=220e-6, axes={"batch_norm": "on"})
    answer = why(base, cand, "batch_norm")
    # +20 µs of profiled step, +100 in normalization, -60 elsewhere: all of the added op time,
    # not 500% of the step's difference
    assert answer.parts == (("normalization", "backward", 100.0, 1.0),)
    assert answer.line == ("batch norm on vs off: +10% step time, 100% of it in normalization "
                           "(backward)")


def test_pairs_differ_in_exactly_one_axis_and_the_slower_cell_is_the_candidate():
    axes = {"model": "cnn:tiny", "optimizer": "adam", "batch_norm": "off", "device": "cpu"}
    fast = _profile("fast", [], step_s=0.001, axes=axes)
    slow = _profile("slow", [], step_s=0.002, axes={**axes, "batch_norm": "on"})
    two_apart = _profile("two", [], step_s=0.003,
                         axes={**axes, "batch_norm": "on", "optimizer": "sgd"})
    pairs = one_axis_pairs([slow, fast, two_apart])
    assert [(a, b.cell_id, c.cell_id) for a, b, c in pairs] == [
        ("batch_norm", "fast", "slow"), ("optimizer", "slow", "two")]


# -- the op-level diff ---------------------------------------------------------------------------
def test_ops_are_ranked_by_added_time_with_shares_and_call_changes():
    base = _profile("c", [_row("aten::mm", "backward", "matmul/conv", 60.0, calls=4),
                          _row("aten::_foreach_add_", "optimizer", "optimizer", 25.0, calls=2),
                          _row("aten::relu", "forward", "elementwise/activation", 8.0)],
                    step_s=0.001)
    cand = _profile("c", [_row("aten::mm", "backward", "matmul/conv", 120.0, calls=4, shapes="a"),
                          _row("aten::mm", "backward", "matmul/conv", 20.0, calls=1, shapes="b"),
                          _row("aten::_foreach_add_", "optimizer", "optimizer", 45.0, calls=20),
                          _row("aten::relu", "forward", "elementwise/activation", 2.0)],
                    step_s=0.0013)
    diff = diff_cell(base, cand)
    assert diff.slower and diff.regression_us == pytest.approx(94.0)
    top = diff.changes[0]
    # both shape rows of aten::mm count as the op: +80 of the +94 µs
    assert (top.op, top.added_us, top.calls_change) == ("aten::mm", 80.0, 1.0)
    assert top.share == pytest.approx(80 / 94)
    assert [c.op for c in diff.changes] == ["aten::mm", "aten::_foreach_add_", "aten::relu"]
    assert diff.changes[1].calls_change == 18 and diff.changes[2].added_us == -6
    assert diff.headline().startswith("aten::mm (backward) +80 µs/step (85% of the regression), "
                                      "calls 4 -> 5")
    assert diff.step_change_pct == pytest.approx(30.0)


def test_device_time_is_the_basis_when_the_trace_has_it():
    rows = [_row("k", "forward", "matmul/conv", 100.0, device=10.0)]
    profile = _profile("c", rows)
    assert profile.time_basis == "device"
    assert time_by_category_phase(profile) == {("matmul/conv", "forward"): 10.0}


# -- the roofline --------------------------------------------------------------------------------
def test_each_category_reads_compute_or_memory_bound_against_the_ceilings():
    rows = [
        # 2e6 FLOPs over 1000 fp32 elements (4000 bytes): 500 FLOP/byte, above the ridge
        _row("aten::mm", "forward", "matmul/conv", 10.0, flops=2e6, shapes="[[10, 50], [50, 10]]"),
        # no FLOPs, 4000 bytes: memory-bound
        _row("aten::add_", "optimizer", "optimizer", 5.0, shapes="[[1000], []]"),
    ]
    # peak 1 TFLOP/s; 1e9 bytes in 0.01 s: 100 GB/s; ridge 10 FLOP/byte
    profile = _profile("c", rows, axes={"precision": "fp32"}, figures={
        "measured_peak_tflops": 1.0, "optimizer_bytes_per_step": 1e9, "optimizer_floor_s": 0.01})
    ceilings = ceilings_for(profile, calibration_dir="/nonexistent")
    assert ceilings.peak_flops_per_s == 1e12 and ceilings.bandwidth_bytes_per_s == 1e11
    assert ceilings.ridge_flop_per_byte == 10
    mm, opt = roofline(profile, ceilings)
    assert (mm.category, mm.bound, mm.intensity_flop_per_byte) == ("matmul/conv", COMPUTE_BOUND, 500)
    assert mm.achieved_flops_per_s == pytest.approx(2e11)  # 2e6 FLOPs in 10 µs
    assert mm.pct_of_roof == pytest.approx(20.0)
    assert opt.bound == MEMORY_BOUND and opt.achieved_bytes_per_s == pytest.approx(4000 / 5e-6)


def test_half_precision_halves_the_bytes_and_no_calibration_is_unknown():
    rows = [_row("aten::mm", "forward", "matmul/conv", 10.0, flops=2e6, shapes="[[1000]]")]
    half = roofline(_profile("c", rows, axes={"precision": "bf16"}))[0]
    assert half.bytes_per_step == 2000 and half.bound == UNKNOWN
    assert "run `bigbench calibrate`" in half.ceilings.source


def test_the_stored_calibration_is_found_by_the_records_id_and_only_by_a_plain_id(tmp_path):
    (tmp_path / "abcdef0123456789.json").write_text(json.dumps(
        {"copy_bandwidth_bytes_per_s": 5e10}))
    good = _profile("c", [], figures={"calibration_id": "abcdef0123456789"})
    assert ceilings_for(good, calibration_dir=tmp_path).bandwidth_bytes_per_s == 5e10
    (tmp_path / "evil.json").write_text(json.dumps({"copy_bandwidth_bytes_per_s": 1.0}))
    bad = _profile("c", [], figures={"calibration_id": "../" + tmp_path.name + "/evil"})
    assert ceilings_for(bad, calibration_dir=tmp_path).bandwidth_bytes_per_s is None


@pytest.mark.parametrize(("text", "elements"), [
    ("[[64, 10], [20, 10], []]", 840),
    ("[[[10, 20], [20]], [[10, 20], [20]]]", 440),  # tensor lists (foreach optimizers)
    ("__import__('os').system('true')", 0),  # never run
    ("[True, 3]", 0), ("", 0), ("[" * 5000, 0),
])
def test_input_shapes_are_counted_as_literals_only(text, elements):
    assert shape_elements(text) == elements


# -- HTA, optional -----------------------------------------------------------------------------
def test_without_the_extra_hta_says_what_is_needed(monkeypatch):
    monkeypatch.setattr(hta.importlib.util, "find_spec", lambda name: None)
    assert not hta.hta_available()
    result = hta.analyse(_profile("c", [_row("k", "forward", "matmul/conv", 1.0, device=1.0)]))
    assert not result.ran and result.note == hta.NEEDS_EXTRA
    assert "pip install 'bigtrain[profile]'" in result.note


def test_hta_is_imported_only_when_asked():
    import bigtrain.profiles.hta  # noqa: F401 - what the report imports
    import bigtrain.report.profiles  # noqa: F401

    hta.hta_available()
    assert "hta" not in sys.modules and "hta.trace_analysis" not in sys.modules


def _fake_hta(monkeypatch, seen):
    """A stand-in for HTA's TraceAnalysis (the boundary): records what it was given."""
    import pandas as pd

    class TraceAnalysis:
        def __init__(self, trace_dir):
            seen["files"] = sorted(p.name for p in Path(trace_dir).iterdir())

        def get_temporal_breakdown(self, visualize):
            return pd.DataFrame([{"rank": 0, "idle_time_pctg": 12.5, "compute_time_pctg": 80.0}])

        def get_idle_time_breakdown(self, visualize):
            return (pd.DataFrame([{"idle_category": "host_wait", "idle_time_ratio": 0.7}]), None)

        def get_gpu_kernel_breakdown(self, visualize):
            return (pd.DataFrame([{"kernel_type": "COMPUTATION", "sum": 10}]), pd.DataFrame())

        def get_comm_comp_overlap(self, visualize):
            seen["overlap"] = True
            return pd.DataFrame([{"rank": 0, "comp_comm_overlap_pctg": 42.0}])

    package = types.ModuleType("hta")
    module = types.ModuleType("hta.trace_analysis")
    module.TraceAnalysis = TraceAnalysis
    monkeypatch.setitem(sys.modules, "hta", package)
    monkeypatch.setitem(sys.modules, "hta.trace_analysis", module)
    monkeypatch.setattr(hta, "hta_available", lambda: True)


def test_with_hta_a_cuda_trace_gets_its_breakdowns_and_a_cpu_trace_a_note(tmp_path, monkeypatch):
    seen: dict = {}
    _fake_hta(monkeypatch, seen)
    rows = op_rows(MLP_OPS, device=True)
    cuda = load_cell_profile(write_profile_folder(tmp_path / "cuda", "c", rows, device=True))
    result = hta.analyse(cuda)
    assert seen["files"] == ["rank0-trace.json.gz"]  # the traces alone, not summary.json
    assert result.tables["temporal_breakdown"][0]["idle_time_pctg"] == 12.5
    assert result.tables["idle_time_breakdown"][0]["idle_category"] == "host_wait"
    assert result.tables["kernel_breakdown"][0]["kernel_type"] == "COMPUTATION"
    assert "comm_comp_overlap" not in result.tables and "overlap" not in seen  # one rank
    parallel = hta.analyse(cuda, data_parallel=True)
    assert parallel.tables["comm_comp_overlap"][0]["comp_comm_overlap_pctg"] == 42.0
    cpu = load_cell_profile(write_profile_folder(tmp_path / "cpu", "c", op_rows(MLP_OPS)))
    assert hta.analyse(cpu).note == hta.NEEDS_CUDA


def test_records_that_say_not_profiled_are_believed_over_a_stale_folder(tmp_path):
    run_dir = profiled_run(tmp_path, "r", {"c1": {"step_s": 0.001}})  # profile_status none
    write_profile_folder(run_dir / "profiles" / "c1", "c1", op_rows(MLP_OPS))
    assert load_profiles(run_dir).profiles == {}
