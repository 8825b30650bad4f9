"""Clients that read slowly: one that falls behind for a while gets everything, in order; one that
does not read (or stops polling) is closed once GRU_MAX_BACKLOG bytes wait for it, and only it."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests
import websocket
from conftest import get_ticket, start_gru
from test_idle_connections import wait_open_files, warm_up, worker_open_files
from test_websocket_transport import authed_ws, recv_until

KEY = "lms-key-0123456789abcdef"
CONTENT = "x" * 60_000
SMALL_RCVBUF = ((socket.SOL_SOCKET, socket.SO_RCVBUF, 8192),)


def slow_gru(backlog: int):
    return start_gru({"GRU_API_KEYS": f"lms:{KEY}", "GRU_MAX_CONTENT": "70000", "GRU_MAX_BACKLOG": str(backlog)})


def push_many(server, group: str, count: int, content: str = CONTENT) -> None:
    with requests.Session() as http:
        for i in range(count):
            response = http.post(f"{server.url}/api/push", json={"groupId": group, "content": f"{i}:{content}"},
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
            assert response.status_code == 200, response.text


def overflows(server) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    found = re.search(r"^gru_backlog_overflows_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_falls_behind_gets_every_message_in_order(group):
    server = slow_gru(32 * 1024 * 1024)
    try:
        slow = authed_ws(server, 8001, group, sockopt=SMALL_RCVBUF)
        count = 150  # 9 MB: more than the kernel's buffers hold for a reader that pauses
        push_many(server, group, count)
        time.sleep(0.5)
        got = []
        while len(got) < count:
            frame = recv_until(slow, lambda f: f.startswith('42["msg"'), timeout=20)
            got.append(json.loads(frame[2:])[1]["content"])
        assert got == [f"{i}:{CONTENT}" for i in range(count)]
        slow.close()
        assert overflows(server) == 0
    finally:
        server.stop()


def test_a_client_that_does_not_read_is_closed_over_its_backlog_and_nobody_else(clients, group):
    server = slow_gru(1024 * 1024)
    try:
        warm_up(server, clients)
        idle_files = worker_open_files(server)
        stalled = authed_ws(server, 8002, group, sockopt=SMALL_RCVBUF)
        bystander = clients.authed("python", server, 8003, group)
        count = 150
        push_many(server, group, count)
        assert [m["content"][:4] for m in (bystander.wait_for("msg", timeout=20) for _ in range(count))] \
            == [f"{i}:xx"[:4] for i in range(count)]
        assert overflows(server) == 1
        # the stalled client gets what the kernel had taken, then the end of the connection
        stalled.settimeout(10)
        received = 0
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            while True:
                opcode, data = stalled.recv_data(control_frame=True)
                assert opcode != websocket.ABNF.OPCODE_CLOSE or received < count
                received += data.startswith(b'42["msg"')
        assert received < count
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
        assert "GRU_MAX_BACKLOG" in log and "closing the connection" in log
        bystander.close()
        assert wait_open_files(server, idle_files) <= idle_files
    finally:
        server.stop()


def test_a_polling_client_that_stops_polling_is_closed_over_its_backlog(group):
    server = slow_gru(64 * 1024)
    try:
        http = requests.Session()
        url = f"{server.url}/socket.io/?EIO=4&transport=polling"
        sid = json.loads(http.get(url, timeout=5).text[1:])["sid"]
        assert http.post(f"{url}&sid={sid}", data="40", timeout=5).status_code == 200
        assert http.get(f"{url}&sid={sid}", timeout=5).text.startswith("40")
        ticket = get_ticket(server, 8004)
        auth = {"id": 8004, "groupId": group, "type": 1, "token2": ticket["token"]}
        http.post(f"{url}&sid={sid}", data="42" + json.dumps(["auth", json.dumps(auth)]), timeout=5)
        assert '"success":true' in http.get(f"{url}&sid={sid}", timeout=5).text
        push_many(server, group, 3, "y" * 30_000)  # 90 KB waiting for a poll that does not come
        time.sleep(0.3)
        assert overflows(server) == 1
        assert http.get(f"{url}&sid={sid}", timeout=5).status_code == 400  # the session is gone
    finally:
        server.stop()
