"""One data-parallel cell through DistributedDataParallel with world size 1: NCCL on a GPU, gloo
on the CPU (bench/gpu_validate.py's `ddp` step; a lent machine may have a single GPU).

    python3 bench/ddp_check.py --device cuda:0 --json out/ddp_world_size_1.json

Runs mlp:small (SGD, fp32, batch norm on) as one DDP rank spawned the way a world_size N cell
spawns its ranks (bigtrain.run.distributed), writes the record as JSON, and exits 0 when the cell
measured ok, 1 otherwise (the record says why), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    """Run the cell, write its record, say how it ended."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="cuda:0 (NCCL) or cpu (gloo)")
    parser.add_argument("--json", type=Path, required=True, help="where the record goes")
    parser.add_argument("--duration", type=float, default=1.0, help="window seconds")
    args = parser.parse_args(argv)

    from bigtrain.cells.matrix import DeviceInventory, expand
    from bigtrain.cells.settings import StepTimeSettings
    from bigtrain.run.job import CellJob
    from bigtrain.run.distributed import run_distributed_cell
    from bigtrain.cells.spec import spec_from_preset

    spec = spec_from_preset("ci", {"model": "mlp:small", "optimizer": "sgd", "precision": "fp32",
                                   "batch_norm": "on", "device": args.device})
    cell = expand(spec, DeviceInventory.detect())[0]
    if cell.status != "pending":
        print(f"ddp check: {cell.status}: {cell.reason}")
        return 1
    job = CellJob(run_id="ddp-check", cell=cell, repeat=0, device=args.device, timeout_s=120,
                  settings=StepTimeSettings(warmup_s=0.2, duration_s=args.duration, min_steps=10))
    record = run_distributed_cell(job, world_size=1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record.to_json(), indent=1), encoding="utf-8")
    median = f"{record.step_time_s.median * 1e3:.3f} ms" if record.step_time_s else "-"
    print(f"ddp check: {record.status} ({record.dist_backend}, world size 1): step {median}, "
          f"communication share {record.comm_share_pct}; {record.reason or ''}")
    return 0 if record.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
