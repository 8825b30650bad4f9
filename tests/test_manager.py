"""The Redis manager's share of relaying: which rooms stay local, and the relays' format."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time

import pytest
import redis
from support.redis_server import RedisServer, SentinelSetup

from gru.models import UserKey
from gru.sockets import manager as manager_module
from gru.sockets.manager import MASTER_CHECK, GruRedisManager, group_envelope, is_relayed_room, relay_envelope
from gru.sockets.rooms import group_room, user_room


def test_user_and_group_rooms_are_relayed_by_the_backend_and_connection_rooms_are_not():
    assert is_relayed_room(user_room(UserKey("7", 1)))
    assert is_relayed_room(group_room("u:1:7"))
    assert not is_relayed_room(None) and not is_relayed_room("sid-123")


def test_a_broadcast_relay_is_an_emit_to_the_group_room_skipping_the_sender():
    head, tail = group_envelope("node_1:42:ab")("10班", "sid-9")
    message = json.loads(head + b'{"id":5,"content":"page 3"}' + tail)
    assert message == {"method": "emit", "event": "msg", "namespace": "/", "room": "g:10班", "skip_sid": "sid-9",
                       "callback": None, "binary": False, "host_id": "node_1:42:ab",
                       "data": [{"id": 5, "content": "page 3"}]}


def test_a_relay_is_an_emit_message_to_the_users_room():
    head, tail = relay_envelope(UserKey('a"b', 1))
    message = json.loads(head + b'{"id":1,"content":"hi"}' + tail)
    assert message == {"method": "emit", "event": "msg", "namespace": "/", "room": 'u:1:a"b', "skip_sid": None,
                       "callback": None, "binary": False, "host_id": None, "data": [{"id": 1, "content": "hi"}]}


class Pauses:
    """The subscriber's clock: each pause is recorded instead of slept, and ``at[n]`` runs at the n-th."""

    def __init__(self, at: dict, real: bool = False) -> None:
        self.slept: list[float] = []
        self.at = at
        self.real = real

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at.pop(len(self.slept), lambda: None)()
        if self.real:
            time.sleep(seconds)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


class Stop(Exception):
    """Ends the listener of a test."""


def stop():
    raise Stop


def start_listener(url: str, prefix: str, monkeypatch, caplog, real_pauses: bool = False, at: dict | None = None):
    """A manager's subscriber running in a thread, what it takes in a queue, its pauses recorded
    (and slept when ``real_pauses``; ``at`` as in :class:`Pauses`); returns them and a function that ends it."""
    caplog.set_level(logging.INFO, logger="gru.sockets.manager")
    pauses = Pauses(at or {}, real=real_pauses)
    monkeypatch.setattr(manager_module, "time", pauses)
    manager = GruRedisManager(url, channel=f"{prefix}:socketio", instance_channel=f"{prefix}:socketio:node_1:1:a")
    received: queue.Queue = queue.Queue()

    def listen():
        with contextlib.suppress(Stop):
            for data in manager._listen():
                received.put(data)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()

    def end(redis_url: str) -> None:
        pauses.real = False
        pauses.at = {n: stop for n in range(len(pauses.slept) + 1, len(pauses.slept) + 100)}
        client = redis.Redis.from_url(redis_url)
        client.client_kill_filter(_type="pubsub")
        client.close()
        thread.join(5)

    return manager, pauses, received, end


@pytest.fixture
def listener(redis_server, redis_prefix, monkeypatch, caplog):
    manager, pauses, received, end = start_listener(redis_server.url, redis_prefix, monkeypatch, caplog)
    yield manager, pauses, received
    end(redis_server.url)


def delivered(redis_url: str, channel: str, received: queue.Queue, data: bytes, within: float = 5) -> bool:
    """Whether ``data`` published on ``channel`` reaches the subscriber (published again until it does)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=1)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                client.publish(channel, data)
            with contextlib.suppress(queue.Empty):
                if received.get(timeout=0.1) == data:
                    return True
        return False
    finally:
        client.close()


def test_the_subscriber_takes_the_shared_channel_and_its_own(listener, redis_server):
    manager, _, received = listener
    shared, own = manager.channels
    assert delivered(redis_server.url, shared, received, b"to everyone")
    assert delivered(redis_server.url, own, received, b"to this process")


def test_the_subscriber_retries_every_second_or_two_and_logs_each_outage_once(redis_prefix, monkeypatch, caplog):
    own = RedisServer().start()  # a server of its own: the outages touch no other test's connections
    try:
        manager, pauses, received, end = start_listener(own.url, redis_prefix, monkeypatch, caplog)
        try:
            shared = manager.channel
            assert delivered(own.url, shared, received, b"before")
            assert caplog.records == []  # the first subscription is no news
            pauses.at = {4: own.start}  # Redis is back during the fourth pause
            own.stop()
            assert delivered(own.url, shared, received, b"after", within=10)
            assert pauses.slept == [0.5, 1.0, 2.0, 2.0]  # never backing off to a minute
            pauses.at = {5: own.start}  # a second outage starts again from half a second
            own.stop()
            assert delivered(own.url, shared, received, b"again", within=10)
            assert pauses.slept[4:] == [0.5]
            lost = [r for r in caplog.records if "lost the Redis subscription" in r.getMessage()]
            back = [r for r in caplog.records if "re-subscribed" in r.getMessage()]
            assert len(lost) == 2 and len(back) == 2  # one line each per outage, not one per retry
        finally:
            end(own.url)
    finally:
        own.close()


def test_a_subscriber_started_while_redis_is_down_subscribes_once_it_is_up(redis_prefix, monkeypatch, caplog):
    own = RedisServer().start()  # a server of its own: subscribers of other tests never see this outage
    own.stop()
    try:
        manager, pauses, received, end = start_listener(own.url, redis_prefix, monkeypatch, caplog, at={2: own.start})
        try:
            if not eventually(lambda: len(pauses.slept) >= 2, within=5):
                own.start()
            assert delivered(own.url, manager.channel, received, b"first")
            assert pauses.slept == [0.5, 1.0]
            lost = [r for r in caplog.records if "lost the Redis subscription" in r.getMessage()]
            assert len(lost) == 1
        finally:
            end(own.url)
    finally:
        own.close()


def subscribers(port: int, channel: str) -> int:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return client.pubsub_numsub(channel)[0][1]
    finally:
        client.close()


def eventually(check, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if check():
                return True
        time.sleep(0.1)
    return False


def test_behind_sentinel_the_subscriber_stays_on_the_master_and_follows_a_failover(redis_prefix, monkeypatch,
                                                                                     caplog):
    """The backend's scripts publish on the master and count its subscribers: a subscription left on
    a demoted master would make every message for this process refused."""
    sentinel = SentinelSetup().start()
    try:
        manager, _, received, end = start_listener(sentinel.url, redis_prefix, monkeypatch, caplog, real_pauses=True)
        shared, own = manager.channels
        old = sentinel.master_port()
        assert eventually(lambda: subscribers(old, shared) == subscribers(old, own) == 1, within=5)
        time.sleep(2.5 * MASTER_CHECK)  # the listener checks the master meanwhile: all is well
        assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("gru")] == []
        assert delivered(f"redis://127.0.0.1:{old}/0", shared, received, b"before")
        redis.Redis(port=sentinel.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", sentinel.service)
        assert eventually(lambda: sentinel.master_port() != old, within=10)
        new = sentinel.master_port()
        assert eventually(lambda: subscribers(new, shared) == subscribers(new, own) == 1, within=10)
        assert subscribers(old, shared) == 0
        moved = f"subscribed on 127.0.0.1:{old}, but the master is now 127.0.0.1:{new}"
        assert any(moved in r.getMessage() for r in caplog.records)  # what an operator reads
        assert delivered(f"redis://127.0.0.1:{new}/0", own, received, b"after")
        end(f"redis://127.0.0.1:{new}/0")
    finally:
        sentinel.close()
