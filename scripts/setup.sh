#!/usr/bin/env bash
# Create .venv with the right torch for this machine, then install nas with its test extras.
# CPU machines get the CPU wheel of torch 2.13.0; with a GPU (nvidia-smi present) pip's default CUDA build is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.2"
  else
    # On CPU-only machines pin the release whose CPU wheel is provided (a range would pull a CUDA build).
    python -m pip install -q "torch==2.13.0"
  fi
fi
python -m pip install -q -e ".[dev]"
