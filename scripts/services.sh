#!/usr/bin/env bash
# System services the full test suite uses: Debian's Chromium (browser tests) and the
# PostgreSQL 15 cluster that ships with the image (decision-store tests). Safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
if [ ! -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1
fi
if command -v pg_ctlcluster >/dev/null; then
  $SUDO pg_ctlcluster 15 main start 2>/dev/null || true
  # A role and a database for the tests (password auth over TCP on localhost).
  as_postgres "psql -qtA -c \"SELECT 1 FROM pg_roles WHERE rolname='fraudstream'\"" | grep -q 1 \
    || as_postgres "psql -q -c \"CREATE ROLE fraudstream LOGIN PASSWORD 'fraudstream'\""
  as_postgres "psql -qtA -c \"SELECT 1 FROM pg_database WHERE datname='fraudstream_test'\"" | grep -q 1 \
    || as_postgres "createdb -O fraudstream fraudstream_test"
fi
