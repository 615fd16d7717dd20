"""Residual convolutional nets with BatchNorm2d slots, from a CPU-sized toy to ResNet-50 shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads.base import (
    SizeConfig,
    Workload,
    WorkloadFamily,
    norm_or_identity,
    seeded_generator,
)

BLOCKS = ("basic", "bottleneck")


@dataclass(frozen=True, kw_only=True)
class CNNSize(SizeConfig):
    """A residual net on `image_px` x `image_px` RGB images into `classes` classes: a stem of
    `stem_width` channels, then one stage per entry of `widths`/`depths` (`depths[i]` blocks of
    width `widths[i]`). Images of 128 px or more get the ImageNet 7x7 stem and max-pool."""

    image_px: int
    classes: int
    block: str
    stem_width: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    has_batch_norm: bool = True

    def validate(self) -> None:
        for name in ("image_px", "classes", "stem_width"):
            self.require_positive_int(name)
        self.require_choice("block", BLOCKS)
        self.require_positive_ints("widths")
        self.require_positive_ints("depths")
        if len(self.widths) != len(self.depths):
            raise self.invalid("depths", f"must have one entry per width ({len(self.widths)})")


SIZES = {
    "tiny": CNNSize(
        name="tiny",
        default_batch_size=32,
        image_px=32, classes=10, block="basic", stem_width=16, widths=(16, 32), depths=(1, 1),
        description="2-stage basic-block net on 32x32 images (CPU-friendly)",
    ),
    "small": CNNSize(
        name="small", probe_as="tiny",  # basic blocks, as tiny's
        default_batch_size=64,
        image_px=32, classes=10, block="basic", stem_width=32,
        widths=(32, 64, 128), depths=(2, 2, 2),
        description="CIFAR-style ResNet-20-like net on 32x32 images",
    ),
    "resnet18": CNNSize(
        name="resnet18", probe_as="tiny",  # basic blocks, as tiny's
        default_batch_size=64,
        image_px=224, classes=1000, block="basic", stem_width=64,
        widths=(64, 128, 256, 512), depths=(2, 2, 2, 2),
        description="ResNet-18 shapes on 224x224 images",
    ),
    "resnet50": CNNSize(
        name="resnet50",  # probed as itself: no smaller size has bottleneck blocks
        default_batch_size=256,   # the canonical ResNet-50 training batch (the H200 reference)
        image_px=224, classes=1000, block="bottleneck", stem_width=64,
        widths=(64, 128, 256, 512), depths=(3, 4, 6, 3),
        description="ResNet-50 shapes (bottleneck blocks) on 224x224 images",
    ),
    # Shaped for the converge task's 8x8 digits (bigtrain.data.tasks); synthetic batches in sweeps.
    "digits": CNNSize(
        name="digits",
        default_batch_size=64,
        image_px=8, classes=10, block="basic", stem_width=16, widths=(16, 32), depths=(1, 1),
        description="2-stage basic-block net on 8x8 images (digits; converge task)",
    ),
}


def _conv(cin: int, cout: int, kernel: int, stride: int, batch_norm: bool) -> nn.Conv2d:
    # A conv followed by BN needs no bias; with BN switched off the bias comes back.
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 3, stride, batch_norm)
        self.bn1 = norm_or_identity(nn.BatchNorm2d, width, batch_norm)
        self.conv2 = _conv(width, cout, 3, 1, batch_norm)
        self.bn2 = norm_or_identity(nn.BatchNorm2d, cout, batch_norm)
        self.shortcut = _shortcut(cin, cout, stride, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 1, 1, batch_norm)
        self.bn1 = norm_or_identity(nn.BatchNorm2d, width, batch_norm)
        self.conv2 = _conv(width, width, 3, stride, batch_norm)
        self.bn2 = norm_or_identity(nn.BatchNorm2d, width, batch_norm)
        self.conv3 = _conv(width, cout, 1, 1, batch_norm)
        self.bn3 = norm_or_identity(nn.BatchNorm2d, cout, batch_norm)
        self.shortcut = _shortcut(cin, cout, stride, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int, batch_norm: bool) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(
        _conv(cin, cout, 1, stride, batch_norm), norm_or_identity(nn.BatchNorm2d, cout, batch_norm)
    )


class ResidualNet(nn.Module):
    """A ResNet-shaped classifier; ImageNet-sized inputs get the 7x7 stem and max-pool."""

    def __init__(self, config: CNNSize, batch_norm: bool) -> None:
        super().__init__()
        block = BasicBlock if config.block == "basic" else Bottleneck
        stem = config.stem_width
        if config.image_px >= 128:
            self.stem = nn.Sequential(
                _conv(3, stem, 7, 2, batch_norm),
                norm_or_identity(nn.BatchNorm2d, stem, batch_norm),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                _conv(3, stem, 3, 1, batch_norm),
                norm_or_identity(nn.BatchNorm2d, stem, batch_norm),
                nn.ReLU(),
            )
        stages: list[nn.Module] = []
        cin = stem
        for index, (width, depth) in enumerate(zip(config.widths, config.depths)):
            for block_index in range(depth):
                stride = 2 if index > 0 and block_index == 0 else 1
                stages.append(block(cin, width, stride, batch_norm))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))


def _build(config: CNNSize, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    model = ResidualNet(config, batch_norm)
    generator = seeded_generator(seed)
    inputs = torch.randn(batch_size, 3, config.image_px, config.image_px, generator=generator)
    targets = torch.randint(0, config.classes, (batch_size,), generator=generator)
    workload = Workload(
        model=model,
        inputs=inputs,
        targets=targets,
        loss_fn=nn.functional.cross_entropy,
        items_per_step=batch_size,
        item_unit="images",
    )
    # NHWC on a GPU lets cuDNN pick tensor-core convolution kernels.
    return workload.to(device, channels_last=device.type == "cuda")


FAMILY = WorkloadFamily(
    name="cnn",
    sizes=SIZES,
    default_size="tiny",
    item_unit="images",
    build_fn=_build,
    size_type=CNNSize,
    description="residual conv nets with BatchNorm2d slots; channels_last on GPU",
)
