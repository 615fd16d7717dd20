"""Synthetic multi-machine runs for the hardware-comparison tests of the report.

Records are copies of a real fixture record (real CPU measurements) with their throughput and step
times set to known numbers, so every speedup in the report can be computed here by hand: a cell's
items/s on a machine is its base rate times the machine's speed, times a per-family factor, times
a per-cell wobble. Manifests differ the way real machines do (GPUs, torch, threads, measure
settings). `hostile=True` puts markup into every text that reaches the report.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bigtrain.results.schema import Manifest, StepTimeStats
from bigtrain.results.store import RunWriter, load_run

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "cpu-2threads"

MODELS = ("mlp:small", "cnn:tiny", "transformer:tiny")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
PRECISIONS = ("fp32", "bf16")
BATCH_SIZES = (8, 16, 32, 64)
FAMILY_FACTOR = {"mlp": 0.5, "cnn": 2.0, "transformer": 4.0}
HOSTILE = '<script>alert(1)</script> </details> <img src=x onerror=alert(2)> | `tick` [a](http://x)'


@dataclass(frozen=True, kw_only=True)
class Machine:
    """One synthetic machine: its run id, environment and how fast it is against the CPU."""

    run_id: str
    speed: float
    gpu: str | None
    host: str
    cpu: str = "AMD EPYC"
    torch: str = "2.13.0+cpu"
    threads: int = 2
    warmup_s: float = 0.2
    #: cell indices that failed on this machine (unmatched on the other side)
    failed: frozenset[int] = frozenset()


THREE = (
    Machine(run_id="cpu-run", speed=1.0, gpu=None, host="vm", failed=frozenset({5})),
    Machine(run_id="h200-run", speed=100.0, gpu="NVIDIA H200", host="gpu-a", torch="2.13.0+cu128",
            threads=16, warmup_s=1.0, failed=frozenset({7, 20})),
    Machine(run_id="a100-run", speed=30.0, gpu="NVIDIA A100-SXM4-80GB", host="gpu-b",
            torch="2.13.0+cu128", threads=16, warmup_s=1.0),
)


def cells(count: int) -> list[tuple[str, str, str, int]]:
    """The first `count` (model, optimizer, precision, batch size) combinations."""
    return list(itertools.product(MODELS, OPTIMIZERS, PRECISIONS, BATCH_SIZES))[:count]


def wobble(index: int, machine: Machine) -> float:
    """A per-cell factor that gives the speedups a spread (none on the CPU baseline)."""
    return 1.0 if machine.gpu is None else (0.8, 1.0, 1.25)[index % 3]


def items_per_s(index: int, model: str, batch_size: int, machine: Machine) -> float:
    """The throughput written for a cell on a machine."""
    family = model.split(":")[0]
    return 10.0 * batch_size * machine.speed * FAMILY_FACTOR[family] * wobble(index, machine) \
        if machine.gpu else 10.0 * batch_size


def write_machines(root: Path, machines: Sequence[Machine] = THREE, count: int = 66,
                   hostile: bool = False) -> list[Path]:
    """Write one run folder per machine under `root`; return their paths in order."""
    fixture = load_run(FIXTURE)
    template = next(r for r in fixture.records if r.status == "ok" and len(r.step_times_s) >= 5)
    paths = []
    for machine in machines:
        run_id = f"{machine.run_id}{HOSTILE.replace('/', '-') if hostile else ''}"
        env: Mapping = {
            **fixture.manifest.environment,
            "host": machine.host + (HOSTILE if hostile else ""),
            "cpu_model": machine.cpu + (HOSTILE if hostile else ""),
            "gpus": [{"index": 0, "name": machine.gpu + (HOSTILE if hostile else "")}]
            if machine.gpu else [],
            "gpu_count": 1 if machine.gpu else 0,
            "torch_version": machine.torch,
            "cuda_version": "12.8" if machine.gpu else None,
            "driver_version": "570.86" if machine.gpu else None,
            "torch_num_threads": machine.threads,
        }
        spec = {**fixture.manifest.spec,
                "measure": {**fixture.manifest.spec.get("measure", {}),
                            "warmup_s": machine.warmup_s}}
        manifest = Manifest(**{**dataclasses.asdict(fixture.manifest), "run_id": run_id,
                               "environment": env, "spec": spec, "state": "complete"})
        path = root / machine.run_id
        with RunWriter(path) as writer:
            writer.write_manifest(manifest)
            for i, (model, opt, precision, batch_size) in enumerate(cells(count)):
                axes = dict(model=model + ("-" + HOSTILE if hostile and i == 0 else ""),
                            optimizer=opt, precision=precision, batch_norm="n/a",
                            batch_size=batch_size, device="cuda:0" if machine.gpu else "cpu")
                if i in machine.failed:
                    writer.append(dataclasses.replace(
                        template, **axes, run_id=run_id, cell_id=f"c{i}", status="error",
                        reason="synthetic failure" + (HOSTILE if hostile else ""),
                        step_time_s=None, step_times_s=(), items_per_s=None, phase_time_s=None))
                    continue
                rate = items_per_s(i, model, batch_size, machine)
                step_s = batch_size / rate
                steps = tuple(step_s * (1 + 0.01 * (k % 3 - 1)) for k in range(9))
                writer.append(dataclasses.replace(
                    template, **axes, run_id=run_id, cell_id=f"c{i}",
                    step_time_s=StepTimeStats.from_samples(steps), step_times_s=steps,
                    items_per_step=batch_size, items_per_s=rate))
        paths.append(path)
    return paths
