#!/usr/bin/env bash
# What a pip user gets: fraudstream installed as a package (a wheel of this checkout, not
# editable) with every extra but flink and the newest releases of its dependencies (no lock),
# in a fresh .venv-current, then the tests against that installed package. uv resolves and
# installs (pip's resolver backtracked for 10 minutes over every extra at once and gave up).
# CI runs it after scripts/test.sh (a failure here is a release the lock will meet). Arguments go to
# pytest (default: every test but tests/flink, whose environment is requirements-flink.lock's,
# the slow ones and the SIGKILL-and-resume runs, which test our crash recovery more than the
# libraries and take a fifth of the suite's time: CI stays near 35 minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-current
start=$SECONDS
echo "test_current: fresh $VENV with the newest dependencies (a few minutes)" >&2
"$PYTHON" -m venv --clear "$VENV"
"$PYTHON" scripts/lock_subset.py --package uv > "$VENV/uv-requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  --no-deps -r "$VENV/uv-requirements.txt"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --upgrade \
  ".[store,kafka,lake,models,aws,web,dev]"
"$VENV/bin/python" -m pip list --format=freeze 2>/dev/null |
  grep -iE '^(numpy|pyarrow|pandas|numba|pyiceberg|duckdb|sqlalchemy|fastapi)==' | tr '\n' ' ' >&2
echo >&2
bash scripts/services.sh
export OMP_NUM_THREADS=1
export FRAUDSTREAM_TOKEN_KEY="${FRAUDSTREAM_TOKEN_KEY:-fraudstream-tests}"
export FRAUDSTREAM_TEST_POSTGRES="${FRAUDSTREAM_TEST_POSTGRES:-postgresql+psycopg://fraudstream:fraudstream@127.0.0.1:5432/fraudstream_test}"
unset PYTHONPATH
# the tests import the installed package, not this checkout's src/
"$VENV/bin/python" - <<'EOF'
import sys, fraudstream
assert "site-packages" in fraudstream.__file__, f"fraudstream from {fraudstream.__file__}"
print(f"test_current: fraudstream {fraudstream.__version__} from {fraudstream.__file__}", file=sys.stderr)
EOF
if [ $# -eq 0 ]; then
  set -- -m "not slow" -k "not sigkill and not killed_consumer" tests --ignore=tests/flink
fi
"$VENV/bin/python" -m pytest -q "$@"
echo "test_current: done in $((SECONDS - start)) s" >&2
