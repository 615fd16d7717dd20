"""The two walls of the design: the measuring side never loads pandas or seaborn, the analysing
side never loads torch or pynvml — checked in fresh interpreters, transitively."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

MEASURING = ["bigtrain.workloads", "bigtrain.training.optim", "bigtrain.training.precision",
             "bigtrain.cells.matrix", "bigtrain.measure.step_loop", "bigtrain.measure.memory",
             "bigtrain.measure.telemetry", "bigtrain.measure.flops", "bigtrain.run.cell",
             "bigtrain.run.worker", "bigtrain.run.executor", "bigtrain.run.sweep",
             "bigtrain.measure.envinfo", "bigtrain.run.console",
             "bigtrain.measure.profile_capture", "bigtrain.measure.profile_cell",
             "bigtrain.measure.profile_artifacts", "bigtrain.measure.memory_timeline",
             # issue 25: the optimizer registry's helpers and the memory anatomy
             "bigtrain.training.muon", "bigtrain.training.optim_packages",
             "bigtrain.measure.state_probe", "bigtrain.measure.anatomy",
             # issue 28: the framework dispatch and the JAX backend
             "bigtrain.frameworks",
             "bigtrain.frameworks.jax_backend", "bigtrain.run.framework_cell",
             # issue 25: converge's learning-rate tuning
             "bigtrain.run.tune",
             "bigtrain.run.tune_search"]
ANALYSING = ["bigtrain.results.frame", "bigtrain.report", "bigtrain.compare",
             "bigtrain.compare.stats",
             "bigtrain.compare.exports", "bigtrain.history.gate",
             "bigtrain.history.dashboard", "bigtrain.commands.history", "bigtrain.cli",
             "bigtrain.profiles.gate", "bigtrain.profiles.roofline", "bigtrain.profiles.hta",
             "bigtrain.commands.profile_diff", "bigtrain.commands.profile",
             "bigtrain.common.op_categories", "bigtrain.report.frameworks",
             "bigtrain.report.leaderboard",
             "bigtrain.report.leaderboard_figures",
             "bigtrain.results.tuning", "bigtrain.run.tune_limits"]


def _loaded_after_import(module: str, watched: list[str]) -> list[str]:
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {watched!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize("module", MEASURING)
def test_measuring_side_never_loads_pandas_or_seaborn(module: str) -> None:
    assert _loaded_after_import(module, ["pandas", "seaborn", "matplotlib"]) == []


@pytest.mark.parametrize("module", ANALYSING)
def test_analysing_side_never_loads_torch_or_pynvml(module: str) -> None:
    assert _loaded_after_import(module, ["torch", "pynvml", "jax", "tensorflow"]) == []


@pytest.mark.parametrize("module", ["bigtrain.frameworks", "bigtrain.frameworks.jax_backend",
                                    "bigtrain.cells.matrix", "bigtrain.run.worker"])
def test_no_framework_is_imported_until_a_cell_of_it_runs(module: str) -> None:
    # `bigbench list`, the matrix and the worker's start-up ask backends only cheap questions.
    assert _loaded_after_import(module, ["jax", "flax", "optax", "tensorflow", "keras"]) == []


def test_exactly_one_module_imports_pynvml() -> None:
    importers = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "bigtrain").rglob("*.py")
        if "pynvml" in path.read_text()
        and any(line.strip().startswith(("import pynvml", "from pynvml"))
                for line in path.read_text().splitlines())
    ]
    assert importers == ["bigtrain/measure/telemetry/nvml.py"]


def test_bigbench_report_and_compare_run_without_torch(tmp_path) -> None:  # noqa: ANN001
    runs = REPO / "tests" / "fixtures" / "runs"
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom bigtrain.cli import main\n"
        f"r = CliRunner().invoke(main, ['report', '{runs / 'cpu-2threads'}', '-o', '{tmp_path / 'rep'}'])\n"
        "assert r.exit_code == 0, r.output\n"
        # the fixture's repeats are noisy: --undecided pass keeps this about imports
        f"c = CliRunner().invoke(main, ['compare', '{runs / 'cpu-2threads'}', '{runs / 'cpu-2threads'}', '--undecided', 'pass'])\n"
        "assert c.exit_code == 0, c.output\n"
        "print('torch' in sys.modules, 'pynvml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert (tmp_path / "rep" / "index.html").exists()
