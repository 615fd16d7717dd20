"""The docs' example dashboard: 20 synthetic commits made from real recorded cells.

Six fp32 cells of results/cpu-2vcpu-quick (mlp:small, cnn:tiny, transformer:tiny x sgd, adam;
batch norm off): at each commit every cell's recorded steps are resampled (bootstrap) with a 1%
run-to-run wander, and from commit 12 on transformer:tiny adam's steps are 10% longer (the
planted slowdown). Commit 5 is recorded from a dirty tree, commit 3 without git (placed by time).
These are not measured runs; see bigtrain/history/synthetic.py.

    PYTHONPATH=$PWD python bench/history_example/make_synthetic.py results/history-example
    bigbench history results/history-example -o site/history
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bigtrain.history.synthetic import write_history  # noqa: E402

CELLS = ("bead4e01a0e1", "0a3914c7d1b0", "14c006584dc0", "53b0048a28e0", "9e4c2d8a0a20",
         "cc05ba6704a2")
SLOWED = "cc05ba6704a2"  # transformer:tiny adam fp32


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/history-example")
    if out.exists():
        shutil.rmtree(out)
    write_history(REPO / "results" / "cpu-2vcpu-quick", out, commits=20, shift_at=12,
                  shift_pct=10.0, shifted_cells=[SLOWED], run_noise_pct=1.0, seed=27,
                  dirty_at=[5], no_commit_at=[3], only_cells=CELLS)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
