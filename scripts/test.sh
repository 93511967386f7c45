#!/usr/bin/env bash
# The whole test suite: install, start services (PostgreSQL, Chromium), then ruff (format +
# lint), mypy on src/, and pytest: tests/flink and the doctests of src/fraudstream/flink in
# Flink's environment (.venv-flink), every other test in .venv. Arguments go to pytest: options to both runs, a path to the run of the
# environment it belongs to (bash scripts/test.sh -k geo; bash scripts/test.sh tests/io).
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

options=() core_paths=() flink_paths=()
for arg in "$@"; do
  path=${arg%%::*}
  if [ -e "$path" ]; then
    case "${path#./}" in
      tests/flink | tests/flink/* | src/fraudstream/flink | src/fraudstream/flink/*)
        flink_paths+=("$arg") ;;
      *) core_paths+=("$arg") ;;
    esac
  else
    options+=("$arg")  # an option, or an option's value (-k geo)
  fi
done
if [ ${#core_paths[@]} -eq 0 ] && [ ${#flink_paths[@]} -eq 0 ]; then
  core_paths=(--ignore=tests/flink --ignore=src/fraudstream/flink)
  flink_paths=(tests/flink src/fraudstream/flink)
fi
# pytest exits 5 when the options select no test of a run: not a failure of the suite
run_pytest() { "$@" || { code=$?; [ $code -eq 5 ] || exit $code; }; }
if [ ${#core_paths[@]} -gt 0 ]; then
  run_pytest .venv/bin/python -m pytest -q "${options[@]}" "${core_paths[@]}"
fi
if [ ${#flink_paths[@]} -gt 0 ]; then
  run_pytest .venv-flink/bin/python -m pytest -q "${options[@]}" "${flink_paths[@]}"
fi
