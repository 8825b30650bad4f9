"""``python -m gru.conformance``: what the official suites will be pointed at."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests
from support.processes import REPO_ROOT, free_port, wait_http


@pytest.mark.parametrize(("mode", "path"), [("engineio", "/engine.io/"), ("socketio", "/socket.io/")])
def test_the_command_serves_both_protocols_with_the_suites_settings(mode, path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gru.conformance", "--port", str(port), "--mode", mode,
                             "--host", "127.0.0.1"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        wait_http(url, proc=proc)
        for version in ("3", "4"):
            response = requests.get(f"{url}?EIO={version}&transport=polling", timeout=5,
                                    headers={"Origin": "http://elsewhere.example"})
            assert response.status_code == 200
            assert response.headers["Access-Control-Allow-Origin"] == "http://elsewhere.example"
            body = response.text
            handshake = json.loads(body[body.index("{"):body.index("}") + 1])
            assert handshake["pingTimeout"] == 200
        assert handshake["maxPayload"] == 1_000_000
        assert requests.get(f"{url}?EIO=3&transport=polling", timeout=5).text.split(":", 1)[0].isdigit()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_an_unknown_mode_is_refused():
    done = subprocess.run([sys.executable, "-m", "gru.conformance", "--mode", "nope"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "--mode" in done.stderr
