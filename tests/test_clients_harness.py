"""The client harness itself works, for every client kind and transport."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from clients import (
    CLIENT_KINDS,
    NODE_KINDS,
    TRANSPORTS,
    Client,
    ConnectionFailed,
    NodePuppet,
    make_client,
)
from support.processes import ServerHandle, free_port, start_gunicorn

ECHO_APP = "tests.support.echo_app:app"
PAYLOAD = {"text": "跳转到第三页", "page": 3, "nested": {"ok": True, "items": [1, "二", None]}}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerHandle]:
    server = start_gunicorn(ECHO_APP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def puppets() -> Iterator[dict[str, NodePuppet]]:
    """Node puppets started lazily, one per node kind, shared by the module."""
    started: dict[str, NodePuppet] = {}
    yield started
    for puppet in started.values():
        puppet.close()


@pytest.fixture
def new_client(puppets: dict[str, NodePuppet]) -> Iterator[Callable[[str], Client]]:
    """Factory for clients of any kind; all are closed after the test."""
    made: list[Client] = []

    def factory(kind: str) -> Client:
        if kind in NODE_KINDS and kind not in puppets:
            puppets[kind] = NodePuppet(kind)
        client = make_client(kind, puppets.get(kind))
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_echo_roundtrip_and_kick(new_client, echo_server, kind, transport) -> None:
    client = new_client(kind)
    client.connect(echo_server.url, transport=transport)
    assert client.connected
    # "upgrade" starts on polling; Node upgrades in the background after connect.
    expected = "polling" if transport == "polling" else "websocket"
    assert wait_until(lambda: client.transport == expected), client.transport

    client.emit("echo", PAYLOAD)
    assert client.wait_for("echo_result") == PAYLOAD

    client.emit("kick")
    client.wait_disconnected()
    assert not client.connected


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_events_are_fifo_binary_survives_and_received_drains(new_client, echo_server, kind) -> None:
    client = new_client(kind)
    client.connect(echo_server.url)
    blob = {"blob": b"\x00\x01\xfe\xff", "text": "跳转"}
    for payload in ({"i": 0}, {"i": 1}, blob):
        client.emit("echo", payload)
    assert client.wait_for("echo_result") == {"i": 0}
    assert client.wait_for("echo_result") == {"i": 1}
    assert client.wait_for("echo_result") == blob

    client.emit("echo", "x")
    client.emit("echo", "y")
    assert client.wait_for("echo_result") == "x"
    drained: list = []

    def drain() -> bool:  # received() never blocks, so poll until "y" has arrived
        drained.extend(client.received("echo_result"))
        return bool(drained)

    assert wait_until(drain)
    assert drained == ["y"]
    assert client.received("echo_result") == []


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_events_that_arrive_while_the_test_holds_the_inbox_keep_their_order(new_client, echo_server, kind) -> None:
    client = new_client(kind)
    client.connect(echo_server.url)
    with client._cond:  # the test is busy with the inbox while the answers arrive back to back
        for i in range(100):
            client.emit("echo", i)
        time.sleep(0.5)
    assert [client.wait_for("echo_result") for _ in range(100)] == list(range(100))


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_wait_for_timeout_names_client_and_event(new_client, echo_server, kind) -> None:
    client = new_client(kind)
    client.connect(echo_server.url)
    with pytest.raises(TimeoutError, match=rf"{kind}.*'never_sent'"):
        client.wait_for("never_sent", timeout=0.2)
    client.close()
    client.close()  # idempotent


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_connect_to_closed_port_fails(new_client, kind) -> None:
    client = new_client(kind)
    with pytest.raises(ConnectionFailed):
        client.connect(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    assert not client.connected
