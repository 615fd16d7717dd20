"""The measuring protocols' settings (step time, converge): plain frozen values the spec declares,
built once from it and carried unchanged through the job to the loop. Part of what a cell is, so
they live with the spec, below `measure/` (which reads them) and free of torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bigtrain.common.errors import BadInput


@dataclass(frozen=True, kw_only=True)
class StepTimeSettings:
    """Budgets of the step-time protocol: warm-up seconds, window seconds, least measured steps.

    Built once from the spec and carried unchanged through the job to the loop.
    """

    warmup_s: float
    duration_s: float
    min_steps: int

    def __post_init__(self) -> None:
        if not (isinstance(self.warmup_s, (int, float)) and self.warmup_s >= 0):
            raise BadInput(f"step-time settings: warmup_s must be >= 0 seconds, got {self.warmup_s!r}")
        if not (isinstance(self.duration_s, (int, float)) and self.duration_s > 0):
            raise BadInput(f"step-time settings: duration_s must be > 0 seconds, got {self.duration_s!r}")
        if not (isinstance(self.min_steps, int) and self.min_steps >= 1):
            raise BadInput(f"step-time settings: min_steps must be an integer >= 1, got {self.min_steps!r}")

    @classmethod
    def from_measure(cls, measure: Any) -> StepTimeSettings:
        """The settings named in a spec's `[measure]` table (a `MeasureSettings`)."""
        return cls(warmup_s=measure.warmup_s, duration_s=measure.duration_s,
                   min_steps=measure.min_steps)

    def with_min_window(self, min_window_s: float) -> StepTimeSettings:
        """The same settings with the window stretched to at least `min_window_s`."""
        return dataclasses.replace(self, duration_s=max(self.duration_s, min_window_s))



CONVERGE = "converge"


@dataclass(frozen=True, kw_only=True)
class ConvergeSettings:
    """Budgets of one converge cell: at most `max_steps` optimizer steps and `max_time_s` seconds
    of training (data loading included, evaluation not), with a held-out evaluation every
    `eval_every` steps (and at the budget's end)."""

    max_steps: int = 2000
    max_time_s: float = 60.0
    eval_every: int = 25

    def __post_init__(self) -> None:
        if isinstance(self.max_steps, bool) or not (isinstance(self.max_steps, int)
                                                     and self.max_steps >= 1):
            raise BadInput(f"converge settings: max_steps must be an integer >= 1, "
                           f"got {self.max_steps!r}")
        if isinstance(self.max_time_s, bool) or not (isinstance(self.max_time_s, (int, float))
                                                      and math.isfinite(self.max_time_s)
                                                      and self.max_time_s > 0):
            raise BadInput(f"converge settings: max_time_s must be a number of seconds > 0, "
                           f"got {self.max_time_s!r}")
        if isinstance(self.eval_every, bool) or not (isinstance(self.eval_every, int)
                                                      and self.eval_every >= 1):
            raise BadInput(f"converge settings: eval_every must be an integer >= 1, "
                           f"got {self.eval_every!r}")

    def to_json(self) -> dict[str, Any]:
        """The manifest's `spec.converge`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConvergeSettings:
        """Rebuild from a manifest's `spec.converge` (keys left out take their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: The preset's `[converge]` keys, in order.
CONVERGE_KEYS = tuple(f.name for f in dataclasses.fields(ConvergeSettings))
