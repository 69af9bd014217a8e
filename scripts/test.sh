#!/usr/bin/env bash
# One command: set up and pass the whole test suite.
#   1. engine, service, browser and hardening slice on embedded defaults
#      (SQLite, eager Celery);
#   2. the service suite again on PostgreSQL with a real Celery worker over
#      Redis, when they are reachable. Under CI=true this run is required.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-test.txt
# the real LandingEdge client the station tests drive (it pins numpy<2: its own virtualenv)
bash scripts/setup.sh requirements-landingai.txt .venv-landingai
# label-studio-sdk's converter and pycocotools read our exports in the interchange tests
bash scripts/setup.sh requirements-labelstudio.txt .venv-labelstudio
if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
PY=.venv/bin/python
mkdir -p test-artifacts

echo "==> lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> run 1: SQLite + eager Celery"
env -u DATABASE_URL -u CELERY_BROKER_URL INSPECTION_TEST_BACKEND=embedded \
  $PY -m pytest -q "$@"

reachable() {
  $PY - "$1" "$2" <<'PYEOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PYEOF
}
PG_HOST="${TEST_PG_HOST:-127.0.0.1}"; REDIS_HOST="${TEST_REDIS_HOST:-127.0.0.1}"
if reachable "$PG_HOST" 5432 && reachable "$REDIS_HOST" 6379; then
  echo "==> run 2: PostgreSQL + Redis + real Celery worker"
  DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@$PG_HOST:5432/test}" \
  CELERY_BROKER_URL="${TEST_CELERY_BROKER_URL:-redis://$REDIS_HOST:6379/0}" \
  INSPECTION_TEST_BACKEND=services \
    $PY -m pytest -q tests/inspection -m "not browser"
elif [ "${CI:-}" = "true" ]; then
  echo "FAIL: CI=true but PostgreSQL ($PG_HOST:5432) or Redis ($REDIS_HOST:6379) is unreachable" >&2
  exit 1
else
  echo "==> run 2 skipped: PostgreSQL or Redis not reachable (required when CI=true)"
fi
