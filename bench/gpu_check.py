"""Plausibility check of a GPU run's hardware telemetry, FLOPs and MFU (used by bench/gpu_check.sh).

    python bench/gpu_check.py results/<run_id> [--energy-tolerance 0.10]

For every ok cell on a CUDA device it checks that utilization, SM activity (GPM), power, energy and
MFU are present and plausible, that the energy counter's steps were timed (`energy_method`
tick_aligned) and that its energy agrees with mean power x window within the tolerance. Prints one line per cell with the quoted numbers, then every problem found; exits 1
if there are problems, 2 if the run cannot be read. Pure Python: no torch, no NVML.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ENERGY_TOLERANCE = 0.10


def _pct_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and 0 < value <= 100


def check_record(record: Mapping[str, Any], *, energy_tolerance: float = ENERGY_TOLERANCE,
                 power_limit_w: float | None = None) -> list[str]:
    """Problems with one ok GPU record (a `cells.jsonl` object); [] when everything is plausible."""
    problems: list[str] = []
    telemetry = record.get("telemetry")
    if not telemetry:
        return [f"no telemetry: {record.get('telemetry_reason')}"]
    if telemetry.get("valid") is not True:
        problems.append(f"telemetry not valid: {telemetry.get('invalid_reason')}")
    unsupported = telemetry.get("unsupported") or {}
    for field in ("util_mean_pct", "sm_active_pct"):
        if not _pct_ok(telemetry.get(field)):
            why = unsupported.get(field, "")
            problems.append(f"{field} = {telemetry.get(field)!r} is not in (0, 100] {why}".rstrip())
    power = telemetry.get("power_mean_w")
    if not (isinstance(power, (int, float)) and power > 0):
        problems.append(f"power_mean_w = {power!r} is not positive {unsupported.get('power_mean_w', '')}".rstrip())
    elif power_limit_w and power > 1.1 * power_limit_w:
        problems.append(f"power_mean_w {power:.0f} W is above the {power_limit_w:.0f} W power limit")
    energy = telemetry.get("energy_j")
    window = telemetry.get("window_s") or record.get("window_s")
    if not (isinstance(energy, (int, float)) and energy > 0):
        problems.append(f"energy_j = {energy!r} is not positive {unsupported.get('energy_j', '')}".rstrip())
    elif telemetry.get("energy_method") != "tick_aligned":
        # On a GPU whose counter steps every ~100 ms the steps should always be timed (issue 9).
        problems.append(f"energy_method = {telemetry.get('energy_method')!r}, not tick_aligned: "
                        "the energy counter's steps were not timed")
    if isinstance(energy, (int, float)) and energy > 0 and isinstance(power, (int, float)) and power > 0 and window:
        expected = power * window
        error = abs(energy - expected) / expected
        if error > energy_tolerance:
            problems.append(
                f"energy {energy:.1f} J differs from mean power x window {expected:.1f} J "
                f"by {100 * error:.1f}% (> {100 * energy_tolerance:.0f}%)"
            )
    flops = record.get("flops_per_step")
    if not (isinstance(flops, (int, float)) and flops > 0):
        problems.append(f"flops_per_step = {flops!r} is not positive")
    mfu = record.get("mfu_pct")
    if not _pct_ok(mfu):
        reasons = record.get("hardware_reasons") or {}
        problems.append(f"mfu_pct = {mfu!r} is not in (0, 100] {reasons.get('mfu_pct', '')}".rstrip())
    return problems


def summary_line(record: Mapping[str, Any]) -> str:
    """The numbers worth quoting for one cell."""
    t = record.get("telemetry") or {}

    def fmt(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else "null"

    power, window = t.get("power_mean_w"), t.get("window_s") or record.get("window_s")
    expected = power * window if isinstance(power, (int, float)) and window else None
    return (
        f"{record['model']:<24} {record['precision']:<5} "
        f"util {fmt(t.get('util_mean_pct'), '.0f')}% sm {fmt(t.get('sm_active_pct'), '.0f')}% "
        f"tensor {fmt(t.get('tensor_active_pct'), '.0f')}% power {fmt(power, '.0f')} W "
        f"energy {fmt(t.get('energy_j'), '.1f')} J (power x window {fmt(expected, '.1f')} J) "
        f"[{t.get('energy_method')} ±{fmt(t.get('energy_uncertainty_j'), '.1f')} J] "
        f"window {fmt(window, '.2f')} s J/step {fmt(t.get('joules_per_step'), '.2f')} "
        f"TFLOP/s {fmt(record.get('achieved_tflops'), '.1f')} MFU {fmt(record.get('mfu_pct'), '.1f')}% "
        f"of-measured {fmt(record.get('pct_of_measured_peak'), '.1f')}%"
    )


def check_records(records: Sequence[Mapping[str, Any]], *, energy_tolerance: float = ENERGY_TOLERANCE,
                  power_limits_w: Mapping[str, float] | None = None) -> tuple[list[str], list[str]]:
    """(summary lines, problems) over every ok CUDA record; a run without one is a problem."""
    lines: list[str] = []
    problems: list[str] = []
    gpu_records = [r for r in records if str(r.get("device", "")).startswith("cuda")]
    if not gpu_records:
        problems.append("no cells on a CUDA device in this run")
    for record in gpu_records:
        label = f"{record.get('cell_id')} {record.get('model')} {record.get('precision')}"
        if record.get("status") != "ok":
            problems.append(f"{label}: status {record.get('status')}: {record.get('reason')}")
            continue
        lines.append(summary_line(record))
        limit = (power_limits_w or {}).get(str(record.get("device_name")))
        for problem in check_record(record, energy_tolerance=energy_tolerance, power_limit_w=limit):
            problems.append(f"{label}: {problem}")
    return lines, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--energy-tolerance", type=float, default=ENERGY_TOLERANCE)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bigtrain.results.store import load_run

    try:
        run = load_run(args.run_dir)
    except Exception as exc:
        print(f"gpu_check: cannot read {args.run_dir}: {exc}", file=sys.stderr)
        return 2
    limits = {g.get("name"): g.get("power_limit_w") for g in run.manifest.environment.get("gpus", [])
              if g.get("power_limit_w")}
    lines, problems = check_records([r.to_json() for r in run.records],
                                    energy_tolerance=args.energy_tolerance, power_limits_w=limits)
    for line in lines:
        print(line)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"gpu_check: {len(lines)} GPU cell(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
