#!/usr/bin/env bash
# GPU check for hardware telemetry, FLOPs and MFU (issue 4). Run on a machine with an NVIDIA GPU
# (written for a lent H200) from anywhere; it works in the repository root:
#
#   bash bench/gpu_check.sh                 # sweep + calibrate + plausibility check
#   RUN_ID=h200-check DURATION=5 bash bench/gpu_check.sh
#
# 1. `bigbench calibrate` on the GPU (stored in $BIGTRAIN_CALIBRATION_DIR, copied into the run);
# 2. a short sweep: transformer:gpt2-small and cnn:resnet50, AdamW, bf16 and fp32, into results/;
# 3. bench/gpu_check.py: utilization, SM activity, power, energy and MFU present and plausible,
#    energy within 10% of mean power x window. Exit status: that of the check (0 all plausible).
#
# About 2-4 minutes on an H200 (4 cells of ~2 s warm-up + DURATION s window, plus model build and
# one FLOP-counting step each, and ~20 s of calibration).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
BIGBENCH=${BIGBENCH:-.venv/bin/bigbench}
OUT=${OUT:-results}
RUN_ID=${RUN_ID:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
DEVICE=${DEVICE:-cuda:0}
DURATION=${DURATION:-5}   # long enough for the energy counter (100 ms steps) and 1 s power averaging
WARMUP=${WARMUP:-2}
export BIGTRAIN_CALIBRATION_DIR=${BIGTRAIN_CALIBRATION_DIR:-$HOME/.cache/bigtrain/calibration}

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv || true

echo "== calibrate $DEVICE"
CAL_JSON=$(mktemp)
"$BIGBENCH" calibrate --device "$DEVICE" --json > "$CAL_JSON"
"$PY" - "$CAL_JSON" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
for p, v in c["matmul_tflops"].items():
    print(f"  matmul {p}: {v:.1f} TFLOP/s")
bw = c["copy_bandwidth_bytes_per_s"]
print(f"  copy: {bw / 1e9:.0f} GB/s (read + write)" if bw else "  copy: null")
EOF

echo "== sweep $RUN_ID"
set +e
"$BIGBENCH" sweep \
  --model transformer:gpt2-small,cnn:resnet50 --optimizer adamw --impl foreach --batch-norm on \
  --precision bf16,fp32 --device "$DEVICE" --warmup "$WARMUP" --duration "$DURATION" \
  --out "$OUT" --run-id "$RUN_ID" --no-report
sweep_status=$?
set -e
cp "$CAL_JSON" "$OUT/$RUN_ID/calibration.json" 2>/dev/null || true
rm -f "$CAL_JSON"
echo "sweep exit status: $sweep_status"

echo "== check $OUT/$RUN_ID"
"$PY" bench/gpu_check.py "$OUT/$RUN_ID"
