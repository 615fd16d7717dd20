#!/usr/bin/env bash
# The whole GPU validation in one command, inside a hard deadline (issue 9). On the lent H200:
#
#   bash bench/gpu_validate.sh --device cuda --deadline-s 480 --out "$OUT/h200-validate"
#   bash bench/gpu_validate.sh --device cpu      # rehearsal of every step with toy models (~1.5 min)
#
# Needs no set-up: it runs on ${PYTHON:-python3} (or .venv/bin/python when that exists and PYTHON
# is unset) with the repository root on PYTHONPATH. Steps, most valuable first: nvidia-smi -q,
# bigbench env, calibration, GPT-2 small (AdamW foreach/fused x fp32/tf32/fp16/bf16, batch 16 x
# 1024 tokens), ResNet-50 (SGD, BN on/off, bf16/fp16, batch 256, channels_last), the quick preset
# (pairs with results/cpu-2vcpu-quick), bigbench vs a bare loop, telemetry on/off overhead, a
# compiled-optimizer cell, and the report against the CPU run. Writes verdict.json and
# verdict.txt into --out; exits 0 once the verdict is written. See bench/gpu_validate.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
  PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_validate.py "$@"
