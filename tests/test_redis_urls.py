"""``GRU_REDIS_URL`` forms other than plain ``redis://``: Redis Sentinel and TLS, with real servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SECRET, start_node
from support.processes import free_port

from gru.smoke import run_smoke


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def redis_process(args: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-server"), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def run_all_in_one(url: str, prefix: str) -> None:
    node = start_node(url, prefix, "node_1", role="all", env={"GRU_SECRET": SECRET})
    try:
        run_smoke(node.url, echo=lambda _: None)
    finally:
        node.stop()


def test_sentinel_url(tmp_path: Path, redis_server, redis_prefix):
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor gru-master 127.0.0.1 {redis_server.port} 1\n")
    sentinel = redis_process([str(conf), "--sentinel"], port)
    try:
        run_all_in_one(f"redis+sentinel://127.0.0.1:{port}/0/gru-master", redis_prefix)
    finally:
        sentinel.kill()
        sentinel.wait(5)


def make_certificates(directory: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=gru-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.ext")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")
def test_tls_url(tmp_path: Path, redis_prefix):
    make_certificates(tmp_path)
    port = free_port()
    server = redis_process(["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--tls-cert-file", str(tmp_path / "server.crt"),
                            "--tls-key-file", str(tmp_path / "server.key"),
                            "--tls-ca-cert-file", str(tmp_path / "ca.crt"), "--tls-auth-clients", "no"], port)
    try:
        run_all_in_one(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.crt'}", redis_prefix)
    finally:
        server.kill()
        server.wait(5)
