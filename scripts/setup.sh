#!/usr/bin/env bash
# Prepare a machine for Gru: a virtual environment with the pinned packages and, for the
# tests ("dev"), the Node clients from package-lock.json, the python-socketio 4 client in
# .venv-legacy and a redis-server binary.
# Idempotent and quick when nothing changed (stamps in .stamps/).
# Usage: scripts/setup.sh runtime|dev
set -euo pipefail
mode="${1:-dev}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="${GRU_VENV:-$root/.venv}"
mkdir -p .stamps

say() { echo "setup: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; exit 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || { say "cannot install $* (no apt-get): install it by hand"; exit 1; }
  if [ ! -f .stamps/apt-updated ]; then as_root apt-get update -qq && touch .stamps/apt-updated; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pick_python() {
  for candidate in "${GRU_PYTHON_BIN:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  say "Python 3.11 or newer is required"; exit 1
}

stamp_ok() { [ -f ".stamps/$1" ] && [ "$(cat ".stamps/$1")" = "$2" ]; }

setup_python() {
  local reqs="requirements.txt"
  [ "$mode" = dev ] && reqs="requirements-dev.txt"
  local want
  want="$mode $(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
  if [ -x "$venv/bin/python" ] && stamp_ok "python-$mode" "$want"; then return; fi
  if [ ! -x "$venv/bin/python" ]; then
    local python; python="$(pick_python)"
    say "creating virtual environment $venv with $python"
    "$python" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$venv"; }
  fi
  say "installing Python packages ($reqs)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > ".stamps/python-$mode"
}

setup_node() {
  command -v npm >/dev/null || { say "installing Node.js and npm"; apt_install nodejs npm; }
  local want; want="$(sha256sum package-lock.json | cut -c1-16)"
  if [ -d node_modules ] && stamp_ok npm "$want"; then return; fi
  say "installing Node test clients (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > .stamps/npm
}

setup_legacy_client() {
  # python-socketio 4 (an Engine.IO 3 client) cannot share a venv with python-socketio 5.
  local legacy="$root/.venv-legacy" reqs="tests/legacy_py/requirements.txt"
  local want; want="$(sha256sum "$reqs" | cut -c1-16)"
  if [ -x "$legacy/bin/python" ] && stamp_ok legacy-client "$want"; then return; fi
  if [ ! -x "$legacy/bin/python" ]; then
    local python; python="$(pick_python)"
    say "creating $legacy for the python-socketio 4 test client"
    "$python" -m venv "$legacy" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$legacy"; }
  fi
  "$legacy/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
  echo "$want" > .stamps/legacy-client
}

setup_redis() {
  command -v redis-server >/dev/null && return
  say "installing redis-server"
  apt_install redis-server
}

setup_chromium() {
  # the demo page's browser test drives Debian's chromium with playwright-core (from npm)
  command -v chromium >/dev/null && return
  say "installing chromium (headless browser for the demo page test)"
  apt_install chromium
}

setup_python
if [ "$mode" = dev ]; then
  setup_node
  setup_legacy_client
  setup_redis
  setup_chromium
fi
