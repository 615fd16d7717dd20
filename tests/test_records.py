"""The records the run machinery builds for outcomes it decides, and the worker's health check."""

from __future__ import annotations

import pytest
import torch

from bigtrain.cells.matrix import Cell
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.run.job import CellJob
from bigtrain.run.health import check_health
from bigtrain.run.records import (
    death_record,
    exception_record,
    executor_error_record,
    not_run_record,
    timeout_record,
)

CELL = Cell(cell_id="c0ffee", model="mlp:seed", optimizer="sgd", impl="foreach",
            batch_norm="n/a", precision="fp32", device="cpu", batch_size=8, compile="off")
JOB = CellJob(run_id="run", cell=CELL, repeat=2, device="cpu",
              settings=StepTimeSettings(warmup_s=0.1, duration_s=0.1, min_steps=3))


def _raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001 - we want it with its traceback
        return caught


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (ValueError("bad shape\nsecond line"), "error", "ValueError: bad shape"),
        (MemoryError(), "oom", "MemoryError: "),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "oom",
         "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory"), "oom",
         "RuntimeError: DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_an_exception_becomes_oom_or_error_with_its_first_line(exc: Exception, status: str,
                                                               reason: str) -> None:
    record = exception_record(JOB, _raised(exc), started_at="t0", worker_pid=42)
    assert (record.status, record.reason) == (status, reason)
    assert "Traceback" in record.traceback_tail and type(exc).__name__ in record.traceback_tail
    assert (record.cell_id, record.repeat, record.model) == ("c0ffee", 2, "mlp:seed")
    assert (record.started_at, record.worker_pid) == ("t0", 42)


def test_a_long_exception_message_is_cut_to_500_characters() -> None:
    record = exception_record(JOB, _raised(ValueError("x" * 2000)), started_at="t0",
                              worker_pid=None)
    assert len(record.reason) == 500


@pytest.mark.parametrize(
    ("exit_code", "status", "reason"),
    [
        (-11, "crashed", "worker killed by SIGSEGV"),
        (-9, "crashed", "worker killed by SIGKILL"),
        (-200, "crashed", "worker killed by signal 200"),
        (0, "error", "worker exited with code 0 without sending a result"),
        (3, "error", "worker exited with code 3 without sending a result"),
    ],
)
def test_a_death_is_crashed_by_signal_else_error(exit_code: int, status: str, reason: str) -> None:
    record = death_record(JOB, exit_code=exit_code, stderr_tail="kernel said no", worker_pid=7)
    assert (record.status, record.reason) == (status, reason)
    assert record.traceback_tail == "kernel said no"
    assert record.worker_pid == 7


def test_an_empty_stderr_tail_is_stored_as_null() -> None:
    assert death_record(JOB, exit_code=0, stderr_tail="", worker_pid=7).traceback_tail is None


def test_a_timeout_names_what_and_the_limit() -> None:
    record = timeout_record(JOB, what="cell", limit_s=15.0, stderr_tail="", worker_pid=7)
    assert record.status == "timeout"
    assert record.reason == "cell exceeded the 15 s limit; worker process tree killed"


def test_an_executor_error_says_so() -> None:
    record = executor_error_record(JOB, reason="task lost with its node", detail="node died")
    assert (record.status, record.reason) == ("error", "executor: task lost with its node")
    assert record.traceback_tail == "node died"


def test_a_not_run_cell_keeps_its_status_and_reason() -> None:
    skipped = Cell(**{**CELL.axes(), "cell_id": "abc", "status": "skipped",
                      "reason": "bf16 needs a GPU that supports it"})
    record = not_run_record("run", skipped)
    assert (record.status, record.reason, record.repeat) == (
        "skipped", "bf16 needs a GPU that supports it", 0)
    assert record.started_at == record.ended_at


def test_a_cpu_worker_is_healthy_after_a_failure() -> None:
    assert check_health("cpu").healthy


def test_a_cuda_slot_is_healthy_whether_or_not_the_cell_reached_the_gpu() -> None:
    # Without a GPU (or before any CUDA call) there is nothing to probe; with one, the probe runs.
    health = check_health("cuda:0")
    assert health.healthy and health.reason is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_worker_is_healthy_after_an_out_of_memory_error() -> None:
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(1 << 50, device="cuda:0")
    health = check_health("cuda:0")
    assert health.healthy, health.reason
