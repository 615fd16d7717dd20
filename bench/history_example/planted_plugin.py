"""The optimizer of the docs' example history (loaded through BIGTRAIN_PLUGINS).

`sgd-planted` is torch SGD whose step also runs `EXTRA_PASSES` extra in-place passes over the
parameters (multiplying by 1.0: the weights do not change, the work is real). The example script
commits a change of `EXTRA_PASSES` at one commit: a genuine slowdown of the optimizer step.
"""

from __future__ import annotations

import torch

from bigtrain.training.optim import OptimizerSpec, register_optimizer

EXTRA_PASSES = 0


class PlantedSGD(torch.optim.SGD):
    """SGD plus `EXTRA_PASSES` no-op passes over the parameters."""

    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch's signature
        loss = super().step(closure)
        params = [p for group in self.param_groups for p in group["params"]]
        with torch.no_grad():
            for _ in range(EXTRA_PASSES):
                torch._foreach_mul_(params, 1.0)
        return loss


register_optimizer(OptimizerSpec(
    name="sgd-planted", cls=PlantedSGD, hyperparams={"lr": 1e-2},
    description="SGD with EXTRA_PASSES no-op parameter passes (history example only)",
), replace=True)
