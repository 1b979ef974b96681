#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, fast and slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider "$@"
