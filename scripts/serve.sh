#!/usr/bin/env bash
# Install into .venv (first run) and serve http://127.0.0.1:8000 with an embedded Celery
# worker, a filesystem broker and SQLite job state: no Docker, Redis or PostgreSQL needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[worker]'
export RESTORE_WEBHOOK_ALLOW_PRIVATE="${RESTORE_WEBHOOK_ALLOW_PRIVATE:-true}"  # LIMS on this machine or network
exec .venv/bin/python -m app "$@"
