"""One contract for both backends, plus what only the Redis backend must survive (crashes, restarts, outages)."""

from __future__ import annotations

import time

import pytest
import redis

from gru.backends.base import BackendUnavailable
from gru.backends.memory import MemoryBackend
from gru.backends.redis import Keys, RedisBackend
from gru.models import Instance, UserKey

TTL = 1.0


def redis_backend(url: str, prefix: str, instance: str, ttl: float = TTL) -> RedisBackend:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=0.5)
    backend = RedisBackend(client, Keys(prefix), instance, ttl)
    backend.heartbeat(Instance(instance, "node_1", "http://127.0.0.1:1", 0, "up"))
    return backend


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    if request.param == "memory":
        yield MemoryBackend()
        return
    server = request.getfixturevalue("redis_server")
    made = redis_backend(server.url, request.getfixturevalue("redis_prefix"), "i1", ttl=30)
    yield made
    made.close()


A, B = UserKey("1", 1), UserKey("2", 0)


def test_ids_are_increasing_and_respect_the_floor(backend):
    ids = [backend.allocate_id(1000) for _ in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100 and ids[0] >= 1000
    assert backend.allocate_id(10**15) == 10**15
    assert backend.allocate_id(5) == 10**15 + 1


def test_presence_lists_each_user_once_as_authenticated(backend):
    backend.presence_add("10", A, 1, "c1")
    backend.presence_add("10", A, 1, "c2")
    backend.presence_add("10", B, "2", "c3")
    backend.presence_add("11", B, "2", "c4")
    assert sorted(map(str, backend.online("10"))) == ["1", "2"]
    assert len(backend.online("10")) == 2
    backend.presence_remove("10", A, "c1")
    assert backend.is_online(A)
    backend.presence_remove("10", A, "c2")
    assert not backend.is_online(A)
    assert backend.online("10") == ["2"]
    assert backend.online("nobody-here") == []


def test_live_nodes_reports_the_heartbeat(backend):
    backend.heartbeat(Instance("i1", "node_1", "http://127.0.0.1:1", 7, "draining"))
    [node] = backend.live_nodes()
    assert (node.name, node.connections, node.state) == ("node_1", 7, "draining")


def test_history_keeps_the_newest_and_knows_what_it_dropped(backend):
    base = 1_800_000_000_000_000
    for i in range(8):
        backend.history_append("g:1", base + i, {"id": base + i, "content": f"é{i}"}, size=5, ttl=60, min_id=0)
    backend.history_append("u:1:2", base + 100, {"id": base + 100, "content": "private"}, size=5, ttl=60, min_id=0)
    kept, complete = backend.history_since(["g:1", "u:1:2"], base + 4, min_id=0)
    assert [m["content"] for m in kept] == ["é5", "é6", "é7", "private"] and complete is True
    kept, complete = backend.history_since(["g:1"], base + 1, min_id=0)
    assert [m["id"] - base for m in kept] == [3, 4, 5, 6, 7] and complete is False  # 2 was dropped
    assert backend.history_since(["g:1"], base + 6, min_id=base + 7) == ([{"id": base + 7, "content": "é7"}], False)
    assert backend.history_since(["nothing"], base, min_id=0) == ([], True)


def test_history_drops_entries_older_than_min_id(backend):
    backend.history_append("g:2", 100, {"id": 100}, size=10, ttl=60, min_id=0)
    backend.history_append("g:2", 300, {"id": 300}, size=10, ttl=60, min_id=200)
    assert backend.history_since(["g:2"], 50, min_id=0) == ([{"id": 300}], False)
    assert backend.history_since(["g:2"], 100, min_id=0) == ([{"id": 300}], True)


def test_offline_queue_is_bounded_ordered_and_taken_once(backend):
    user = UserKey("9", 1)
    now = int(time.time() * 1000)
    for i in (3, 1, 2, 4):
        backend.offline_push(user, i, {"id": i}, expire_at_ms=now + (60_000 if i != 2 else 100), size=3)
    assert backend.offline_take(user, now_ms=now + 1000) == [{"id": 3}, {"id": 4}]  # 1 pushed out, 2 expired
    assert backend.offline_take(user, now_ms=now + 1000) == []


def test_last_group_is_remembered(backend):
    user = UserKey("9", 1)
    assert backend.last_group(user) is None
    backend.remember_group(user, "10", ttl=60)
    assert backend.last_group(user) == "10"
    backend.presence_add("10", user, 9, "c1")
    backend.presence_add("11", user, 9, "c2")
    assert backend.online_groups(user) == {"10", "11"}


# -- Redis only ------------------------------------------------------------------------------


@pytest.fixture
def pair(redis_server, redis_prefix):
    """Two processes of one deployment sharing Redis."""
    first = redis_backend(redis_server.url, redis_prefix, "node_1:1:a")
    second = redis_backend(redis_server.url, redis_prefix, "node_2:2:b")
    yield first, second
    first.close()
    second.close()


def test_ids_are_unique_and_increasing_across_processes(pair):
    first, second = pair
    ids = [(first if i % 2 else second).allocate_id(0) for i in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == 200


def test_presence_and_nodes_are_shared(pair):
    first, second = pair
    second.heartbeat(Instance("node_2:2:b", "node_2", "http://127.0.0.1:2", 3, "up"))
    first.presence_add("10", A, 1, "c1")
    second.presence_add("10", B, 2, "c1")  # connection ids only need to be unique per process
    assert sorted(first.online("10")) == [1, 2]
    assert second.is_online(A)
    nodes = {n.name: n for n in first.live_nodes()}
    assert set(nodes) == {"node_1", "node_2"} and nodes["node_2"].connections == 3


def test_workers_of_one_node_add_up(pair, redis_server, redis_prefix):
    first, _ = pair
    sibling = redis_backend(redis_server.url, redis_prefix, "node_1:9:z")
    first.heartbeat(Instance("node_1:1:a", "node_1", "http://127.0.0.1:1", 2, "up"))
    sibling.heartbeat(Instance("node_1:9:z", "node_1", "http://127.0.0.1:1", 5, "up"))
    node = next(n for n in first.live_nodes() if n.name == "node_1")
    assert node.connections == 7
    sibling.close()


def test_a_dead_process_leaves_online_lists_and_is_swept(pair):
    first, second = pair
    first.presence_add("10", A, 1, "c1")
    second.presence_add("10", B, 2, "c1")
    deadline = time.monotonic() + TTL + 1
    while time.monotonic() < deadline:  # keep only `second` alive
        second.heartbeat(Instance("node_2:2:b", "node_2", None, 1, "up"))
        if first.online("10") == [2]:
            break
        time.sleep(0.1)
    assert second.online("10") == [2]
    assert not second.is_online(A)
    assert "node_1" not in {n.name for n in second.live_nodes()}
    assert second.sweep_dead_instances() == 1
    keys = second._redis.keys(f"{second._keys.prefix}:conns:*")
    assert keys == [f"{second._keys.prefix}:conns:node_2:2:b".encode()]


def test_presence_is_replayed_after_redis_loses_everything(pair):
    first, _ = pair
    first.presence_add("10", A, 1, "c1")
    first.presence_add("10", B, 2, "c2")
    first.presence_remove("10", B, "c2")
    first._redis.flushdb()  # what a Redis restart without persistence looks like
    assert first.online("10") == []
    first.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
    assert first.online("10") == [1]


def test_outage_raises_for_reads_and_replays_writes_afterwards(redis_server, redis_prefix):
    backend = redis_backend(redis_server.url, redis_prefix, "node_1:1:a")
    backend.presence_add("10", A, 1, "c1")
    redis_server.stop()
    try:
        with pytest.raises(BackendUnavailable):
            backend.online("10")
        with pytest.raises(BackendUnavailable):
            backend.allocate_id(1)
        with pytest.raises(BackendUnavailable):
            backend.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
        backend.presence_add("10", B, 2, "c2")  # must not raise: kept for the replay
        backend.presence_remove("10", A, "c1")
        assert not backend.ping()
    finally:
        redis_server.start()
    backend.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
    assert backend.online("10") == [2]
    backend.close()
