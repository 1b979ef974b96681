#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job on the embedded default data (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
nas zoo list --no-macs
nas show resnet50
