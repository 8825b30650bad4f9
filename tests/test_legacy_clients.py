"""Every client generation in one group: socket.io 1.x/2.x, python-socketio 4 (Engine.IO 3)
beside socket.io-client 4 and python-socketio 5 (Engine.IO 4), on every transport at once.

Gru's own events only carry text (``msg.content`` is a string), so text and Chinese go through
the real service; binary payloads go through the conformance server's room echo, which runs
the same engine under gunicorn.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from clients import PROTOCOLS
from conftest import get_ticket, start_gru, start_node
from support.processes import ServerHandle, start_gunicorn
from support.raw_eio3 import WebSocket as RawEio3WebSocket
from support.raw_eio4 import WebSocket as RawEio4WebSocket

# every generation (Engine.IO 3 and 4) on every transport
MIXED = [("python", "websocket"), ("python", "polling"), ("node4", "websocket"), ("node4", "polling"),
         ("node2", "websocket"), ("node2", "polling"), ("node2", "upgrade"), ("node1", "websocket"),
         ("node1", "polling"), ("python4", "websocket"), ("python4", "polling")]


assert {PROTOCOLS[kind] for kind, _ in MIXED} == {3, 4}


def content_of(index: int, kind: str, transport: str) -> str:
    return f"第{index}条 from {kind}/{transport}: 跳转到第三页 😀"


def broadcast_round(members: list, senders: list | None = None) -> None:
    """Each sender broadcasts once; every other member gets each broadcast exactly once, intact."""
    senders = senders if senders is not None else list(enumerate(members))
    for index, member in senders:
        member.emit("msg", json.dumps({"type": 1, "content": content_of(index, member.kind, member.transport_name)},
                                      ensure_ascii=False))
    for _, member in senders:
        assert member.wait_for("msg_result", timeout=10)["success"] is True
    for member in members:
        expected = Counter(content_of(i, s.kind, s.transport_name) for i, s in senders if s is not member)
        got = Counter(member.wait_for("msg", timeout=10)["content"] for _ in range(sum(expected.values())))
        assert got == expected, f"{member.kind}/{member.transport_name}"
    time.sleep(0.3)
    assert all(m.received("msg") == [] for m in members), "a broadcast arrived twice"


def join_mixed(clients, server: ServerHandle, group: str, base_id: int = 500, addrs: list | None = None) -> list:
    members = []
    for i, (kind, transport) in enumerate(MIXED):
        addr = addrs[i % len(addrs)] if addrs else None
        if addr is None:
            member = clients.authed(kind, server, base_id + i, group, transport=transport, name=f"学生{i}")
        else:
            ticket = get_ticket(server, base_id + i, 1, f"学生{i}")
            member = clients.new(kind, addr, transport)
            member.emit("auth", json.dumps({"id": base_id + i, "name": f"学生{i}", "groupId": group, "token1": "t1",
                                            "token2": ticket["token"], "type": 1}, ensure_ascii=False))
            assert member.wait_for("auth_result")["success"] is True
        member.transport_name = transport
        members.append(member)
    return members


def test_mixed_group_on_one_node(gru, clients, group):
    members = join_mixed(clients, gru, group)
    broadcast_round(members)
    members[0].emit("online", group)
    assert sorted(members[0].wait_for("online_result")) == list(range(500, 500 + len(MIXED)))


def test_mixed_group_across_two_nodes_over_redis(redis_server, redis_prefix, clients, group):
    nodes = [start_node(redis_server.url, redis_prefix, name, role="all") for name in ("node_1", "node_2")]
    try:
        members = join_mixed(clients, nodes[0], group, addrs=[n.url for n in nodes])
        broadcast_round(members)
    finally:
        for node in nodes:
            node.stop()


# --- binary payloads: the conformance server's room echo -------------------------------------

@pytest.fixture(scope="module")
def conformance() -> Iterator[ServerHandle]:
    server = start_gunicorn("gru.conformance:create_app('socketio', ping_interval=5, ping_timeout=5)",
                            graceful_timeout=1)
    yield server
    server.stop()


def test_binary_broadcast_to_every_generation_and_transport(conformance, clients):
    """Stock python-engineio crashes the polling members' responses here (D1)."""
    members = []
    for kind, transport in MIXED:
        member = clients.new(kind, conformance.url, transport)
        member.transport_name = transport
        member.emit("join", "room-1")
        member.emit("message", "joined")
        assert member.wait_for("message-back", timeout=10) == "joined"
        members.append(member)
    payloads = [{"blob": bytes([i, 0, 255, 4, 10]) * (i + 1), "text": f"二进制 {i} 😀"} for i in range(len(members))]
    for member, payload in zip(members, payloads, strict=True):
        member.emit("room-broadcast", "room-1", payload)
    for member in members:
        got = [member.wait_for("room-message", timeout=10) for _ in payloads]
        assert sorted(got, key=lambda p: p["text"]) == sorted(payloads, key=lambda p: p["text"]), member.kind
    time.sleep(0.3)
    assert all(m.received("room-message") == [] for m in members)


# --- heartbeats -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fast_gru() -> Iterator[ServerHandle]:
    """Gru with a 1 s ping interval and 1 s timeout."""
    server = start_gru({"GRU_PING_INTERVAL": "1", "GRU_PING_TIMEOUT": "1", "GRU_AUTH_TIMEOUT": "30"})
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["node1", "node2", "python4", "node4", "python"])
def test_clients_of_both_generations_stay_connected_through_heartbeats(fast_gru, clients, kind, group):
    members = [clients.authed(kind, fast_gru, 10 + i, group, transport=t) for i, t in enumerate(("websocket", "polling"))]
    time.sleep(3.5)  # more than interval + timeout, three times over
    members[0].emit("msg", {"type": 1, "content": "still here"})
    assert members[1].wait_for("msg")["content"] == "still here"
    assert all(m.connected for m in members)


@pytest.mark.parametrize("protocol", [3, 4])
def test_a_silent_client_is_dropped_within_interval_plus_timeout(fast_gru, clients, group, protocol):
    watcher = clients.authed("node4", fast_gru, 1, group)
    ticket = get_ticket(fast_gru, 2, 1)
    if protocol == 3:
        raw = RawEio3WebSocket(fast_gru.url)
        raw.open()
        assert raw.receive(1) == ["40"]
    else:
        raw = RawEio4WebSocket(fast_gru.url)
    raw.send("42" + json.dumps(["auth", json.dumps({"id": 2, "name": "n", "groupId": group, "token1": "t1",
                                                    "token2": ticket["token"], "type": 1})]))
    assert '"success":true' in next(f for f in raw.receive(1) if "auth_result" in f)
    silent_since = time.monotonic()  # from now on the raw client never answers nor pings
    deadline = silent_since + 1 + 1 + 1 + 1  # interval + timeout + the service task's period + slack
    while time.monotonic() < deadline:
        watcher.emit("online", group)
        if watcher.wait_for("online_result") == [1]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"EIO{protocol} client still online {time.monotonic() - silent_since:.1f}s after going silent")
    assert time.monotonic() - silent_since >= 1.0


# --- reserved event names ---------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [3, 4])
def test_a_client_event_named_disconnect_does_not_run_the_disconnect_logic(gru, group, protocol):
    """Stock python-socketio runs the server's disconnect handler for ``42["disconnect"]`` (R7)."""
    ticket = get_ticket(gru, 3, 1)
    if protocol == 3:
        raw = RawEio3WebSocket(gru.url)
        raw.open()
        assert raw.receive(1) == ["40"]
    else:
        raw = RawEio4WebSocket(gru.url)
    raw.send("42" + json.dumps(["auth", {"id": 3, "name": "n", "groupId": group, "token1": "t1",
                                         "token2": ticket["token"], "type": 1}]))
    assert '"success":true' in raw.receive(1)[0]
    raw.send('42["disconnect","fake"]')
    raw.send('42["connect","fake"]')
    raw.send("42" + json.dumps(["online", group]))
    answers = raw.receive(3)
    assert answers[2] == '42["online_result",[3]]'  # still authenticated and online
    for answer, name in zip(answers[:2], ("disconnect", "connect"), strict=True):  # refused, not ignored
        assert answer.startswith('42["error",') and f"event name '{name}' is reserved" in answer
    raw.close()

