"""Print the headline figures of a `gpu` preset run (the sweep issue's GPU check).

    python3 -m bigtrain.cli sweep --preset gpu --run-id h200-gpu --no-report
    python3 bench/gpu_figures.py results/h200-gpu

Prints tokens/s of transformer:gpt2-small bf16 AdamW (fused) and images/s of cnn:resnet50 bf16
SGD with batch norm on and off, plus every cell that did not finish ok. Exit 1 if a headline
cell is missing or not ok.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bigtrain.results.store import load_run  # noqa: E402

HEADLINES = [
    ("transformer:gpt2-small bf16 AdamW (fused)",
     {"model": "transformer:gpt2-small", "precision": "bf16", "optimizer": "adamw", "impl": "fused"}),
    ("cnn:resnet50 bf16 SGD, BN on",
     {"model": "cnn:resnet50", "precision": "bf16", "optimizer": "sgd", "batch_norm": "on"}),
    ("cnn:resnet50 bf16 SGD, BN off",
     {"model": "cnn:resnet50", "precision": "bf16", "optimizer": "sgd", "batch_norm": "off"}),
]


def headline_lines(run_dir: Path) -> tuple[list[str], bool]:
    """The headline lines for a run folder, and whether all of them were found ok."""
    run = load_run(run_dir)
    lines, complete = [], True
    for label, axes in HEADLINES:
        matches = [r for r in run.records
                   if all(getattr(r, k) == v for k, v in axes.items()) and r.status == "ok"]
        if not matches:
            lines.append(f"{label}: no ok cell")
            complete = False
            continue
        best = max(matches, key=lambda r: r.items_per_s)  # foreach/fused variants: the fastest
        mfu = f", MFU {best.mfu_pct:.1f}%" if best.mfu_pct is not None else ""
        lines.append(f"{label}: {best.items_per_s:,.0f} {best.item_unit}/s "
                     f"(impl {best.impl}, median step {best.step_time_s.median * 1e3:.1f} ms{mfu})")
    for record in run.records:
        if record.status != "ok":
            lines.append(f"not ok: {record.model} {record.optimizer}/{record.impl} "
                         f"{record.precision} bn={record.batch_norm}: {record.status}: {record.reason}")
    return lines, complete


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found, complete = headline_lines(Path(sys.argv[1]))
    print("\n".join(found))
    sys.exit(0 if complete else 1)
