#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the headline study on the embedded digits data (no download),
# then its report. Run again after an interruption to resume the same study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
nas search studies/latency.yaml "$@"
nas report studies/latency.yaml
