#!/usr/bin/env bash
# Install the test and training extras into .venv and run the whole suite: lint, import
# rules, and pytest (Redis and PostgreSQL on 127.0.0.1, Debian's chromium for the viewer).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[worker,test,train]'
.venv/bin/ruff check .
.venv/bin/ruff format --check app workers tests/app tests/engine tests/workers tests/reliability \
  tests/security
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
