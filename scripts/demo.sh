#!/usr/bin/env bash
# The main job: install what the demo needs, then simulate the demo users with injected frauds
# and decide them all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh demo
exec .venv/bin/fraudstream demo "$@"
