#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs fraudstream with the locked dependencies.
#   bash scripts/install.sh        everything in requirements.lock (the tests, test.sh)
#   bash scripts/install.sh demo   only what the demo needs: core + web + lake extras
# Skipped when the lock, pyproject.toml and the choice are those of the last install
# (a stamp in .venv); safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
MODE=${1:-all}
STAMP=.venv/.fraudstream-install
hash_of() { cat requirements.lock pyproject.toml scripts/lock_subset.py | "$PYTHON" -c \
  'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])'; }
HASH=$(hash_of)
# everything installed covers the demo too
if [ -f "$STAMP" ] && { grep -qx "$HASH $MODE" "$STAMP" || grep -qx "$HASH all" "$STAMP"; }; then
  exit 0
fi
start=$SECONDS
if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ "$MODE" = demo ]; then
  echo "install: fraudstream core + web + lake extras from requirements.lock into .venv" \
    "(about a minute the first time; skipped when nothing changed)" >&2
  requirements=.venv/demo-requirements.txt
  "$PYTHON" scripts/lock_subset.py web lake > "$requirements"
  # --no-deps: the subset is the whole closure, pinned with hashes
  "${pip[@]}" --require-hashes --no-deps -r "$requirements"
else
  echo "install: every locked dependency (all extras, dev tools) into .venv" \
    "(several minutes the first time; skipped when nothing changed)" >&2
  "${pip[@]}" --require-hashes -r requirements.lock
fi
"${pip[@]}" --no-deps -e .
echo "$HASH $MODE" > "$STAMP"
echo "install: done in $((SECONDS - start)) s" >&2
