#!/usr/bin/env bash
# One command: set up and run the product on embedded defaults (SQLite, a
# filesystem Celery broker) at http://127.0.0.1:8000 with a Celery worker beside
# the web server. Settings come from the environment (see .env.example).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-inspection.settings}"
$PY manage.py migrate --noinput
$PY manage.py create_admin            # prints the password unless ADMIN_PASSWORD is set
[ "${DEBUG:-1}" = "0" ] && $PY manage.py collectstatic --noinput >/dev/null
echo "==> starting Celery worker (queues: embed, default, webhooks) and beat"
.venv/bin/celery -A inspection worker -B -Q embed,default,webhooks --concurrency "${WORKER_CONCURRENCY:-1}" \
  --loglevel INFO --schedule var/celerybeat-schedule &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM
echo "==> serving http://${HOST:-127.0.0.1}:${PORT:-8000}/  (API docs at /api/docs/)"
$PY manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}" --noreload
