"""How operators start Gru: gunicorn.conf.py, ``gru serve``, start-up validation and the smoke script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import SECRET, start_gru
from support.processes import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def launch(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GRU_")} | env
    return subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
    output, _ = proc.communicate(timeout=20)
    return output


def test_gru_bind_is_read_by_gunicorn_conf():
    port = free_port()
    proc = launch([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--graceful-timeout", "1", "wsgi:app"],
                  {"GRU_BIND": f"127.0.0.1:{port}", "GRU_SECRET": SECRET})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    finally:
        output = stop(proc)
    assert "GeventWebSocketWorker" in output


def test_bind_on_the_command_line_wins_over_gru_bind():
    env_port, cli_port = free_port(), free_port()
    proc = launch([str(BIN / "gru"), "serve", "--", "--bind", f"127.0.0.1:{cli_port}", "--graceful-timeout", "1"],
                  {"GRU_BIND": f"127.0.0.1:{env_port}", "GRU_SECRET": SECRET, "GRU_NODE_NAME": "node_9"})
    try:
        wait_http(f"http://127.0.0.1:{cli_port}/healthz", proc=proc)
        assert requests.get(f"http://127.0.0.1:{cli_port}/healthz", timeout=5).json()["node"] == "node_9"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{env_port}/healthz", timeout=2)
    finally:
        stop(proc)


@pytest.mark.parametrize(("env", "needle"), [
    ({"GRU_AUTH_TIMEOUT": "soon"}, "GRU_AUTH_TIMEOUT"),
    ({"GRU_ENV": "production"}, "GRU_SECRET"),
    ({"GRU_ENV": "production", "GRU_SECRET": SECRET}, "GRU_TOKEN1_VERIFIER"),
])
def test_invalid_configuration_stops_gunicorn_with_a_clear_message(env, needle):
    proc = launch([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{free_port()}", "wsgi:app"],
                  env)
    started = time.monotonic()
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert needle in output and "invalid configuration" in output
    assert "Traceback" not in output
    assert time.monotonic() - started < 30


def run_smoke(url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GRU_PYTHON": sys.executable, **(env or {})}
    return subprocess.run([str(ROOT / "scripts" / "ticket_smoke.sh"), url], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_smoke_script_passes_against_a_running_service(gru):
    result = run_smoke(gru.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broadcast delivered intact" in result.stdout
    assert "OK: all smoke checks passed" in result.stdout


def test_smoke_script_fails_clearly_when_nothing_listens():
    result = run_smoke(f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "FAIL: GET /ticket failed" in result.stderr


@pytest.fixture(scope="module")
def hmac_gru_for_smoke():
    server = start_gru({"GRU_TOKEN1_VERIFIER": "hmac", "GRU_TOKEN1_SECRET": "business-key"})
    yield server
    server.stop()


def test_smoke_script_signs_token1_for_the_hmac_verifier(hmac_gru_for_smoke):
    server = hmac_gru_for_smoke
    assert run_smoke(server.url).returncode == 1  # 'smoke' is no valid hmac token1
    result = run_smoke(server.url, {"GRU_TOKEN1_SECRET": "business-key"})
    assert result.returncode == 0, result.stdout + result.stderr
