"""``/healthz`` and ``/readyz``: alive vs. fit to be handed out, on the real service and a real Redis."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import start_node
from support.redis_server import RedisServer

from gru.app import build
from gru.config import Settings


def wait_status(url: str, status: int, seconds: float) -> requests.Response:
    """Poll ``url`` until it answers ``status`` (bounded by ``seconds``); return the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        response = requests.get(url, timeout=3)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_healthz_and_readyz_on_the_embedded_default(gru):
    health = requests.get(f"{gru.url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["node"] == "node_1"
    ready = requests.get(f"{gru.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "node": "node_1", "role": "all",
                            "checks": {"redis": "not configured", "registered": True, "draining": False}}
    assert ready.headers["Cache-Control"] == "no-store"


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.close()


def test_a_node_without_redis_is_alive_but_not_ready_and_not_handed_out(own_redis, redis_prefix):
    node = start_node(own_redis.url, redis_prefix, "node_1")
    ticket = start_node(own_redis.url, redis_prefix, "ticket", role="ticket")
    try:
        ready = requests.get(f"{node.url}/readyz", timeout=5).json()
        assert ready["status"] == "ready" and ready["checks"]["redis"] is True
        assert requests.get(f"{ticket.url}/readyz", timeout=5).json()["checks"] == {
            "redis": True, "registered": "no node", "draining": False}

        own_redis.stop()
        down = wait_status(f"{node.url}/readyz", 503, 10)
        assert down.status_code == 503
        assert down.json()["status"] == "not ready"
        assert down.json()["checks"]["redis"] is False and down.json()["checks"]["registered"] is False
        assert requests.get(f"{node.url}/healthz", timeout=5).status_code == 200  # alive: do not restart it
        assert requests.get(f"{ticket.url}/readyz", timeout=5).status_code == 503
        params = {"userType": 1, "userName": "s", "userId": "s1", "token1": "t"}
        assert requests.get(f"{ticket.url}/ticket", params=params, timeout=5).status_code == 503

        own_redis.start()
        assert wait_status(f"{node.url}/readyz", 200, 15).status_code == 200
        answer = wait_status(f"{ticket.url}/ticket?userType=1&userName=s&userId=s1&token1=t", 200, 15)
        assert answer.json()["data"]["name"] == "node_1"
    finally:
        ticket.stop()
        node.stop()


def test_a_draining_node_is_not_ready():
    app = build(Settings(node_name="node_5"))
    web = app.flask_app.test_client()
    assert web.get("/readyz").status_code == 200
    app.heartbeat.drain()  # what SIGTERM does first
    answer = web.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["draining"] is True
