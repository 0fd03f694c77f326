#!/usr/bin/env bash
# Set up .venv and run the default demo: PP-OCRv4 text detection, post-training quantization with search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh examples
.venv/bin/python examples/ocr_det/run.py "$@"
