#!/usr/bin/env bash
# The whole GPU validation in one command, inside a hard deadline (issues 9, 22). On a lent
# H100/H200, as ONE device call (timeout_s 450; the budget table: --budget):
#
#   bash bench/gpu_validate.sh --device cuda --pack "$OUT"
#   bash bench/gpu_validate.sh --device cpu          # rehearsal of every step with toy models
#   bash bench/gpu_validate.sh --rebuild results/h100-validate-<time>.tar.gz   # offline, any box
#
# Needs no set-up: it runs on ${PYTHON:-python3} (or .venv/bin/python when that exists and PYTHON
# is unset) with the repository root on PYTHONPATH. Steps, most valuable first, each within its
# cap: nvidia-smi -q, calibration, GPT-2 small (AdamW foreach/fused x fp32/tf32/fp16/bf16), the
# Adam step alone (for-loop/foreach/fused) and the clock check on a planted fault, mlp:seed eager
# vs CUDA graph, ResNet-50 (SGD, BN on/off, bf16/fp16), bigbench vs a bare loop, telemetry
# overhead, the compiled GPT-2 model; then, in time left over, the quick preset, DDP world
# size 1, `bigbench profile` (issue 24) and `bigbench fit` (the largest batch of GPT-2 medium and Llama 1B, checkpointing off/on
# where the axis exists, fp32 vs bf16; `--only fit-gpt2-medium,fit-llama-1b` runs those alone).
# --pack writes ONE archive of the work folder plus verdict.txt/verdict.json into $OUT, within
# the device's return limits; the report against the CPU run is rebuilt offline
# (--rebuild). Exits 0 once the verdict is written. See bench/gpu_validate.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
  PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_validate.py "$@"
