#!/usr/bin/env bash
# One command: set up and run the product on embedded defaults (SQLite, a
# filesystem Celery broker) at http://127.0.0.1:8000: gunicorn (WEB_WORKERS
# processes, DEBUG off, whitenoise serving the dashboard's static files) with a
# Celery worker beside it. Settings come from the environment (see .env.example).
# For development only: DEBUG=1 .venv/bin/python manage.py runserver
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-inspection.settings}"
VAR="${VAR_DIR:-var}"
mkdir -p "$VAR"
if [ -z "${SECRET_KEY:-}" ]; then
  # a random key made once per installation and kept beside the data
  [ -s "$VAR/secret_key" ] || $PY -c "import secrets; print(secrets.token_urlsafe(50))" > "$VAR/secret_key"
  chmod 600 "$VAR/secret_key"
  SECRET_KEY="$(cat "$VAR/secret_key")"
  export SECRET_KEY
fi
$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput --verbosity 0   # STATIC_ROOT, served by whitenoise
$PY manage.py create_admin            # prints the password unless ADMIN_PASSWORD is set
echo "==> starting Celery worker (queues: embed, default, webhooks) and beat"
.venv/bin/celery -A inspection worker -B -Q embed,default,webhooks --concurrency "${WORKER_CONCURRENCY:-1}" \
  --loglevel INFO --schedule "$VAR/celerybeat-schedule" &
WORKER=$!
echo "==> serving http://${HOST:-127.0.0.1}:${PORT:-8000}/  (API docs at /api/docs/) with gunicorn"
.venv/bin/gunicorn -c python:inspection.gunicorn_conf &
WEB=$!
# stopping run.sh (Ctrl+C, SIGTERM) stops both; either one ending stops the other
trap 'kill $WEB $WORKER 2>/dev/null; wait $WEB $WORKER 2>/dev/null' EXIT INT TERM
wait -n $WEB $WORKER
