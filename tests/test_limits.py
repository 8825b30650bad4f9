"""Nobody in: one misbehaving client cannot hurt the class, and outsiders are kept out."""

from __future__ import annotations

import json
import time

import pytest
import requests
from clients import ConnectionFailed
from conftest import SECRET, get_ticket, start_gru

GOOD = {"userType": "1", "userName": "s", "userId": "1", "token1": "secret-business-token-1234"}


def test_a_flooding_connection_is_rate_limited_and_the_class_is_unaffected(gru, clients, group):
    flooder = clients.authed("python", gru, 1, group)
    teacher = clients.authed("node4", gru, 2, group, user_type=0)
    student = clients.authed("node4", gru, 3, group)
    for i in range(300):
        flooder.emit("msg", {"type": 1, "content": f"spam {i}"})
    sent = time.monotonic()
    teacher.emit("msg", {"type": 1, "content": "jump to page 3"})
    assert teacher.wait_for("msg_result")["success"] is True
    assert "jump to page 3" in [m["content"] for m in _until(student, "jump to page 3")]
    assert time.monotonic() - sent < 3  # not stuck behind the flood
    results = [flooder.wait_for("msg_result", timeout=10) for _ in range(300)]
    accepted = sum(r["success"] for r in results)
    limited = [r for r in results if not r["success"]]
    assert limited and all(r["errorCode"] == -15 for r in limited)
    assert accepted < 100
    time.sleep(0.5)
    spam_seen = [m for m in student.received("msg") if m["content"].startswith("spam")]
    assert len(spam_seen) + _spam_before(student) <= accepted  # refused messages were never delivered


_seen: dict[int, int] = {}


def _until(client, content: str) -> list[dict]:
    """Messages up to and including the one with ``content`` (spam before it is counted)."""
    got = []
    while True:
        message = client.wait_for("msg", timeout=10)
        got.append(message)
        if message["content"] == content:
            _seen[id(client)] = sum(m["content"].startswith("spam") for m in got)
            return got


def _spam_before(client) -> int:
    return _seen.get(id(client), 0)


def test_a_full_node_refuses_new_connections_cleanly(clients, group):
    server = start_gru({"GRU_MAX_CONNECTIONS": "2"})
    try:
        members = [clients.authed("python", server, i, group) for i in range(2)]
        with pytest.raises(ConnectionFailed, match="full"):
            clients.new("node4", server.url)
        with pytest.raises(ConnectionFailed):
            clients.new("python", server.url)
        members[0].emit("msg", {"type": 1, "content": "still fine"})
        assert members[1].wait_for("msg")["content"] == "still fine"
    finally:
        server.stop()


def test_unauthenticated_connections_per_address_are_capped(clients, group):
    server = start_gru({"GRU_MAX_PENDING_PER_ADDRESS": "2"})
    try:
        idle = [clients.new("node4", server.url) for _ in range(2)]
        with pytest.raises(ConnectionFailed, match="unauthenticated"):
            clients.new("node4", server.url)
        ticket = get_ticket(server, 5)
        idle[0].emit("auth", json.dumps({"id": 5, "groupId": group, "type": 1, "token2": ticket["token"]}))
        assert idle[0].wait_for("auth_result")["success"] is True
        clients.new("node4", server.url)  # one slot is free again
    finally:
        server.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_an_oversize_packet_drops_only_its_sender(clients, group, transport):
    server = start_gru({"GRU_MAX_PAYLOAD": "4096", "GRU_MAX_CONTENT": "100000"})
    try:
        big = clients.authed("python", server, 1, group, transport=transport)
        a = clients.authed("node4", server, 2, group)
        b = clients.authed("node4", server, 3, group)
        big.emit("msg", {"type": 1, "content": "x" * 20000})
        big.wait_disconnected(timeout=10)
        a.emit("msg", {"type": 1, "content": "the class goes on"})
        assert b.wait_for("msg")["content"] == "the class goes on"
        assert b.received("msg") == []
    finally:
        server.stop()


@pytest.fixture(scope="module")
def strict_gru():
    server = start_gru({"GRU_CORS_ORIGINS": "https://school.example"})
    yield server
    server.stop()


def test_ticket_is_refused_to_other_web_origins(strict_gru):
    evil = requests.get(f"{strict_gru.url}/ticket", params=GOOD, headers={"Origin": "https://evil.example"}, timeout=5)
    assert evil.status_code == 403 and evil.json()["errorCode"] == 403
    assert "Access-Control-Allow-Origin" not in evil.headers
    good = requests.get(f"{strict_gru.url}/ticket", params=GOOD, headers={"Origin": "https://school.example"},
                        timeout=5)
    assert good.status_code == 200
    assert good.headers["Access-Control-Allow-Origin"] == "https://school.example"
    assert requests.get(f"{strict_gru.url}/ticket", params=GOOD, timeout=5).status_code == 200  # no browser, no Origin


def test_socket_io_is_refused_to_other_web_origins(strict_gru):
    url = f"{strict_gru.url}/socket.io/?EIO=4&transport=polling"
    assert requests.get(url, headers={"Origin": "https://evil.example"}, timeout=5).status_code == 400
    assert requests.get(url, headers={"Origin": "https://school.example"}, timeout=5).status_code == 200
    assert requests.get(url, headers={"Origin": strict_gru.url}, timeout=5).status_code == 200  # same origin


def test_tokens_never_appear_in_the_logs(strict_gru, clients, group):
    token1 = "business-token-that-must-stay-secret"
    ticket = requests.get(f"{strict_gru.url}/ticket", params=GOOD | {"token1": token1}, timeout=5).json()["data"]
    client = clients.new("python", strict_gru.url)
    client.emit("auth", json.dumps({"id": 1, "groupId": group, "type": 1, "token1": token1, "token2": ticket["token"]}))
    assert client.wait_for("auth_result")["success"] is True
    client.emit("auth", json.dumps({"id": 1, "groupId": group, "type": 1, "token2": ticket["token"] + "x"}))
    client.wait_for("auth_result")
    time.sleep(0.5)
    log = strict_gru.log_path.read_text(encoding="utf-8", errors="replace")
    assert "auth ok" in log and "ticket user=1" in log
    assert token1 not in log and ticket["token"] not in log and SECRET not in log


def test_key_rotation_keeps_everyone_logged_in(clients, group):
    old_key, new_key = "o" * 40, "n" * 40
    server = start_gru({"GRU_SECRET": old_key})
    ticket = get_ticket(server, 1)
    server.stop()
    server = start_gru({"GRU_SECRET": f"{new_key},{old_key}"})
    try:
        client = clients.new("python", server.url)
        client.emit("auth", json.dumps({"id": 1, "groupId": group, "type": 1, "token2": ticket["token"]}))
        assert client.wait_for("auth_result")["success"] is True  # issued before the rotation
    finally:
        server.stop()
    server = start_gru({"GRU_SECRET": new_key})
    try:
        client = clients.new("python", server.url)
        client.emit("auth", json.dumps({"id": 1, "groupId": group, "type": 1, "token2": ticket["token"]}))
        assert client.wait_for("auth_result")["errorCode"] == -4  # the retired key no longer verifies
    finally:
        server.stop()
