#!/usr/bin/env bash
# Serve http://127.0.0.1:8000 with an embedded Celery worker, a filesystem broker and SQLite job
# state: no Docker, Redis or PostgreSQL needed. Installs into .venv on the first run, and again
# only when pyproject.toml has changed since. Arguments go to `python -m app` (e.g.
# --host 0.0.0.0 to serve other machines of the network).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.slide-restore-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -e '.[worker]'
  touch "$stamp"
fi
export RESTORE_WEBHOOK_ALLOW_PRIVATE="${RESTORE_WEBHOOK_ALLOW_PRIVATE:-true}"  # LIMS on this machine or network
exec .venv/bin/python -m app "$@"
