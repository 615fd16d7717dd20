"""The `ray` executor as an optional extra: without Ray installed, `--executor ray` is exit 2
naming the install command; the executor is listed and validates its options without a cluster.
(The real-cluster tests are in tests/test_ray_executor.py.)"""

from __future__ import annotations

import re

import sys
from pathlib import Path

import pytest

from conftest import run_cli, write_preset


def test_without_ray_the_executor_is_exit_2_naming_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as uninstalled
    preset = write_preset(tmp_path, ["mlp:seed"])
    result = run_cli("sweep", "--preset", str(preset), "--executor", "ray", "--run-id", "r",
                     "--out", str(tmp_path / "out"), "--no-report")
    assert result.exit_code == 2
    assert "Ray is not installed" in result.output
    assert "pip install 'bigtrain[ray]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "r").exists()  # refused before the run folder is made


def test_sweep_help_lists_ray_and_its_address_option() -> None:
    result = run_cli("sweep", "--help")
    assert "ray (a Ray" in result.output and "--ray-address" in result.output


def test_the_ray_executor_refuses_an_option_it_does_not_take(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    from bigtrain.common.errors import BadInput
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset

    with pytest.raises(BadInput, match=r"executor 'ray' takes no option zone; its options: "
                                       r"address"):
        run_sweep(spec_from_preset(str(preset)),
                  SweepOptions(out_dir=tmp_path / "out", run_id="x", executor="ray",
                               executor_options={"zone": "a"}))
    assert not (tmp_path / "out").exists()


def test_the_ray_extra_is_pinned_and_installed_with_the_test_tools() -> None:
    import tomllib

    from conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["ray"] == ["ray==2.60.0"]
    assert not any(d.startswith("ray") for d in project["dependencies"])  # optional only
    setup = (REPO / "setup.sh").read_text()
    # Both install lines (with and without the torch-2.13-pinned models extra) bring the ray extra.
    installs = [extras for extras in re.findall(r"-e '\.\[([a-z,]+)\]'", setup)
                if "test" in extras.split(",")]
    assert len(installs) == 2 and all({"test", "ray"} <= set(extras.split(",")) for extras in installs)


def test_the_first_setup_command_installs_the_converge_extra() -> None:
    # `bash setup.sh` alone must set up what the README tours, `bigbench converge` included:
    # every install line of setup.sh (plain and --test) brings the converge extra.
    from conftest import REPO

    setup = (REPO / "setup.sh").read_text()
    online_installs = re.findall(r'"\$\{pip\[@\]\}" -e (\S+)', setup)
    assert len(online_installs) == 3, online_installs
    for target in online_installs:
        extras = re.fullmatch(r"'\.\[([a-z,]+)\]'", target)
        assert extras and "converge" in extras.group(1).split(","), target
