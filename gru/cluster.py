"""A whole deployment on one machine for development: Redis, a ticket service and N nodes.

Every process is a real gunicorn (the same command as production), each node on its own port
like the original deployment (``node_1`` :11111, ``node_2`` :11113, ...).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class Member:
    """One process of the local cluster."""

    role: str
    name: str
    url: str
    proc: subprocess.Popen


@dataclass
class LocalCluster:
    """Starts and stops the processes; ``env`` is the environment every Gru process shares."""

    nodes: int = 3
    host: str = "127.0.0.1"
    ticket_port: int = 30000
    first_node_port: int = 11111
    redis_url: str | None = None
    workers: int = 1
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    members: list[Member] = field(default_factory=list)
    _redis_dir: str | None = None

    def start(self, echo: Callable[[str], None] = print) -> None:
        """Start Redis (unless a URL was given), the ticket service and the nodes; wait until they answer."""
        shared = {**self.env, "GRU_WORKERS": str(self.workers)}
        shared.setdefault("GRU_SECRET", secrets.token_urlsafe(32))
        shared["GRU_REDIS_URL"] = self.redis_url or self._start_redis()
        shared.setdefault("GRU_REDIS_PREFIX", "gru")
        for i in range(self.nodes):
            port = self.first_node_port + 2 * i
            name = f"node_{i + 1}"
            self._spawn("node", name, port, {**shared, "GRU_ROLE": "node", "GRU_NODE_NAME": name,
                                             "GRU_PUBLIC_ADDR": f"http://{self.host}:{port}"})
        self._spawn("ticket", "ticket", self.ticket_port, {**shared, "GRU_ROLE": "ticket", "GRU_NODE_NAME": "ticket"})
        for member in self.members:
            if member.role != "redis":
                _wait_http(member, 30)
            echo(f"{member.role:<7} {member.name:<8} {member.url:<28} pid {member.proc.pid}")

    def _spawn(self, role: str, name: str, port: int, env: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "gunicorn", "-c", str(PACKAGE_DIR / "gunicorn_conf.py"),
                "--bind", f"{self.host}:{port}", "gru.wsgi:app"]
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        self.members.append(Member(role, name, f"http://{self.host}:{port}", proc))

    def _start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install it or pass --redis-url")
        port = _free_port()
        self._redis_dir = tempfile.mkdtemp(prefix="gru-cluster-redis-")
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", self._redis_dir], stdout=subprocess.DEVNULL, start_new_session=True)
        member = Member("redis", "redis", f"redis://127.0.0.1:{port}/0", proc)
        self.members.append(member)
        _wait_port(port, 10)
        return member.url

    def wait(self) -> None:
        """Block until a process dies (then raise) or the user presses Ctrl-C."""
        while True:
            for member in self.members:
                if member.proc.poll() is not None:
                    raise RuntimeError(f"{member.role} {member.name} exited with code {member.proc.returncode}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM everyone (nodes drain), then make sure they are gone."""
        for member in reversed(self.members):
            if member.proc.poll() is None:
                os.killpg(member.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for member in self.members:
            try:
                member.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(member.proc.pid, signal.SIGKILL)
                member.proc.wait(5)
        if self._redis_dir:
            shutil.rmtree(self._redis_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def _wait_http(member: Member, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if member.proc.poll() is not None:
            raise RuntimeError(f"{member.role} {member.name} exited with code {member.proc.returncode}")
        try:
            requests.get(f"{member.url}/healthz", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{member.role} {member.name} did not answer at {member.url} within {timeout}s")
