#!/usr/bin/env bash
# bigtrain against another torch than the shared venv's (issue 22): the lent GPU's Python has
# torch 2.11+cu130, the suite runs on 2.13. This makes a second venv with that torch (the same
# PyPI build the device has; on a box without a GPU it runs on the CPU) and the core deps, then
# runs the torch-facing tests and the CPU rehearsal of bench/gpu_validate.sh in it.
#
#   bash bench/torch_compat.sh                       # torch 2.11.0, Python 3.12, .venv-torch211
#   TORCH_VERSION=2.12.0 VENV=/tmp/v212 bash bench/torch_compat.sh
#   bash bench/torch_compat.sh --tests-only          # skip the ~6 min rehearsal
#
# Environment: TORCH_VERSION (default 2.11.0), VENV (default .venv-torch<version digits>, git-ignored),
# PYTHON (default python3.12 where it exists, else python3). Reuses an existing VENV. The PyPI
# wheel pulls its CUDA libraries (~3 GB on disk); pip's own index settings apply (offline: a
# wheel directory in PIP_FIND_LINKS). Exit status: that of the tests, then of the rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_version=${TORCH_VERSION:-2.11.0}
venv=${VENV:-.venv-torch$(echo "$torch_version" | cut -d. -f1,2 | tr -d .)}
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=$(command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'import sys' 2>/dev/null && echo python3.12 || echo python3)
fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$PYTHON" -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
  "$py" -m pip install --progress-bar off "torch==$torch_version"
fi
"$py" -m pip install --progress-bar off -q click rich psutil nvidia-ml-py pandas seaborn jinja2 scipy \
  pyarrow pytest pytest-benchmark
"$py" -c "import torch, sys; print(f'torch {torch.__version__} on Python {sys.version.split()[0]}, CUDA available: {torch.cuda.is_available()}')"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The torch-facing parts: workloads, the step loop and its protocols, FLOPs, precision, optimizers,
# compile, CUDA-graph refusals, calibration, DDP on gloo, telemetry on the fake NVML, the
# measuring side's records. (The analysing side imports no torch.)
tests=(tests/test_workloads.py tests/test_model_families.py tests/test_workload_contract.py
       tests/test_flops.py tests/test_protocols.py tests/test_calibration.py tests/test_cuda_graphs.py
       tests/test_records.py tests/test_telemetry.py tests/test_telemetry_energy.py
       tests/test_telemetry_instant_power.py tests/test_isolation.py tests/test_ddp.py
       tests/test_gpu_validate.py)
status=0
"$py" -m pytest -q -p no:cacheprovider -m "not slow" "${tests[@]}" || status=$?
if [[ "${1:-}" != "--tests-only" ]]; then
  out=$(mktemp -d)
  PYTHON="$py" bash bench/gpu_validate.sh --device cpu --out "$out/work" --pack "$out/OUT" \
    || { rc=$?; [[ $status -ne 0 ]] || status=$rc; }
  echo "torch_compat: rehearsal folder $out"
fi
exit $status
