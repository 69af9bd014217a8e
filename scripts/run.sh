#!/usr/bin/env bash
# One command: set up and run the product on embedded defaults (SQLite, a
# filesystem Celery broker) at http://127.0.0.1:8000 with a Celery worker beside
# the web server. Settings come from the environment (see .env.example).
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
$PY manage.py create_admin            # prints the password unless ADMIN_PASSWORD is set
echo "==> starting Celery worker (queues: embed, default, webhooks) and beat"
.venv/bin/celery -A inspection worker -B -Q embed,default,webhooks --concurrency "${WORKER_CONCURRENCY:-1}" \
  --loglevel INFO --schedule "$VAR/celerybeat-schedule" &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM
echo "==> serving http://${HOST:-127.0.0.1}:${PORT:-8000}/  (API docs at /api/docs/)"
# --insecure: the development server also serves the dashboard's static files
# with DEBUG off; behind a real web server use collectstatic + gunicorn instead.
$PY manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}" --noreload --insecure
