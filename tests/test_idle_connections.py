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
import requests
import websocket
from conftest import start_gru
from test_websocket_transport import authed_ws, recv_until

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


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``seconds``, or None if it stayed open."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return got


def test_idle_connections_and_partial_request_heads_are_closed_and_others_are_not(clients, group):
    server = start_gru({"GRU_HEADER_TIMEOUT": "1", "GRU_KEEPALIVE_TIMEOUT": "1", "GRU_BODY_TIMEOUT": "1",
                        "GRU_PING_INTERVAL": "2", "GRU_AUTH_TIMEOUT": "10"})
    try:
        warm_up(server, clients)
        idle_files = worker_open_files(server)
        member = authed_ws(server, 9001, group)

        silent = [connect_from(server) for _ in range(20)]
        partial = [connect_from(server) for _ in range(20)]
        kept_alive = [connect_from(server) for _ in range(20)]
        slow_body = [connect_from(server) for _ in range(10)]
        for sock in partial:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for sock in slow_body:  # a complete head, then a polling body that never completes
            sid = json.loads(polling_handshake(server, 4)[1][1:])["sid"]
            sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n40".encode())
        for sock in kept_alive:
            assert http_get(sock, "/healthz")[0] == 200
        started = time.monotonic()
        for _ in range(4):  # a header line every 0.4 s: each read is quick, the head never completes
            time.sleep(0.4)
            for sock in partial:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # closed already
            for sock in slow_body:
                try:
                    sock.send(b"4")
                except OSError:
                    pass
        for sock in silent + kept_alive:
            assert closed_within(sock, 2) == b""  # nothing was pending: just closed
        for sock in partial + slow_body:
            assert (closed_within(sock, 1) or b"").startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 3.5

        # a long-poll waits longer than the header timeout (until the ping); the websocket is untouched
        poll = requests.Session()
        url = f"{server.url}/socket.io/?EIO=4&transport=polling"
        sid = json.loads(poll.get(url, timeout=5).text[1:])["sid"]
        response = poll.get(f"{url}&sid={sid}", timeout=5)
        assert (response.status_code, response.text) == (200, "2")
        assert response.elapsed.total_seconds() > 1.5
        member.send("42" + json.dumps(["online", group]))
        assert json.loads(recv_until(member, lambda f: f.startswith('42["online_result"'))[2:])[1] == [9001]
        member.close()
        poll.close()
        for sock in silent + partial + kept_alive + slow_body:
            sock.close()
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'gru_http_timeouts_total{phase="head"} 40.0' in metrics
        assert 'gru_http_timeouts_total{phase="idle"} 20.0' in metrics
        assert 'gru_http_timeouts_total{phase="body"} 10.0' in metrics
        assert "Traceback" not in server.log_tail(400)
        assert wait_open_files(server, idle_files) <= idle_files
    finally:
        server.stop()
