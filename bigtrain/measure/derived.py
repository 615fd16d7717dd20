"""Numbers derived after a cell's window: achieved TFLOP/s, MFU, percent of measured peak, and the
optimizer step against its memory-bandwidth floor.

Pure arithmetic over what was measured; nothing here touches the device. The keys returned by
`hardware_metrics` are CellRecord fields, so the step loop can merge them with dataclasses.replace.
"""

from __future__ import annotations

from typing import Any

from bigtrain.measure.calibration import Calibration
from bigtrain.measure.peaks import lookup_peak

PARAM_BYTES = 4  # autocast keeps parameters, gradients and optimizer state in fp32

#: Tensors of parameter size an optimizer step must read and write, for bigtrain's registered
#: optimizers with their registry hyper-parameters (see bigtrain/training/optim.py):
#:   sgd (momentum 0.9): read param, grad, momentum; write param, momentum
#:   adam / adamw: read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
#:   rmsprop (no momentum, not centred): read param, grad, square_avg; write param, square_avg
OPTIMIZER_TENSOR_TRAFFIC: dict[str, tuple[int, int]] = {
    "sgd": (3, 2),
    "adam": (4, 3),
    "adamw": (4, 3),
    "rmsprop": (3, 2),
}


def optimizer_bytes_per_param(optimizer: str, param_bytes: int = PARAM_BYTES) -> int | None:
    """Bytes one parameter costs the optimizer step in memory traffic; None if unknown."""
    traffic = OPTIMIZER_TENSOR_TRAFFIC.get(optimizer)
    if traffic is None:
        return None
    reads, writes = traffic
    return (reads + writes) * param_bytes


def hardware_metrics(
    *,
    device_name: str | None,
    precision: str,
    optimizer: str,
    param_count: int,
    flops_per_step: float | None,
    median_step_s: float,
    optimizer_phase_s: float | None,
    calibration: Calibration | None,
) -> dict[str, Any]:
    """CellRecord fields from FLOPs, the peak table and this machine's calibration.

    Every key is always present; a value that cannot be known is None and `hardware_reasons`
    says why (keyed by field).
    """
    reasons: dict[str, str] = {}
    achieved_tflops = None
    if flops_per_step is None:
        reasons["achieved_tflops"] = "FLOPs per step were not counted"
    elif not median_step_s > 0:
        reasons["achieved_tflops"] = "no positive median step time"
    else:
        achieved_tflops = flops_per_step / median_step_s / 1e12

    peak = lookup_peak(device_name, precision)
    mfu_pct = None
    if peak is None:
        reasons["mfu_pct"] = (
            f"no datasheet peak for {device_name or 'this device'!s} in {precision}"
        )
    elif achieved_tflops is None:
        reasons["mfu_pct"] = reasons["achieved_tflops"]
    else:
        mfu_pct = 100.0 * achieved_tflops / peak.tflops

    measured_peak = calibration.matmul_tflops.get(precision) if calibration is not None else None
    pct_of_measured_peak = None
    if measured_peak is None:
        reasons["pct_of_measured_peak"] = (
            "no calibration for this machine (run `bigbench calibrate`)"
            if calibration is None
            else f"the calibration has no {precision} matmul rate"
        )
    elif achieved_tflops is None:
        reasons["pct_of_measured_peak"] = reasons["achieved_tflops"]
    else:
        pct_of_measured_peak = 100.0 * achieved_tflops / measured_peak

    per_param = optimizer_bytes_per_param(optimizer)
    optimizer_bytes = per_param * param_count if per_param is not None and param_count else None
    bandwidth = calibration.copy_bandwidth_bytes_per_s if calibration is not None else None
    optimizer_floor_s = None
    optimizer_floor_ratio = None
    if optimizer_bytes is None:
        reasons["optimizer_floor_s"] = f"no memory-traffic model for optimizer {optimizer!r}"
    elif not bandwidth:
        reasons["optimizer_floor_s"] = "no measured copy bandwidth (run `bigbench calibrate`)"
    else:
        optimizer_floor_s = optimizer_bytes / bandwidth
        if optimizer_phase_s is not None and optimizer_phase_s > 0:
            # how many times slower than bandwidth allows the measured optimizer phase is
            optimizer_floor_ratio = optimizer_phase_s / optimizer_floor_s
        else:
            reasons["optimizer_floor_ratio"] = "the optimizer phase was not timed"

    return {
        "achieved_tflops": achieved_tflops,
        "mfu_pct": mfu_pct,
        "mfu_peak_tflops": peak.tflops if peak is not None else None,
        "mfu_peak_source": f"{peak.matched_name} {precision}: {peak.source}" if peak is not None else None,
        "measured_peak_tflops": measured_peak,
        "pct_of_measured_peak": pct_of_measured_peak,
        "optimizer_bytes_per_step": optimizer_bytes,
        "optimizer_floor_s": optimizer_floor_s,
        "optimizer_floor_ratio": optimizer_floor_ratio,
        "calibration_id": calibration.fingerprint_key if calibration is not None else None,
        "hardware_reasons": reasons or None,
    }
