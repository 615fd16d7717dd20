"""The roofline of a profiled cell: per op category, achieved FLOP/s and bytes/s against this
machine's `bigbench calibrate` ceilings, so each category reads compute-bound or memory-bound.

Ceilings: the matmul rate is the record's `measured_peak_tflops` (the calibrated rate at the
cell's precision); the bandwidth is the calibration's copy bandwidth, read from the stored
calibration the record names (`calibration_id`), else recovered from the record's optimizer
floor (`optimizer_bytes_per_step / optimizer_floor_s`, the same bandwidth by construction).

Bytes are an ESTIMATE: the ops table has no byte counts, so each op is charged the elements of its
recorded input shapes times the precision's element size, per call: inputs read, outputs and
caches not counted, so traffic is a lower bound and intensity an upper bound. Ops without input
shapes (recorded without `record_shapes`) add no bytes; a category with none is `unknown`.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bigtrain.profiles.load import CATEGORIES, CellProfile

#: Bytes per element by precision name: 2 for every 16-bit recipe, else 4 (fp32, tf32).
_HALF = re.compile(r"16")
#: A shapes string longer than this is not parsed (a guard on data from a file).
MAX_SHAPES_CHARS = 20_000
COMPUTE_BOUND, MEMORY_BOUND, UNKNOWN = "compute-bound", "memory-bound", "unknown"
BYTES_NOTE = ("bytes are estimated from each op's input shapes x the precision's element size "
              "(inputs only: a lower bound on traffic)")


@dataclass(frozen=True)
class Ceilings:
    """This machine's measured ceilings for the cell's precision, and where they come from."""

    peak_flops_per_s: float | None
    bandwidth_bytes_per_s: float | None
    source: str

    @property
    def ridge_flop_per_byte(self) -> float | None:
        """The intensity where the roofs meet: above it, compute-bound."""
        if self.peak_flops_per_s and self.bandwidth_bytes_per_s:
            return self.peak_flops_per_s / self.bandwidth_bytes_per_s
        return None


@dataclass(frozen=True)
class CategoryPoint:
    """One category of one cell on the roofline."""

    category: str
    time_s_per_step: float
    flops_per_step: float
    bytes_per_step: float  # estimated (see BYTES_NOTE)
    ceilings: Ceilings

    @property
    def achieved_flops_per_s(self) -> float | None:
        return self.flops_per_step / self.time_s_per_step if self.time_s_per_step > 0 else None

    @property
    def achieved_bytes_per_s(self) -> float | None:
        return self.bytes_per_step / self.time_s_per_step if self.time_s_per_step > 0 else None

    @property
    def intensity_flop_per_byte(self) -> float | None:
        return self.flops_per_step / self.bytes_per_step if self.bytes_per_step > 0 else None

    @property
    def bound(self) -> str:
        """compute-bound above the ridge, memory-bound below it; unknown without ceilings or bytes."""
        ridge, intensity = self.ceilings.ridge_flop_per_byte, self.intensity_flop_per_byte
        if ridge is None or intensity is None:
            return UNKNOWN
        return COMPUTE_BOUND if intensity >= ridge else MEMORY_BOUND

    @property
    def roof_flops_per_s(self) -> float | None:
        """The attainable FLOP/s at this intensity: min(peak, intensity x bandwidth)."""
        peak, bandwidth = self.ceilings.peak_flops_per_s, self.ceilings.bandwidth_bytes_per_s
        intensity = self.intensity_flop_per_byte
        if peak is None or bandwidth is None or intensity is None:
            return None
        return min(peak, intensity * bandwidth)

    @property
    def pct_of_roof(self) -> float | None:
        roof, achieved = self.roof_flops_per_s, self.achieved_flops_per_s
        if not roof or achieved is None:
            return None
        return achieved / roof * 100


def element_bytes(precision: Any) -> int:
    """2 for a 16-bit precision (fp16, bf16, amp-bf16), else 4."""
    return 2 if _HALF.search(str(precision or "")) else 4


def shape_elements(text: str) -> int:
    """Total elements of the tensors in an input-shapes string such as `[[64, 10], [20, 10], []]`
    (one entry per input; `[]` a scalar or non-tensor; a list of shapes a tensor list); 0 when
    there are none or the string is no list of shapes (parsed as a literal, never run as code)."""
    if not text or len(text) > MAX_SHAPES_CHARS:
        return 0
    try:
        shapes = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return 0
    if not isinstance(shapes, (list, tuple)):
        return 0
    return sum(_elements(shape, depth=0) for shape in shapes)


def _elements(value: Any, *, depth: int) -> int:
    """A shape (a list of ints) -> its element count; a list of shapes (a tensor list input, as
    the foreach optimizers take) -> the sum; a scalar or anything else -> 0."""
    if not isinstance(value, (list, tuple)) or not value or depth > 4:
        return 0
    if all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        return math.prod(value)
    return sum(_elements(v, depth=depth + 1) for v in value)


def ceilings_for(profile: CellProfile, calibration_dir: Any = None) -> Ceilings:
    """The ceilings of the machine that ran `profile`'s cell (see the module docstring)."""
    figures = profile.record_figures
    peak_tflops = _positive(figures.get("measured_peak_tflops"))
    peak = peak_tflops * 1e12 if peak_tflops else None
    sources = ["matmul: the record's measured_peak_tflops"] if peak else []
    bandwidth = _stored_bandwidth(figures.get("calibration_id"), calibration_dir)
    if bandwidth is not None:
        sources.append("bandwidth: the stored calibration")
    else:
        floor_s = _positive(figures.get("optimizer_floor_s"))
        traffic = _positive(figures.get("optimizer_bytes_per_step"))
        if floor_s and traffic:
            bandwidth = traffic / floor_s
            sources.append("bandwidth: the record's optimizer floor")
    source = "; ".join(sources) or "no calibration (run `bigbench calibrate`, then profile again)"
    return Ceilings(peak_flops_per_s=peak, bandwidth_bytes_per_s=bandwidth, source=source)


def _stored_bandwidth(calibration_id: Any, folder: Any) -> float | None:
    # The id comes from a record: only a plain hex key names a file (never a path).
    if not isinstance(calibration_id, str) or not re.fullmatch(r"[0-9a-f]{8,64}", calibration_id):
        return None
    if folder is None:
        from bigtrain.measure.calibration import calibration_dir

        folder = calibration_dir()
    from pathlib import Path

    path = Path(folder) / f"{calibration_id}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _positive(data.get("copy_bandwidth_bytes_per_s")) if isinstance(data, dict) else None


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def roofline(profile: CellProfile, ceilings: Ceilings | None = None) -> list[CategoryPoint]:
    """One point per category the cell spent time in, in category order."""
    ceilings = ceilings or ceilings_for(profile)
    size = element_bytes(profile.axes.get("precision"))
    sums: dict[str, list[float]] = {}
    for row in profile.ops:
        acc = sums.setdefault(row.category, [0.0, 0.0, 0.0])
        acc[0] += profile.op_time_us(row) / 1e6
        acc[1] += row.flops_per_step or 0.0
        acc[2] += shape_elements(row.input_shapes) * size * row.calls_per_step
    return [CategoryPoint(category=c, time_s_per_step=sums[c][0], flops_per_step=sums[c][1],
                          bytes_per_step=sums[c][2], ceilings=ceilings)
            for c in CATEGORIES if c in sums and sums[c][0] > 0]


def bound_summary(points: list[CategoryPoint]) -> Mapping[str, str]:
    """category -> compute-bound | memory-bound | unknown."""
    return {p.category: p.bound for p in points}
