"""Synthetic converge runs for the time-to-target report, written through the real store.

Each record is a copy of a real fixture record (real CPU step-time measurements) with the converge
fields of the record contract filled from seeded synthetic curves whose numbers are known here: the
held-out accuracy of a setting rises as `ceiling * (1 - exp(-step / tau))`, evaluated every
`EVAL_EVERY` steps until it first reaches the target or the step budget runs out. `tau` depends on
the optimizer, batch norm and the seed; the step time on the optimizer and batch norm. So every
steps-, seconds- and energy-to-target number of the report can be recomputed by hand from
`seed_outcome`.

Settings with a known fate: SGD without batch norm on the CNN plateaus below the target in every
seed (`not_reached`); RMSprop on the MLP at the high learning rate diverges in seed 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bigtrain.results.schema import Manifest
from bigtrain.results.store import RunWriter, load_run

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "cpu-2threads"

MODELS = ("mlp:digits", "cnn:digits")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
BATCH_NORMS = ("on", "off")
SEEDS = (0, 1, 2)
TARGET = 0.9
EVAL_EVERY = 10
MAX_STEPS = 300
LR = {"sgd": 0.1, "adam": 0.001, "rmsprop": 0.001}
BASE_TAU = {"sgd": 60.0, "adam": 25.0, "rmsprop": 35.0}
STEP_S = {"sgd": 0.010, "adam": 0.016, "rmsprop": 0.012}
HOSTILE = '<script>alert(1)</script> | `tick` [a](http://x) [bold]x[/bold] $\\alpha$ </details>'


@dataclass(frozen=True, kw_only=True)
class SeedOutcome:
    """What one seed of one setting did: its curve and, if reached, steps/seconds to target."""

    status: str
    steps: list[float]
    metric: list[float]
    wall_s: list[float]
    steps_to_target: int | None
    time_to_target_s: float | None
    best: float


def ceiling(model: str, optimizer: str, batch_norm: str) -> float:
    """The accuracy a setting levels off at: SGD without BN on the CNN stops short of the target."""
    return 0.85 if (model == "cnn:digits" and optimizer == "sgd" and batch_norm == "off") else 0.99


def step_s(optimizer: str, batch_norm: str) -> float:
    """Seconds per step: batch norm costs 20% per step."""
    return STEP_S[optimizer] * (1.2 if batch_norm == "on" else 1.0)


def seed_outcome(model: str, optimizer: str, batch_norm: str, seed: int,
                 diverge: bool = False) -> SeedOutcome:
    """The curve of one seed and when it first reached TARGET (None if it never did)."""
    tau = BASE_TAU[optimizer] * (0.6 if batch_norm == "on" else 1.0) * (1 + 0.15 * seed)
    top = ceiling(model, optimizer, batch_norm)
    steps, metric, wall = [], [], []
    for step in range(EVAL_EVERY, MAX_STEPS + 1, EVAL_EVERY):
        value = top * (1 - math.exp(-step / tau))
        steps.append(float(step))
        metric.append(value)
        wall.append(step * step_s(optimizer, batch_norm))
        if diverge and step >= 3 * EVAL_EVERY:
            return SeedOutcome(status="diverged", steps=steps, metric=metric, wall_s=wall,
                               steps_to_target=None, time_to_target_s=None, best=max(metric))
        if value >= TARGET:
            return SeedOutcome(status="ok", steps=steps, metric=metric, wall_s=wall,
                               steps_to_target=step, time_to_target_s=wall[-1], best=max(metric))
    return SeedOutcome(status="not_reached", steps=steps, metric=metric, wall_s=wall,
                       steps_to_target=None, time_to_target_s=None, best=max(metric))


def settings(lrs: Sequence[str] = ("default",)) -> list[tuple[str, str, str, float]]:
    """(model, optimizer, batch norm, lr) of every setting; the MLP's RMSprop also at lr 0.01."""
    out = []
    for model in MODELS:
        for optimizer in OPTIMIZERS:
            for batch_norm in BATCH_NORMS:
                out.append((model, optimizer, batch_norm, LR[optimizer]))
    out.append(("mlp:digits", "rmsprop", "off", 0.01))
    return out


def diverges(model: str, optimizer: str, lr: float, seed: int) -> bool:
    """RMSprop on the MLP at lr 0.01 diverges in seed 1."""
    return model == "mlp:digits" and optimizer == "rmsprop" and lr == 0.01 and seed == 1


def write_converge_run(root: Path, run_id: str = "converge-cpu", hostile: bool = False,
                       energy_per_s_w: float | None = None, lr_axis: bool = False) -> Path:
    """Write a converge run folder (manifest + cells.jsonl via RunWriter) and return its path.

    `energy_per_s_w` fills energy_to_target_j as that many watts times time to target (a GPU run);
    None leaves it null (a CPU run). `hostile=True` puts markup into reasons and metric names.
    `lr_axis=True` writes each lr as the `lr` axis too (as `bigbench converge --lr` does) instead
    of `default`.
    """
    fixture = load_run(FIXTURE)
    template = next(r for r in fixture.records if r.status == "ok" and len(r.step_times_s) >= 5)
    manifest = Manifest(**{**dataclasses.asdict(fixture.manifest), "run_id": run_id,
                           "state": "complete"})
    path = root / run_id
    metric_name = "accuracy" + (HOSTILE if hostile else "")
    with RunWriter(path) as writer:
        writer.write_manifest(manifest)
        for index, (model, optimizer, batch_norm, lr) in enumerate(settings()):
            for seed in SEEDS:
                out = seed_outcome(model, optimizer, batch_norm, seed,
                                   diverge=diverges(model, optimizer, lr, seed))
                losses = [1.0 - m for m in out.metric]
                reason = None
                if out.status == "not_reached":
                    reason = (f"best {metric_name} {out.best:.3f} < target {TARGET} within the "
                              f"budget of {MAX_STEPS} steps" + (HOSTILE if hostile else ""))
                elif out.status == "diverged":
                    reason = "loss became NaN at step 30" + (HOSTILE if hostile else "")
                energy = (None if energy_per_s_w is None or out.time_to_target_s is None
                          else energy_per_s_w * out.time_to_target_s)
                writer.append(dataclasses.replace(
                    template, run_id=run_id, cell_id=f"conv{index}", repeat=seed,
                    model=model, optimizer=optimizer, batch_norm=batch_norm, precision="fp32",
                    device="cpu", batch_size=64, status=out.status, reason=reason,
                    lr=repr(float(lr)) if lr_axis else "default",
                    protocol="converge", seed=seed, lr_used=lr, target_metric=metric_name,
                    target_value=TARGET, target_direction="max",
                    steps_to_target=out.steps_to_target, time_to_target_s=out.time_to_target_s,
                    energy_to_target_j=energy,
                    data_time_s=None if out.time_to_target_s is None else 0.1 * out.time_to_target_s,
                    eval_time_s=0.01 * len(out.steps), best_value=out.best,
                    final_value=out.metric[-1], final_eval_loss=losses[-1],
                    curve={"step": out.steps, "wall_s": out.wall_s,
                           "train_loss": [x * 0.9 for x in losses], "eval_loss": losses,
                           "eval_metric": out.metric},
                ))
    return path
