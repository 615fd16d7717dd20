"""setup.sh on a box without a package index (a lent GPU machine), and bigtrain from a bare checkout.

The base Python is this test run's interpreter, which imports torch (as the GPU box's prepared
venv does); PIP_NO_INDEX=1 stands in for the missing network. The online path (`bash setup.sh
--test` on a clean clone) is what CI runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def checkout_copy(dest: Path) -> Path:
    """The tracked and untracked (not ignored) files of this checkout, copied to `dest`."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def offline_setup(repo: Path, **extra: str) -> subprocess.CompletedProcess:
    env = clean_env(PYTHON=sys.executable, PIP_NO_INDEX="1", **extra)
    return subprocess.run(["bash", "setup.sh"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


def assert_bigbench_runs_from(repo: Path) -> None:
    env = clean_env()
    where = subprocess.run([str(repo / ".venv/bin/python"), "-c",
                            "import bigtrain, torch; print(bigtrain.__file__)"],
                           cwd="/", env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(repo / "bigtrain" / "__init__.py")
    listing = subprocess.run([str(repo / ".venv/bin/bigbench"), "list", "presets"], cwd=repo,
                             env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "quick" in listing.stdout and "gpu" in listing.stdout


@pytest.mark.slow
def test_offline_setup_reuses_the_base_torch_and_installs_bigtrain(tmp_path):
    repo = checkout_copy(tmp_path / "repo")
    result = offline_setup(repo)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("setup.sh:")]
    assert len(said) == 1, result.stderr
    assert "reused torch" in said[0] and "offline" in said[0]
    assert_bigbench_runs_from(repo)
    # Run again: the venv is kept, and it still works.
    again = offline_setup(repo)
    assert again.returncode == 0, again.stderr
    assert_bigbench_runs_from(repo)


@pytest.mark.slow
def test_offline_setup_without_a_build_backend_falls_back_to_a_launcher(tmp_path):
    repo = checkout_copy(tmp_path / "repo")
    # The box's missing setuptools, faked at the boundary: an import of it fails in every process
    # pip starts (the .pth shadow goes on PYTHONPATH only for setup.sh, not for the checks below).
    shadow = tmp_path / "no-setuptools"
    for name in ("setuptools", "wheel"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text("raise ImportError('no setuptools offline')\n")
    result = offline_setup(repo, PYTHONPATH=str(shadow))
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("setup.sh:")]
    assert len(said) == 1 and "launcher" in said[0], result.stderr
    assert_bigbench_runs_from(repo)


def test_a_bare_checkout_runs_the_cli_without_installing(tmp_path):
    repo = checkout_copy(tmp_path / "repo")
    # A preset only this copy has: found means ./bench/presets of the checkout was read.
    (repo / "bench" / "presets" / "only-here.toml").write_text(
        (repo / "bench" / "presets" / "ci.toml").read_text())
    for module in ("bigtrain.cli", "bigtrain"):
        # Run from the checkout (python3 puts the current folder on sys.path for -m).
        listing = subprocess.run([sys.executable, "-m", module, "list", "presets"], cwd=repo,
                                 env=clean_env(), capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        assert "quick" in listing.stdout and "only-here" in listing.stdout
