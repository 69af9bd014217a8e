#!/usr/bin/env bash
# Create a virtualenv and install pinned requirements. Idempotent: a second run only
# checks. Usage: scripts/setup.sh [requirements file] [virtualenv dir]
# (defaults requirements.txt and .venv; the landingai client that the station tests
# drive has its own: scripts/setup.sh requirements-landingai.txt .venv-landingai)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
VENV="${2:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
STAMP="$VENV/.installed-$(basename "$REQ")"
if [ ! -f "$STAMP" ] || [ "$REQ" -nt "$STAMP" ] || { [ "$VENV" = .venv ] && [ requirements.txt -nt "$STAMP" ]; }; then
  echo "==> installing $REQ into $VENV (torch comes from the local wheel cache when available)"
  "$VENV/bin/python" -m pip install --quiet -r "$REQ"
  touch "$STAMP"
fi
