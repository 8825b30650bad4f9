"""Nothing lost: missed messages are recovered with ``lastMsgId``; unicasts wait for offline users."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import SECRET, get_ticket, start_gru, start_node
from support.tcp_proxy import TcpProxy

FAST_PINGS = {"GRU_PING_INTERVAL": "1", "GRU_PING_TIMEOUT": "1", "GRU_RATE_BURST": "200"}


@pytest.fixture(scope="module")
def quick_gru():
    """A service that notices dead connections within two seconds."""
    server = start_gru(FAST_PINGS)
    yield server
    server.stop()


def auth(client, ticket, user_id, group, last_id=None, user_type=1):
    payload = {"id": user_id, "name": "n", "groupId": group, "token1": "t", "token2": ticket["token"],
               "type": user_type}
    if last_id is not None:
        payload["lastMsgId"] = last_id
    client.emit("auth", json.dumps(payload))
    result = client.wait_for("auth_result")
    assert result["success"] is True, result
    return result


def send_all(sender, contents):
    for content in contents:
        sender.emit("msg", {"type": 1, "content": content})
    results = [sender.wait_for("msg_result") for _ in contents]
    assert all(r["success"] for r in results)
    return [r["data"]["id"] for r in results]


@pytest.mark.parametrize("kind", ["python", "node4"])
def test_missed_messages_after_a_network_cut_arrive_once_in_order(quick_gru, clients, kind, group):
    proxy = TcpProxy(quick_gru.port)
    try:
        sender = clients.authed("python", quick_gru, 1, group, user_type=0)
        ticket = get_ticket(quick_gru, 2)
        student = clients.new(kind, proxy.url)
        auth(student, ticket, 2, group)
        send_all(sender, ["before"])
        last_seen = student.wait_for("msg")["id"]

        proxy.blackhole()  # the Wi-Fi blinks: no FIN, no RST, just silence
        missed = [f"page {i}" for i in range(50)]
        send_all(sender, missed)
        student.wait_disconnected(timeout=10)
        proxy.restore()

        back = clients.new(kind, proxy.url)
        result = auth(back, ticket, 2, group, last_id=last_seen)
        assert result["data"] == {"userType": "STUDENT", "recovered": True, "missed": 50}
        send_all(sender, ["live"])
        got = [back.wait_for("msg") for _ in range(51)]
        assert [m["content"] for m in got] == missed + ["live"]
        ids = [m["id"] for m in got]
        assert ids == sorted(ids) and len(set(ids)) == 51
        time.sleep(0.3)
        assert back.received("msg") == []  # exactly once
    finally:
        proxy.close()


def test_without_last_msg_id_the_original_behaviour_is_kept(gru, clients, group):
    sender = clients.authed("python", gru, 1, group)
    send_all(sender, ["nobody saw this"])
    late = clients.new("node4", get_ticket(gru, 2)["addr"])
    result = auth(late, get_ticket(gru, 2), 2, group)
    assert result["data"] == {"userType": "STUDENT"}
    time.sleep(0.3)
    assert late.received("msg") == []


def test_recovery_reports_when_history_does_not_reach_back(clients, group):
    server = start_gru({"GRU_HISTORY_SIZE": "3"})
    try:
        sender = clients.authed("python", server, 1, group)
        first = send_all(sender, ["0"])[0]
        send_all(sender, [str(i) for i in range(1, 6)])
        late = clients.new("python", server.url)
        result = auth(late, get_ticket(server, 2), 2, group, last_id=first)
        assert result["data"]["recovered"] is False and result["data"]["missed"] == 3
        assert [late.wait_for("msg")["content"] for _ in range(3)] == ["3", "4", "5"]
    finally:
        server.stop()


@pytest.mark.parametrize("last_id", ["abc", -1, 2**60, True, {"id": 1}])
def test_a_malformed_last_msg_id_is_refused(gru, clients, group, last_id):
    client = clients.new("python", gru.url)
    client.emit("auth", json.dumps({"id": 3, "groupId": group, "type": 1, "token2": get_ticket(gru, 3)["token"],
                                    "lastMsgId": last_id}))
    result = client.wait_for("auth_result")
    assert (result["success"], result["errorCode"]) == (False, -3) and "lastMsgId" in result["msg"]


def test_unicast_with_expire_waits_for_an_offline_user(gru, clients, kind, group):
    teacher = clients.authed(kind, gru, 10, group, user_type=0)
    student = clients.authed(kind, gru, 11, group)
    student.close()
    time.sleep(0.3)
    teacher.emit("msg", {"type": 0, "target": {"id": 11, "type": 1}, "content": "homework", "expire": 60})
    result = teacher.wait_for("msg_result")
    assert result["success"] is True and result["data"]["queued"] is True
    assert result["data"]["expireTime"] == result["data"]["createTime"] + 60_000
    teacher.emit("msg", {"type": 0, "target": {"id": 11, "type": 1}, "content": "no expire"})
    assert teacher.wait_for("msg_result")["errorCode"] == -12  # without expire: still an error

    again = clients.authed(kind, gru, 11, group)
    message = again.wait_for("msg")
    assert message["content"] == "homework" and message["expireTime"] == result["data"]["expireTime"]
    other_device = clients.authed(kind, gru, 11, group)
    time.sleep(0.3)
    assert other_device.received("msg") == [] and again.received("msg") == []  # delivered once


def test_recovery_after_failing_over_to_a_backup_node(redis_server, redis_prefix, clients, group):
    env = {"GRU_SECRET": SECRET, **FAST_PINGS}
    ticket_service = start_node(redis_server.url, redis_prefix, "ticket", role="ticket", env=env)
    node_1 = start_node(redis_server.url, redis_prefix, "node_1", env=env)
    node_2 = start_node(redis_server.url, redis_prefix, "node_2", env=env)
    try:
        sender = clients.new("python", node_2.url)
        auth(sender, get_ticket(ticket_service, 1, 0), 1, group, user_type=0)
        ticket = get_ticket(ticket_service, 2)
        student = clients.new("node4", node_1.url)
        auth(student, ticket, 2, group)
        send_all(sender, ["before"])
        last_seen = student.wait_for("msg")["id"]
        os.killpg(node_1.proc.pid, signal.SIGSTOP)  # node_1 hangs: its clients hear nothing more
        missed = [f"m{i}" for i in range(50)]
        send_all(sender, missed)
        student.wait_disconnected(timeout=10)
        os.killpg(node_1.proc.pid, signal.SIGKILL)

        back = clients.new("node4", node_2.url)  # the backup node
        result = auth(back, ticket, 2, group, last_id=last_seen)
        assert result["data"]["recovered"] is True and result["data"]["missed"] == 50
        assert [back.wait_for("msg")["content"] for _ in range(50)] == missed
    finally:
        for server in (ticket_service, node_1, node_2):
            server.stop()
