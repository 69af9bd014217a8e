#!/usr/bin/env bash
# Create .venv and install the pinned requirements. Idempotent: a second run only
# checks. Usage: scripts/setup.sh [requirements file] (default requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtualenv .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
STAMP=".venv/.installed-$(basename "$REQ")"
if [ ! -f "$STAMP" ] || [ "$REQ" -nt "$STAMP" ] || [ requirements.txt -nt "$STAMP" ]; then
  echo "==> installing $REQ (torch comes from the local wheel cache when available)"
  .venv/bin/python -m pip install --quiet -r "$REQ"
  touch "$STAMP"
fi
