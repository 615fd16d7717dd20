"""Issue 12 item 8: a broken plugin, from BIGTRAIN_PLUGINS or an entry point, is bad input: exit 2
naming the plugin and its error, never a traceback, never a warning and a half-loaded registry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import bigtrain.common.registry as registry
from bigtrain.cli import main
from bigtrain.workloads import FAMILIES
from conftest import REPO


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Plugins not loaded yet in this process; tmp_path importable; restored afterwards."""
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_plugin_error", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    yield tmp_path
    for name in ("raising_plugin", "broken_entry_plugin"):
        sys.modules.pop(name, None)


def test_a_missing_env_plugin_makes_list_exit_2_naming_it(fresh_plugins: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, "nonexistent_module")
    result = CliRunner().invoke(main, ["list", "models"])
    assert result.exit_code == 2, result.output
    assert "plugin 'nonexistent_module' (from BIGTRAIN_PLUGINS) failed to load" in result.output
    assert "No module named 'nonexistent_module'" in result.output
    assert "Traceback" not in result.output


def test_a_plugin_raising_at_import_makes_sweep_exit_2(fresh_plugins: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (fresh_plugins / "raising_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.setenv(registry.PLUGINS_ENV, "raising_plugin, nonexistent_module")
    result = CliRunner().invoke(main, ["sweep", "--preset", "ci", "--dry-run"])
    assert result.exit_code == 2, result.output
    # Every broken plugin is named at once, each with its own error.
    assert "plugin 'raising_plugin' (from BIGTRAIN_PLUGINS) failed to load: " \
           "RuntimeError: boom at import" in result.output
    assert "plugin 'nonexistent_module'" in result.output


def test_a_broken_entry_point_plugin_is_an_error_too(fresh_plugins: Path) -> None:
    (fresh_plugins / "broken_entry_plugin.py").write_text(textwrap.dedent('''
        def register_workloads():
            raise ImportError("needs a library this machine lacks")
    '''))
    dist = fresh_plugins / "broken_entry_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-entry-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bigtrain.workloads]\nbroken = broken_entry_plugin:register_workloads\n")
    result = CliRunner().invoke(main, ["list", "models"])
    assert result.exit_code == 2, result.output
    assert ("plugin 'broken' (entry point broken_entry_plugin:register_workloads in group "
            "bigtrain.workloads) failed to load: ImportError: needs a library this machine "
            "lacks") in result.output
    assert "'broken-entry-plugin'" in result.output  # the package to fix or uninstall


def test_the_failure_is_raised_again_on_every_later_lookup(fresh_plugins: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.PLUGINS_ENV, "nonexistent_module")
    for _ in range(2):  # no second call may see a registry with the plugin silently missing
        with pytest.raises(registry.PluginError, match="nonexistent_module"):
            FAMILIES.names()


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), registry.PLUGINS_ENV: "nonexistent_module"}
    done = subprocess.run([sys.executable, "-m", "bigtrain.cli", "list", "optimizers"], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "bigbench: error: plugin 'nonexistent_module'" in done.stderr
