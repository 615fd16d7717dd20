"""Precision recipes: what autocast, loss scaling and TF32 switches each precision means."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from bigtrain.common.errors import unknown_choice


@dataclass(frozen=True, kw_only=True)
class PrecisionRecipe:
    """How to train in one precision."""

    name: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool
    allow_tf32: bool
    device_types: tuple[str, ...]
    description: str

    def apply_backend_flags(self) -> None:
        """Set the process-wide TF32 switches this recipe needs (fp32 must really be fp32)."""
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = self.allow_tf32
            torch.backends.cudnn.allow_tf32 = self.allow_tf32

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        """The autocast context for the forward pass (a no-op for full precision)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    def host_syncs(self, impl: str) -> tuple[int, str | None]:
        """Host synchronizations this recipe adds to every training step with optimizer
        implementation `impl`, and why (None when there are none).

        GradScaler.step hands a fused optimizer the found-inf flag on the device, but for any
        other implementation it reads the flag on the host before stepping: one device-to-host
        sync per step, inside the timed window, exactly as in a user's own fp16 loop.
        """
        if not self.grad_scaler or impl == "fused":
            return 0, None
        return 1, ("GradScaler.step reads found_inf on the host before a non-fused optimizer "
                   "step (a device sync each step, as in any fp16 training loop)")

    def make_scaler(self, device_type: str) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16; None where the recipe needs no loss scaling."""
        return torch.amp.GradScaler(device_type) if self.grad_scaler else None


PRECISIONS: dict[str, PrecisionRecipe] = {
    r.name: r
    for r in (
        PrecisionRecipe(name="fp32", autocast_dtype=None, grad_scaler=False, allow_tf32=False,
                        device_types=("cpu", "cuda"), description="full fp32, TF32 off"),
        PrecisionRecipe(name="tf32", autocast_dtype=None, grad_scaler=False, allow_tf32=True,
                        device_types=("cuda",), description="fp32 storage, TF32 matmul/conv"),
        PrecisionRecipe(name="fp16", autocast_dtype=torch.float16, grad_scaler=True,
                        allow_tf32=False, device_types=("cuda",),
                        description="fp16 autocast with GradScaler"),
        PrecisionRecipe(name="bf16", autocast_dtype=torch.bfloat16, grad_scaler=False,
                        allow_tf32=False, device_types=("cpu", "cuda"),
                        description="bf16 autocast"),
    )
}


def resolve_precision(name: str, where: str = "") -> PrecisionRecipe:
    """The recipe named `name`; BadInput lists the valid ones."""
    recipe = PRECISIONS.get(name)
    if recipe is None:
        raise unknown_choice("precision", name, PRECISIONS, where)
    return recipe


def skip_reason(recipe: PrecisionRecipe, device_type: str, bf16_capable: bool = True) -> str | None:
    """Why `recipe` cannot run on this device, or None."""
    if device_type not in recipe.device_types:
        return f"{recipe.name} needs {' or '.join(recipe.device_types)}, not {device_type}"
    if recipe.name == "bf16" and not bf16_capable:
        return "bf16 needs a GPU of compute capability 8.0 or newer"
    return None
