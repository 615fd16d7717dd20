"""`--resume` writes only inside the run folder and fails cleanly where it cannot write."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.results import store
from bigtrain.results.store import RunWriter, load_run
from test_compare_support import repeated_cell, write_run


@pytest.mark.parametrize("name", ["cells.jsonl", "manifest.json", ".lock"])
def test_resume_refuses_a_run_file_that_is_a_symlink_out_of_the_folder(tmp_path: Path, name):
    run = write_run(tmp_path / "results", "R", repeated_cell("R", "c1", 0.01))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes((run / name).read_bytes() if (run / name).exists() else b"")
    before = elsewhere.read_bytes()
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(elsewhere)
    with pytest.raises(BadInput, match="is a symlink"):
        RunWriter(run, resume=True).open()
    assert elsewhere.read_bytes() == before


def test_resume_on_a_read_only_filesystem_is_bad_input(tmp_path: Path, monkeypatch):
    run = write_run(tmp_path / "results", "R", repeated_cell("R", "c1", 0.01))
    before = (run / "cells.jsonl").read_bytes()
    real_open = os.open

    def read_only(path, flags, *args):  # the filesystem boundary: EROFS on any write
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(store.os, "open", read_only)
    with pytest.raises(BadInput, match="Read-only file system"):
        RunWriter(run, resume=True).open()
    monkeypatch.undo()
    assert (run / "cells.jsonl").read_bytes() == before
    assert len(load_run(run).records) == 5


def test_a_spec_written_before_the_optional_axes_resumes_as_the_same_spec() -> None:
    """A manifest from before cuda_graphs, the levers, framework and schedule has none of those
    keys; its cells had their defaults, so resuming it is no change. A real change still is."""
    from bigtrain.cells.axes import AXIS_TABLE
    from bigtrain.cells.spec import spec_from_preset
    from bigtrain.run.sweep import spec_differences

    current = spec_from_preset("ci").to_json()
    optional = [a.name for a in AXIS_TABLE if not a.required_in_preset]
    assert {"cuda_graphs", "framework", "schedule"} <= set(optional)
    older = {k: v for k, v in current.items() if k not in optional}
    assert spec_differences(older, current) == []
    changed = {**current, "schedule": ["cosine"]}
    assert spec_differences(older, changed) == ["schedule: ['constant'] -> ['cosine']"]
