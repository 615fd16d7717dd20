"""Optimizer state per parameter byte, measured on a small fixed probe model (`bigbench list`).

The ratio depends on the model for the optimizers that treat matrices differently (Adafactor
factors them, Muon gives them a one-buffer update, Shampoo and SOAP keep per-dimension
preconditioners), so the probe has the parts a language model has: an embedding, hidden linear
layers with biases, a norm and a head. Each optimizer takes one step on it on the CPU; the state it
then holds (`bigtrain.measure.anatomy`, which opens 8-bit state down to its codes and scales) over
the probe's parameter bytes is the figure. The cells of a sweep record their own ratio for their
own model (`optimizer_state_ratio`).

A package that compiles its own step (torchao's 8-bit AdamW) runs it eagerly on the probe
(`torch.compile` is the identity while probing): the state it allocates is the same, and listing
does not wait for a compilation. Ratios are kept in the machine's cache folder (`bigtrain.workloads.capability.cache_dir`), keyed
by optimizer, package version and torch version: an optimizer whose package compiles its step
(torchao) pays its compilation once at most once per machine, not at every `bigbench list`.
"""

from __future__ import annotations

import json
import os
import tempfile
from unittest import mock

import torch
from torch import nn

from bigtrain.training.optim import (
    OptimizerSpec,
    build_optimizer,
    optimizer_provenance,
    spec_impls,
)

PROBE_DESCRIPTION = "a 64-token embedding, two 64x64 hidden layers, a norm and a 64-way head"


class _Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, 64)
        self.hidden = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64))
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 64)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.hidden(self.embed(tokens))))


CACHE_NAME = "optimizer-state-v1.json"


def cached_state_ratio(spec: OptimizerSpec) -> float:
    """`state_ratio(spec)`, read from the machine's cache when this optimizer, package version and
    torch were probed before; measured and stored otherwise."""
    from bigtrain.workloads.capability import cache_dir

    package, version = optimizer_provenance(spec)
    key = f"{spec.label}|{package}=={version}|torch=={torch.__version__}"
    path = cache_dir() / CACHE_NAME
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), float):
        return known[key]
    ratio = state_ratio(spec)
    known[key] = ratio
    try:  # a read-only cache folder only costs the next list another probe
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
            json.dump(known, handle, indent=1, sort_keys=True)
        os.replace(handle.name, path)
    except OSError:
        pass
    return ratio


def state_ratio(spec: OptimizerSpec) -> float:
    """Optimizer-state bytes over parameter bytes after one step on the probe (CPU, fp32), with
    the first implementation the optimizer has (the state does not depend on it)."""
    from bigtrain.measure.anatomy import optimizer_state_by_dtype, parameter_bytes

    torch.manual_seed(0)
    model = _Probe()
    impl = next(i for i in spec_impls(spec) if i != "compiled")
    optimizer, step = build_optimizer(spec, impl, model)
    tokens = torch.randint(0, 64, (8, 16))
    with mock.patch.object(torch, "compile", _eager):
        for _ in range(2):  # some optimizers (heavyball) make their state after a first step
            loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
            loss.backward()
            step()
            optimizer.zero_grad(set_to_none=True)
    params, _ = parameter_bytes(model)
    return sum(optimizer_state_by_dtype(optimizer).values()) / params


def _eager(function=None, **_options):
    """`torch.compile` while probing: the function itself (also as `torch.compile(**options)`)."""
    return function if function is not None else (lambda inner: inner)
