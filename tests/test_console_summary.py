"""The sweep's summary table: an axis beyond the always-shown ones gets a column exactly when its
value differs between the rows, so two cells that differ only in it never read the same."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from bigtrain.cells.settings import StepTimeSettings
from bigtrain.run.console import summary_table
from bigtrain.run.job import CellJob
from hostile_workers import ok_record
from test_worker_protocol import CELL


def _record(**axes):
    cell = dataclasses.replace(CELL, **axes)
    job = CellJob(run_id="r1", cell=cell, repeat=0, device="cpu",
                  settings=StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=1))
    return ok_record(job)


def _rendered(records) -> str:
    console = Console(record=True, width=250)
    console.print(summary_table(records))
    return console.export_text()


def test_a_varying_axis_gets_its_column_and_a_constant_one_does_not():
    both = _rendered([_record(framework="torch"), _record(framework="jax")])
    header = next(line for line in both.splitlines() if "model" in line)
    assert " fw " in header
    assert "jax" in both and "torch" in both
    one = _rendered([_record(framework="torch"), _record(framework="torch", batch_size=16)])
    assert " fw " not in next(line for line in one.splitlines() if "model" in line)
    assert "torch" not in one
