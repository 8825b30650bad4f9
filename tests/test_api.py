"""The publish API on the real service: pushes reach real clients like socket messages, refusals
have the ticket API's JSON shape, and the OpenAPI description is valid."""

from __future__ import annotations

import json
import time

import pytest
import requests
from conftest import get_ticket, start_gru, start_node
from openapi_spec_validator import validate
from support.redis_server import RedisServer

from gru.config import ConfigError, Settings

KEY = "lms-key-0123456789abcdef"
OLD_KEY = "lms-old-key-0123456789ab"
OPS_KEY = "ops-key-0123456789abcdef"
API_KEYS = f"lms:{KEY},lms:{OLD_KEY},ops:{OPS_KEY}"
MAX_SAFE_INTEGER = 2**53 - 1


def auth_header(key: str = KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api_gru():
    server = start_gru({"GRU_API_KEYS": API_KEYS, "GRU_MAX_CONTENT": "1000", "GRU_MAX_PAYLOAD": "4096"})
    yield server
    server.stop()


def push(server, body, key: str = KEY, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/api/push", json=body, headers=auth_header(key), timeout=5, **kwargs)


def test_broadcast_push_reaches_the_group_as_a_message_from_the_system(api_gru, clients, kind, group):
    student = clients.authed(kind, api_gru, "s1", group)
    teacher = clients.authed("python", api_gru, "t1", group, user_type=0)
    response = push(api_gru, {"groupId": group, "content": '{"page": 3}'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["errorCode"], body["msg"]) == (True, 0, "")
    for client in (student, teacher):
        message = client.wait_for("msg")
        assert message["content"] == '{"page": 3}'
        assert message["id"] == body["data"]["id"] and 0 < message["id"] <= MAX_SAFE_INTEGER
        assert message["createTime"] == body["data"]["createTime"]
        assert message["expireTime"] == 0
        assert message["from"] == {"id": "system", "type": -1, "name": "lms"}


def test_pushed_and_socket_messages_share_one_id_sequence(api_gru, clients, group):
    teacher = clients.authed("python", api_gru, "t1", group, user_type=0)
    student = clients.authed("python", api_gru, "s1", group)
    pushed = push(api_gru, {"groupId": group, "content": "a"}).json()
    teacher.emit("msg", json.dumps({"type": 1, "content": "b"}))
    assert teacher.wait_for("msg_result")["success"] is True
    first, second = student.wait_for("msg"), student.wait_for("msg")
    assert (first["content"], second["content"]) == ("a", "b")
    assert first["id"] == pushed["data"]["id"] < second["id"]
    assert second["from"]["id"] == "t1"


def test_unicast_push_reaches_every_connection_of_the_user_only(api_gru, clients, group):
    phone = clients.authed("python", api_gru, "s7", group)
    laptop = clients.authed("node4", api_gru, "s7", group)
    neighbour = clients.authed("python", api_gru, "s8", group)
    response = push(api_gru, {"target": {"id": "s7", "type": 1}, "content": "see me after class"}, key=OPS_KEY)
    assert response.status_code == 200, response.text
    for client in (phone, laptop):
        message = client.wait_for("msg")
        assert message["content"] == "see me after class"
        assert message["from"] == {"id": "system", "type": -1, "name": "ops"}
    neighbour.emit("online", group)  # a round trip: anything pushed to s8 would have arrived first
    neighbour.wait_for("online_result")
    assert neighbour.received("msg") == []


def test_unicast_to_an_offline_user_is_404_unless_it_may_wait(api_gru, clients, group):
    response = push(api_gru, {"target": {"id": "nobody-here", "type": 1}, "content": "hello"})
    assert response.status_code == 404
    assert response.json() == {"success": False, "errorCode": 404, "msg": "target user is offline"}
    queued = push(api_gru, {"target": {"id": "late-student", "type": 1}, "content": "homework", "expire": 60})
    assert queued.status_code == 200, queued.text
    assert queued.json()["data"]["queued"] is True
    late = clients.authed("python", api_gru, "late-student", group)
    message = late.wait_for("msg")
    assert (message["content"], message["id"]) == ("homework", queued.json()["data"]["id"])
    assert message["from"]["id"] == "system"


def test_the_old_key_of_a_rotation_still_works_under_the_same_name(api_gru, clients, group):
    student = clients.authed("python", api_gru, "s1", group)
    assert push(api_gru, {"groupId": group, "content": "x"}, key=OLD_KEY).status_code == 200
    assert student.wait_for("msg")["from"]["name"] == "lms"


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "no header"),
    ({"Authorization": "Bearer wrong-key-0123456789abcdef"}, "unknown key"),
    ({"Authorization": f"Basic {KEY}"}, "wrong scheme"),
    ({"Authorization": "Bearer "}, "empty key"),
    ({"Authorization": f"Bearer {KEY[:-1]}"}, "a prefix of a key"),
])
def test_missing_or_bad_api_keys_are_401(api_gru, headers, why):
    for method, path in (("POST", "/api/push"), ("GET", "/api/online?groupId=10"), ("GET", "/api/nodes")):
        response = requests.request(method, f"{api_gru.url}{path}", headers=headers, json={"groupId": 1,
                                    "content": "x"}, timeout=5)
        assert response.status_code == 401, why
        assert response.json() == {"success": False, "errorCode": 401,
                                   "msg": "missing or invalid API key: send Authorization: Bearer <key>"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("body", "needle"), [
    ({"content": "x"}, "exactly one of groupId"),
    ({"groupId": 10, "target": {"id": 1, "type": 1}, "content": "x"}, "exactly one of groupId"),
    ({"groupId": "", "content": "x"}, "groupId"),
    ({"groupId": {"id": 10}, "content": "x"}, "groupId"),
    ({"groupId": " 10", "content": "x"}, "groupId"),
    ({"groupId": "g" * 200, "content": "x"}, "groupId"),
    ({"groupId": 10}, "content is missing"),
    ({"groupId": 10, "content": 42}, "content must be a string"),
    ({"groupId": 10, "content": "é" * 600}, "content is larger than 1000 bytes"),
    ({"target": {"id": 1}, "content": "x"}, "target"),
    ({"target": {"id": 1, "type": 7}, "content": "x"}, "target.type"),
    ({"target": "s1", "content": "x"}, "target"),
    ({"target": {"id": "s1", "type": 1}, "content": "x", "expire": -5}, "expire"),
    ({"target": {"id": "s1", "type": 1}, "content": "x", "expire": True}, "expire"),
    ({"target": {"id": "s1", "type": 1}, "content": "x", "expire": "soon"}, "expire"),
    ({"groupId": 10, "content": "x", "expire": 60}, "expire applies to unicasts"),
    ({"groupId": 10, "content": "x", "urgent": True}, "unknown field: urgent"),
])
def test_bad_push_bodies_are_400_naming_the_problem(api_gru, body, needle):
    response = push(api_gru, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["success"], answer["errorCode"]) == (False, 400)
    assert needle in answer["msg"]


@pytest.mark.parametrize(("data", "needle"), [
    ("{not json", "not valid JSON"), ("", "not valid JSON"), ("[1, 2]", "JSON object"), ('"text"', "JSON object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bodies_that_are_not_a_json_object_are_400(api_gru, data, needle):
    response = requests.post(f"{api_gru.url}/api/push", data=data, timeout=5,
                             headers={**auth_header(), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert needle in response.json()["msg"]


def test_an_oversize_body_is_413(api_gru):
    response = push(api_gru, {"groupId": 10, "content": "x" * 5000})
    assert response.status_code == 413
    assert response.json() == {"success": False, "errorCode": 413, "msg": "request body is larger than 4096 bytes"}


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/api/push", "POST"), ("PUT", "/api/push", "POST"), ("POST", "/api/online?groupId=1", "GET"),
    ("DELETE", "/api/nodes", "GET"),
])
def test_wrong_methods_are_405_with_the_json_shape(api_gru, method, path, allowed):
    response = requests.request(method, f"{api_gru.url}{path}", headers=auth_header(), timeout=5)
    assert response.status_code == 405
    assert response.json()["errorCode"] == 405 and allowed in response.json()["msg"]
    assert response.headers["Allow"] == allowed


def test_online_lists_the_group_once_per_user(api_gru, clients, group):
    clients.authed("python", api_gru, 123, group)
    clients.authed("python", api_gru, 123, group)
    clients.authed("node4", api_gru, "t9", group, user_type=0)
    response = requests.get(f"{api_gru.url}/api/online", params={"groupId": group}, headers=auth_header(), timeout=5)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["groupId"] == group
    assert sorted(map(str, data["online"])) == ["123", "t9"]
    assert 123 in data["online"]  # ids as the users authenticated with them


@pytest.mark.parametrize(("params", "needle"), [({}, "groupId"), ({"groupId": ""}, "groupId"),
                                                 ({"groupId": "a\x01b"}, "groupId")])
def test_online_without_a_valid_group_is_400(api_gru, params, needle):
    response = requests.get(f"{api_gru.url}/api/online", params=params, headers=auth_header(), timeout=5)
    assert response.status_code == 400
    assert needle in response.json()["msg"]


def test_nodes_lists_this_node_with_its_connections(api_gru, clients, group):
    clients.authed("python", api_gru, "s1", group)
    deadline = time.monotonic() + 6  # the count is refreshed at every heartbeat (GRU_HEARTBEAT_INTERVAL)
    while True:
        response = requests.get(f"{api_gru.url}/api/nodes", headers=auth_header(), timeout=5)
        nodes = response.json()["data"]["nodes"]
        if nodes[0]["connections"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [n["name"] for n in nodes] == ["node_1"]
    assert nodes[0]["state"] == "up" and nodes[0]["connections"] >= 1


def test_the_openapi_description_is_valid_and_covers_the_api(api_gru):
    response = requests.get(f"{api_gru.url}/api/openapi.json", timeout=5)
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert set(document["paths"]) == {"/api/push", "/api/online", "/api/nodes"}
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_without_api_keys_the_api_refuses_everyone(gru):
    response = push(gru, {"groupId": 10, "content": "x"})
    assert response.status_code == 401


def test_keys_never_reach_the_log(api_gru):
    push(api_gru, {"groupId": 10, "content": "x"})
    push(api_gru, {"groupId": 10, "content": "x"}, key="wrong-key-0123456789abcdef")
    log = api_gru.log_tail(400)
    assert "api push key=lms status=200" in log
    assert "api push key=- status=401" in log
    for secret in (KEY, OLD_KEY, OPS_KEY, "wrong-key-0123456789abcdef"):
        assert secret not in log


@pytest.mark.parametrize(("value", "needle"), [
    ("lms", "entry 1 must be NAME:KEY"), ("lms:short", "at least 16"), (f"bad name:{KEY}", "entry 1 must be"),
    (f"a:{KEY},b:{KEY}", "entry 2 (b): the same key is listed twice"), (f"a:{KEY},", "entry 2"),
])
def test_bad_api_key_settings_stop_the_start_without_showing_keys(value, needle):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"GRU_API_KEYS": value})
    assert "GRU_API_KEYS" in str(info.value) and needle in str(info.value)
    assert KEY not in str(info.value)


# --- a cluster: the ticket service pushes to clients held by the nodes, through Redis -----------


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.close()


def test_the_ticket_service_pushes_through_redis_and_reports_outages(own_redis, redis_prefix, clients, group):
    env = {"GRU_API_KEYS": API_KEYS}
    ticket = start_node(own_redis.url, redis_prefix, "ticket", role="ticket", env=env)
    node = start_node(own_redis.url, redis_prefix, "node_1", env=env)
    try:
        data = get_ticket(ticket, "s1")
        assert data["addr"] == node.url
        student = clients.new("python", data["addr"])
        student.emit("auth", json.dumps({"id": "s1", "name": "n", "groupId": group, "token1": "t",
                                         "token2": data["token"], "type": 1}))
        assert student.wait_for("auth_result")["success"] is True
        assert push(ticket, {"groupId": group, "content": "from the ticket service"}).status_code == 200
        assert student.wait_for("msg")["from"] == {"id": "system", "type": -1, "name": "lms"}
        assert push(ticket, {"target": {"id": "s1", "type": 1}, "content": "just you"}).status_code == 200
        assert student.wait_for("msg")["content"] == "just you"
        online = requests.get(f"{ticket.url}/api/online", params={"groupId": group}, headers=auth_header(), timeout=5)
        assert online.json()["data"]["online"] == ["s1"]
        nodes = requests.get(f"{ticket.url}/api/nodes", headers=auth_header(), timeout=5).json()["data"]["nodes"]
        assert [(n["name"], n["addr"], n["state"]) for n in nodes] == [("node_1", node.url, "up")]

        own_redis.stop()
        down = push(ticket, {"groupId": group, "content": "lost?"})
        assert down.status_code == 503 and down.json()["errorCode"] == 503
        assert requests.get(f"{ticket.url}/api/nodes", headers=auth_header(), timeout=5).status_code == 503
    finally:
        ticket.stop()
        node.stop()
