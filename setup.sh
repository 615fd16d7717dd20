#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtual environment in .venv with bigtrain installed
# (editable) and a torch build that fits the box.
#   bash setup.sh           # to run sweeps
#   bash setup.sh --test    # also the test tools (pytest, pytest-benchmark) and headless chromium
# Environment: PYTHON (default python3), TORCH_SPEC (default: torch==2.13.0 on a box without an
# NVIDIA GPU, which keeps CI and laptops on the small CPU build; plain `torch` where nvidia-smi
# answers, which brings a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
python=${PYTHON:-python3}

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [[ -z "${TORCH_SPEC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    TORCH_SPEC="torch"
  else
    TORCH_SPEC="torch==2.13.0"
  fi
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  "${pip[@]}" "$TORCH_SPEC"
fi

if (( want_test )); then
  "${pip[@]}" -e '.[test]'
  # The report's browser test renders index.html in Debian's chromium; install it when we can.
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
      && [[ $(id -u) == 0 ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      >/dev/null) || echo "setup.sh: could not install chromium; browser tests will be skipped" >&2
  fi
else
  "${pip[@]}" -e .
fi
echo "setup.sh: ready; run .venv/bin/bigbench --help" >&2
