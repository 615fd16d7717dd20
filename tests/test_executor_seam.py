"""The executor seam: a second executor plugged in by name runs a real sweep through `run_sweep`,
the driver alone writes the results, and executor choice is validated and recorded."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results.store import CELLS_NAME, load_run
from bigtrain.run.cell import run_cell
from bigtrain.run.job import CellJob
from bigtrain.run.executor import (
    ExecutorSettings,
    ResultCallback,
    StartCallback,
    executor_names,
    register_executor,
)
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.cells.spec import spec_from_preset
from conftest import write_preset

IN_PROCESS = "in-process-test"


class InProcessExecutor:
    """Runs each job with `run_cell` right here, in the driver's process: no workers at all."""

    instances: list[InProcessExecutor] = []

    def __init__(self, settings: ExecutorSettings) -> None:
        settings.refuse_options(IN_PROCESS)
        self.settings = settings
        self.workers_started = 0
        self.started: list[CellJob] = []
        self.retired = 0
        self.shut_down = 0
        InProcessExecutor.instances.append(self)

    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None:
        for job in jobs:
            if on_start is not None:
                on_start(job)
            self.started.append(job)
            on_result(run_cell(job))

    def retire_idle_workers(self) -> None:
        self.retired += 1

    def shutdown(self) -> None:
        self.shut_down += 1


register_executor(IN_PROCESS, InProcessExecutor, replace=True)


def test_a_second_executor_runs_a_real_sweep_through_the_driver(tmp_path: Path) -> None:
    InProcessExecutor.instances.clear()
    preset = write_preset(tmp_path, ["mlp:seed", "transformer:tiny"])
    spec = spec_from_preset(str(preset), {"repeats": 2})
    outcome = run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="seam", executor=IN_PROCESS))

    (executor,) = InProcessExecutor.instances
    assert executor.settings.slots == ("cpu",)
    assert executor.settings.cell_timeout_s == 60
    assert executor.retired == 1  # between the two repeat rounds
    assert executor.shut_down == 1
    assert [(j.cell.model, j.repeat) for j in executor.started] == [
        ("mlp:seed", 0), ("transformer:tiny", 0), ("mlp:seed", 1), ("transformer:tiny", 1)]

    lines = (tmp_path / "seam" / CELLS_NAME).read_text().splitlines()
    assert [(json.loads(line)["model"], json.loads(line)["repeat"]) for line in lines] == [
        ("mlp:seed", 0), ("transformer:tiny", 0), ("mlp:seed", 1), ("transformer:tiny", 1)]
    run = load_run(tmp_path / "seam")
    assert all(r.status == "ok" and r.step_time_s.n >= 3 for r in run.records)
    assert {r.worker_pid for r in run.records} == {os.getpid()}  # it really ran in here
    assert run.manifest.state == "complete"
    assert run.manifest.executor == IN_PROCESS
    assert outcome.exit_code == 0 and outcome.workers_started == 0


def test_resume_uses_the_runs_own_executor_and_refuses_another_unless_forced(
        tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    spec = spec_from_preset(str(preset))
    run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="r", executor=IN_PROCESS))
    InProcessExecutor.instances.clear()
    run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r"))
    assert len(InProcessExecutor.instances) == 1  # no --executor: the run's own
    with pytest.raises(BadInput, match=rf"executor: '{IN_PROCESS}' -> 'local'.*--force"):
        run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r", executor="local"))
    forced = run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r", executor="local",
                                          force=True))
    assert forced.exit_code == 0
    assert load_run(tmp_path / "r").manifest.executor == "local"


def test_an_unknown_executor_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    with pytest.raises(BadInput, match=r"--executor: unknown executor 'nope'; valid choices: "
                                       r"local"):
        run_sweep(spec_from_preset(str(preset)),
                  SweepOptions(out_dir=tmp_path / "out", run_id="x", executor="nope"))
    assert not (tmp_path / "out").exists()


def test_an_option_the_executor_does_not_take_is_refused(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    with pytest.raises(BadInput, match=r"executor 'local' takes no option address; its options: "
                                       r"none"):
        run_sweep(spec_from_preset(str(preset)),
                  SweepOptions(out_dir=tmp_path / "out", run_id="x",
                               executor_options={"address": "10.0.0.1:6379"}))
    assert not (tmp_path / "out").exists()


def test_cli_names_the_bad_executor_and_the_choices(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    result = CliRunner().invoke(main, ["sweep", "--preset", str(preset), "--executor", "nope",
                                       "--dry-run"])
    assert result.exit_code == 2
    assert "unknown executor 'nope'" in result.output
    assert "valid choices: local" in result.output
    assert "Traceback" not in result.output


def test_local_is_the_default_and_listed_first() -> None:
    assert executor_names()[0] == "local"
    assert IN_PROCESS in executor_names()


def test_a_manifest_written_before_the_executor_key_reads_as_local() -> None:
    from bigtrain.results.schema import Manifest

    old = {"schema_version": 1, "run_id": "old", "bigtrain_version": "0.1", "spec": {},
           "environment": {}, "started_at": "2026-01-01T00:00:00+00:00", "state": "complete"}
    assert Manifest.from_json(old).executor == "local"
    assert Manifest.from_json({**old, "executor": "ray"}).executor == "ray"
