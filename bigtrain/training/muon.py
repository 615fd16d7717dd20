"""Muon as its authors use it: torch's Muon on the hidden weight matrices, AdamW on the rest.

Muon orthogonalises the update of a 2-D weight (Newton-Schulz iterations); it is meant for the
hidden layers' matrices only. Embeddings, the output head (whose rows are per-class or per-token
vectors, not a linear map between hidden spaces), biases and norms stay with AdamW, as in Keller
Jordan's reference and the GPT-2 speedruns. `split_parameters` makes that split from the model's
modules; the counts are recorded with every cell (`split`).

Both groups run at one learning rate: Muon's `match_rms_adamw` scaling makes a Muon update as
large (in RMS) as an AdamW one, so the `lr` axis means the same step size for both groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class MuonSplit:
    """Which parameters went to Muon and which to AdamW (element counts and tensor counts)."""

    muon_params: int
    adamw_params: int
    muon_tensors: int
    adamw_tensors: int
    rule: str


def split_parameters(source: nn.Module | Iterable[torch.Tensor]
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor], MuonSplit]:
    """(Muon's matrices, AdamW's rest, the split) of a model, or of bare parameters.

    From a model: the 2-D weights of `nn.Linear` layers, except the last Linear (the head) and any
    weight shared with an `nn.Embedding` (a tied head). From bare parameters (no modules to tell a
    head from a hidden layer) every 2-D tensor goes to Muon, which the rule names.
    """
    if isinstance(source, nn.Module):
        params = [p for p in source.parameters() if p.requires_grad]
        embedded = {id(m.weight) for m in source.modules() if isinstance(m, nn.Embedding)}
        linears = [m for m in source.modules() if isinstance(m, nn.Linear)]
        head = id(linears[-1].weight) if linears else None
        matrices = {id(m.weight) for m in linears
                    if m.weight.ndim == 2 and id(m.weight) not in embedded and id(m.weight) != head}
        rule = ("Muon: 2-D weights of hidden nn.Linear layers; AdamW: embeddings, the head (last "
                "Linear), biases, norms and everything else")
    else:
        params = [p for p in source if p.requires_grad]
        matrices = {id(p) for p in params if p.ndim == 2}
        rule = "Muon: every 2-D tensor (bare parameters: no modules to find the head); AdamW: the rest"
    muon = [p for p in params if id(p) in matrices]
    adamw = [p for p in params if id(p) not in matrices]
    split = MuonSplit(muon_params=sum(p.numel() for p in muon),
                      adamw_params=sum(p.numel() for p in adamw),
                      muon_tensors=len(muon), adamw_tensors=len(adamw), rule=rule)
    return muon, adamw, split


class MuonWithAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on the hidden matrices and torch.optim.AdamW on the rest, as one optimizer.

    One `state` (the two share it: their parameters are disjoint) and the two optimizers' own
    param groups, so learning-rate changes, `zero_grad`, GradScaler and state accounting see
    every parameter. `foreach` applies to the AdamW group only: torch has no foreach Muon.
    """

    def __init__(self, params: nn.Module | Iterable[torch.Tensor], lr: float = 1e-3,
                 weight_decay: float = 0.01, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, *, foreach: bool | None = None) -> None:
        muon_params, adamw_params, self.split = split_parameters(params)
        self.muon = (torch.optim.Muon(muon_params, lr=lr, weight_decay=weight_decay,
                                      momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      adjust_lr_fn="match_rms_adamw")
                     if muon_params else None)
        self.adamw = (torch.optim.AdamW(adamw_params, lr=lr, betas=betas, eps=eps,
                                        weight_decay=weight_decay, foreach=foreach)
                      if adamw_params else None)
        parts = [o for o in (self.muon, self.adamw) if o is not None]
        if not parts:
            raise ValueError("Muon got no parameters to optimize")
        groups: list[dict[str, Any]] = [g for o in parts for g in o.param_groups]
        super().__init__(groups, defaults={})
        for part in parts:
            part.state = self.state  # one state: every tensor is counted once, in one place

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One step of both optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in (self.muon, self.adamw):
            if part is not None:
                part.step()
        return loss
