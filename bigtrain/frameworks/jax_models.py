"""Flax NNX twins of bigtrain's torch workloads (`bigtrain.workloads`): the same layers, widths and
parameter counts (tested size by size), built from the torch family's own size configs.

NNX rather than Linen: its modules are Python objects holding their parameters, as torch's are,
so a twin reads line by line like the torch model it mirrors (BatchNorm's running statistics are
module state, not a separate collection threaded through every call); `nnx.split` still hands
`jax.jit` a pure function of arrays, which is what the step compiles.

Twins, layer by layer (torch -> Flax): Linear -> nnx.Linear; BatchNorm1d/2d -> nnx.BatchNorm
(momentum 0.9 = torch's 0.1, epsilon 1e-5); Conv2d -> nnx.Conv in NHWC (XLA's native layout);
LayerNorm -> nnx.LayerNorm (epsilon 1e-5); Embedding -> nnx.Embed, the transformer's head tied to
it (`attend`) as torch ties `head.weight`; GELU exact (erf), as torch's default; LSTM/GRU ->
`TorchFormRecurrent`, torch's own equations with its two bias vectors per gate (Flax's cells keep
one, so their parameter count would differ), run over time by `jax.lax.scan`. Mixed precision:
`dtype` is the compute dtype (bf16 cells), parameters stay fp32 (`param_dtype`).

Imports jax and flax at module level: import it only inside a jax worker (the backend does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

_F32 = jnp.float32


def _modules(items: list[Any]) -> Any:
    # Flax 0.12 wants a list of submodules marked as pytree data (nnx.List); older NNX took a list.
    return nnx.List(items) if hasattr(nnx, "List") else items


def _batch_norm(features: int, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=_F32,
                         rngs=rngs)


class MLP(nnx.Module):
    """`bigtrain.workloads.mlp`: Linear (no bias with BN) -> BatchNorm1d? -> ReLU per hidden
    layer, then a Linear head."""

    def __init__(self, size: Any, batch_norm: bool, dtype: Any, rngs: nnx.Rngs) -> None:
        layers, norms = [], []
        width = size.in_features
        for hidden in size.hidden:
            layers.append(nnx.Linear(width, hidden, use_bias=not batch_norm, dtype=dtype,
                                     param_dtype=_F32, rngs=rngs))
            norms.append(_batch_norm(hidden, dtype, rngs) if batch_norm else None)
            width = hidden
        self.layers = _modules(layers)
        self.norms = _modules(norms)
        self.head = nnx.Linear(width, size.out_features, dtype=dtype, param_dtype=_F32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, norm in zip(self.layers, self.norms):
            x = layer(x)
            if norm is not None:
                x = norm(x)
            x = jax.nn.relu(x)
        return self.head(x)


def _conv(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool, dtype: Any,
          rngs: nnx.Rngs) -> nnx.Conv:
    pad = kernel // 2
    return nnx.Conv(cin, cout, kernel_size=(kernel, kernel), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=not batch_norm, dtype=dtype,
                    param_dtype=_F32, rngs=rngs)


class _ConvNorm(nnx.Module):
    """A conv and its batch-norm slot (identity when BN is off)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, batch_norm: bool,
                 dtype: Any, rngs: nnx.Rngs) -> None:
        self.conv = _conv(cin, cout, kernel, stride, batch_norm, dtype, rngs)
        self.norm = _batch_norm(cout, dtype, rngs) if batch_norm else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        return self.norm(x) if self.norm is not None else x


class Block(nnx.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) residual block, as torch's."""

    def __init__(self, kind: str, cin: int, width: int, stride: int, batch_norm: bool,
                 dtype: Any, rngs: nnx.Rngs) -> None:
        expansion = 1 if kind == "basic" else 4
        cout = width * expansion
        if kind == "basic":
            convs = [_ConvNorm(cin, width, 3, stride, batch_norm, dtype, rngs),
                     _ConvNorm(width, cout, 3, 1, batch_norm, dtype, rngs)]
        else:
            convs = [_ConvNorm(cin, width, 1, 1, batch_norm, dtype, rngs),
                     _ConvNorm(width, width, 3, stride, batch_norm, dtype, rngs),
                     _ConvNorm(width, cout, 1, 1, batch_norm, dtype, rngs)]
        self.convs = _modules(convs)
        self.shortcut = (None if stride == 1 and cin == cout
                         else _ConvNorm(cin, cout, 1, stride, batch_norm, dtype, rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        out = x
        for index, conv in enumerate(self.convs):
            out = conv(out)
            if index < len(self.convs) - 1:
                out = jax.nn.relu(out)
        skip = x if self.shortcut is None else self.shortcut(x)
        return jax.nn.relu(out + skip)


class ResidualNet(nnx.Module):
    """`bigtrain.workloads.cnn.ResidualNet` in NHWC: 7x7 stem and max-pool from 128 px up."""

    def __init__(self, size: Any, batch_norm: bool, dtype: Any, rngs: nnx.Rngs) -> None:
        self.imagenet_stem = size.image_px >= 128
        kernel, stride = (7, 2) if self.imagenet_stem else (3, 1)
        self.stem = _ConvNorm(3, size.stem_width, kernel, stride, batch_norm, dtype, rngs)
        blocks = []
        cin = size.stem_width
        expansion = 1 if size.block == "basic" else 4
        for index, (width, depth) in enumerate(zip(size.widths, size.depths)):
            for block_index in range(depth):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(Block(size.block, cin, width, stride, batch_norm, dtype, rngs))
                cin = width * expansion
        self.blocks = _modules(blocks)
        self.head = nnx.Linear(cin, size.classes, dtype=dtype, param_dtype=_F32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.stem(x))
        if self.imagenet_stem:
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(x, axis=(1, 2)))


_GPT2_INIT = nnx.initializers.normal(stddev=0.02)


def _dense(cin: int, cout: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cin, cout, kernel_init=_GPT2_INIT, bias_init=nnx.initializers.zeros_init(),
                      dtype=dtype, param_dtype=_F32, rngs=rngs)


def _layer_norm(width: int, dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, param_dtype=_F32, rngs=rngs)


class DecoderBlock(nnx.Module):
    """Pre-norm block: causal self-attention (fused qkv projection), then a 4x GELU MLP."""

    def __init__(self, width: int, heads: int, dtype: Any, rngs: nnx.Rngs) -> None:
        self.heads = heads
        self.norm1 = _layer_norm(width, dtype, rngs)
        self.qkv = _dense(width, 3 * width, dtype, rngs)
        self.proj = _dense(width, width, dtype, rngs)
        self.norm2 = _layer_norm(width, dtype, rngs)
        self.up = _dense(width, 4 * width, dtype, rngs)
        self.down = _dense(4 * width, width, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, seq, width = x.shape
        q, k, v = jnp.split(self.qkv(self.norm1(x)), 3, axis=-1)
        shape = (batch, seq, self.heads, width // self.heads)  # BTNH, as dot_product_attention
        attended = jax.nn.dot_product_attention(q.reshape(shape), k.reshape(shape),
                                                v.reshape(shape), is_causal=True)
        x = x + self.proj(attended.reshape(batch, seq, width))
        return x + self.down(jax.nn.gelu(self.up(self.norm2(x)), approximate=False))


class GPT(nnx.Module):
    """`bigtrain.workloads.transformer.GPT`: token + learned position embeddings, pre-norm
    blocks, a final LayerNorm and a head tied to the token embedding."""

    def __init__(self, size: Any, dtype: Any, rngs: nnx.Rngs) -> None:
        self.token_embed = nnx.Embed(size.vocab, size.width, embedding_init=_GPT2_INIT,
                                     dtype=dtype, param_dtype=_F32, rngs=rngs)
        self.position_embed = nnx.Embed(size.seq_len, size.width, embedding_init=_GPT2_INIT,
                                        dtype=dtype, param_dtype=_F32, rngs=rngs)
        self.blocks = _modules([DecoderBlock(size.width, size.heads, dtype, rngs)
                                for _ in range(size.layers)])
        self.norm = _layer_norm(size.width, dtype, rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.token_embed(tokens) + self.position_embed(jnp.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.token_embed.attend(self.norm(x))  # the tied head (no bias), as torch's


def _torch_recurrent_init(hidden: int) -> Callable[..., jax.Array]:
    """torch's LSTM/GRU init: every matrix and bias uniform in +-1/sqrt(hidden)."""
    bound = 1.0 / hidden ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = _F32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchFormRecurrent(nnx.Module):
    """One layer of torch's `nn.LSTM` or `nn.GRU` (batch first): input and hidden projections
    with a bias each (`b_ih`, `b_hh`), gates in torch's order (LSTM: input, forget, cell, output;
    GRU: reset, update, new, the reset gate scaling `W_hn h + b_hn`), scanned over time."""

    def __init__(self, cell: str, cin: int, hidden: int, dtype: Any, rngs: nnx.Rngs) -> None:
        self.cell, self.dtype = cell, dtype
        gates = (4 if cell == "lstm" else 3) * hidden
        init = _torch_recurrent_init(hidden)
        self.w_ih = nnx.Param(init(rngs.params(), (cin, gates)))
        self.w_hh = nnx.Param(init(rngs.params(), (hidden, gates)))
        self.b_ih = nnx.Param(init(rngs.params(), (gates,)))
        self.b_hh = nnx.Param(init(rngs.params(), (gates,)))
        self.hidden = hidden

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or _F32
        w_hh, b_hh = self.w_hh[...].astype(dtype), self.b_hh[...].astype(dtype)
        # The input projection of every step at once (one matmul); only h @ W_hh is sequential.
        projected = x.astype(dtype) @ self.w_ih[...].astype(dtype) + self.b_ih[...].astype(dtype)
        h0 = jnp.zeros((x.shape[0], self.hidden), dtype)

        def lstm_step(carry: tuple[jax.Array, jax.Array], x_t: jax.Array) -> Any:
            h, c = carry
            i, f, g, o = jnp.split(x_t + h @ w_hh + b_hh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        def gru_step(h: jax.Array, x_t: jax.Array) -> Any:
            x_r, x_z, x_n = jnp.split(x_t, 3, axis=-1)
            h_r, h_z, h_n = jnp.split(h @ w_hh + b_hh, 3, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * h
            return h, h

        step, carry = (lstm_step, (h0, h0)) if self.cell == "lstm" else (gru_step, h0)
        _, outputs = jax.lax.scan(step, carry, jnp.swapaxes(projected, 0, 1))
        return jnp.swapaxes(outputs, 0, 1)


class RecurrentLM(nnx.Module):
    """`bigtrain.workloads.rnn.RecurrentLM`: an embedding (N(0, 1), torch's init), stacked
    torch-form LSTM/GRU layers, a linear head over the vocabulary."""

    def __init__(self, size: Any, dtype: Any, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(size.vocab, size.embed,
                               embedding_init=nnx.initializers.normal(stddev=1.0), dtype=dtype,
                               param_dtype=_F32, rngs=rngs)
        widths = [size.embed] + [size.hidden] * size.layers
        self.layers = _modules([TorchFormRecurrent(size.cell, cin, size.hidden, dtype, rngs)
                                for cin in widths[:-1]])
        self.head = nnx.Linear(size.hidden, size.vocab, dtype=dtype, param_dtype=_F32, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


@dataclass(frozen=True)
class Twin:
    """A built twin: the model, one synthetic batch on the device, and its loss."""

    model: nnx.Module
    inputs: jax.Array
    targets: jax.Array
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array]
    samples_per_step: int


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logits = logits.astype(_F32)  # the loss in fp32 under a bf16 policy, as torch's autocast
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean((outputs.astype(_F32) - targets) ** 2)


def make_model(family: str, size: Any, *, batch_norm: bool, dtype: Any,
               rngs: nnx.Rngs) -> nnx.Module:
    """The twin model of `family:size` (ValueError for a family without one). The families here
    are `jax_backend.TWIN_FAMILIES` (kept equal by a test; this module never imports the backend,
    which imports it)."""
    makers = {"mlp": lambda: MLP(size, batch_norm, dtype, rngs),
              "cnn": lambda: ResidualNet(size, batch_norm, dtype, rngs),
              "transformer": lambda: GPT(size, dtype, rngs),
              "rnn": lambda: RecurrentLM(size, dtype, rngs)}
    if family not in makers:
        raise ValueError(f"no Flax twin of family {family!r}; valid: {', '.join(makers)}")
    return makers[family]()


def build_twin(family: str, size: Any, *, batch_size: int, batch_norm: bool, dtype: Any,
               seed: int, device: Any) -> Twin:
    """The twin of `family:size` with one synthetic batch of `batch_size` placed on `device`
    (a `jax.Device`); data as the torch family makes it (random inputs, random labels; the
    seed net's targets a noisy linear map of its inputs)."""
    model = make_model(family, size, batch_norm=batch_norm, dtype=dtype, rngs=nnx.Rngs(seed))
    keys = jax.random.split(jax.random.key(seed + 1), 3)
    if family == "mlp":
        inputs = jax.random.normal(keys[0], (batch_size, size.in_features), _F32)
        if size.task == "regression":
            weights = jax.random.normal(keys[1], (size.in_features, size.out_features), _F32)
            noise = jax.random.normal(keys[2], (batch_size, size.out_features), _F32)
            targets, loss_fn = inputs @ weights + 0.1 * noise, _mse
        else:
            targets = jax.random.randint(keys[1], (batch_size,), 0, size.out_features)
            loss_fn = _cross_entropy
    elif family == "cnn":
        inputs = jax.random.normal(keys[0], (batch_size, size.image_px, size.image_px, 3), _F32)
        targets = jax.random.randint(keys[1], (batch_size,), 0, size.classes)
        loss_fn = _cross_entropy
    else:  # transformer and rnn: next-token prediction (make_model refused any other family)
        stream = jax.random.randint(keys[0], (batch_size, size.seq_len + 1), 0, size.vocab)
        inputs, targets, loss_fn = stream[:, :-1], stream[:, 1:], _cross_entropy
    model = jax.device_put(model, device) if device is not None else model
    return Twin(model=model, inputs=jax.device_put(inputs, device),
                targets=jax.device_put(targets, device), loss_fn=loss_fn,
                samples_per_step=batch_size)


def param_count(model: nnx.Module) -> int:
    """Trainable parameters (nnx.Param leaves; BatchNorm's running statistics are not)."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def abstract_param_count(family: str, size: Any, *, batch_norm: bool) -> int:
    """`param_count` of the twin without allocating it (`nnx.eval_shape`): cheap for GPT-2."""
    abstract = nnx.eval_shape(lambda: make_model(family, size, batch_norm=batch_norm,
                                                 dtype=_F32, rngs=nnx.Rngs(0)))
    return param_count(abstract)
