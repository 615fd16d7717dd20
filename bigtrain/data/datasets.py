"""Data sets for converge cells, each split into training and held-out parts by a fixed seed.

Every builder returns a `Split` of CPU tensors; the loader moves batches to the device. Features
are standardised with the training part's statistics only, so nothing of the held-out part leaks
into training. scikit-learn is an optional extra (`pip install 'bigtrain[converge]'`); without it
the tasks that need it are `unsupported` with that command as the reason.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

#: The held-out split (and generated data) come from this seed, not the training seed: every seed
#: of a cell is evaluated on the same held-out examples, so seeds differ only in what training does.
DATA_SEED = 20240611
#: The share of each data set held out for evaluation.
EVAL_FRACTION = 0.2
#: Positions of the sequence task that carry no target (their loss is ignored).
IGNORE_INDEX = -100
SKLEARN_INSTALL = "pip install 'bigtrain[converge]'"


class MissingExtra(ImportError):
    """An optional package a data set needs is not installed; the message names the install."""


@dataclass(frozen=True, kw_only=True)
class Split:
    """A data set's training and held-out parts (CPU tensors, examples along the first axis)."""

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    eval_inputs: torch.Tensor
    eval_targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.train_inputs) != len(self.train_targets):
            raise ValueError("Split: training inputs and targets differ in length")
        if len(self.eval_inputs) != len(self.eval_targets):
            raise ValueError("Split: held-out inputs and targets differ in length")


def holdout_split(inputs: torch.Tensor, targets: torch.Tensor, *,
                  eval_fraction: float = EVAL_FRACTION, seed: int = DATA_SEED) -> Split:
    """Shuffle the examples with `seed` and hold out the last `eval_fraction` of them."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(inputs), generator=generator)
    held = max(1, round(len(inputs) * eval_fraction))
    train, held_out = order[:-held], order[-held:]
    return Split(train_inputs=inputs[train], train_targets=targets[train],
                 eval_inputs=inputs[held_out], eval_targets=targets[held_out])


def standardised(split: Split) -> Split:
    """Features scaled to zero mean and unit variance by the training part's statistics."""
    mean = split.train_inputs.mean(dim=0)
    std = split.train_inputs.std(dim=0).clamp_min(1e-6)  # constant pixels (digits' borders)
    return Split(train_inputs=(split.train_inputs - mean) / std,
                 train_targets=split.train_targets,
                 eval_inputs=(split.eval_inputs - mean) / std,
                 eval_targets=split.eval_targets)


def sklearn_available() -> bool:
    """True when scikit-learn (the `converge` extra) can be imported."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _sklearn_bunch(name: str):  # noqa: ANN202 - a scikit-learn Bunch
    try:
        from sklearn import datasets
    except ImportError:
        raise MissingExtra(f"the {name} data set ships with scikit-learn, which is not installed: "
                           f"{SKLEARN_INSTALL}") from None
    return getattr(datasets, f"load_{name.replace('-', '_')}")()


@functools.lru_cache(maxsize=None)
def tabular(name: str) -> Split:
    """A scikit-learn table (`digits`, `wine`, `breast-cancer`) as standardised float features and
    integer class labels, split by DATA_SEED. Cached: a reused worker loads each once."""
    bunch = _sklearn_bunch(name)
    inputs = torch.as_tensor(bunch.data, dtype=torch.float32)
    targets = torch.as_tensor(bunch.target, dtype=torch.long)
    return standardised(holdout_split(inputs, targets))


@functools.lru_cache(maxsize=None)
def digit_images() -> Split:
    """scikit-learn's 8x8 digits as images for the conv nets: grey levels scaled to [0, 1] and
    repeated over three channels (the conv family's stem takes RGB), shape (N, 3, 8, 8)."""
    bunch = _sklearn_bunch("digits")
    grey = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = grey.expand(-1, 3, -1, -1).contiguous()
    return holdout_split(images, torch.as_tensor(bunch.target, dtype=torch.long))


#: The seed net's regression: examples, input features, and the noise's standard deviation.
REGRESSION_EXAMPLES = 4096
REGRESSION_FEATURES = 10
REGRESSION_NOISE_STD = 0.1


@functools.lru_cache(maxsize=None)
def linear_regression() -> Split:
    """The seed net's task: y = x·w + noise, x and w standard normal, noise N(0, 0.1²), all drawn
    from DATA_SEED. The noise sets the floor no model can beat: a held-out MSE of 0.01."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    weights = torch.randn(REGRESSION_FEATURES, 1, generator=generator)
    inputs = torch.randn(REGRESSION_EXAMPLES, REGRESSION_FEATURES, generator=generator)
    noise = REGRESSION_NOISE_STD * torch.randn(REGRESSION_EXAMPLES, 1, generator=generator)
    return holdout_split(inputs, inputs @ weights + noise)


#: The delayed-copy task: sequences, their length, the token vocabulary and the delay.
SEQUENCES = 4096
SEQUENCE_LENGTH = 16
SEQUENCE_VOCAB = 16
COPY_DELAY = 2


@functools.lru_cache(maxsize=None)
def delayed_copy(vocab: int = SEQUENCE_VOCAB, length: int = SEQUENCE_LENGTH,
                 delay: int = COPY_DELAY) -> Split:
    """Random token sequences whose target at position t is the token at t - `delay` (the first
    `delay` positions carry no target: IGNORE_INDEX). A causal model reads every answer from its
    own input, so a perfect solution exists and is known: held-out token accuracy 1.0."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    tokens = torch.randint(0, vocab, (SEQUENCES, length), generator=generator)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, delay:] = tokens[:, :-delay]
    return holdout_split(tokens, targets)
