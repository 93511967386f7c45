#!/usr/bin/env bash
# Creates the virtual environments (Python >= 3.11) and installs fraudstream, editable, with
# the locked dependencies. One environment per runtime: apache-flink pins old pyarrow, numpy
# and pandas, so Flink's Python environment is its own.
#   bash scripts/install.sh        .venv (requirements.lock: the core, every extra but flink,
#                                  the dev tools) and .venv-flink (requirements-flink.lock)
#   bash scripts/install.sh demo   only what the demo needs into .venv: core + web + lake
#   bash scripts/install.sh core   .venv alone;   bash scripts/install.sh flink   .venv-flink alone
# Each environment is skipped when its lock, pyproject.toml and the choice are those of its
# last install (a stamp in the venv); safe to run again (it only adds what is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
MODE=${1:-all}
case "$MODE" in
  all | core | demo | flink) ;;
  *) echo "install: unknown choice '$MODE' (all, core, demo or flink)" >&2; exit 2 ;;
esac

hash_of() { cat "$@" | "$PYTHON" -c \
  'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])'; }

# install_venv VENV CHOICE REQUIREMENTS-FILE MESSAGE HASHED-FILES...
# --no-deps: a lock (or the demo's subset of it) is the whole closure, pinned with hashes.
# uv (pinned in requirements.lock, installed first with pip) installs them: it downloads in
# parallel, which made the demo's cold install 2-3 x faster than pip's. The demo's packages
# are not compiled to bytecode up front (Python compiles a module when the one demo process
# first imports it); the full environments are (uv --compile-bytecode, as pip does), since
# where PYTHONDONTWRITEBYTECODE is set, as on the CI image, every process would otherwise
# compile each module it imports again: a fifth of `fraudstream run`'s start-up, and the
# tests start many processes. The project's own modules are compiled once at install too.
install_venv() {
  local venv=$1 choice=$2 requirements=$3 message=$4
  shift 4
  local stamp=$venv/.fraudstream-install hash start=$SECONDS
  hash=$(hash_of "$@")
  # everything installed covers the demo too
  if [ -f "$stamp" ] && { grep -qx "$hash $choice" "$stamp" || grep -qx "$hash core" "$stamp"; }; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "install: creating $venv with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv "$venv"
  fi
  echo "install: $message" >&2
  "$PYTHON" scripts/lock_subset.py --package uv > "$venv/uv-requirements.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    --no-deps -r "$venv/uv-requirements.txt"
  local uv=("$venv/bin/uv" pip install --quiet --python "$venv/bin/python")
  [ "$choice" = demo ] || uv+=(--compile-bytecode)
  "${uv[@]}" --require-hashes --no-deps -r "$requirements"
  "${uv[@]}" --no-deps -e .
  [ "$choice" = demo ] || "$venv/bin/python" -m compileall -q -j 0 src > /dev/null
  echo "$hash $choice" > "$stamp"
  echo "install: $venv done in $((SECONDS - start)) s" >&2
}

if [ "$MODE" = demo ]; then
  mkdir -p .venv
  "$PYTHON" scripts/lock_subset.py web lake > .venv/demo-requirements.txt.new
  mv .venv/demo-requirements.txt.new .venv/demo-requirements.txt
  install_venv .venv demo .venv/demo-requirements.txt \
    "fraudstream core + web + lake extras from requirements.lock into .venv (about a minute the first time; skipped when nothing changed)" \
    requirements.lock pyproject.toml scripts/lock_subset.py
fi
if [ "$MODE" = all ] || [ "$MODE" = core ]; then
  install_venv .venv core requirements.lock \
    "every locked dependency but Flink's (all other extras, dev tools) into .venv (a few minutes the first time; skipped when nothing changed)" \
    requirements.lock pyproject.toml scripts/lock_subset.py
fi
if [ "$MODE" = all ] || [ "$MODE" = flink ]; then
  install_venv .venv-flink flink requirements-flink.lock \
    "Flink's Python environment (apache-flink, the models extra, pytest) from requirements-flink.lock into .venv-flink (a few minutes the first time; skipped when nothing changed)" \
    requirements-flink.lock requirements.lock pyproject.toml scripts/lock_subset.py
fi
