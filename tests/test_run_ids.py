"""Run ids are one safe folder name wherever a path is built from one: flags, manifests, folder
names; a bad one is exit 2 naming where it came from, the value and the rule, and nothing is
written anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.results.run_ids import RUN_ID_MAX_CHARS, check_run_id, run_id_problem, safe_run_id
from conftest import REPO, run_cli as _run, write_preset

REFERENCE_RUN = REPO / "results" / "cpu-2vcpu-quick"

HOSTILE_IDS = [
    "../../evil", "/abs/path", "a/b", "x" * 300, "x" * (RUN_ID_MAX_CHARS + 1), "", ".", "..",
    "a\x00b", "a\nb", "a\x1b[31mb", "a\tb", "a b", "-looks-like-a-flag", ".hidden", "a\\b",
    "[/x]", "caf\u00e9",
]
GOOD_IDS = ["e2e", "pr-123", "20261128-141500-box", "main.baseline_2", "x" * RUN_ID_MAX_CHARS, "0"]


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("run_id", GOOD_IDS)
def test_good_run_ids_pass(run_id: str) -> None:
    assert run_id_problem(run_id) is None
    assert check_run_id(run_id, "--run-id") == run_id


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_hostile_run_ids_are_refused_naming_where_the_value_and_the_rule(run_id: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_run_id(run_id, "somewhere.json: run_id")
    message = str(caught.value)
    assert message.startswith("somewhere.json: run_id: bad run id ")
    assert repr(run_id[:60]) in message
    assert "A-Z a-z 0-9 . _ -" in message and f"1 to {RUN_ID_MAX_CHARS} characters" in message


def test_a_run_id_that_is_not_text_is_refused() -> None:
    with pytest.raises(BadInput, match="run_id: bad run id 42: a run id is text, not int"):
        check_run_id(42, "manifest.json: run_id")


@pytest.mark.parametrize("text", HOSTILE_IDS + ["feature/x", "refs/pull/12/merge"])
def test_safe_run_id_always_gives_a_valid_one(text: str) -> None:
    assert run_id_problem(safe_run_id(text)) is None
    assert safe_run_id("feature/new-optim") == "feature-new-optim"


def test_the_default_run_id_survives_a_hostile_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.run import sweep as sweep_module

    for host in ("../../evil", "[/x]\x1b[31m", "", "." * 300, "a" * 300):
        monkeypatch.setattr("socket.gethostname", lambda host=host: host)
        assert run_id_problem(sweep_module.default_run_id()) is None


def test_sweep_options_refuse_a_bad_run_id_or_resume() -> None:
    from bigtrain.run.sweep import SweepOptions

    with pytest.raises(BadInput, match="^--run-id: bad run id '../x'"):
        SweepOptions(run_id="../x")
    with pytest.raises(BadInput, match="^--resume: bad run id '/abs'"):
        SweepOptions(resume="/abs")


@pytest.mark.parametrize("run_id", ["../../evil", "/abs/path", "a/b", "x" * 300, "", ".", "..",
                                    "a\x1b[31mb", "a\nb"])
def test_sweep_refuses_a_bad_run_id_before_writing_anything(tmp_path: Path, run_id: str) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    out = tmp_path / "deep" / "er" / "results"
    before = _files_under(tmp_path)
    # No --dry-run: a run id that slipped through would run and write.
    result = _run("sweep", "--preset", str(preset), "--out", str(out), "--run-id", run_id,
                  "--no-report", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "bigbench: error: --run-id: bad run id" in result.output
    assert "Traceback" not in result.output
    assert _files_under(tmp_path) == before
    assert not Path("/abs/path").exists()
    assert "\x1b" not in result.output  # shown as a visible escape, never obeyed


@pytest.mark.parametrize("run_id", ["../../evil", "/abs/path", "a/b", "x" * 300, "", ".."])
def test_resume_refuses_a_bad_run_id(tmp_path: Path, run_id: str) -> None:
    result = _run("sweep", "--resume", run_id, "--out", str(tmp_path / "results"), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "bigbench: error: --resume: bad run id" in result.output
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_a_hand_edited_run_id_in_the_manifest(tmp_path: Path) -> None:
    run = tmp_path / "results" / "cpu-2vcpu-quick"
    shutil.copytree(REFERENCE_RUN, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_id"] = "../../evil"
    (run / "manifest.json").write_text(json.dumps(manifest))
    cells_before = (run / "cells.jsonl").read_bytes()
    result = _run("sweep", "--resume", "cpu-2vcpu-quick", "--out", str(tmp_path / "results"),
                  "--force", "--no-report", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "run_id" in result.output and "'../../evil'" in result.output
    assert "Traceback" not in result.output
    assert (run / "cells.jsonl").read_bytes() == cells_before
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize("folder_name", ["my run", "x" * 150, "a\x1b[31mb"])
def test_report_will_not_name_its_folder_after_an_unsafe_run_folder(tmp_path: Path,
                                                                    folder_name: str) -> None:
    run = tmp_path / folder_name
    run.mkdir()
    result = _run("report", str(run), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "report name from" in result.output and "pass -o DIR" in result.output
    assert not (tmp_path / "reports").exists()


def test_report_names_from_good_run_folders_join_into_one_safe_name(tmp_path: Path) -> None:
    from bigtrain.commands.report import default_report_name

    longest = tmp_path / ("a" * RUN_ID_MAX_CHARS)
    name = default_report_name((longest, longest, tmp_path / "b", tmp_path / "c"))
    assert "/" not in name and len(name.encode()) <= 255
    assert name.endswith("-and-2-more")


@pytest.mark.parametrize("model", ["../../etc/passwd", "a/b", "..", "x\x00y", "[/x]"])
def test_figure_file_names_from_model_names_stay_one_component(model: str) -> None:
    from bigtrain.report.figures import _slug

    name = f"speedup-{_slug(model)}"
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert Path(name).name == name
