"""The workload registry: model families addressed as `family[:size]`."""

from __future__ import annotations

from dataclasses import dataclass

from bigtrain.common.errors import BadInput, unknown_choice
from bigtrain.common.registry import Registry
from bigtrain.workloads import cnn, mlp, rnn, transformer
from bigtrain.workloads.base import SizeConfig, SizeConfigError, Workload, WorkloadFamily
from bigtrain.workloads.cnn import CNNSize
from bigtrain.workloads.mlp import MLPSize
from bigtrain.workloads.rnn import RNNSize
from bigtrain.workloads.transformer import TransformerSize
from bigtrain.workloads.version import definition_version

FAMILIES: Registry[WorkloadFamily] = Registry("workload family")
for _family in (mlp.FAMILY, cnn.FAMILY, rnn.FAMILY, transformer.FAMILY):
    FAMILIES.register(_family.name, _family)


#: Families a plugin declares but cannot provide on this machine (a missing optional extra):
#: name -> why, with the install command. Listed by `bigbench list models`; naming one is bad input.
UNAVAILABLE_FAMILIES: Registry[str] = Registry("unavailable workload family")


def register_family(family: WorkloadFamily, *, replace: bool = False) -> WorkloadFamily:
    """Add a model family (for plugins: call this from your `bigtrain.workloads` entry point)."""
    return FAMILIES.register(family.name, family, replace=replace)


def register_unavailable_family(name: str, reason: str, *, replace: bool = False) -> None:
    """Declare family `name` unavailable here, and why (for plugins whose library is missing)."""
    UNAVAILABLE_FAMILIES.register(name, reason, replace=replace)


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
        unavailable = UNAVAILABLE_FAMILIES.get(family_name)
        if unavailable:
            prefix = f"{where}: " if where else ""
            raise BadInput(f"{prefix}model family {family_name!r} is unavailable: {unavailable}")
        raise unknown_choice("model family", family_name, FAMILIES.names(), where)
    size_name = size_name or family.default_size
    if size_name not in family.sizes:
        choices = [f"{family.name}:{s}" for s in family.sizes]
        raise unknown_choice(f"size for {family.name}", size_name, choices, where)
    return ModelRef(family=family, size=family.sizes[size_name])


def workload_version(model_name: str) -> str:
    """The version stamp of `family[:size]` (BadInput for an unknown name)."""
    ref = resolve_model(model_name)
    return definition_version(ref.family, ref.size)


__all__ = ["CNNSize", "FAMILIES", "MLPSize", "ModelRef", "RNNSize", "SizeConfig", "SizeConfigError",
           "TransformerSize", "UNAVAILABLE_FAMILIES", "Workload", "WorkloadFamily", "definition_version",
           "register_family", "register_unavailable_family", "resolve_model", "workload_version"]
