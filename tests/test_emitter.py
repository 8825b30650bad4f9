"""``gru.emitter.Emitter``: a plain Python process pushes through the deployment's Redis, no HTTP hop."""

from __future__ import annotations

import json

import pytest
from conftest import get_ticket, start_node
from support.redis_server import RedisServer

from gru.config import Settings
from gru.emitter import Emitter
from gru.errors import Code, GruError


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def node(own_redis, redis_prefix):
    server = start_node(own_redis.url, redis_prefix, "node_1", role="all")
    yield server
    server.stop()


def authed(clients, node, user_id, group, user_type=1):
    ticket = get_ticket(node, user_id, user_type)
    client = clients.new("python", ticket["addr"])
    client.emit("auth", json.dumps({"id": user_id, "name": "n", "groupId": group, "token1": "t",
                                    "token2": ticket["token"], "type": user_type}))
    assert client.wait_for("auth_result")["success"] is True
    return client


def test_an_emitter_broadcasts_unicasts_and_reads_presence(own_redis, redis_prefix, node, clients, group):
    teacher = authed(clients, node, "t1", group, user_type=0)
    student = authed(clients, node, 42, group)
    teacher.emit("msg", json.dumps({"type": 1, "content": "from a socket"}))
    socket_id = student.wait_for("msg")["id"]
    with Emitter(own_redis.url, prefix=redis_prefix, name="lms") as emitter:
        receipt = emitter.broadcast(group, "page 3")
        for client in (teacher, student):
            message = client.wait_for("msg")
            assert message["content"] == "page 3" and message["id"] == receipt["id"] > socket_id
            assert message["from"] == {"id": "system", "type": -1, "name": "lms"}
        emitter.unicast(42, 1, "just you")
        assert student.wait_for("msg")["content"] == "just you"
        assert sorted(map(str, emitter.online(group))) == ["42", "t1"]
        assert [(n["name"], n["state"]) for n in emitter.nodes()] == [("node_1", "up")]
        with pytest.raises(GruError) as offline:
            emitter.unicast("absent", 1, "hello")
        assert offline.value.code == Code.TARGET_OFFLINE
        assert emitter.unicast("absent", 1, "hello later", expire=60)["queued"] is True
        with pytest.raises(GruError) as bad:
            emitter.broadcast(group, 42)
        assert bad.value.code == Code.BAD_CONTENT


def test_an_emitter_reports_a_redis_outage_as_not_sent(own_redis, redis_prefix, node, clients, group):
    authed(clients, node, "s1", group)
    emitter = Emitter.from_settings(Settings(redis_url=own_redis.url, redis_prefix=redis_prefix,
                                             secret="x" * 32), name="lms")
    own_redis.stop()
    with pytest.raises(GruError) as down:
        emitter.broadcast(group, "lost?")
    assert down.value.code == Code.DELIVERY_UNAVAILABLE
    emitter.close()


def test_an_emitter_needs_redis():
    with pytest.raises(ValueError, match="GRU_REDIS_URL"):
        Emitter.from_settings(Settings())
