"""Every refusal of the socket API, end to end: a clear code and reason, never a hang or a crash."""

from __future__ import annotations

import json
import time

import pytest
from conftest import AUTH_TIMEOUT, SECRET, get_ticket

from gru.services.tokens import TokenService


def auth_payload(ticket: dict, user_id: object, group: str, **overrides) -> str:
    body = {"id": user_id, "name": "n", "groupId": group, "token1": "t1", "token2": ticket["token"], "type": 1}
    return json.dumps(body | overrides)


def expired_token(user_id: str) -> str:
    token, _ = TokenService(SECRET, ttl=10, clock=lambda: time.time() - 3600).issue(user_id, 1, "n")
    return token


def tampered(token: str) -> str:
    head, claims, signature = token.split(".")
    return f"{head}.{claims}.{signature[:-3]}abc"


@pytest.mark.parametrize(("case", "code"), [
    ("bad_json", -1), ("not_an_object", -3), ("missing_group", -3), ("bad_group", -13),
    ("tampered", -4), ("expired", -5), ("other_user", -6), ("other_type", -6), ("no_args", -3),
])
def test_failed_auth_answers_then_disconnects(gru, clients, kind, group, case, code):
    ticket = get_ticket(gru, 31, 1)
    payloads = {
        "bad_json": "{id: 31,",
        "not_an_object": json.dumps([31]),
        "missing_group": auth_payload(ticket, 31, group, groupId=None),
        "bad_group": auth_payload(ticket, 31, {"x": 1}),
        "tampered": auth_payload(ticket, 31, group, token2=tampered(ticket["token"])),
        "expired": auth_payload(ticket, 31, group, token2=expired_token("31")),
        "other_user": auth_payload(ticket, 32, group),
        "other_type": auth_payload(ticket, 31, group, type=0),
    }
    client = clients.new(kind, ticket["addr"])
    if case == "no_args":
        client.emit("auth")
    else:
        client.emit("auth", payloads[case])
    result = client.wait_for("auth_result")
    assert result["success"] is False and result["errorCode"] == code and result["msg"]
    client.wait_disconnected(timeout=5)


def test_auth_twice_is_refused_and_disconnects(gru, clients, kind, group):
    client = clients.authed(kind, gru, 41, group)
    ticket = get_ticket(gru, 41, 1)
    client.emit("auth", auth_payload(ticket, 41, group))
    result = client.wait_for("auth_result")
    assert (result["success"], result["errorCode"]) == (False, -7)
    client.wait_disconnected(timeout=5)


def test_unauthenticated_connection_is_closed_after_the_timeout(gru, clients, kind):
    ticket = get_ticket(gru, 51, 1)
    client = clients.new(kind, ticket["addr"], transport="polling")
    started = time.monotonic()
    result = client.wait_for("auth_result", timeout=AUTH_TIMEOUT + 5)
    assert (result["success"], result["errorCode"]) == (False, -9)
    client.wait_disconnected(timeout=5)
    assert AUTH_TIMEOUT - 0.5 <= time.monotonic() - started <= AUTH_TIMEOUT + 5


def test_events_before_auth_are_answered_with_not_authenticated(gru, clients, kind, group):
    ticket = get_ticket(gru, 61, 1)
    client = clients.new(kind, ticket["addr"])
    client.emit("msg", json.dumps({"type": 1, "content": "x"}))
    client.emit("online", group)
    assert client.wait_for("msg_result") == {"success": False, "errorCode": -8,
                                             "msg": "not authenticated: send auth first"}
    assert client.wait_for("online_result")["errorCode"] == -8
    client.emit("auth", auth_payload(ticket, 61, group))  # still allowed to authenticate afterwards
    assert client.wait_for("auth_result")["success"] is True


@pytest.mark.parametrize(("payload", "code"), [
    ("{not json", -1),
    (json.dumps({"type": 3, "content": "x"}), -2),
    (json.dumps({"content": "x"}), -2),
    (json.dumps({"type": 0, "content": "x"}), -10),
    (json.dumps({"type": 0, "target": {"id": 1}, "content": "x"}), -10),
    (json.dumps({"type": 1, "content": "x" * 65537}), -11),
    (json.dumps({"type": 1, "content": "跳" * 21846}), -11),
    (json.dumps({"type": 0, "target": {"id": "nobody", "type": 1}, "content": "x"}), -16),
    (json.dumps({"type": 1, "content": {"page": 3}}), -17),
    (json.dumps({"type": 1}), -17),
])
def test_bad_messages_get_their_code_and_bystanders_are_undisturbed(gru, clients, kind, group, payload, code):
    sender = clients.authed(kind, gru, 71, group)
    bystander = clients.authed(kind, gru, 72, group)
    sender.emit("msg", payload)
    result = sender.wait_for("msg_result")
    assert result["success"] is False and result["errorCode"] == code and result["msg"]
    sender.emit("msg", {"type": 1, "content": "after the error"})
    assert sender.wait_for("msg_result")["success"] is True
    assert bystander.wait_for("msg")["content"] == "after the error"  # the bad one was never delivered
    assert sender.connected and bystander.connected


def test_content_at_the_limit_is_delivered(gru, clients, kind, group):
    sender = clients.authed(kind, gru, 81, group)
    receiver = clients.authed(kind, gru, 82, group)
    sender.emit("msg", {"type": 1, "content": "x" * 65536})
    assert sender.wait_for("msg_result")["success"] is True
    assert len(receiver.wait_for("msg")["content"]) == 65536


@pytest.mark.parametrize(("payload", "code"), [("", -13), ("{bad", -1), (json.dumps({"groupId": [1]}), -13)])
def test_bad_online_requests(gru, clients, kind, group, payload, code):
    client = clients.authed(kind, gru, 91, group)
    client.emit("online", payload)
    result = client.wait_for("online_result")
    assert result["success"] is False and result["errorCode"] == code


def test_unknown_events_are_answered_not_dropped(gru, clients, kind, group):
    client = clients.authed(kind, gru, 95, group)
    client.emit("jump", {"page": 3})
    error = client.wait_for("error")
    assert error["success"] is False and "jump" in error["msg"]
    assert client.connected


def test_unicast_to_a_classmate_who_left_is_target_offline(gru, clients, kind, group):
    sender = clients.authed(kind, gru, 96, group)
    leaver = clients.authed(kind, gru, 97, group)
    leaver.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sender.emit("msg", {"type": 0, "target": {"id": 97, "type": 1}, "content": "x"})
        result = sender.wait_for("msg_result")
        if result["errorCode"] == -12:
            break
        time.sleep(0.1)
    assert (result["success"], result["errorCode"]) == (False, -12)


def test_scopes_keep_classes_apart(gru, clients, kind, group):
    me = clients.authed(kind, gru, 98, group)
    other = clients.authed(kind, gru, 99, group + "-other")
    me.emit("online", group + "-other")
    assert me.wait_for("online_result") == {"success": False, "errorCode": -16, "msg": "you may only list your own group"}
    me.emit("msg", {"type": 0, "target": {"id": 99, "type": 1}, "content": "psst"})
    assert me.wait_for("msg_result")["errorCode"] == -16
    time.sleep(0.3)
    assert other.received("msg") == []
