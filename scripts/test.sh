#!/usr/bin/env bash
# The whole test suite: install, start services (PostgreSQL, Chromium), then ruff (format + lint), mypy on src/, pytest (all tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
bash scripts/services.sh
export OMP_NUM_THREADS=1
export FRAUDSTREAM_TOKEN_KEY="${FRAUDSTREAM_TOKEN_KEY:-fraudstream-tests}"
export FRAUDSTREAM_TEST_POSTGRES="${FRAUDSTREAM_TEST_POSTGRES:-postgresql+psycopg://fraudstream:fraudstream@127.0.0.1:5432/fraudstream_test}"
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
