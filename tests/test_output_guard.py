"""No output of any command lands on a run folder's own files (cells, manifest, lock, profiles),
whatever the path spelling or symlink, and a report never leaves its folder through a symlink:
each is refused with exit 2 before anything is written, and the run reads as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.results.output_paths import checked_inside, checked_output
from bigtrain.results.store import load_run
from test_compare_support import repeated_cell, write_run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_run(tmp_path, "A", [*repeated_cell("A", "c1", 0.010), *repeated_cell("A", "c2", 0.02)])
    b = write_run(tmp_path, "B", [*repeated_cell("B", "c1", 0.010, seed=1),
                                  *repeated_cell("B", "c2", 0.02, seed=1)])
    (b / "profiles" / "c1").mkdir(parents=True)
    (b / "profiles" / "c1" / "trace.json").write_text("{}")
    return a, b


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _targets(b: Path, tmp_path: Path) -> list[Path]:
    """Spellings that lead to B's own files: plain, `..`, relative, and through symlinks."""
    link_to_cells = tmp_path / "innocent.jsonl"
    link_to_cells.symlink_to(b / "cells.jsonl")
    link_dir = tmp_path / "linked-run"
    link_dir.symlink_to(b, target_is_directory=True)
    return [b / "cells.jsonl", b / "manifest.json", b / ".lock",
            b / "profiles" / "c1" / "trace.json", b / "profiles" / "new.txt",
            b / ".." / "B" / "cells.jsonl", Path(os.path.relpath(b / "cells.jsonl")),
            link_to_cells, link_dir / "manifest.json"]


def test_export_compare_and_their_files_never_overwrite_a_runs_own_files(two_runs, tmp_path):
    a, b = two_runs
    before = _snapshot(b)
    for target in _targets(b, tmp_path):
        for args in (["export", str(a), "--format", "csv", "-o", str(target)],
                     ["compare", str(a), str(b), "--json", str(target)],
                     ["compare", str(a), str(b), "--markdown", str(target)],
                     ["report", str(a), "-o", str(target)]):
            result = _invoke(*args)
            assert result.exit_code == 2, (args, result.output)
            assert "refusing to write onto" in result.output
            assert "Traceback" not in result.output
    assert _snapshot(b) == before
    assert len(load_run(b).records) == 10


def test_outputs_beside_a_runs_files_are_still_allowed(two_runs, tmp_path):
    a, b = two_runs
    result = _invoke("compare", str(a), str(b), "--json", str(b / "comparison.json"))
    assert result.exit_code == 0, result.output
    assert (b / "comparison.json").is_file()
    result = _invoke("export", str(a), "--format", "csv", "-o", str(tmp_path / "out" / "a.csv"))
    assert result.exit_code == 0 and (tmp_path / "out" / "a.csv").read_text().startswith("run_id")


def test_report_never_writes_through_a_symlink_out_of_its_folder(two_runs, tmp_path):
    a, _ = two_runs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "report"
    out.mkdir()
    (out / "figures").symlink_to(elsewhere, target_is_directory=True)
    (out / "index.html").symlink_to(elsewhere / "index.html")
    result = _invoke("report", str(a), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "outside the folder" in result.output and "Traceback" not in result.output
    assert list(elsewhere.iterdir()) == []


def test_the_guard_itself(two_runs, tmp_path):
    _, b = two_runs
    with pytest.raises(BadInput, match="cells.jsonl of run folder"):
        checked_output(tmp_path / "x" / ".." / "B" / "cells.jsonl", what="-o")
    assert checked_output(b / "notes.md", what="-o") == (b / "notes.md").resolve()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "up").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BadInput, match="outside the folder"):
        checked_inside(tmp_path / "d", "up/file.txt", what="-o")


def test_an_output_hard_linked_to_a_runs_cells_leaves_the_cells_as_they_were(two_runs, tmp_path):
    a, b = two_runs
    before = _snapshot(b)
    linked = tmp_path / "summary.md"
    os.link(b / "cells.jsonl", linked)   # no symlink: realpath sees nothing to refuse
    result = _invoke("compare", str(a), str(b), "--markdown", str(linked))
    assert "Traceback" not in result.output
    assert _snapshot(b) == before        # the cells file is untouched ...
    assert load_run(b).records           # ... and still loads
    text = linked.read_text()
    assert text.startswith((b / "cells.jsonl").read_text())   # --markdown appends
    assert len(text) > len((b / "cells.jsonl").read_text())
    assert os.stat(linked).st_nlink == 1 and not list(tmp_path.glob(".summary.md.*.tmp"))
