#!/usr/bin/env bash
# Set up .venv and run the test suite (slow benchmarks are excluded by the default marker expression).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh dev
.venv/bin/python -m pytest "$@"
