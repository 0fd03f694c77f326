#!/usr/bin/env bash
# Create or reuse .venv in the repository root and install autocompress with the given extras.
# torch is installed first, pinned to the CPU build, so that nothing later pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-examples}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
