#!/usr/bin/env bash
# The docs' example history: 20 genuine commits, a real sweep of a small matrix at each, and a
# real slowdown committed at commit 12 (sgd-planted's step gains one extra pass over the
# parameters, planted_plugin.py). The commits are made in a throwaway clone of this repository
# (empty commits, plus the one that plants the slowdown), so every run records a real commit,
# its time and a clean tree. adam is the control: nothing changes for it.
#   bash bench/history_example/make_history.sh [WORKDIR]      (~5 minutes on 2 busy cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/bigbench-history-example}
python=${PYTHON:-$repo/.venv/bin/python}
rm -rf "$work"
mkdir -p "$work"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
gitc=(git -c user.name=bigbench-example -c user.email=example@invalid)
for i in $(seq 0 19); do
  if [ "$i" -eq 12 ]; then
    sed -i 's/^EXTRA_PASSES = 0$/EXTRA_PASSES = 1/' bench/history_example/planted_plugin.py
    "${gitc[@]}" commit -q -am "sgd-planted: one extra pass over the parameters per step (the planted slowdown)"
  else
    "${gitc[@]}" commit -q --allow-empty -m "example commit $i (no change)"
  fi
  PYTHONPATH="$PWD:$PWD/bench/history_example" BIGTRAIN_PLUGINS=planted_plugin \
    "$python" -m bigtrain sweep --model mlp:small --optimizer sgd-planted,adam --impl foreach \
    --batch-norm off --precision fp32 --device cpu --warmup 0.2 --duration 1 --repeats 1 \
    --out "$work/runs" --run-id "example-$(printf %02d "$i")" --no-report > "$work/sweep-$i.log" 2>&1
done
cd "$repo"
PYTHONPATH="$repo" "$python" -m bigtrain history "$work/runs" -o "$work/dashboard" \
  --markdown "$work/history.md" --json "$work/history.json" || true
