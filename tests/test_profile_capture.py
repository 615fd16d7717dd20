"""Issue 24, capture: real profiled windows of tiny cells on this CPU, written to the artifact
contract and read back by the analysing side (`load_profiles`, the breakdown, the "why" lines).
Plumbing and counts only: no assertion depends on how fast anything ran."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from bigtrain.cells.matrix import Cell
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.measure import profile_artifacts, profile_capture, step_loop
from bigtrain.measure.profile_capture import PHASE_RANGE, capture_window
from bigtrain.measure.profile_settings import ProfileRequest, profile_settings_for
from bigtrain.profiles.breakdown import why_lines
from bigtrain.profiles.load import OP_COLUMNS, load_profiles, trace_problem
from bigtrain.results.store import load_run
from bigtrain.run.build import build_cell
from bigtrain.run.cell import run_cell
from bigtrain.run.job import CellJob

SETTINGS = StepTimeSettings(warmup_s=0.01, duration_s=0.02, min_steps=3)
QUICK = ["--warmup", "0.02", "--duration", "0.05", "--min-steps", "3", "--repeats", "1"]


def _cell(**axes) -> Cell:
    values = {"cell_id": "c1", "model": "mlp:seed", "optimizer": "adam", "impl": "foreach",
              "batch_norm": "off", "precision": "fp32", "device": "cpu", "batch_size": 8,
              "compile": "off", **axes}
    return Cell(**values)


def _job(tmp_path: Path, cell: Cell | None = None, steps: int = 2) -> CellJob:
    cell = cell or _cell()
    return CellJob(run_id="r", cell=cell, repeat=0, device="cpu", settings=SETTINGS,
                   profile=profile_settings_for(ProfileRequest(steps=steps), str(tmp_path),
                                                cell.cell_id))


def _trace_events(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)["traceEvents"]


# -- end to end: `bigbench profile` -> results/<run>/profiles/ -> load_profiles -> why ----------
def test_bigbench_profile_leaves_the_contract_and_the_why_line(tmp_path: Path) -> None:
    result = run_cli("profile", "--model", "mlp:seed", "--optimizer", "adam",
                     "--impl", "forloop,fused", "--precision", "fp32", "--device", "cpu", *QUICK,
                     "--profile-steps", "2", "--out", str(tmp_path), "--run-id", "p",
                     "--no-report")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "p"
    run = load_run(run_dir)
    assert len(run.records) == 2
    for record in run.records:
        assert record.status == "ok", record.reason
        assert record.profile_status == "ok", record.profile_reason
        assert record.profile_path == f"profiles/{record.cell_id}"
        # the timing is the timed window's: one sample per timed step, none of the profiled ones
        assert record.step_time_s.n == len(record.step_times_s)
        summary = record.profile_summary
        assert summary["steps_profiled"] == 2 and summary["top_ops"]
        assert sum(summary["share_by_phase"].values()) == pytest.approx(1, abs=1e-3)
        folder = run_dir / record.profile_path
        assert {p.name for p in folder.iterdir()} >= {"trace.json.gz", "ops.csv", "ops.parquet",
                                                       "summary.json"}
        # a Chrome trace that holds our phase ranges, within the size bound
        names = {e.get("name") for e in _trace_events(folder / "trace.json.gz")}
        assert {PHASE_RANGE.format(p) for p in ("forward", "backward", "optimizer")} <= names
        assert (folder / "trace.json.gz").stat().st_size < profile_artifacts.MAX_TRACE_BYTES
        # the Parquet table is the CSV table
        import pyarrow.parquet as pq

        with (folder / "ops.csv").open() as handle:
            csv_rows = list(csv.DictReader(handle))
        assert tuple(csv_rows[0]) == OP_COLUMNS
        parquet_ops = pq.read_table(folder / "ops.parquet")["op"].to_pylist()
        assert [r["op"] for r in csv_rows] == parquet_ops
    found = load_profiles(run_dir)
    assert set(found.profiles) == {r.cell_id for r in run.records} and not found.invalid
    for profile in found.profiles.values():
        assert trace_problem(profile) is None
        assert profile.time_basis == "host" and profile.step_time_s is not None
        phases = {row.phase for row in profile.ops}
        assert {"forward", "backward", "optimizer"} <= phases
        assert any(row.category == "matmul/conv" and row.phase == "forward" for row in profile.ops)
        assert all(row.category == "optimizer" for row in profile.ops if row.phase == "optimizer")
    answers = why_lines(found.profiles)
    assert [a.axis for a in answers] == ["impl"]
    assert {answers[0].baseline_value, answers[0].candidate_value} == {"forloop", "fused"}
    assert "where the time goes (2 profiled cell(s))" in result.output
    assert f"  {answers[0].line}  [" in result.output


def test_sweep_profile_flags_need_profile_and_the_dry_run_profiles_nothing(tmp_path: Path) -> None:
    bad = run_cli("sweep", "--model", "mlp:seed", "--profile-shapes", "--dry-run", cwd=tmp_path)
    assert bad.exit_code == 2 and "need --profile" in bad.output
    steps = run_cli("profile", "--model", "mlp:seed", "--profile-steps", "0", "--dry-run",
                    cwd=tmp_path)
    assert steps.exit_code == 2 and "--profile-steps" in steps.output
    dry = run_cli("profile", "--model", "mlp:seed", "--device", "cpu", "--dry-run", cwd=tmp_path)
    assert dry.exit_code == 0, dry.output
    assert not list(tmp_path.rglob("summary.json"))


# -- one cell in this process ------------------------------------------------------------------
def test_the_profiled_window_runs_after_the_timed_window(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    window, capture = step_loop.measure_window, profile_capture.capture_window

    def timed(*args, **kwargs):
        result = window(*args, **kwargs)
        order.append("window")
        return result

    def profiled(*args, **kwargs):
        order.append("profile")
        return capture(*args, **kwargs)

    monkeypatch.setattr(step_loop, "measure_window", timed)
    monkeypatch.setattr("bigtrain.measure.profile_capture.capture_window", profiled)
    record = run_cell(_job(tmp_path))
    assert record.status == "ok" and record.profile_status == "ok", record.profile_reason
    assert order == ["window", "profile"]


def test_a_profile_that_fails_keeps_the_timing_record_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("the profiler could not start")

    monkeypatch.setattr("bigtrain.measure.profile_capture.capture_window", broken)
    record = run_cell(_job(tmp_path))
    assert record.status == "ok" and record.step_time_s is not None
    assert record.profile_status == "failed"
    assert record.profile_reason == "RuntimeError: the profiler could not start"
    assert record.profile_path is None and record.profile_summary is None


def test_an_unprofiled_cell_carries_no_profile_fields() -> None:
    record = run_cell(CellJob(run_id="r", cell=_cell(), repeat=0, device="cpu", settings=SETTINGS))
    assert record.status == "ok"
    assert record.profile_status is None and record.profile_path is None


def _optimizer_launches(tmp_path: Path, model: str, impl: str, **axes) -> dict[str, float]:
    built = build_cell(_cell(model=model, impl=impl, **axes), torch.device("cpu"), 0)
    built.step()
    settings = profile_settings_for(ProfileRequest(steps=2), str(tmp_path), f"{impl}-{model[:3]}")
    capture = capture_window(built.step, built.device, settings)
    return {phase: n / capture.steps for phase, n in capture.launches_by_phase.items()}


def test_launches_per_step_separate_forloop_foreach_and_fused_adam(tmp_path: Path) -> None:
    launches = {impl: _optimizer_launches(tmp_path, "mlp:seed", impl)["optimizer"]
                for impl in ("forloop", "foreach", "fused")}
    # for-loop: a few ops per parameter tensor; foreach: a few per group; fused: one kernel
    assert launches["forloop"] > launches["foreach"] > launches["fused"] >= 1
    # deterministic: the same step dispatches the same ops every time
    assert _optimizer_launches(tmp_path, "mlp:seed", "fused")["optimizer"] == launches["fused"]


def test_each_micro_batch_opens_its_own_forward_and_backward(tmp_path: Path) -> None:
    built = build_cell(_cell(grad_accum=2), torch.device("cpu"), 0)
    built.step()
    settings = profile_settings_for(ProfileRequest(steps=2), str(tmp_path), "accum")
    capture = capture_window(built.step, built.device, settings)
    names = [e.get("name") for e in json.loads(capture.trace_json_path.read_text())["traceEvents"]]
    assert names.count(PHASE_RANGE.format("forward")) == 2 * 2  # 2 micro-batches x 2 steps
    assert names.count(PHASE_RANGE.format("backward")) == 2 * 2
    assert names.count(PHASE_RANGE.format("optimizer")) == 2
    assert {op.phase for op in capture.ops} >= {"forward", "backward", "optimizer"}


def test_the_trace_is_cut_to_its_last_step_then_dropped_above_the_bound(tmp_path: Path) -> None:
    built = build_cell(_cell(), torch.device("cpu"), 0)
    built.step()
    settings = profile_settings_for(ProfileRequest(steps=3), str(tmp_path), "bound")
    capture = capture_window(built.step, built.device, settings)
    raw = capture.trace_json_path
    whole = json.loads(raw.read_text())["traceEvents"]
    copy = raw.with_name("copy.json")
    copy.write_text(raw.read_text())
    full_notes = profile_artifacts.gzip_trace(copy, tmp_path / "full.json.gz")
    size = full_notes["trace_bytes"]
    notes = profile_artifacts.gzip_trace(raw, tmp_path / "cut.json.gz", max_bytes=size - 1)
    assert notes["trace_trimmed"] and not raw.exists()
    cut = _trace_events(tmp_path / "cut.json.gz")
    steps = [e for e in cut if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert len(steps) == 1 and 0 < len(cut) < len(whole)
    assert PHASE_RANGE.format("optimizer") in {e.get("name") for e in cut}
    tiny = raw.with_name("tiny.json")
    tiny.write_text(json.dumps({"traceEvents": whole}))
    dropped = profile_artifacts.gzip_trace(tiny, tmp_path / "none.json.gz", max_bytes=10)
    assert "trace_dropped" in dropped and not (tmp_path / "none.json.gz").exists()


def test_a_profile_folder_is_built_only_from_a_safe_cell_id(tmp_path: Path) -> None:
    from bigtrain.common.errors import BadInput

    with pytest.raises(BadInput, match="cannot name a profile folder"):
        profile_settings_for(ProfileRequest(), str(tmp_path), "../escape")
    with pytest.raises(BadInput, match="--profile-steps"):
        ProfileRequest(steps=0)


# -- data-parallel: one trace per rank ----------------------------------------------------------
def test_two_gloo_ranks_leave_a_trace_each_and_communication_in_its_phase(tmp_path: Path) -> None:
    from bigtrain.cells.spec import preset_toml, spec_from_preset
    from bigtrain.run.sweep import SweepOptions, run_sweep

    preset = tmp_path / "ddp.toml"
    preset.write_text(preset_toml(model=["mlp:seed"], optimizer=["sgd"], world_size=[2],
                                  measure={"warmup_s": 0.02, "duration_s": 0.05, "min_steps": 3,
                                           "repeats": 1, "cell_timeout_s": 300}))
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path / "results", run_id="ddp",
                                     profile=ProfileRequest(steps=2)))
    (record,) = outcome.records
    assert record.status == "ok", (record.reason, record.traceback_tail)
    assert record.profile_status == "ok", record.profile_reason
    folder = outcome.run_dir / record.profile_path
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["rank_traces"] == ["trace.rank0.json.gz", "trace.rank1.json.gz"]
    assert summary["trace"] == "trace.rank0.json.gz"
    for name in summary["rank_traces"]:
        names = {e.get("name") for e in _trace_events(folder / name)}
        assert PHASE_RANGE.format("backward") in names
    found = load_profiles(outcome.run_dir)
    (profile,) = found.profiles.values()
    comm = [row for row in profile.ops if row.category == "communication"]
    assert comm and all(row.phase == "communication" for row in comm)


# -- the CUDA memory timeline, from a snapshot (the pickle torch's allocator history dumps) -----
def _snapshot(path: Path) -> Path:
    import pickle

    events = [{"action": "alloc", "addr": 4096 * i, "size": 4096, "stream": 0, "time_us": i,
               "frames": []} for i in range(3)]
    path.write_bytes(pickle.dumps({"segments": [], "device_traces": [events]}))
    return path


def test_the_memory_timeline_inlines_a_local_viewer_and_opens_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.measure import memory_timeline

    viewer = tmp_path / "MemoryViz.js"
    viewer.write_text("export function add_local_files(files, kind) { document.title = kind; }\n")
    monkeypatch.setattr(memory_timeline, "viewer_script", lambda: viewer)
    html = memory_timeline.write_memory_timeline(_snapshot(tmp_path / "s.pickle"),
                                                 tmp_path / "t.html")
    text = html.read_text()
    assert memory_timeline.is_offline(text)
    assert "function add_local_files(files, kind)" in text and "snapshot.pickle" in text


def test_without_a_local_viewer_the_timeline_is_bigtrains_own_offline_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.measure import memory_timeline

    monkeypatch.setattr(memory_timeline, "viewer_script", lambda: None)
    html = memory_timeline.write_memory_timeline(_snapshot(tmp_path / "s.pickle"),
                                                 tmp_path / "t.html")
    # torch's own page, which fetches its viewer, is kept beside bigtrain's offline one
    assert not memory_timeline.is_offline((tmp_path / "t.torch.html").read_text())
    text = html.read_text()
    assert memory_timeline.is_offline(text) and "<script" not in text
    assert "<svg" in text and "peak 0.0 MiB" in text  # 3 x 4 KiB
    empty = tmp_path / "e.pickle"
    import pickle

    empty.write_bytes(pickle.dumps({"segments": [], "device_traces": []}))
    assert memory_timeline.write_memory_timeline(empty, tmp_path / "e.html") is None


def test_the_offline_timeline_follows_allocs_and_frees_and_escapes_what_the_snapshot_says():
    from bigtrain.measure.memory_timeline import allocation_timeline, offline_timeline_html

    mib = 2**20
    hostile = [{"filename": "/site/torch/nn/x.py", "line": 1, "name": "inner"},
               {"filename": "/home/u/<script>alert(1)</script>.py", "line": 7, "name": "train"}]
    events = [{"action": "alloc", "addr": 1, "size": 3 * mib, "time_us": 0, "frames": hostile},
              {"action": "alloc", "addr": 2, "size": 5 * mib, "time_us": 1000, "frames": []},
              {"action": "segment_alloc", "addr": 9, "size": 64 * mib, "time_us": 1500},
              {"action": "free_completed", "addr": 2, "size": 5 * mib, "time_us": 2000},
              {"action": "alloc", "addr": 3, "size": 1 * mib, "time_us": 3000, "frames": []}]
    points, peak, peak_time, at_peak = allocation_timeline(events)
    assert [b // mib for _, b in points] == [3, 8, 3, 4]    # segments are not allocations
    assert (peak // mib, peak_time) == (8, 1000.0)
    assert [size // mib for size, _ in at_peak] == [5, 3]
    assert at_peak[1][1].endswith(".py:7 train")          # the caller, not torch's own frame
    page = offline_timeline_html([events])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "peak 8.0 MiB allocated, at 1.0 ms of 3.0 ms" in page


# -- planning: which jobs profile ----------------------------------------------------------------
def test_only_each_cells_first_repeat_profiles_and_a_resume_profiles_what_still_runs(
        tmp_path: Path) -> None:
    from bigtrain.cells.spec import MeasureSettings, SweepSpec
    from bigtrain.run.sweep import plan_jobs

    spec = SweepSpec(preset="t", model=("mlp:seed",), optimizer=("sgd",), impl=("foreach",),
                     batch_norm=("off",), precision=("fp32",), device=("cpu",), batch_size=(8,),
                     compile=("off",),
                     measure=MeasureSettings(warmup_s=0.1, duration_s=0.1, min_steps=3, repeats=2))
    cells = [_cell(cell_id="a1"), _cell(cell_id="b2")]
    rounds = plan_jobs("run", spec, cells, done={("a1", 0)}, profile=ProfileRequest(steps=3),
                       run_dir=tmp_path)
    profiled = {(j.cell.cell_id, j.repeat): j.profile for r in rounds for j in r}
    assert set(profiled) == {("b2", 0), ("a1", 1), ("b2", 1)}  # a1's repeat 0 is recorded
    assert profiled[("a1", 1)] is None and profiled[("b2", 1)] is None
    settings = profiled[("b2", 0)]
    assert settings.relative == "profiles/b2" and settings.request.steps == 3
    assert Path(settings.folder) == tmp_path.resolve() / "profiles" / "b2"
    unprofiled = plan_jobs("run", spec, cells, done=set())
    assert all(j.profile is None for r in unprofiled for j in r)


def test_with_shapes_the_ops_table_holds_shapes_the_roofline_reads(tmp_path: Path) -> None:
    from bigtrain.profiles.roofline import shape_elements

    built = build_cell(_cell(), torch.device("cpu"), 0)
    built.step()
    settings = profile_settings_for(ProfileRequest(steps=1, shapes=True), str(tmp_path), "s")
    rows = profile_artifacts.op_rows(capture_window(built.step, built.device, settings))
    addmm = [r for r in rows if r["op"] == "aten::addmm"]
    assert addmm and all(shape_elements(r["input_shapes"]) > 0 for r in addmm)
    assert all(r["flops_per_step"] for r in addmm)


def test_the_ab_job_message_carries_the_profile_and_an_unprofiled_job_none(tmp_path: Path) -> None:
    import json as _json

    from bigtrain.ab.protocol import job_from_message, job_message

    job = _job(tmp_path, steps=3)
    message = _json.loads(_json.dumps(job_message(job)))["job"]
    assert message["profile"] == {"steps": 3, "shapes": False, "run_dir": str(tmp_path)}
    again = job_from_message(message)
    assert again.profile == job.profile
    plain = CellJob(run_id="r", cell=_cell(), repeat=0, device="cpu", settings=SETTINGS)
    assert "profile" not in job_message(plain)["job"]
    assert job_from_message(job_message(plain)["job"]).profile is None


def test_a_slow_cells_profile_takes_about_one_timed_window() -> None:
    from bigtrain.measure.profile_cell import profile_steps_within

    assert profile_steps_within(window_s=1.0, step_s=0.3) == 3
    assert profile_steps_within(window_s=1.0, step_s=1.5) == 1  # never none
    assert profile_steps_within(window_s=1.0, step_s=0.0) == 1
