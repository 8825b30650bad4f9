"""Real redis-server processes on free loopback ports: one server a test may stop and start again,
and a Sentinel setup (a master, a replica, three sentinels) a test may fail over."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.processes import free_port


class RedisServer:
    """One ``redis-server`` process without persistence (a restart loses everything, like a crash)."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it) or apt-get install redis-server")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = list(extra_args)
        self._dir = Path(tempfile.mkdtemp(prefix="gru-redis-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self._dir), "--daemonize", "no", "--logfile", str(self._dir / "redis.log"), *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # like a crash: no save, connections drop at once
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def _command(port: int, *args: str) -> bytes:
    """One inline command to a loopback server, its raw reply (enough for role and address checks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
        conn.sendall(" ".join(args).encode() + b"\r\n")
        conn.settimeout(1.0)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
            if reply.startswith((b"*", b"$")):
                time.sleep(0.01)  # multi-line replies: let the rest arrive
                conn.setblocking(False)
                try:
                    reply += conn.recv(65536)
                except BlockingIOError:
                    pass
                break
        return reply


class SentinelSetup:
    """A master, a replica and three sentinels (quorum 2), all on loopback, with short timeouts so a
    failover takes a few seconds: ``down_after_ms`` to notice a dead master, ``failover_timeout_ms``
    before a stuck failover is retried."""

    def __init__(self, service: str = "mymaster", down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        self.service = service
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        quick_sync = ("--repl-diskless-sync-delay", "0")  # the default waits 5 s for more replicas
        self.servers = [RedisServer(extra_args=quick_sync)]
        self.servers.append(RedisServer(extra_args=(*quick_sync, "--replicaof", "127.0.0.1", str(self.servers[0].port))))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._dir = Path(tempfile.mkdtemp(prefix="gru-sentinel-"))
        self._sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/0/{self.service}"

    def start(self, timeout: float = 15.0) -> SentinelSetup:
        for server in self.servers:
            server.start()
        master = self.servers[0].port
        _wait_for(lambda: b"master_link_status:up" in _command(self.servers[1].port, "INFO", "replication"),
                  timeout, "the replica to sync")
        ids = [f"{index + 1:040x}" for index in range(len(self.sentinel_ports))]
        for index, port in enumerate(self.sentinel_ports):
            # each one told of the replica and the other sentinels, rather than finding them in ~10 s
            peers = "".join(f"sentinel known-sentinel {self.service} 127.0.0.1 {other} {ids[i]}\n"
                            for i, other in enumerate(self.sentinel_ports) if i != index)
            conf = self._dir / f"sentinel-{index}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self._dir}\nsentinel myid {ids[index]}\n"
                            f"sentinel monitor {self.service} 127.0.0.1 {master} 2\n"
                            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
                            f"sentinel known-replica {self.service} 127.0.0.1 {self.servers[1].port}\n{peers}")
            self._sentinels.append(subprocess.Popen(
                [self.servers[0].binary, str(conf), "--sentinel", "--logfile", str(self._dir / f"sentinel-{index}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.sentinel_ports:  # every sentinel knows the replica and the other two sentinels
            _wait_for(lambda port=port: self._sentinel_ready(port), timeout, f"sentinel {port}")
        return self

    def _sentinel_ready(self, port: int) -> bool:
        reply = _command(port, "SENTINEL", "MASTER", self.service).decode(errors="replace").split("\r\n")
        fields = dict(zip(reply[2::4], reply[4::4], strict=False))
        return fields.get("num-slaves") == "1" and fields.get("num-other-sentinels") == "2"

    def master_port(self) -> int:
        """The master's port as the sentinels report it."""
        reply = _command(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(reply.split(b"\r\n")[4])

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def failover(self, timeout: float = 15.0) -> int:
        """Kill the master (a crash) and wait until the sentinels promote the replica; return its port."""
        old = self.master_port()
        self.server(old).stop()
        new = _wait_for(lambda: (port := self.master_port()) != old and port, timeout, "a new master")
        _wait_for(lambda: b"role:master" in _command(new, "INFO", "replication"), timeout, "the promotion")
        return new

    def close(self) -> None:
        for proc in self._sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for server in self.servers:
            server.close()
        shutil.rmtree(self._dir, ignore_errors=True)
