"""The converge loader: a torch DataLoader of shuffled mini-batches, epoch after epoch.

Batches are cut by a `BatchSampler` over a seeded `RandomSampler` and fetched whole from a
`TensorDataset` (one indexing per batch, not one per example), so the data pipeline is real
(a new order every epoch, from the cell's seed) without costing more than it must. Incomplete
last batches are dropped, so every step sees the same batch size (and a compiled model one shape).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset


def make_loader(inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int,
                seed: int) -> DataLoader:
    """Shuffled mini-batches of `batch_size` (capped at the data's size), reshuffled every epoch
    by a generator seeded with `seed`."""
    dataset = TensorDataset(inputs, targets)
    generator = torch.Generator().manual_seed(seed)
    batches = BatchSampler(RandomSampler(dataset, generator=generator),
                           batch_size=min(batch_size, len(dataset)), drop_last=True)
    # batch_size=None: the sampler hands whole index lists; the dataset returns whole batches.
    return DataLoader(dataset, sampler=batches, batch_size=None)


@dataclass
class TimedBatches:
    """Endless batches from `loader` on `device`, counting epochs and the seconds spent fetching
    and moving them (`data_s`)."""

    loader: DataLoader
    device: torch.device
    channels_last: bool = False
    epochs: int = 0
    data_s: float = 0.0
    _iterator: Iterator | None = field(default=None, repr=False)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (inputs, targets) on the device; a new epoch (a new order) when one ends."""
        start = time.perf_counter()
        if self._iterator is None:
            self._iterator = iter(self.loader)
        try:
            inputs, targets = next(self._iterator)
        except StopIteration:
            self.epochs += 1
            self._iterator = iter(self.loader)
            inputs, targets = next(self._iterator)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        self.data_s += time.perf_counter() - start
        return inputs, targets
