#!/usr/bin/env bash
# The whole test suite: install, then ruff (format + lint), mypy on src/, pytest (all tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
export OMP_NUM_THREADS=1
export FRAUDSTREAM_TOKEN_KEY="${FRAUDSTREAM_TOKEN_KEY:-fraudstream-tests}"
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
