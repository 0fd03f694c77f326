#!/usr/bin/env bash
# Set up .venv, lint and format-check with ruff, and run the test suite (slow benchmarks are excluded by the default
# marker expression).
# Debian's chromium is installed when missing (as root) so the report.html rendering test can run; without it
# that one test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh dev
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "chromium could not be installed; the report rendering test will be skipped"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
