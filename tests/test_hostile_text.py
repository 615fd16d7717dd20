"""Data is printed as text: rich markup (`[/x]`, `[bold]`), torch's `[enforce fail at ...]` and
ANSI escapes in reasons, run ids, paths and host names are shown as they are, never obeyed, and
never crash a sweep, a resume or a compare. Off a terminal a sweep prints a line per cell."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.results.store import load_run
from bigtrain.common.terminal_text import inert, one_line
from conftest import REPO, TESTS_DIR, write_preset
from hostile_workloads import MESSAGES

REFERENCE_RUN = REPO / "results" / "cpu-2vcpu-quick"
ESC = "\x1b"
MARKUP_SHOWN = "closing tag [/x] and [bold]loud[/bold] and \\x1b[31mred\\x1b[0m :smile:"
OOM_SHOWN = "[enforce fail at alloc_cpu.cpp:127]"


def _env() -> dict[str, str]:
    return {**os.environ, "BIGTRAIN_PLUGINS": "hostile_workloads",
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO),
                                           os.environ.get("PYTHONPATH", "")])}


def _bigbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """bigbench in its own process, stdout and stderr piped: off a terminal, as in CI."""
    return subprocess.run([sys.executable, "-m", "bigtrain.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _run_in_process(*args: str):
    # Wide enough that rich folds no value: the assertions look for whole strings.
    return CliRunner(env={"COLUMNS": "400"}).invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def hostile_sweep(tmp_path_factory: pytest.TempPathFactory):
    """One real sweep: two cells whose errors carry markup and escapes, one healthy cell."""
    folder = tmp_path_factory.mktemp("hostile")
    preset = write_preset(folder, ["hostile:markup", "hostile:oom", "mlp:seed"])
    done = _bigbench("sweep", "--preset", str(preset), "--out", "results", "--run-id", "h",
                     cwd=folder)
    return folder, done


def test_inert_shows_control_characters_and_keeps_text() -> None:
    assert inert("a\x1b[31mb") == "a\\x1b[31mb"
    assert inert("[/x] [bold]ok[/bold]\tand\nnext") == "[/x] [bold]ok[/bold]\tand\nnext"
    assert inert("bell\x07 cr\r del\x7f c1\x9b rtl\u202e") == (
        "bell\\x07 cr\\x0d del\\x7f c1\\x9b rtl\\u202e")
    assert one_line("first\n  second\n\nthird\x1b") == "first | second | third\\x1b"


def test_sweep_off_a_terminal_prints_a_line_per_finished_cell_on_stdout(hostile_sweep) -> None:
    folder, done = hostile_sweep
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "run folder: results/h"
    cell_lines = lines[1:4]
    assert sorted(line.split()[0] for line in cell_lines) == ["1/3", "2/3", "3/3"]
    by_status = {line.split()[1]: line for line in cell_lines}
    assert set(by_status) == {"error", "oom", "ok"}
    assert "mlp:seed" in by_status["ok"] and " step " in by_status["ok"]
    assert "samples/s" in by_status["ok"]
    assert lines[4].startswith("results: results/h  (1 error, 1 ok, 1 oom)")
    assert lines[5] == "report: reports/h/index.html"
    assert len(lines) == 6
    # Chatter and the summary table stay on stderr.
    assert "bigbench sweep" in done.stderr and "2 cell(s) failed" in done.stderr
    assert "bigbench sweep" not in done.stdout
    assert (folder / "reports" / "h" / "index.html").is_file()


def test_hostile_reasons_are_printed_as_text_and_the_run_completes(hostile_sweep) -> None:
    folder, done = hostile_sweep
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert MARKUP_SHOWN in done.stdout
    assert OOM_SHOWN in done.stdout
    assert ESC not in done.stdout and ESC not in done.stderr
    run = load_run(folder / "results" / "h")
    assert run.manifest.state == "complete"
    reasons = {r.model: r.reason for r in run.records}
    assert MESSAGES["markup"] in reasons["hostile:markup"]  # recorded exactly, escape and all


def test_resume_of_a_run_with_hostile_reasons(hostile_sweep, tmp_path: Path) -> None:
    folder, _ = hostile_sweep
    shutil.copytree(folder / "results", tmp_path / "results")
    done = _bigbench("sweep", "--resume", "h", "--out", "results", "--retry-failed",
                     "--no-report", cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert MARKUP_SHOWN in done.stdout and OOM_SHOWN in done.stdout
    assert load_run(tmp_path / "results" / "h").manifest.state == "complete"


def test_compare_prints_hostile_run_ids_and_writes_its_files(hostile_sweep, tmp_path: Path) -> None:
    folder, _ = hostile_sweep
    baseline, candidate = tmp_path / "base", tmp_path / "cand"
    shutil.copytree(folder / "results" / "h", baseline)
    shutil.copytree(folder / "results" / "h", candidate)
    manifest = json.loads((candidate / "manifest.json").read_text())
    manifest["run_id"] = "cand[/x][bold]\x1b[31m"
    (candidate / "manifest.json").write_text(json.dumps(manifest))
    markdown, as_json = tmp_path / "summary.md", tmp_path / "compare.json"
    result = _run_in_process("compare", str(baseline), str(candidate), "--markdown",
                             str(markdown), "--json", str(as_json))
    # a verdict (3: undecided, real repeats on a busy box), not bad input or a crash
    assert result.exit_code in (0, 1, 3), result.output
    assert "cand[/x][bold]\\x1b[31m" in result.output
    assert ESC not in result.output
    assert markdown.stat().st_size > 0
    assert json.loads(as_json.read_text())["candidate"]["run_id"] == manifest["run_id"]


def test_the_live_progress_on_a_terminal_prints_hostile_text(hostile_sweep) -> None:
    from rich.console import Console

    from bigtrain.run.console import RichProgress
    from bigtrain.run.sweep import SweepOutcome

    folder, _ = hostile_sweep
    run = load_run(folder / "results" / "h")
    screen = io.StringIO()
    progress = RichProgress(Console(file=screen, force_terminal=True, width=400))
    progress.begin(run.path, [], len(run.records))
    for record in run.records:
        progress.cell_finished(record)
    progress.end(SweepOutcome(run_dir=run.path, records=run.records))
    shown = screen.getvalue()
    assert "[/x] and [bold]loud[/bold] and \\x1b[31mred" in shown
    assert OOM_SHOWN in shown
    assert "\x1b[31mred" not in shown  # rich styles its own words; the data's escape is inert


def test_bad_input_messages_show_control_characters(tmp_path: Path) -> None:
    result = _run_in_process("report", str(tmp_path / "gone\x1b[2J[/x]"))
    assert result.exit_code == 2
    assert "bigbench: error:" in result.output and "gone\\x1b[2J[/x]" in result.output
    assert ESC not in result.output


def test_env_shows_a_hostile_host_name_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "evil\x1b]0;owned\x07[/x]")
    result = _run_in_process("env")
    assert result.exit_code == 0
    assert "host: evil\\x1b]0;owned\\x07[/x]" in result.output
    assert ESC not in result.output


def test_the_truncated_line_warning_is_one_clean_line(tmp_path: Path) -> None:
    run = tmp_path / "cut"
    shutil.copytree(REFERENCE_RUN, run)
    lines = len((run / "cells.jsonl").read_bytes().splitlines())
    with open(run / "cells.jsonl", "ab") as fh:
        fh.write(b'{"schema_version": 1, "run_id": "cpu-2vc')
    done = _bigbench("export", str(run), "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warning_lines = [line for line in done.stderr.splitlines() if "truncated" in line]
    assert warning_lines == [f"bigbench: warning: {run / 'cells.jsonl'}:{lines + 1}: truncated "
                             "record set aside (the writer was stopped mid-line)"]
    assert "warnings.warn" not in done.stderr and "TruncatedLineWarning" not in done.stderr
    assert "store.py" not in done.stderr


def test_dry_run_prints_a_hostile_preset_name_as_text(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"], name="p[bold]x[red].toml")
    result = _run_in_process("sweep", "--preset", str(preset), "--device", "cpu", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "p[bold]x[red]" in result.output and "1 to run" in result.output
