"""FLOPs of training steps against hand-computed counts (2 FLOPs per multiply-add)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from bigtrain.measure.flops import count_flops


def linear_step(batch: int, n_in: int, n_out: int, *, input_grad: bool):
    torch.manual_seed(0)
    layer = nn.Linear(n_in, n_out)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(batch, n_in, requires_grad=input_grad)
    target = torch.randn(batch, n_out)

    def step() -> float:
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def test_linear_training_step():
    batch, n_in, n_out = 16, 8, 4
    # forward x @ W^T: 2*B*in*out; backward: grad_W = grad_y^T @ x (2*B*in*out); no grad_x needed
    assert count_flops(linear_step(batch, n_in, n_out, input_grad=False)) == 2 * (2 * batch * n_in * n_out)
    # with an input that needs a gradient, grad_x = grad_y @ W adds one more matmul
    assert count_flops(linear_step(batch, n_in, n_out, input_grad=True)) == 3 * (2 * batch * n_in * n_out)


class Block(nn.Module):
    """A pre-norm transformer block with attention written as explicit matmuls."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)
        self.sdpa = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) / (d // self.heads) ** 0.5
            y = scores.softmax(dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def block_step(b: int, t: int, d: int, heads: int, *, sdpa: bool = False):
    torch.manual_seed(0)
    block = Block(d, heads)
    block.sdpa = sdpa
    optimizer = torch.optim.AdamW(block.parameters(), lr=1e-3)
    x = torch.randn(b, t, d, requires_grad=True)

    def step() -> None:
        optimizer.zero_grad()
        block(x).pow(2).mean().backward()
        optimizer.step()

    return step


def test_small_transformer_forward_backward():
    b, t, d, heads = 2, 5, 8, 2
    # forward, per token: qkv 2*d*3d, out-proj 2*d*d, MLP 2*d*4d + 2*4d*d  -> 24*d^2
    # forward, per sequence: q@k^T and p@v, 2*t*t*(d/heads) each per head  -> 4*t^2*d
    forward = 24 * b * t * d * d + 4 * b * t * t * d
    # backward: every matmul needs two matmuls of its size (the input requires grad everywhere)
    assert forward == 16960
    assert count_flops(block_step(b, t, d, heads)) == 3 * forward


def test_fused_attention_on_cpu_is_counted():
    b, t, d, heads = 2, 5, 8, 2
    dense = 24 * b * t * d * d  # the linear layers, as above
    attention_forward = 4 * b * t * t * d
    # torch's formula for the fused attention backward recomputes the scores: 5 matmuls, not 4
    attention_backward = 10 * b * t * t * d
    expected = 3 * dense + attention_forward + attention_backward
    assert count_flops(block_step(b, t, d, heads, sdpa=True)) == expected


def test_counts_conv():
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 3, 8, 8)
    # each output element: 3*3*3 multiply-adds; outputs 2*4*8*8
    assert count_flops(lambda: conv(x)) == 2 * (3 * 3 * 3) * (2 * 4 * 8 * 8)


def test_failure_is_none_and_logged(caplog):
    def broken() -> None:
        raise RuntimeError("step exploded")

    with caplog.at_level(logging.WARNING, logger="bigtrain.measure.flops"):
        assert count_flops(broken) is None
    assert "step exploded" in caplog.text


def test_no_counted_work_is_none_not_zero():
    x = torch.randn(100)
    assert count_flops(lambda: (x * 2).relu().sum()) is None


def test_counting_leaves_no_dispatch_mode_behind():
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    count_flops(linear_step(4, 3, 2, input_grad=False))
    assert _get_current_dispatch_mode() is None

    def broken() -> None:
        raise RuntimeError("mid-step failure")

    count_flops(broken)
    assert _get_current_dispatch_mode() is None
