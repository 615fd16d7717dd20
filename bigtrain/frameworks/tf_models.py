"""Keras 3 twins of bigtrain's torch workloads (mlp, cnn, transformer), on the TensorFlow backend.

Each twin has the torch model's layers, widths and trainable parameter count (tested size by size
against the torch model), its loss and its batch shapes, and torch's default initialisation
(uniform +-1/sqrt(fan_in) for linear and conv layers; GPT-2's N(0, 0.02) for the transformer), so
that a step does the same arithmetic in either framework. Where the frameworks differ:

- images are NHWC (channels_last), Keras's and TensorFlow's CPU layout; torch's are NCHW on a CPU.
- a strided 3x3 convolution pads "same" (TensorFlow puts the odd pixel on the right and bottom,
  torch pads 1 on every side): output shapes and FLOPs are identical, pixels at the edge differ.
- batch norm uses torch's epsilon (1e-5) and momentum (Keras momentum 0.9 = torch 0.1).
- the synthetic batch is drawn from NumPy's generator with the cell's seed (the same shapes and
  distributions as the torch batch, not the same numbers).

Imports Keras at module level: import this module only where TensorFlow is meant to run (the
backend's `measure`, the tests), never from the matrix or `bigbench list`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Keras 3 picks its backend once, at first import, from this variable; these twins are TensorFlow's
# (a KERAS_BACKEND=jax in the user's shell must not turn them into JAX programs).
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import numpy as np
from keras import layers, ops

if keras.backend.backend() != "tensorflow":  # Keras was imported earlier with another backend
    raise ImportError(f"Keras in this process runs on {keras.backend.backend()}, not TensorFlow: "
                      f"run TensorFlow cells in their own worker process")

#: torch BatchNorm's defaults in Keras's terms (Keras momentum is torch's 1 - momentum).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
#: torch LayerNorm's epsilon (Keras's default is 1e-3).
LN_EPSILON = 1e-5
#: GPT-2's init standard deviation, as bigtrain.workloads.transformer uses.
GPT2_INIT_STD = 0.02


@dataclass(frozen=True, kw_only=True)
class KerasWorkload:
    """A built twin: the Keras model, one fixed synthetic batch, and the loss of (outputs,
    targets), mirroring `bigtrain.workloads.base.Workload`."""

    model: keras.Model
    inputs: np.ndarray
    targets: np.ndarray
    loss_fn: Callable[[Any, Any], Any]
    items_per_step: int
    item_unit: str
    #: How the twin runs where that differs from the plain Keras layer (the record's versions).
    note: str = ""


def trainable_param_count(model: keras.Model) -> int:
    """Trainable parameters (what torch's `parameters()` counts: BN moving statistics are
    buffers there and non-trainable weights here, left out of both)."""
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))


def build(family: str, config: Any, *, batch_size: int, batch_norm: bool, seed: int,
          dtype_policy: str = "float32") -> KerasWorkload:
    """Build `family`'s twin of size `config` (a `bigtrain.workloads` size config) and its batch.

    `dtype_policy` is a Keras dtype policy name: "float32", or "mixed_bfloat16" (bf16 compute,
    fp32 variables, fp32 loss). Deterministic for a given seed.
    """
    builders = {"mlp": _build_mlp, "cnn": _build_cnn, "rnn": _build_rnn,
                "transformer": _build_transformer}
    if family not in builders:  # the backend's unsupported_reason refuses it before this
        raise ValueError(f"the {family} family has no Keras twin; TensorFlow cells run "
                         f"{', '.join(builders)}")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    builder = builders[family]
    return builder(config, batch_size=batch_size, batch_norm=batch_norm and config.has_batch_norm,
                   rng=rng, policy=keras.DTypePolicy(dtype_policy))


# -- layers with torch's initialisation ----------------------------------------------------------
def _torch_uniform(fan_in: int) -> keras.initializers.Initializer:
    # torch's Linear/Conv default (kaiming_uniform with a=sqrt(5)) is uniform +-1/sqrt(fan_in),
    # and so is its bias.
    limit = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-limit, limit)


def _dense(units: int, fan_in: int, policy: Any, use_bias: bool = True) -> layers.Dense:
    init = _torch_uniform(fan_in)
    return layers.Dense(units, use_bias=use_bias, kernel_initializer=init, bias_initializer=init,
                        dtype=policy)


def _batch_norm(policy: Any) -> layers.BatchNormalization:
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=policy)


def _float_loss(loss: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The loss on fp32 outputs: a mixed-precision model's logits are bf16, its loss is not."""
    def fn(outputs: Any, targets: Any) -> Any:
        return loss(ops.cast(outputs, "float32"), targets)

    return fn


def _cross_entropy(logits: Any, labels: Any) -> Any:
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def _mse(outputs: Any, targets: Any) -> Any:
    return ops.mean(ops.square(outputs - targets))


# -- mlp -----------------------------------------------------------------------------------------
def _build_mlp(config: Any, *, batch_size: int, batch_norm: bool, rng: np.random.Generator,
               policy: Any) -> KerasWorkload:
    inputs = keras.Input(shape=(config.in_features,), dtype="float32")
    x = inputs
    width = config.in_features
    for hidden in config.hidden:
        # With its norm on, the linear bias is redundant (as in the torch twin).
        x = _dense(hidden, width, policy, use_bias=not batch_norm)(x)
        if batch_norm:
            x = _batch_norm(policy)(x)
        x = layers.ReLU(dtype=policy)(x)
        width = hidden
    outputs = _dense(config.out_features, width, policy)(x)
    model = keras.Model(inputs, outputs, name=f"mlp_{config.name}")
    data = rng.standard_normal((batch_size, config.in_features), dtype=np.float32)
    if config.task == "regression":
        true_weights = rng.standard_normal((config.in_features, config.out_features),
                                           dtype=np.float32)
        noise = rng.standard_normal((batch_size, config.out_features), dtype=np.float32)
        targets = data @ true_weights + np.float32(0.1) * noise
        loss = _mse
    else:
        targets = rng.integers(0, config.out_features, (batch_size,), dtype=np.int32)
        loss = _cross_entropy
    return KerasWorkload(model=model, inputs=data, targets=targets, loss_fn=_float_loss(loss),
                         items_per_step=batch_size, item_unit="samples")


# -- cnn -----------------------------------------------------------------------------------------
def _conv(x: Any, cin: int, cout: int, kernel: int, stride: int, batch_norm: bool,
          policy: Any) -> Any:
    # A conv followed by BN needs no bias; with BN off the bias comes back (as in the torch twin).
    init = _torch_uniform(cin * kernel * kernel)
    x = layers.Conv2D(cout, kernel, strides=stride, padding="same", use_bias=not batch_norm,
                      kernel_initializer=init, bias_initializer=init, dtype=policy)(x)
    return _batch_norm(policy)(x) if batch_norm else x


def _shortcut(x: Any, cin: int, cout: int, stride: int, batch_norm: bool, policy: Any) -> Any:
    if stride == 1 and cin == cout:
        return x
    return _conv(x, cin, cout, 1, stride, batch_norm, policy)


def _basic_block(x: Any, cin: int, width: int, stride: int, batch_norm: bool, policy: Any) -> Any:
    out = layers.ReLU(dtype=policy)(_conv(x, cin, width, 3, stride, batch_norm, policy))
    out = _conv(out, width, width, 3, 1, batch_norm, policy)
    out = layers.Add(dtype=policy)([out, _shortcut(x, cin, width, stride, batch_norm, policy)])
    return layers.ReLU(dtype=policy)(out)


def _bottleneck(x: Any, cin: int, width: int, stride: int, batch_norm: bool, policy: Any) -> Any:
    cout = 4 * width
    out = layers.ReLU(dtype=policy)(_conv(x, cin, width, 1, 1, batch_norm, policy))
    out = layers.ReLU(dtype=policy)(_conv(out, width, width, 3, stride, batch_norm, policy))
    out = _conv(out, width, cout, 1, 1, batch_norm, policy)
    out = layers.Add(dtype=policy)([out, _shortcut(x, cin, cout, stride, batch_norm, policy)])
    return layers.ReLU(dtype=policy)(out)


def _build_cnn(config: Any, *, batch_size: int, batch_norm: bool, rng: np.random.Generator,
               policy: Any) -> KerasWorkload:
    px = config.image_px
    inputs = keras.Input(shape=(px, px, 3), dtype="float32")
    stem = config.stem_width
    if px >= 128:  # the ImageNet stem, as in the torch twin
        x = layers.ReLU(dtype=policy)(_conv(inputs, 3, stem, 7, 2, batch_norm, policy))
        x = layers.MaxPooling2D(3, strides=2, padding="same", dtype=policy)(x)
    else:
        x = layers.ReLU(dtype=policy)(_conv(inputs, 3, stem, 3, 1, batch_norm, policy))
    block, expansion = (_basic_block, 1) if config.block == "basic" else (_bottleneck, 4)
    cin = stem
    for index, (width, depth) in enumerate(zip(config.widths, config.depths)):
        for block_index in range(depth):
            stride = 2 if index > 0 and block_index == 0 else 1
            x = block(x, cin, width, stride, batch_norm, policy)
            cin = width * expansion
    x = layers.GlobalAveragePooling2D(dtype=policy)(x)
    outputs = _dense(config.classes, cin, policy)(x)
    model = keras.Model(inputs, outputs, name=f"cnn_{config.name}")
    images = rng.standard_normal((batch_size, px, px, 3), dtype=np.float32)
    labels = rng.integers(0, config.classes, (batch_size,), dtype=np.int32)
    return KerasWorkload(model=model, inputs=images, targets=labels,
                         loss_fn=_float_loss(_cross_entropy), items_per_step=batch_size,
                         item_unit="images")


# -- rnn ---------------------------------------------------------------------------------------
class TorchFormLSTMCell(layers.LSTMCell):
    """Keras's LSTM cell with torch's two bias vectors (b_ih in `bias`, b_hh in
    `recurrent_bias`): the same gates (input, forget, cell, output, in torch's order) and the same
    parameter count as torch's LSTM layer. Being a custom cell, it runs Keras's generic RNN loop,
    as Keras's own LSTM does on a CPU; on a GPU it forgoes the fused cuDNN kernel."""

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.recurrent_bias = self.add_weight(shape=(4 * self.units,), name="recurrent_bias",
                                              initializer=self.bias_initializer)

    def call(self, inputs: Any, states: Any, training: bool = False) -> Any:
        h_prev, c_prev = states[0], states[1]
        z = (ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
             + self.bias + self.recurrent_bias)
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c_prev + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]


def _recurrent_layer(config: Any, policy: Any) -> layers.Layer:
    # torch initialises every LSTM/GRU matrix and bias uniform +-1/sqrt(hidden).
    init = keras.initializers.RandomUniform(-1 / math.sqrt(config.hidden),
                                            1 / math.sqrt(config.hidden))
    if config.cell == "gru":
        # reset_after=True is torch's GRU (the reset gate scales W_hn h + b_hn) with its two
        # bias vectors, and the form cuDNN runs fused on a GPU.
        return layers.GRU(config.hidden, return_sequences=True, reset_after=True,
                          kernel_initializer=init, recurrent_initializer=init,
                          bias_initializer=init, dtype=policy)
    cell = TorchFormLSTMCell(config.hidden, kernel_initializer=init, recurrent_initializer=init,
                             bias_initializer=init, unit_forget_bias=False, dtype=policy)
    return layers.RNN(cell, return_sequences=True, dtype=policy)


def _build_rnn(config: Any, *, batch_size: int, batch_norm: bool, rng: np.random.Generator,
               policy: Any) -> KerasWorkload:
    inputs = keras.Input(shape=(config.seq_len,), dtype="int32")
    x = layers.Embedding(config.vocab, config.embed,  # torch's embedding init is N(0, 1)
                         embeddings_initializer=keras.initializers.RandomNormal(0.0, 1.0),
                         dtype=policy)(inputs)
    for _ in range(config.layers):
        x = _recurrent_layer(config, policy)(x)
    outputs = _dense(config.vocab, config.hidden, policy)(x)
    model = keras.Model(inputs, outputs, name=f"rnn_{config.name}")
    stream = rng.integers(0, config.vocab, (batch_size, config.seq_len + 1), dtype=np.int32)
    return KerasWorkload(model=model, inputs=stream[:, :-1].copy(), targets=stream[:, 1:].copy(),
                         loss_fn=_float_loss(_cross_entropy),
                         items_per_step=batch_size * config.seq_len, item_unit="tokens",
                         note=RNN_NOTES[config.cell])


#: What a record should say about how each recurrent twin runs.
RNN_NOTES = {
    "gru": "keras GRU(reset_after=True): torch's GRU; cuDNN-fused on a GPU",
    "lstm": ("keras RNN over a torch-form LSTM cell (torch's two biases): Keras's generic loop, "
             "as its own LSTM runs on a CPU; no fused cuDNN kernel on a GPU"),
}


# -- transformer ---------------------------------------------------------------------------------
def _gpt2_dense(units: int, policy: Any) -> layers.Dense:
    return layers.Dense(units, kernel_initializer=keras.initializers.RandomNormal(0.0, GPT2_INIT_STD),
                        bias_initializer="zeros", dtype=policy)


class CausalSelfAttention(layers.Layer):
    """Multi-head causal self-attention: one qkv projection, Keras's fused dot-product attention
    with `is_causal`, an output projection (the torch twin's layers)."""

    def __init__(self, width: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width, self.heads = width, heads
        self.qkv = _gpt2_dense(3 * width, self.dtype_policy)
        self.proj = _gpt2_dense(width, self.dtype_policy)

    def call(self, x: Any) -> Any:
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, seq, 3, self.heads, self.width // self.heads))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, seq, heads, head width)
        out = ops.dot_product_attention(q, k, v, is_causal=True)
        return self.proj(ops.reshape(out, (batch, seq, self.width)))


class Block(layers.Layer):
    """A pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy)
        self.attn = CausalSelfAttention(width, heads, dtype=policy)
        self.norm2 = layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy)
        self.fc = _gpt2_dense(4 * width, policy)
        self.out = _gpt2_dense(width, policy)

    def call(self, x: Any) -> Any:
        x = x + self.attn(self.norm1(x))
        # torch's nn.GELU is the exact (erf) GELU, not the tanh approximation
        return x + self.out(keras.activations.gelu(self.fc(self.norm2(x)), approximate=False))


class GPT(keras.Model):
    """The GPT-style decoder of bigtrain.workloads.transformer: token and learned position
    embeddings, pre-norm blocks, a final norm, and a head tied to the token embedding."""

    def __init__(self, config: Any, policy: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        normal = keras.initializers.RandomNormal(0.0, GPT2_INIT_STD)
        self.token_embed = layers.Embedding(config.vocab, config.width,
                                            embeddings_initializer=normal, dtype=policy)
        self.position_embed = layers.Embedding(config.seq_len, config.width,
                                               embeddings_initializer=normal, dtype=policy)
        self.blocks = [Block(config.width, config.heads, dtype=policy)
                       for _ in range(config.layers)]
        self.norm = layers.LayerNormalization(epsilon=LN_EPSILON, dtype=policy)

    def call(self, tokens: Any) -> Any:
        positions = ops.arange(ops.shape(tokens)[1])
        x = self.token_embed(tokens) + ops.expand_dims(self.position_embed(positions), 0)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        # The head is the token embedding transposed (tied, as in GPT-2): no weights of its own.
        table = ops.cast(self.token_embed.embeddings, x.dtype)
        return ops.matmul(x, ops.transpose(table))


def _build_transformer(config: Any, *, batch_size: int, batch_norm: bool,
                       rng: np.random.Generator, policy: Any) -> KerasWorkload:
    model = GPT(config, policy, name=f"transformer_{config.name}")
    stream = rng.integers(0, config.vocab, (batch_size, config.seq_len + 1), dtype=np.int32)
    inputs, targets = stream[:, :-1].copy(), stream[:, 1:].copy()
    model(inputs[:1])  # create the weights (a subclassed model builds on its first call)
    return KerasWorkload(model=model, inputs=inputs, targets=targets,
                         loss_fn=_float_loss(_cross_entropy),
                         items_per_step=batch_size * config.seq_len, item_unit="tokens")
