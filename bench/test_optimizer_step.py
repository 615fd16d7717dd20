"""pytest-benchmark: one optimizer step, SGD / Adam / RMSprop x for-loop / foreach / fused.

The model is about a million parameters in 16 tensors (8 square linear layers), so the per-tensor
overhead that foreach and fused kernels remove is visible. Gradients are filled once; each round
is one `step()`, synchronized on CUDA so the kernels are inside the timing.

    .venv/bin/pytest bench/test_optimizer_step.py --benchmark-only
"""

from __future__ import annotations

import pytest
import torch

from bigtrain.training.optim import build_optimizer, resolve_optimizer, unsupported_reason

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
WIDTH = 360  # 8 x (360 x 360 + 360) = 1,039,680 parameters
LAYERS = 8


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)))
    model.to(DEVICE)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return model


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def test_model_has_about_a_million_parameters():
    assert 0.9e6 < sum(p.numel() for p in _model().parameters()) < 1.1e6


@pytest.mark.parametrize("impl", ["forloop", "foreach", "fused"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_optimizer_step(benchmark, optimizer, impl):
    spec = resolve_optimizer(optimizer)
    reason = unsupported_reason(spec, impl, DEVICE.type)
    if reason:
        pytest.skip(reason)
    model = _model()
    _, step = build_optimizer(spec, impl, model.parameters())
    benchmark.group = f"optimizer step ({DEVICE.type}, ~1M params)"
    benchmark.extra_info.update(optimizer=optimizer, impl=impl, device=DEVICE.type,
                                params=sum(p.numel() for p in model.parameters()))

    def one_step() -> None:
        step()
        _sync()

    step()  # the first step allocates the optimizer state; keep it out of the rounds
    _sync()
    benchmark(one_step)
