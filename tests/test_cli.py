"""The ``gru`` command as operators type it: ``serve --role``, ``bench`` and ``--help`` everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import SECRET
from support.processes import free_port, wait_http

GRU = str(Path(sys.executable).with_name("gru"))


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([GRU, *args], capture_output=True, text=True, timeout=timeout)


def test_bench_measures_a_running_node_with_progress_on_stderr(gru):
    result = run("bench", "--url", gru.url, "--ticket-seconds", "0.5", "--ticket-clients", "2", "--receivers", "5",
                 "--messages", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout stays clean JSON: the progress goes to stderr
    assert report["ok"] is True
    assert report["broadcast"]["runs"][0]["lost"] == 0
    assert report["ticket"]["runs"][0]["requests"] > 0
    assert "ticket run 1/1" in result.stderr and "broadcast run 1/1" in result.stderr


def test_bench_passes_bad_options_to_the_script_which_names_them():
    result = run("bench", "--repeat", "0")
    assert result.returncode == 2
    assert "--repeat must be positive" in result.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--help",), "bench"), (("serve", "--help"), "gunicorn"), (("cluster", "--help"), "--nodes"),
    (("smoke", "--help"), "BASE_URL"), (("bench", "--help"), "ticket requests/s"),
    (("bench", "--", "--help"), "--receivers"),
])
def test_help_everywhere(args, needle):
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert needle in result.stdout


@pytest.mark.parametrize(("role", "ticket_status"), [("node", 404), ("ticket", 400)])
def test_serve_runs_one_role_of_a_cluster(redis_server, redis_prefix, role, ticket_status):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRU_")}
    env |= {"GRU_SECRET": SECRET, "GRU_REDIS_URL": redis_server.url, "GRU_REDIS_PREFIX": redis_prefix,
            "GRU_PUBLIC_ADDR": f"http://127.0.0.1:{port}", "GRU_NODE_NAME": f"{role}_1"}
    proc = subprocess.Popen([GRU, "serve", "--role", role, "--bind", f"127.0.0.1:{port}", "--",
                             "--graceful-timeout", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["role"] == role
        assert requests.get(f"http://127.0.0.1:{port}/ticket", timeout=5).status_code == ticket_status
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
