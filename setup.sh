#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with bigtrain installed (editable) and a torch
# build that fits the box, online or offline.
#   bash setup.sh           # to run sweeps and converge runs (bigtrain + the converge extra)
#   bash setup.sh --test    # also the test tools (pytest, pytest-benchmark), the models extra
#                           # (torchvision, transformers: the tv:/hf: families), the docs extra
#                           # (MkDocs Material), the optimizers extra (Schedule-Free, Lion,
#                           # SOAP/Shampoo, 8-bit AdamW), the jax and tensorflow extras (CPU
#                           # builds: the framework axis's cells) and headless chromium
# Environment: PYTHON (default python3), TORCH_SPEC (default: torch==2.13.0 on a box without an
# NVIDIA GPU, which keeps CI and laptops on the small CPU build; plain `torch` where nvidia-smi
# answers, which brings a CUDA build), PIP_NO_INDEX=1 to force the offline path.
#
# When PYTHON already imports torch (a GPU box's prepared Python), .venv reuses it and everything
# else PYTHON has (--system-site-packages, plus a .pth for PYTHON's own site-packages when PYTHON
# is itself a venv), so nothing big is downloaded. When the package index cannot be reached,
# bigtrain is installed with --no-deps --no-build-isolation; if even that fails (e.g. no setuptools
# offline), the checkout is put on .venv's path with a .pth file and .venv/bin/bigbench is a small
# launcher. The last line printed says which of these happened.
set -euo pipefail
cd "$(dirname "$0")"
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
python=${PYTHON:-python3}
did=()

index_reachable() {
  [[ -n "${PIP_NO_INDEX:-}" && "${PIP_NO_INDEX}" != "0" && "${PIP_NO_INDEX,,}" != "false" ]] && return 1
  "$python" - <<'EOF' >/dev/null 2>&1
import os, sys, urllib.request
url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/pip/"
try:
    urllib.request.urlopen(url, timeout=5)
except Exception:
    sys.exit(1)
EOF
}

if "$python" -c "import torch" >/dev/null 2>&1; then
  base_torch=$("$python" -c "import torch; print(torch.__version__)")
else
  base_torch=""
fi

if [[ ! -x .venv/bin/python ]]; then
  venv_flags=()
  if [[ -n "$base_torch" ]]; then
    venv_flags=(--system-site-packages)
    did+=("reused torch $base_torch from $python")
  fi
  if ! "$python" -m venv ${venv_flags[@]+"${venv_flags[@]}"} .venv 2>/dev/null; then
    # No ensurepip (e.g. Debian without python3-venv): a venv without pip still runs bigbench.
    rm -rf .venv
    "$python" -m venv ${venv_flags[@]+"${venv_flags[@]}"} --without-pip .venv
    did+=("made .venv without pip (no ensurepip)")
  fi
fi
if [[ -n "$base_torch" ]] && ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # PYTHON is itself a venv: --system-site-packages reaches only its base interpreter, so name
  # PYTHON's own site-packages folders in a .pth (plain paths: their .pth files stay inert).
  venv_site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  "$python" -c "import site; print('\n'.join(site.getsitepackages()))" > "$venv_site/_bigtrain_base_python.pth"
fi

online=1
index_reachable || online=0
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [[ -z "${TORCH_SPEC:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    TORCH_SPEC="torch"
  else
    TORCH_SPEC="torch==2.13.0"
  fi
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if (( ! online )); then
    echo "setup.sh: error: $python has no torch and the package index cannot be reached;" \
         "run with PYTHON=<a python that imports torch>" >&2
    exit 1
  fi
  "${pip[@]}" "$TORCH_SPEC"
  did+=("installed $TORCH_SPEC")
fi

launcher_fallback() {
  # Make the checkout importable and give .venv a `bigbench` command without installing anything.
  local venv_site
  venv_site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$PWD" > "$venv_site/_bigtrain_checkout.pth"
  cat > .venv/bin/bigbench <<EOF
#!$PWD/.venv/bin/python
import sys
from bigtrain.cli import main
sys.exit(main())
EOF
  chmod +x .venv/bin/bigbench
}

if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  if (( ! online )) || [[ -n "$base_torch" ]]; then
    launcher_fallback
    did+=("no pip in .venv: put the checkout on .venv's path with a bigbench launcher")
  else
    echo "setup.sh: error: .venv has no pip and $python has no torch; install python3-venv" >&2
    exit 1
  fi
elif (( online )); then
  if (( want_test )); then
    # The `models` extra (tv:/hf: families) pins torchvision to torch 2.13's release: installed
    # beside that torch only, so it never swaps the venv's torch for another (CUDA) build.
    if [[ $(.venv/bin/python -c "import torch; print(torch.__version__)" 2>/dev/null) == 2.13.* ]]; then
      "${pip[@]}" -e '.[test,models,converge,ray,docs,optimizers,jax,tensorflow]'
      did+=("installed the models, optimizers, jax and tensorflow extras")
    else
      "${pip[@]}" -e '.[test,converge,ray,docs,optimizers,jax,tensorflow]'
      did+=("models extra not installed (pinned to torch 2.13): tv:/hf: tests skip")
    fi
    # The report's browser test renders index.html in Debian's chromium; install it when we can.
    if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [[ $(id -u) == 0 ]]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        >/dev/null) || echo "setup.sh: could not install chromium; browser tests will be skipped" >&2
    fi
  else
    # The converge extra (scikit-learn's bundled data sets, a few MB) belongs to the first
    # command: the README's tour runs `bigbench converge`, which has no task without it.
    "${pip[@]}" -e '.[converge]'
  fi
  did+=("installed bigtrain (editable)")
elif "${pip[@]}" --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1; then
  did+=("offline: installed bigtrain editable without dependencies")
else
  launcher_fallback
  did+=("offline, no build backend: put the checkout on .venv's path with a bigbench launcher")
fi
if (( ! online && want_test )); then
  did+=("test tools not installed (offline)")
fi

if ! missing=$(.venv/bin/python -c "import bigtrain.cli" 2>&1); then
  echo "setup.sh: error: .venv cannot import bigtrain: ${missing##*$'\n'}" >&2
  exit 1
fi
summary=$(IFS=';'; echo "${did[*]:-.venv already set up}")
echo "setup.sh: ready (${summary//;/; }); run .venv/bin/bigbench --help" >&2
