"""``gru cluster``: a whole local deployment in one command, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from support.processes import free_port

from gru.smoke import run_smoke

BIN = Path(sys.executable).parent


def pair_of_free_ports() -> int:
    """A port p with p + 2 free as well (node_1 and node_2)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_gru_cluster_runs_a_deployment_until_ctrl_c():
    ticket_port, node_port = free_port(), pair_of_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRU_")} | {"GRU_HEARTBEAT_INTERVAL": "0.5",
                                                                                "GRU_NODE_TTL": "2"}
    proc = subprocess.Popen([str(BIN / "gru"), "cluster", "--nodes", "2", "--ticket-port", str(ticket_port),
                             "--first-node-port", str(node_port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("ready") or not line:
                break
        output = "".join(lines)
        assert "ready" in output, output
        assert f"node_1   http://127.0.0.1:{node_port}" in output and "redis://127.0.0.1:" in output
        ticket = requests.get(f"http://127.0.0.1:{ticket_port}/ticket", timeout=5,
                              params={"userType": 1, "userName": "a", "userId": 1, "token1": "t"}).json()["data"]
        assert {ticket["name"], ticket["backupNodes"][0]["name"]} == {"node_1", "node_2"}
        run_smoke(f"http://127.0.0.1:{ticket_port}", echo=lambda _: None)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not any(listening(p) for p in (ticket_port, node_port, node_port + 2))
