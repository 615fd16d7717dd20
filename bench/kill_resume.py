"""Kill -9 a real sweep at random moments, resume each time, and check nothing is lost or doubled.

Each trial starts a sweep of a small preset, kills the main process with SIGKILL at a random
moment (several times), resumes until it completes, and then checks that the run holds each cell
exactly once and that every line of cells.jsonl parses (a truncated tail is set aside with a
warning and is allowed). Prints how many kills the runs survived.

    .venv/bin/python bench/kill_resume.py --trials 10 --kills 3
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME, load_run  # noqa: E402
from bigtrain.cells.spec import preset_toml  # noqa: E402

PRESET = preset_toml(
    description="kill/resume benchmark",
    model=["mlp:seed", "mlp:small", "cnn:tiny", "rnn:lstm-tiny", "transformer:tiny"],
    optimizer=["sgd", "adam"],
    measure={"warmup_s": 0.05, "duration_s": 0.2, "min_steps": 5, "repeats": 1,
             "cell_timeout_s": 120},
)
EXPECTED_CELLS = 10


def sweep(preset: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bigtrain.cli", "sweep", "--preset", str(preset), "--out",
         str(out), "--no-report", *args],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def trial(rng: random.Random, kills: int, workdir: Path, index: int) -> tuple[int, bool, str]:
    """Returns (kills delivered, passed, note)."""
    preset = workdir / "kill.toml"
    preset.write_text(PRESET)
    run_id = f"trial{index}"
    run_dir = workdir / run_id
    delivered = 0
    args: tuple[str, ...] = ("--run-id", run_id)
    for _ in range(kills):
        process = sweep(preset, workdir, *args)
        time.sleep(rng.uniform(0.5, 8.0))
        if process.poll() is None:
            process.kill()
            delivered += 1
        process.wait()
        if (run_dir / MANIFEST_NAME).exists():
            args = ("--resume", run_id)
        elif run_dir.exists():
            return delivered, False, "run folder without a manifest"
    final = sweep(preset, workdir, *args)
    if final.wait(timeout=600) != 0:
        return delivered, False, f"final sweep exited {final.returncode}"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        run = load_run(run_dir)
    ids = [r.cell_id for r in run.history]
    lines = (run_dir / CELLS_NAME).read_text().splitlines()
    parsed = 0
    for line in lines:
        try:
            json.loads(line)
            parsed += 1
        except json.JSONDecodeError:
            pass
    ok = (len(ids) == len(set(ids)) == EXPECTED_CELLS and run.manifest.state == "complete"
          and parsed == len(ids) and len(lines) - parsed == len(run.truncated_lines))
    return delivered, ok, f"{len(ids)} records, {len(set(ids))} distinct, {len(run.truncated_lines)} truncated"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 attempts per trial")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total_kills, passed = 0, 0
    with tempfile.TemporaryDirectory(prefix="bigtrain-kill-") as tmp:
        for index in range(args.trials):
            delivered, ok, note = trial(rng, args.kills, Path(tmp), index)
            total_kills += delivered
            passed += ok
            print(f"trial {index}: {delivered} kills, {'ok' if ok else 'FAILED'} ({note})", flush=True)
    print(f"{passed}/{args.trials} trials intact after {total_kills} kill -9s in total")
    return 0 if passed == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
