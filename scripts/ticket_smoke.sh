#!/usr/bin/env bash
# Smoke-test a running Gru deployment: ticket, connect, auth, broadcast between two users, online.
# Usage: scripts/ticket_smoke.sh BASE_URL      e.g. scripts/ticket_smoke.sh http://127.0.0.1:30000
# token1: GRU_SMOKE_TOKEN1 (fixed token), or GRU_TOKEN1_SECRET (hmac verifier), else "smoke" (accept).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BASE_URL" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${GRU_PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "FAIL: $python not found: run 'make setup' (or set GRU_PYTHON to a Python with Gru installed)" >&2
  exit 2
fi
cd "$root"
exec "$python" -m gru.cli smoke "$1"
