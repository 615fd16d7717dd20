"""The append-only store: what survives kills, what is refused, what is never overwritten."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.results.schema import SCHEMA_VERSION, CellRecord, Manifest, StepTimeStats
from bigtrain.results.store import (
    CELLS_NAME,
    RunLocked,
    RunWriter,
    TruncatedLineWarning,
    load_run,
)


def _record(cell_id: str, status: str = "ok", repeat: int = 0) -> CellRecord:
    ok = status == "ok"
    return CellRecord(
        run_id="r", cell_id=cell_id, repeat=repeat, model="mlp:seed", optimizer="sgd",
        impl="foreach", batch_norm="n/a", precision="fp32", device="cpu", batch_size=64,
        compile="off", status=status, reason=None if ok else "because",
        step_time_s=StepTimeStats.from_samples([0.1, 0.2, 0.3]) if ok else None,
        step_times_s=(0.1, 0.2, 0.3) if ok else (),
    )


def _manifest() -> Manifest:
    return Manifest(run_id="r", bigtrain_version="0", spec={}, environment={},
                    started_at="2026-11-28T00:00:00+00:00")


def _new_run(tmp_path: Path, records: list[CellRecord]) -> Path:
    run_dir = tmp_path / "r"
    with RunWriter(run_dir) as writer:
        writer.write_manifest(_manifest())
        for record in records:
            writer.append(record)
    return run_dir


def test_records_round_trip(tmp_path: Path) -> None:
    records = [_record("a"), _record("b", "oom")]
    run = load_run(_new_run(tmp_path, records))
    assert list(run.records) == records
    assert run.manifest.state == "running"


def test_existing_run_folder_is_never_overwritten(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a")])
    before = (run_dir / CELLS_NAME).read_bytes()
    with pytest.raises(BadInput, match="already exists.*nothing was overwritten"):
        RunWriter(run_dir).open()
    assert (run_dir / CELLS_NAME).read_bytes() == before


def test_truncated_last_line_is_set_aside_with_a_warning(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a"), _record("b")])
    cells = run_dir / CELLS_NAME
    data = cells.read_bytes()
    cells.write_bytes(data + data.splitlines(keepends=True)[0][:57])  # a kill mid-write
    with pytest.warns(TruncatedLineWarning, match=rf"{CELLS_NAME}:3: truncated"):
        run = load_run(run_dir)
    assert [r.cell_id for r in run.records] == ["a", "b"]
    assert run.truncated_lines == (3,)


def test_resume_after_truncation_starts_on_a_fresh_line(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a")])
    cells = run_dir / CELLS_NAME
    cells.write_bytes(cells.read_bytes() + b'{"schema_version": 1, "run_id": "r", "ce')
    with RunWriter(run_dir, resume=True) as writer:
        writer.append(_record("b"))
    with pytest.warns(TruncatedLineWarning, match=":2: truncated"):
        run = load_run(run_dir)
    assert [r.cell_id for r in run.records] == ["a", "b"]


def test_resume_after_a_cut_that_ends_in_a_brace_still_reads(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a")])
    cells = run_dir / CELLS_NAME
    cut = _record("z").to_json()
    text = json.dumps(cut)
    cells.write_bytes(cells.read_bytes() + text[: text.index("}") + 1].encode())  # ends in }
    with RunWriter(run_dir, resume=True) as writer:
        writer.append(_record("b"))
    with RunWriter(run_dir, resume=True) as writer:  # a second resume repairs nothing more
        writer.append(_record("c"))
    with pytest.warns(TruncatedLineWarning, match=":2: truncated"):
        run = load_run(run_dir)
    assert run.manifest.repaired_lines == (2,)
    assert [r.cell_id for r in run.records] == ["a", "b", "c"]


def test_unreadable_run_folder_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a")])
    with pytest.raises(BadInput, match="no such file"):
        load_run(run_dir / CELLS_NAME)  # a file where a folder was expected
    (run_dir / CELLS_NAME).write_text(json.dumps({**_record("b").to_json(),
                                                  "step_times_s": ["fast"]}) + "\n")
    with pytest.raises(BadInput, match=r':1: step_times_s\[0\] must be a finite number > 0, got "fast"'):
        load_run(run_dir)
    (run_dir / CELLS_NAME).write_text(json.dumps({**_record("b").to_json(), "extra": [1]}) + "\n")
    with pytest.raises(BadInput, match=r":1: extra must be an object or null, got \[1\]"):
        load_run(run_dir)


def test_corrupt_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a"), _record("b"), _record("c")])
    cells = run_dir / CELLS_NAME
    lines = cells.read_text().splitlines(keepends=True)
    lines[1] = "this is not json\n"
    cells.write_text("".join(lines))
    with pytest.raises(BadInput, match=rf"{CELLS_NAME}:2: corrupt record"):
        load_run(run_dir)


def test_record_breaking_the_contract_names_its_line(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [_record("a")])
    cells = run_dir / CELLS_NAME
    bad = _record("b").to_json()
    bad["status"] = "exploded"
    cells.write_text(cells.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(BadInput, match=r':2: status must be one of ok, oom, .*, got "exploded"'):
        load_run(run_dir)


def test_newer_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [])
    future = _record("a").to_json()
    future["schema_version"] = SCHEMA_VERSION + 1
    (run_dir / CELLS_NAME).write_text(json.dumps(future) + "\n")
    with pytest.raises(BadInput, match=rf"schema_version {SCHEMA_VERSION + 1}, newer than.*upgrade"):
        load_run(run_dir)


def test_unknown_keys_from_a_newer_minor_writer_are_kept(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [])
    newer = _record("a").to_json()
    newer["gpu_flux_capacitance_pct"] = 12.5
    (run_dir / CELLS_NAME).write_text(json.dumps(newer) + "\n")
    assert load_run(run_dir).records[0].extra["gpu_flux_capacitance_pct"] == 12.5


def test_a_retried_cell_supersedes_its_failed_record(tmp_path: Path) -> None:
    run = load_run(_new_run(tmp_path, [_record("a", "crashed"), _record("b"), _record("a")]))
    assert [(r.cell_id, r.status) for r in run.records] == [("a", "ok"), ("b", "ok")]
    assert len(run.history) == 3  # nothing recorded is lost


def _hold_lock(run_dir: str, ready, release) -> None:  # noqa: ANN001
    with RunWriter(Path(run_dir), resume=True):
        ready.set()
        release.wait(30)


def test_second_writer_is_locked_out_and_told_who_holds_the_run(tmp_path: Path) -> None:
    run_dir = _new_run(tmp_path, [])
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(run_dir), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid} on "):
            RunWriter(run_dir, resume=True).open()
    finally:
        release.set()
        holder.join(30)
    with RunWriter(run_dir, resume=True):  # free again once the holder is gone
        pass


def test_output_folder_that_cannot_exist_is_refused_before_any_cell(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(BadInput, match="cannot be created"):
        RunWriter(a_file / "runs" / "r").open()


def test_nearly_full_disk_is_refused_before_any_cell(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(BadInput, match="has only 4096 bytes free"):
        RunWriter(tmp_path / "r").open()
    assert not (tmp_path / "r").exists()
