"""Shared fixtures: the real service under gunicorn, tickets, and real socket.io clients."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from clients import CLIENT_KINDS, Client, NodePuppet, make_client
from support.processes import ServerHandle, free_port, start_gunicorn
from support.redis_server import RedisServer

SECRET = "test-secret-0123456789abcdef-0123456789"
AUTH_TIMEOUT = 2.0


def start_gru(env: dict[str, str] | None = None) -> ServerHandle:
    """The real service (``wsgi:app`` with the repo's gunicorn.conf.py) on a free loopback port."""
    base = {"GRU_SECRET": SECRET, "GRU_AUTH_TIMEOUT": str(AUTH_TIMEOUT), "GRU_LOG_LEVEL": "INFO"}
    return start_gunicorn("wsgi:app", env={**base, **(env or {})}, config="gunicorn.conf.py")


@pytest.fixture(scope="session")
def gru() -> Iterator[ServerHandle]:
    """One embedded-default service shared by the end-to-end tests (tests use distinct groups)."""
    server = start_gru()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def puppet() -> Iterator[NodePuppet]:
    """One Node process hosting every Node socket.io client of the session."""
    node = NodePuppet()
    yield node
    node.close()


@pytest.fixture
def group() -> str:
    """A group id of this test only, so tests sharing a server never see each other's traffic."""
    return f"g-{uuid.uuid4().hex[:10]}"


def get_ticket(server: ServerHandle, user_id: object, user_type: int = 1, name: str = "user",
               token1: str = "t1") -> dict:
    """A successful ticket's ``data``."""
    params = {"userType": user_type, "userName": name, "userId": user_id, "token1": token1}
    response = requests.get(f"{server.url}/ticket", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["data"]


class Clients:
    """Makes real clients of any kind and closes them all at the end of the test."""

    def __init__(self, puppet_factory: Callable[[], NodePuppet]) -> None:
        self._puppet_factory = puppet_factory
        self._made: list[Client] = []

    def new(self, kind: str, url: str, transport: str = "websocket") -> Client:
        puppet = self._puppet_factory() if kind != "python" else None
        client = make_client(kind, puppet=puppet)
        self._made.append(client)
        client.connect(url, transport=transport)
        return client

    def authed(self, kind: str, server: ServerHandle, user_id: object, group: str, user_type: int = 1,
               transport: str = "websocket", name: str | None = None) -> Client:
        """Ticket → connect → auth (JSON string, as the original clients do) → assert success."""
        name = name or f"user {user_id}"
        ticket = get_ticket(server, user_id, user_type, name)
        client = self.new(kind, ticket["addr"], transport)
        client.emit("auth", json.dumps({"id": user_id, "name": name, "groupId": group, "token1": "t1",
                                        "token2": ticket["token"], "type": user_type}))
        result = client.wait_for("auth_result")
        assert result["success"] is True, result
        return client

    def close(self) -> None:
        for client in self._made:
            client.close()


@pytest.fixture
def clients(request) -> Iterator[Clients]:
    made = Clients(lambda: request.getfixturevalue("puppet"))
    yield made
    made.close()


@pytest.fixture(params=CLIENT_KINDS)
def kind(request) -> str:
    """Each end-to-end test runs once per real client implementation."""
    return request.param


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server shared by the session; tests isolate themselves with a key prefix."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test only."""
    return f"t{uuid.uuid4().hex[:8]}"


FAST_CLUSTER = {"GRU_HEARTBEAT_INTERVAL": "0.5", "GRU_NODE_TTL": "2", "GRU_DRAIN_SECONDS": "0.5"}


def start_node(redis_url: str, prefix: str, name: str, role: str = "node", port: int | None = None,
               env: dict[str, str] | None = None, workers: int = 1) -> ServerHandle:
    """One process group of a cluster (a node, the ticket service, or both) sharing Redis."""
    port = port or free_port()
    base = {"GRU_REDIS_URL": redis_url, "GRU_REDIS_PREFIX": prefix, "GRU_ROLE": role, "GRU_NODE_NAME": name,
            "GRU_PUBLIC_ADDR": f"http://127.0.0.1:{port}", "GRU_SECRET": SECRET,
            "GRU_AUTH_TIMEOUT": str(AUTH_TIMEOUT), **FAST_CLUSTER, **(env or {})}
    return start_gunicorn("wsgi:app", env=base, port=port, config="gunicorn.conf.py", workers=workers)
