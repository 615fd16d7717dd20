"""Per-metric thresholds in percent, parsed from `--threshold` (`5%` or `step_time=5%,peak_mem=2%`)."""

from __future__ import annotations

import math
import re

from bigtrain.compare.metrics import METRIC_NAMES, METRICS_BY_NAME, metric_names_text
from bigtrain.common.errors import BadInput

DEFAULT_THRESHOLD_PCT = 5.0

_PCT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


def parse_thresholds(spec: str | None) -> dict[str, float]:
    """Per-metric thresholds in percent from `5%` (all metrics) or `step_time=5%,peak_mem=2%`.

    Metrics not named keep the default (5%, or a bare value given in the same spec). Raises
    BadInput naming the bad part and the valid metric names.
    """
    thresholds = {name: DEFAULT_THRESHOLD_PCT for name in METRIC_NAMES}
    if spec is None:
        return thresholds
    if not spec.strip():  # `--threshold ''`: a flag given empty is a mistake, not the default
        raise BadInput(
            f"--threshold {spec!r}: empty; write e.g. 5% or step_time=5%,peak_mem=2% "
            f"(metrics: {metric_names_text()}), or leave the flag out for the default "
            f"{DEFAULT_THRESHOLD_PCT:g}%"
        )
    named: dict[str, float] = {}
    for part in spec.split(","):
        if not part.strip():
            raise BadInput(
                f"--threshold {spec!r}: empty entry; write e.g. 5% or step_time=5%,peak_mem=2% "
                f"(metrics: {metric_names_text()})"
            )
        if "=" in part:
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in METRICS_BY_NAME:
                raise BadInput(
                    f"--threshold {spec!r}: unknown metric {name!r}; valid metrics: "
                    f"{metric_names_text()}"
                )
            named[name] = _parse_pct(value, spec)
        else:
            default = _parse_pct(part, spec)
            thresholds = {name: default for name in METRIC_NAMES}
    thresholds.update(named)
    return thresholds


def _parse_pct(text: str, spec: str) -> float:
    match = _PCT.match(text)
    if not match:
        raise BadInput(
            f"--threshold {spec!r}: {text.strip()!r} is not a percentage; write e.g. 5% or "
            f"step_time=5%,peak_mem=2% (metrics: {metric_names_text()})"
        )
    value = float(match.group(1))
    if not math.isfinite(value):  # 400 digits make an infinite float
        raise BadInput(f"--threshold {spec!r}: {text.strip()!r} is not a finite percentage")
    return value
