"""FLOPs of training steps against hand-computed counts (2 FLOPs per multiply-add)."""

from __future__ import annotations

import logging

import pytest

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


# -- cuDNN RNN formula, checked against the CPU count of the same layers -------------------------
from bigtrain.measure.flops import (  # noqa: E402
    causal_pairs,
    cudnn_rnn_backward_flops,
    cudnn_rnn_forward_flops,
)


def _rnn_counts(kind: type[nn.RNNBase], *, t: int, b: int, n_in: int, hidden: int, layers: int,
                bidirectional: bool) -> tuple[int, int, list]:
    """CPU FLOPs of the forward alone, and of forward + backward (inputs and initial states
    requiring grad, as cuDNN's data pass computes their gradients), and the weight shapes."""
    torch.manual_seed(0)
    rnn = kind(n_in, hidden, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(t, b, n_in, requires_grad=True)
    states = layers * (2 if bidirectional else 1)
    h0 = torch.zeros(states, b, hidden, requires_grad=True)
    state = (h0, torch.zeros(states, b, hidden, requires_grad=True)) if kind is nn.LSTM else h0

    # oneDNN off: the native CPU implementation runs the layers as plain matmuls
    with torch.backends.mkldnn.flags(enabled=False):
        with torch.no_grad():
            forward = count_flops(lambda: rnn(x, state))
        total = count_flops(lambda: rnn(x, state)[0].sum().backward())
    return forward, total, [tuple(w.shape) for w in rnn._flat_weights]


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_cudnn_rnn_formula_matches_the_cpu_count(kind, layers, bidirectional):
    t, b, n_in, hidden = 5, 3, 4, 6
    forward, total, weights = _rnn_counts(kind, t=t, b=b, n_in=n_in, hidden=hidden,
                                          layers=layers, bidirectional=bidirectional)
    assert cudnn_rnn_forward_flops((t, b, n_in), weights, ()) == forward
    assert forward + cudnn_rnn_backward_flops((t, b, n_in), weights, (),
                                              [True, True, True, True]) == total


def test_onednn_lstm_on_the_cpu_counts_like_the_matmuls():
    t, b, n_in, hidden = 5, 3, 4, 6
    forward, total, _ = _rnn_counts(nn.LSTM, t=t, b=b, n_in=n_in, hidden=hidden, layers=2,
                                    bidirectional=True)
    torch.manual_seed(0)
    rnn = nn.LSTM(n_in, hidden, num_layers=2, bidirectional=True)
    x = torch.randn(t, b, n_in, requires_grad=True)
    h0 = torch.zeros(4, b, hidden, requires_grad=True)
    c0 = torch.zeros(4, b, hidden, requires_grad=True)
    with torch.backends.mkldnn.flags(enabled=True):
        with torch.no_grad():
            assert count_flops(lambda: rnn(x, (h0, c0))) == forward
        assert count_flops(lambda: rnn(x, (h0, c0))[0].sum().backward()) == total


def test_cudnn_rnn_formula_by_hand_and_packed():
    gates, hidden, n_in, t, b = 4, 6, 4, 5, 3
    weights = [(gates * hidden, n_in), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,)]
    per_vector = 2 * gates * hidden * (n_in + hidden)
    assert cudnn_rnn_forward_flops((t, b, n_in), weights, ()) == t * b * per_vector
    # a packed sequence of lengths 5, 3, 2: batch_sizes per step, input (10, n_in)
    assert cudnn_rnn_forward_flops((10, n_in), weights, [3, 3, 2, 1, 1]) == 10 * per_vector
    # without weight gradients only the data pass runs
    assert cudnn_rnn_backward_flops((t, b, n_in), weights, (), [True, True, True, False]) == \
        t * b * per_vector


def test_cudnn_rnn_op_is_registered_with_the_counter():
    from bigtrain.measure.flops import _cudnn_rnn_formulas

    formulas = _cudnn_rnn_formulas()
    assert torch.ops.aten._cudnn_rnn in formulas and torch.ops.aten._cudnn_rnn_backward in formulas


# -- causal attention ----------------------------------------------------------------------------
def test_causal_pairs():
    assert causal_pairs(5, 5) == 15
    assert causal_pairs(3, 5) == 6  # top-left aligned: query i sees keys 0..i
    assert causal_pairs(5, 2) == 1 + 2 * 4


def test_causal_attention_counts_only_unmasked_pairs():
    b, t, d, heads = 2, 5, 8, 2
    dense = 24 * b * t * d * d
    full_attention = 4 * b * t * t * d + 10 * b * t * t * d  # forward + fused backward
    causal_attention = full_attention * causal_pairs(t, t) // (t * t)
    step = block_step(b, t, d, heads, sdpa=True)
    assert count_flops(step, causal_attention="unmasked") == 3 * dense + causal_attention
    assert count_flops(step, causal_attention="full") == 3 * dense + full_attention


def test_non_causal_attention_is_not_scaled():
    q = torch.randn(1, 2, 4, 8, requires_grad=True)

    def step() -> None:
        F.scaled_dot_product_attention(q, q, q).sum().backward()

    assert count_flops(step, causal_attention="unmasked") == count_flops(step, causal_attention="full")


def test_bad_causal_convention_is_refused():
    with pytest.raises(ValueError, match="unmasked"):
        count_flops(lambda: None, causal_attention="half")
