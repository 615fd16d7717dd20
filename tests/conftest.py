"""Shared fixtures: tiny presets, fault-injection plugins, and a CLI runner."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from bigtrain.cells.spec import preset_toml

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent

# The capability probe's per-machine cache (bigtrain.workloads.capability): one per test session,
# shared with every worker and CLI subprocess, never the user's own.
if "BIGTRAIN_CACHE_DIR" not in os.environ:
    os.environ["BIGTRAIN_CACHE_DIR"] = tempfile.mkdtemp(prefix="bigtrain-cache-")
    atexit.register(shutil.rmtree, os.environ["BIGTRAIN_CACHE_DIR"], True)

# Workers are spawned: they see the same sys.path, and the env var tells them what to import.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

def run_cli(*args: str, cwd: Path | None = None):
    """Invoke bigbench in-process; with `cwd`, from that folder (relative outputs land there)."""
    from click.testing import CliRunner

    from bigtrain.cli import main

    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)


def write_preset(folder: Path, models: list[str], optimizers: list[str] | None = None,
                 timeout: float = 60, name: str = "tiny.toml") -> Path:
    """Write a small preset TOML and return its path."""
    path = folder / name
    path.write_text(preset_toml(
        description="test preset", model=models, optimizer=optimizers or ["sgd"],
        measure={"warmup_s": 0.02, "duration_s": 0.05, "min_steps": 3, "repeats": 1,
                 "cell_timeout_s": timeout}))
    return path


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test-only `fault` family here and in every worker process."""
    monkeypatch.setenv("BIGTRAIN_PLUGINS", "fault_workloads")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO),
                                                      os.environ.get("PYTHONPATH", "")]))
    import fault_workloads

    importlib.reload(fault_workloads)


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    """A two-cell CPU preset that runs in about a second."""
    return write_preset(tmp_path, ["mlp:seed", "transformer:tiny"])
