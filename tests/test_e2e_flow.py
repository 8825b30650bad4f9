"""The whole flow of the original document, end to end, for every real client and transport."""

from __future__ import annotations

import json
import time

import pytest
from clients import TRANSPORTS
from conftest import get_ticket

MAX_SAFE_INTEGER = 2**53 - 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_flow(gru, clients, kind, group, transport):
    teacher = clients.authed(kind, gru, 1001, group, user_type=0, transport=transport, name="王老师")
    alice = clients.authed(kind, gru, 1002, group, transport=transport)
    bob = clients.authed(kind, gru, "1003", group, transport=transport)

    # broadcast: every other member of the group, not the sender
    content = json.dumps({"userName": "王老师", "message": "跳转到第三页"}, ensure_ascii=False)
    teacher.emit("msg", json.dumps({"type": 1, "target": {"id": 10, "type": 1}, "content": content}))
    result = teacher.wait_for("msg_result")
    assert result["success"] is True and result["errorCode"] == 0
    for student in (alice, bob):
        message = student.wait_for("msg")
        assert message["content"] == content
        assert message["id"] == result["data"]["id"]
        assert 0 < message["id"] <= MAX_SAFE_INTEGER
        assert abs(message["createTime"] - time.time() * 1000) < 60_000
        assert message["expireTime"] == 0
        assert message["from"] == {"id": 1001, "type": 0, "name": "王老师"}

    # unicast: only the target user
    alice.emit("msg", {"type": 0, "target": {"id": 1001, "type": 0}, "content": "老师好"})
    assert alice.wait_for("msg_result")["success"] is True
    private = teacher.wait_for("msg")
    assert private["content"] == "老师好" and private["from"]["id"] == 1002
    assert private["id"] > message["id"]

    # online: the ids as the users authenticated with them
    bob.emit("online", group)
    assert sorted(map(str, bob.wait_for("online_result"))) == ["1001", "1002", "1003"]
    teacher.emit("online", group)
    assert set(map(type, teacher.wait_for("online_result"))) == {int, str}

    time.sleep(0.3)
    assert teacher.received("msg") == []  # the sender never gets its own broadcast
    assert bob.received("msg") == []  # nor does anyone outside a unicast


def test_groups_are_isolated(gru, clients, kind, group):
    a = clients.authed(kind, gru, 1, group)
    b = clients.authed(kind, gru, 2, group)
    outsider = clients.authed(kind, gru, 3, group + "-other")
    a.emit("msg", {"type": 1, "content": "only my class"})
    assert b.wait_for("msg")["content"] == "only my class"
    outsider.emit("online", group + "-other")
    assert outsider.wait_for("online_result") == [3]
    time.sleep(0.3)
    assert outsider.received("msg") == []


def test_two_connections_of_one_user(gru, clients, kind, group):
    phone = clients.authed(kind, gru, 7, group, transport="websocket")
    laptop = clients.authed(kind, gru, 7, group, transport="polling")
    teacher = clients.authed(kind, gru, 8, group, user_type=0)
    teacher.emit("msg", {"type": 0, "target": {"id": 7, "type": 1}, "content": "both devices"})
    assert teacher.wait_for("msg_result")["success"] is True
    assert phone.wait_for("msg")["content"] == "both devices"
    assert laptop.wait_for("msg")["content"] == "both devices"
    teacher.emit("online", group)
    assert sorted(teacher.wait_for("online_result")) == [7, 8]  # the user is listed once

    phone.close()
    laptop.emit("msg", {"type": 1, "content": "still here"})
    assert laptop.wait_for("msg_result")["success"] is True
    teacher.emit("online", group)
    assert sorted(teacher.wait_for("online_result")) == [7, 8]  # one connection left keeps 7 online
    laptop.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        teacher.emit("online", group)
        if teacher.wait_for("online_result") == [8]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("user 7 still online after closing both connections")


def test_mixed_client_kinds_share_a_group(gru, clients, group):
    python = clients.authed("python", gru, 1, group, transport="polling")
    node = clients.authed("node4", gru, 2, group, transport="websocket")
    python.emit("msg", {"type": 1, "content": "from python"})
    node.emit("msg", {"type": 1, "content": "from node"})
    assert node.wait_for("msg")["content"] == "from python"
    assert python.wait_for("msg")["content"] == "from node"


def test_token2_is_reusable_for_a_reconnect(gru, clients, kind, group):
    ticket = get_ticket(gru, 55, 1)
    auth = json.dumps({"id": 55, "name": "n", "groupId": group, "token1": "t1", "token2": ticket["token"], "type": 1})
    for _ in range(2):
        client = clients.new(kind, ticket["addr"])
        client.emit("auth", auth)
        assert client.wait_for("auth_result")["success"] is True
        client.close()


def test_messages_from_one_sender_arrive_in_order(gru, clients, kind, group):
    sender = clients.authed(kind, gru, 1, group, transport="polling")
    receiver = clients.authed(kind, gru, 2, group)
    for i in range(40):  # more than one polling batch
        sender.emit("msg", {"type": 1, "content": str(i)})
    received = [receiver.wait_for("msg") for _ in range(40)]
    assert [m["content"] for m in received] == [str(i) for i in range(40)]
    ids = [m["id"] for m in received]
    assert ids == sorted(ids) and len(set(ids)) == 40
    results = [sender.wait_for("msg_result") for _ in range(40)]
    assert all(r["success"] for r in results)
