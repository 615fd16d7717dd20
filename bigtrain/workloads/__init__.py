"""The workload registry: model families addressed as `family[:size]`."""

from __future__ import annotations

from dataclasses import dataclass

from bigtrain.errors import unknown_choice
from bigtrain.registry import Registry
from bigtrain.workloads import cnn, mlp, rnn, transformer
from bigtrain.workloads.base import SizeConfig, SizeConfigError, Workload, WorkloadFamily
from bigtrain.workloads.cnn import CNNSize
from bigtrain.workloads.mlp import MLPSize
from bigtrain.workloads.rnn import RNNSize
from bigtrain.workloads.transformer import TransformerSize
from bigtrain.workloads.version import definition_version, workload_version

FAMILIES: Registry[WorkloadFamily] = Registry("workload family")
for _family in (mlp.FAMILY, cnn.FAMILY, rnn.FAMILY, transformer.FAMILY):
    FAMILIES.register(_family.name, _family)


def register_family(family: WorkloadFamily, *, replace: bool = False) -> WorkloadFamily:
    """Add a model family (for plugins: call this from your `bigtrain.workloads` entry point)."""
    return FAMILIES.register(family.name, family, replace=replace)


@dataclass(frozen=True)
class ModelRef:
    """A resolved `family:size` name."""

    family: WorkloadFamily
    size: SizeConfig

    @property
    def name(self) -> str:
        return f"{self.family.name}:{self.size.name}"


def resolve_model(name: str, where: str = "") -> ModelRef:
    """Resolve `family[:size]`; BadInput lists the valid families or sizes."""
    family_name, _, size_name = name.strip().partition(":")
    family = FAMILIES.get(family_name)
    if family is None:
        raise unknown_choice("model family", family_name, FAMILIES.names(), where)
    size_name = size_name or family.default_size
    if size_name not in family.sizes:
        choices = [f"{family.name}:{s}" for s in family.sizes]
        raise unknown_choice(f"size for {family.name}", size_name, choices, where)
    return ModelRef(family=family, size=family.sizes[size_name])


__all__ = ["CNNSize", "FAMILIES", "MLPSize", "ModelRef", "RNNSize", "SizeConfig", "SizeConfigError",
           "TransformerSize", "Workload", "WorkloadFamily", "definition_version", "register_family",
           "resolve_model", "workload_version"]
