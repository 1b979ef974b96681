#!/usr/bin/env bash
# Interoperability with timm and torchvision, in a side environment (.venv-interop) that never touches .venv.
#
# PyPI's torchvision does not import beside the CPU torch of .venv, so this sets up, once, a separate venv with
# torch 2.14.1 + torchvision 0.29.1 (a CUDA build, about 5.5 GB) and timm, then:
#   1. runs tests/interop: named points and exported zoo entries through timm.create_model with their config;
#   2. regenerates every golden file entry whose reference is a torchvision or timm model with
#      scripts/golden_reference.py (into a scratch copy) and checks it is unchanged; entries measured on other
#      repositories' code are kept as recorded.
# Usage: bash scripts/timm_interop.sh [--setup-only]     (INTEROP_VENV=DIR puts the venv elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${INTEROP_VENV:-.venv-interop}
PY=${PYTHON:-python3}
TORCH=2.14.1
TORCHVISION=0.29.1

if ! "$VENV/bin/python" -c "import torch, torchvision, timm, yaml, safetensors, pytest, PIL" >/dev/null 2>&1; then
  echo "setting up $VENV (torch $TORCH, torchvision $TORCHVISION, timm): once, several minutes"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION" timm pyyaml safetensors \
    numpy pillow pytest 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
"$VENV/bin/python" -c "import torch, torchvision, timm; print('$VENV: torch', torch.__version__, '/ torchvision',
  torchvision.__version__, '/ timm', timm.__version__)"
[ "${1:-}" = "--setup-only" ] && exit 0

# The project runs from the source tree (nothing is installed into the side venv): pytest's pythonpath is ".".
status=0
echo "== interop tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/interop || status=1

echo "== golden files regenerated from their torchvision/timm references"
"$VENV/bin/python" - <<'PY' || status=1
import shutil
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, "scripts")
from golden_reference import main as regenerate  # noqa: E402

warnings.simplefilter("ignore", FutureWarning)  # torchvision: GoogLeNet/Inception init notice

REGENERATED = ("torchvision", "torchvision-aux", "timm", "timm-deploy", "timm-gen")
changed = []
with tempfile.TemporaryDirectory() as scratch:
    for f in sorted(Path("tests/space/golden").glob("*.yaml")):
        old = yaml.safe_load(f.read_text()) or {}
        by_input = defaultdict(list)
        for name, e in old.items():
            if str(e.get("reference", "")).split(":", 1)[0] in REGENERATED:
                by_input[e.get("input", 224)].append(f"{name}={e['reference']}")
        copy = Path(scratch) / f.name
        shutil.copy(f, copy)
        for size, specs in by_input.items():
            regenerate(["--input", str(size), str(copy), *specs])
        new = yaml.safe_load(copy.read_text())
        diff = sorted(n for n in old if old[n] != new.get(n))
        n = sum(map(len, by_input.values()))
        print(f"{f}: {n} of {len(old)} entries regenerated, "
              + (f"CHANGED: {', '.join(diff)}" if diff else "unchanged"), flush=True)
        changed += diff
sys.exit(1 if changed else 0)
PY
exit $status
