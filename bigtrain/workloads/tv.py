"""`tv:` torchvision's own classification models, built with `weights=None` (nothing downloaded).

Each real size is the library's builder as users call it (`torchvision.models.resnet50`), on
224 px ImageNet-shaped images into 1000 classes. Each has a `-tiny` twin of the same architecture
on 32 px images into 10 classes, so that CPU tests run them in seconds: the builder's own classes
with fewer or narrower stages where they take that (ResNet: one block a stage; ConvNeXt: four
narrow one-block stages; ViT: two narrow layers), the builder itself otherwise (EfficientNet,
MobileNet, already small).

Batch norm off swaps the norm layer for an identity (`norm_layer=`), which the ResNet, EfficientNet
and MobileNet builders take; ViT and ConvNeXt use layer norm and have no batch-norm slot. On a GPU
the model and images are channels_last, as cuDNN's tensor-core convolutions want.

Registered through bigtrain's own `bigtrain.workloads` entry point (`register`), so it is what a
third-party plugin is; without torchvision installed the family is listed as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bigtrain.workloads import register_family, register_unavailable_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator
from bigtrain.workloads.libraries import (
    import_torchvision,
    library_versions,
    unavailable_reason,
)

FAMILY_NAME = "tv"
#: A builder in `torchvision.models` (`resnet50`), or this class for the tiny ViT.
VIT_CLASS = "VisionTransformer"
#: Builders whose classes a tiny twin can build with its own `stage_depths` (and widths).
STAGED = {"resnet18": "BasicBlock", "resnet50": "Bottleneck", "convnext_tiny": "CNBlockConfig"}


@dataclass(frozen=True, kw_only=True)
class TorchvisionSize(SizeConfig):
    """A torchvision model: `architecture` is the builder's name in `torchvision.models` (or
    `VisionTransformer` with `vit_*` fields for a small ViT), fed `image_px` square RGB images into
    `classes` classes. A tiny twin of a ResNet or ConvNeXt sets `stage_depths` (blocks per stage;
    ConvNeXt also `stage_widths`, channels per stage) and is built from the builder's classes.
    `params_published` is the parameter count torchvision's weight metadata gives for the real
    architecture (None for a tiny twin)."""

    architecture: str
    image_px: int
    classes: int
    stage_depths: tuple[int, ...] = ()
    stage_widths: tuple[int, ...] = ()
    vit_patch: int = 0
    vit_layers: int = 0
    vit_heads: int = 0
    vit_width: int = 0
    vit_mlp: int = 0
    params_published: int | None = None

    def validate(self) -> None:
        self.require_positive_int("image_px")
        self.require_positive_int("classes")
        if not self.architecture or not self.architecture.replace("_", "").isalnum():
            raise self.invalid("architecture", "must name a torchvision.models builder")
        if self.architecture == VIT_CLASS:
            for name in ("vit_patch", "vit_layers", "vit_heads", "vit_width", "vit_mlp"):
                self.require_positive_int(name)
            if self.image_px % self.vit_patch:
                raise self.invalid("vit_patch", f"must divide image_px {self.image_px}")
            if self.vit_width % self.vit_heads:
                raise self.invalid("vit_heads", f"must divide vit_width {self.vit_width}")
        if self.stage_depths or self.stage_widths:
            if self.architecture not in STAGED:
                raise self.invalid("stage_depths", f"applies to {', '.join(STAGED)} only")
            self.require_positive_ints("stage_depths")
            if self.architecture.startswith("resnet") and len(self.stage_depths) != 4:
                raise self.invalid("stage_depths", "must have 4 entries (ResNet's stages)")
            if self.architecture.startswith("resnet") and self.stage_widths:
                raise self.invalid("stage_widths", "must be empty: ResNet fixes its widths")
            if self.architecture.startswith("convnext"):
                self.require_positive_ints("stage_widths")
                if len(self.stage_widths) != len(self.stage_depths):
                    raise self.invalid("stage_widths", "must have one entry per stage depth")

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that apply to this size (a builder's size leaves the ViT fields out)."""
        fields = super().hyperparameters()
        fields.pop("params_published")
        if self.architecture != VIT_CLASS:
            fields = {k: v for k, v in fields.items() if not k.startswith("vit_")}
        return {k: v for k, v in fields.items() if not (k.startswith("stage_") and not v)}


def _real(name: str, batch: int, params: int, has_bn: bool) -> TorchvisionSize:
    return TorchvisionSize(
        name=name, default_batch_size=batch, has_batch_norm=has_bn, architecture=name,
        probe_as=f"{name}-tiny", image_px=224, classes=1000, params_published=params,
        description=f"torchvision {name}, 224 px, 1000 classes ({params / 1e6:.1f}M parameters)")


#: The tiny twins' stages: (depths, widths) per staged builder.
_TINY_STAGES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ((1, 1, 1, 1), ()),
    "resnet50": ((1, 1, 1, 1), ()),
    "convnext_tiny": ((1, 1, 1, 1), (16, 32, 64, 128)),
}


def _tiny(name: str, has_bn: bool) -> TorchvisionSize:
    depths, widths = _TINY_STAGES.get(name, ((), ()))
    shape = f"one block a stage{', widths ' + '/'.join(map(str, widths)) if widths else ''}, "
    return TorchvisionSize(
        name=f"{name}-tiny", default_batch_size=4, has_batch_norm=has_bn, architecture=name,
        image_px=32, classes=10, stage_depths=depths, stage_widths=widths,
        description=f"torchvision {name}, {shape if depths else ''}32 px, 10 classes (CPU tests)")


# (builder, default batch on a GPU, parameters per torchvision's weight metadata, BN slots)
_ARCHITECTURES = (
    ("resnet18", 256, 11_689_512, True),
    ("resnet50", 256, 25_557_032, True),
    ("vit_b_16", 128, 86_567_656, False),
    ("efficientnet_b0", 256, 5_288_548, True),
    ("mobilenet_v3_large", 256, 5_483_032, True),
    ("convnext_tiny", 128, 28_589_128, False),
)

SIZES: dict[str, TorchvisionSize] = {}
for _name, _batch, _params, _bn in _ARCHITECTURES:
    SIZES[_name] = _real(_name, _batch, _params, _bn)
for _name, _batch, _params, _bn in _ARCHITECTURES:
    if _name == "vit_b_16":  # vit_b_16's builder fixes 12 layers of width 768: a real small ViT
        SIZES["vit_b_16-tiny"] = TorchvisionSize(
            name="vit_b_16-tiny", default_batch_size=4, architecture=VIT_CLASS, image_px=32,
            classes=10, vit_patch=8, vit_layers=2, vit_heads=2, vit_width=64, vit_mlp=128,
            description="torchvision VisionTransformer, 2 layers of width 64, 32 px (CPU tests)")
    else:
        SIZES[f"{_name}-tiny"] = _tiny(_name, _bn)


def build_model(config: TorchvisionSize, *, batch_norm: bool) -> nn.Module:
    """The torchvision model of `config`, randomly initialised (`weights=None`); batch norm
    swapped for an identity when off (where the architecture has it)."""
    torchvision = import_torchvision()
    if config.architecture == VIT_CLASS:
        from torchvision.models.vision_transformer import VisionTransformer

        return VisionTransformer(
            image_size=config.image_px, patch_size=config.vit_patch, num_layers=config.vit_layers,
            num_heads=config.vit_heads, hidden_dim=config.vit_width, mlp_dim=config.vit_mlp,
            num_classes=config.classes)
    kwargs: dict[str, Any] = {"num_classes": config.classes}
    if config.has_batch_norm and not batch_norm:
        kwargs["norm_layer"] = nn.Identity  # takes (and ignores) the channel count it is given
    if config.stage_depths:
        return _staged_twin(config, kwargs)
    return torchvision.models.get_model(config.architecture, weights=None, **kwargs)


def _staged_twin(config: TorchvisionSize, kwargs: dict[str, Any]) -> nn.Module:
    """A ResNet or ConvNeXt of the builder's own classes with the size's stages."""
    if config.architecture.startswith("resnet"):
        from torchvision.models import resnet

        block = getattr(resnet, STAGED[config.architecture])
        return resnet.ResNet(block, list(config.stage_depths), **kwargs)
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    widths = config.stage_widths
    stages = [CNBlockConfig(width, widths[i + 1] if i + 1 < len(widths) else None, depth)
              for i, (width, depth) in enumerate(zip(widths, config.stage_depths))]
    return ConvNeXt(stages, **kwargs)


def _build(config: TorchvisionSize, *, batch_size: int, batch_norm: bool, device: torch.device,
           seed: int) -> Workload:
    model = build_model(config, batch_norm=batch_norm)
    generator = seeded_generator(seed)
    images = torch.randn(batch_size, 3, config.image_px, config.image_px, generator=generator)
    labels = torch.randint(0, config.classes, (batch_size,), generator=generator)
    notes: dict[str, Any] = {"library_versions": library_versions("torchvision")}
    from bigtrain.workloads import libraries

    if libraries.torchvision_ops_missing:
        notes["torchvision_ops"] = "C++ operators not loadable with this torch (none are used)"
    workload = Workload(model=model, inputs=images, targets=labels,
                        loss_fn=nn.functional.cross_entropy, items_per_step=batch_size,
                        item_unit="images", notes=notes)
    return workload.to(device, channels_last=device.type == "cuda")


FAMILY = WorkloadFamily(
    name=FAMILY_NAME,
    sizes=SIZES,
    default_size="resnet18-tiny",
    item_unit="images",
    build_fn=_build,
    size_type=TorchvisionSize,
    description="torchvision classification models (weights=None); channels_last on GPU",
)


def register() -> None:
    """The `bigtrain.workloads` entry point: the family, or why it is unavailable here."""
    reason = unavailable_reason("torchvision")
    if reason:
        register_unavailable_family(FAMILY_NAME, reason, replace=True)
    else:
        register_family(FAMILY, replace=True)
