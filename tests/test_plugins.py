"""Third-party workloads and optimizers arrive through entry points, as a real package would."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import bigtrain.common.registry as registry
from bigtrain.training.optim import OPTIMIZERS
from bigtrain.workloads import FAMILIES


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed-looking package `demo_plugin` with both entry-point groups."""
    (tmp_path / "demo_plugin.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from bigtrain.training.optim import OptimizerSpec, register_optimizer
        from bigtrain.workloads import register_family
        from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily

        def _build(config, *, batch_size, batch_norm, device, seed):
            model = nn.Linear(3, 1).to(device)
            x = torch.randn(batch_size, 3)
            return Workload(model=model, inputs=x.to(device), targets=x.sum(1, keepdim=True),
                            loss_fn=nn.functional.mse_loss, items_per_step=batch_size,
                            item_unit="samples")

        def register_workloads():
            register_family(WorkloadFamily(
                name="demo", sizes={"one": SizeConfig(name="one", default_batch_size=4)},
                default_size="one", item_unit="samples", build_fn=_build), replace=True)

        def register_optimizers():
            register_optimizer(OptimizerSpec(name="adagrad", cls=torch.optim.Adagrad,
                                             hyperparams={"lr": 0.1}), replace=True)
    '''))
    dist = tmp_path / "demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bigtrain.workloads]\ndemo = demo_plugin:register_workloads\n\n"
        "[bigtrain.optimizers]\nadagrad = demo_plugin:register_optimizers\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield tmp_path
    sys.modules.pop("demo_plugin", None)


def test_entry_points_register_a_workload_and_an_optimizer(plugin_package: Path) -> None:
    assert "demo" in FAMILIES.names()
    assert "adagrad" in OPTIMIZERS.names()


def test_plugin_workload_runs_in_a_sweep(plugin_package: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset
    from conftest import write_preset

    # Workers are fresh processes: they find the plugin the way any installed package is found.
    monkeypatch.setenv("PYTHONPATH", str(plugin_package))
    preset = write_preset(tmp_path, ["demo:one"], optimizers=["adagrad"])
    outcome = run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="p"))
    assert [(r.model, r.optimizer, r.status) for r in outcome.records] == [
        ("demo:one", "adagrad", "ok")]
