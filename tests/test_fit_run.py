"""`bigbench fit` end to end: the driver over an executor that fakes only where cells run (a
boundary: every record it returns is what a worker would send), resume, the report, bad input
(exit 2, nothing written), and one real tiny run on the CPU for the plumbing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

from bigtrain.cells.spec import spec_from_preset
from bigtrain.results.schema import StepTimeStats
from bigtrain.results.store import load_run
from bigtrain.run.executor import register_executor
from bigtrain.run.fit import FitSettings, run_fit
from bigtrain.run.fit_search import FitBounds
from bigtrain.run.records import cell_record
from bigtrain.run.sweep import SweepOptions

MIB = 1024 * 1024
BASE_RSS = 300 * MIB


class MemoryModelExecutor:
    """Runs no process: each job's record has a peak RSS of 300 MiB + 1 MiB per sample, as a worker
    measuring a model with that footprint would send it; counts what the driver asks of it."""

    instances: list[MemoryModelExecutor] = []

    def __init__(self, settings) -> None:  # noqa: ANN001 - ExecutorSettings
        self.settings = settings
        self.jobs: list = []
        self.retired = 0
        self.workers_started = 0
        MemoryModelExecutor.instances.append(self)

    def run(self, jobs, on_result, on_start=None) -> None:  # noqa: ANN001
        for job in jobs:
            self.jobs.append(job)
            if on_start is not None:
                on_start(job)
            batch = job.cell.batch_size
            on_result(cell_record(
                job.run_id, job.cell, job.repeat, status="ok",
                step_time_s=StepTimeStats.from_samples([0.01 * (1 + batch / 64)] * 3),
                items_per_s=batch / (0.01 * (1 + batch / 64)), item_unit="samples",
                items_per_step=batch, peak_rss_bytes=BASE_RSS + batch * MIB,
                started_at="2026-12-07T08:00:00+00:00", ended_at="2026-12-07T08:00:01+00:00"))

    def retire_idle_workers(self) -> None:
        self.retired += 1

    def shutdown(self) -> None:
        pass


register_executor("fit-memory-model", MemoryModelExecutor, replace=True)


def _spec(tmp_path: Path):
    from conftest import write_preset

    return spec_from_preset(str(write_preset(tmp_path, ["mlp:seed"])), {"precision": "fp32",
                                                                        "device": "cpu"})


def _settings(budget_mib: int = 340, max_probes: int = 20) -> FitSettings:
    return FitSettings(bounds=FitBounds(batch_min=1, batch_max=4096, max_probes=max_probes),
                       memory_budget_bytes=budget_mib * MIB)


def _fit(tmp_path: Path, settings: FitSettings, **options):
    MemoryModelExecutor.instances.clear()
    outcome, results = run_fit(_spec(tmp_path), settings, SweepOptions(
        out_dir=tmp_path / "results", executor="fit-memory-model", **options))
    return outcome, results, MemoryModelExecutor.instances[-1]


def test_the_driver_finds_the_budget_boundary_and_records_every_probe(tmp_path: Path) -> None:
    outcome, results, executor = _fit(tmp_path, _settings(), run_id="fit1")
    assert outcome.exit_code == 0 and not outcome.failed  # an oom probe is an answer, not a failure
    (result,) = results
    # 300 MiB + 40 MiB fits 340 MiB exactly; 41 samples are 1 MiB over.
    assert (result.conclusion.max_batch_size, result.conclusion.fail_batch_size,
            result.conclusion.stop) == (40, 41, "boundary")
    records = load_run(tmp_path / "results" / "fit1").records
    probes = [r for r in records if r.fit_role == "probe"]
    assert [r.batch_size for r in probes] == [1, 2, 4, 8, 16, 32, 64, 48, 40, 44, 42, 41]
    assert [r.fit_probe_index for r in probes] == list(range(12))
    assert {r.repeat for r in probes} == {0} and len({r.fit_group for r in records}) == 1
    over = [r for r in probes if r.batch_size > 40]
    assert over and all(r.status == "oom" for r in over)
    assert over[0].reason == (f"peak peak_rss_bytes 364 MiB ({BASE_RSS + 64 * MIB:,} bytes) > "
                              f"budget 340 MiB ({340 * MIB:,} bytes)")
    assert all(r.fit_memory_budget_bytes == 340 * MIB and r.fit_checked_peak == "peak_rss_bytes"
               for r in records)
    # the answer measured again, with the spec's own window, as repeat 1 of the cell at batch 40
    (top,) = [r for r in records if r.fit_role == "max"]
    assert (top.batch_size, top.repeat, top.status, top.fit_fail_batch_size, top.fit_stop) == (
        40, 1, "ok", 41, "boundary")
    assert top.cell_id == next(r.cell_id for r in probes if r.batch_size == 40)
    # probes and the answer are measured alike, with the spec's warm-up and window
    assert {(j.settings.warmup_s, j.settings.duration_s) for j in executor.jobs} == {(0.02, 0.05)}
    # CPU probes need fresh workers (peak RSS only grows); after each round with an oom the idle
    # workers are replaced
    assert executor.settings.reuse_workers is False
    assert executor.retired == len(over)
    manifest = json.loads((tmp_path / "results" / "fit1" / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    assert manifest["spec"]["fit"] == {"batch_min": 1, "batch_max": 4096, "max_probes": 20,
                                       "memory_budget_bytes": 340 * MIB, "memory_fraction": None}


def test_resume_replays_the_recorded_probes_and_runs_only_the_rest(tmp_path: Path) -> None:
    _fit(tmp_path, _settings(), run_id="fit2")
    run_dir = tmp_path / "results" / "fit2"
    lines = (run_dir / "cells.jsonl").read_text().splitlines()
    (run_dir / "cells.jsonl").write_text("\n".join(lines[:5]) + "\n")  # killed after 5 probes
    outcome, results, executor = _fit(tmp_path, _settings(), resume="fit2")
    assert [j.cell.batch_size for j in executor.jobs] == [32, 64, 48, 40, 44, 42, 41, 40]
    assert results[0].conclusion.max_batch_size == 40 and outcome.exit_code == 0
    _, again, executor = _fit(tmp_path, _settings(), resume="fit2")
    assert executor.jobs == [] and again[0].conclusion == results[0].conclusion
    # other fit settings are another search: refused, naming the change
    from bigtrain.common.errors import BadInput

    with pytest.raises(BadInput, match="memory_budget_bytes"):
        _fit(tmp_path, _settings(budget_mib=400), resume="fit2")


def test_the_probe_bound_and_a_budget_nothing_fits(tmp_path: Path) -> None:
    _, (bounded,), _ = _fit(tmp_path, _settings(max_probes=4), run_id="few")
    assert (bounded.conclusion.max_batch_size, bounded.conclusion.stop) == (8, "probe_limit")
    _, (none,), executor = _fit(tmp_path, _settings(budget_mib=200), run_id="none")
    assert none.conclusion.max_batch_size is None and none.max_record is None
    assert len(executor.jobs) == 1  # batch-min over the budget: nothing fits, nothing to measure


def test_the_report_shows_the_max_batch_and_the_tradeoff_figure(tmp_path: Path) -> None:
    from bigtrain.report import write_report

    _fit(tmp_path, _settings(), run_id="rep")
    index = write_report([tmp_path / "results" / "rep"], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "tables" / "fit.csv")
    row = table.iloc[0]
    assert (row["model"], row["max batch"], row["answer"], row["first failing batch"],
            row["probes"]) == ("mlp:seed", 40, "exact", 41, 12)
    assert row["peak at max (MiB)"] == pytest.approx(340.0)
    assert row["per sample at max (MiB)"] == pytest.approx(340.0 / 40)
    assert row["samples/s at max"] == pytest.approx(40 / (0.01 * (1 + 40 / 64)))
    assert (tmp_path / "report" / "figures" / "memory-tradeoff.png").is_file()
    page = index.read_text()
    assert "Largest batch that trains" in page and "Throughput against peak memory" in page
    assert "Largest batch that trains" in (tmp_path / "report" / "report.md").read_text()


def test_report_reads_the_levers_fields_where_a_record_has_them() -> None:
    from bigtrain.report.fit import per_sample_bytes, peak_memory_bytes, samples_per_s

    @dataclasses.dataclass
    class Record:  # what a record from the levers branch carries, beside ours
        device: str = "cuda:0"
        batch_size: int = 8
        peak_mem_allocated_bytes: int = 800
        peak_rss_bytes: int = 5000
        items_per_s: float = 4096.0
        items_per_step: int = 8 * 512
        item_unit: str = "tokens"
        peak_memory_per_sample_bytes: int | None = None
        micro_batch_size: int | None = None

    assert peak_memory_bytes(Record()) == 800 and per_sample_bytes(Record()) == 100
    assert per_sample_bytes(Record(micro_batch_size=2)) == 400
    assert per_sample_bytes(Record(peak_memory_per_sample_bytes=77)) == 77
    assert peak_memory_bytes(Record(device="cpu")) == 5000
    assert samples_per_s(Record()) == pytest.approx(8.0)  # 4096 tokens/s of 512-token samples


@pytest.mark.parametrize("args, message", [
    (["--memory-budget", "1KiB", "--model", "mlp:small"],
     "below the parameters of mlp:small alone (2.55 MiB, 2,678,824 bytes): nothing could fit; "
     "valid range: 2.55 MiB to"),
    (["--memory-budget", "2 gigs"], "'2 gigs' is not a memory size; valid:"),
    (["--memory-budget", "1GiB", "--batch-min", "64", "--batch-max", "8"],
     "--batch-min 64 is above --batch-max 8"),
    (["--model", "mlp:seed"], "a CPU cell needs --memory-budget SIZE"),
    (["--memory-budget", "1GiB", "--memory-fraction", "1.5"],
     "--memory-fraction: 1.5 is out of range; valid: a number above 0 and at most 1"),
    (["--memory-budget", "100TiB"], "is above this machine's RAM"),
])
def test_bad_input_exits_2_with_the_reason_and_writes_nothing(tmp_path: Path, args: list[str],
                                                               message: str) -> None:
    base = ["fit", "--model", "mlp:seed", "--optimizer", "sgd", "--precision", "fp32",
            "--device", "cpu", "--out", str(tmp_path / "results")]
    result = run_cli(*base, *args, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_fit_takes_the_sweep_flags_but_not_the_batch_size(tmp_path: Path) -> None:
    from bigtrain.cli import main
    from bigtrain.commands.sweep import sweep

    fit = main.commands["fit"]
    names = {p.name for p in fit.params}
    # (a fit probe is not profiled: the profile flags stay sweep's and profile's)
    assert {p.name for p in sweep.params} - names == {"batch_size", "repeats", "profile",
                                                      "profile_steps", "profile_shapes"}
    # the very declarations, not copies of them
    assert next(p for p in fit.params if p.name == "optimizer") is next(
        p for p in sweep.params if p.name == "optimizer")
    result = run_cli("fit", "--model", "mlp:seed", "--batch-size", "4", cwd=tmp_path)
    assert result.exit_code == 2 and "No such option" in result.output


def test_a_real_tiny_fit_on_the_cpu_under_a_small_budget(tmp_path: Path) -> None:
    """Plumbing on a real worker: a probe whose measured peak RSS is over the budget is recorded
    `oom` with both figures in its reason, the search ends (nothing fits) and the run exits 0."""
    # 16 MiB holds mlp:seed's 964 bytes of parameters, never a Python process with torch.
    result = run_cli("fit", "--model", "mlp:seed", "--optimizer", "sgd", "--precision", "fp32",
                     "--device", "cpu", "--warmup", "0", "--duration", "0.05", "--min-steps", "2",
                     "--batch-min", "1", "--batch-max", "64", "--memory-budget", "16MiB",
                     "--no-report", "--out", str(tmp_path / "r"), "--run-id", "tight",
                     cwd=tmp_path)
    assert result.exit_code == 0, result.output
    (probe,) = load_run(tmp_path / "r" / "tight").records
    assert (probe.status, probe.fit_role, probe.fit_probe_index, probe.batch_size) == (
        "oom", "probe", 0, 1)
    assert probe.reason.startswith("peak peak_rss_bytes ") and "> budget 16 MiB" in probe.reason
    assert probe.peak_rss_bytes > 16 * MIB and probe.step_time_s is not None
    assert "none_fit" in result.output
