#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the headline study on the embedded MNIST subset (no download) —
# the search, the seed repeats and the final stage (nas search), how the proxy ranks against the final stage
# (nas fidelity), then the report with the paper table. Run again after an interruption to resume the same study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
nas search studies/latency.yaml "$@"
nas fidelity studies/latency.yaml
nas report studies/latency.yaml
