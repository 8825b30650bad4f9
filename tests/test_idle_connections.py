"""Connections that hold a worker's resources without going anywhere: Engine.IO sessions that never
join Socket.IO, idle keep-alive connections and partial request heads (slowloris).

The misbehaving peer connects from 127.0.0.2 (still loopback), so the legitimate client on
127.0.0.1 is another address, as it would be in a classroom.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import websocket
from conftest import start_gru

ATTACKER = "127.0.0.2"


def worker_open_files(server) -> int:
    """Open file descriptors of the server's (single) gunicorn worker."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return len(os.listdir(f"/proc/{children[0]}/fd"))


def wait_open_files(server, at_most: int, timeout: float = 5.0) -> int:
    """The worker's open files once they are down to ``at_most`` (or what they are after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        count = worker_open_files(server)
        if count <= at_most or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def connect_from(server, source: str = ATTACKER, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout, source_address=(source, 0))
    return sock


def http_get(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on an open connection: status and body (the connection stays open)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return status, body


def polling_handshake(server, eio: int) -> tuple[int, bytes]:
    with connect_from(server) as sock:
        return http_get(sock, f"/socket.io/?EIO={eio}&transport=polling")


def websocket_handshake(server, eio: int) -> websocket.WebSocket | None:
    """A websocket session from the attacker's address, or None if its handshake was refused."""
    sock = connect_from(server)
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO={eio}&transport=websocket",
                                         timeout=5, socket=sock)
    except websocket.WebSocketBadStatusException as exc:
        sock.close()
        assert exc.status_code == 401
        return None
    try:
        opening = ws.recv()
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        opening = ""
    if not opening:  # upgraded before the refusal (gevent-websocket answers 101 first), then closed
        ws.close()
        return None
    assert opening.startswith("0{"), opening
    return ws


def closed_by_server(ws: websocket.WebSocket, timeout: float = 5.0) -> bool:
    """Whether the server ends the websocket within ``timeout`` (pings are answered meanwhile)."""
    ws.settimeout(timeout)
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return True
            if data in (b"2",):
                ws.send("3")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True
    except websocket.WebSocketTimeoutException:
        return False


def warm_up(server, clients) -> None:
    """One connection through its whole life, so the worker has opened every file it keeps (metrics)."""
    client = clients.new("python", server.url)
    polling_handshake(server, 4)
    client.close()
    time.sleep(1.5)


@pytest.fixture
def limited_gru():
    server = start_gru({"GRU_AUTH_TIMEOUT": "1", "GRU_MAX_PENDING_PER_ADDRESS": "4", "GRU_MAX_CONNECTIONS": "12"})
    yield server
    server.stop()


@pytest.mark.parametrize("eio", [4, 3])
def test_engine_io_sessions_that_never_join_are_capped_per_address_and_closed_after_the_auth_timeout(
        limited_gru, clients, eio):
    server = limited_gru
    warm_up(server, clients)
    idle_files = worker_open_files(server)

    # four sessions per address, and as many more that are only told they are refused; then 401
    answers = [polling_handshake(server, eio) for _ in range(4)]
    sockets = [websocket_handshake(server, eio) for _ in range(4)]
    assert [status for status, _ in answers] == [200] * 4 and None not in sockets
    held = [json.loads(body[body.index(b"{"):body.index(b"}") + 1])["sid"] for _, body in answers]
    for status, body in (polling_handshake(server, eio), polling_handshake(server, eio)):
        assert status == 401 and json.loads(body)["errorCode"] == -20, body
    assert websocket_handshake(server, eio) is None

    legitimate = clients.new("python", server.url)  # another address: the node is not full
    assert legitimate.connected

    time.sleep(1.5)  # the auth timeout (1 s) and the timer's slack
    for ws in sockets:
        if ws is not None:
            assert closed_by_server(ws, timeout=3)
            ws.close()
    for sid in held:
        with connect_from(server) as sock:
            sock.settimeout(3)
            status, body = http_get(sock, f"/socket.io/?EIO={eio}&transport=polling&sid={sid}")
        assert status == 400 or body.endswith(b"1"), (status, body)  # unknown session, or its close packet
    assert legitimate.wait_for("auth_result", timeout=3)["errorCode"] == -9  # it too never authenticated
    legitimate.close()
    assert wait_open_files(server, idle_files) <= idle_files


def test_a_full_node_still_refuses_with_its_error_code(clients):
    server = start_gru({"GRU_MAX_CONNECTIONS": "1"})
    try:
        clients.new("python", server.url)
        status, body = http_get(connect_from(server, "127.0.0.1"), "/socket.io/?EIO=4&transport=polling")
        assert status == 200  # the handshake of a refused session succeeds: its Socket.IO connect is told why
        with pytest.raises(Exception, match="full"):
            clients.new("node4", server.url)
    finally:
        server.stop()
