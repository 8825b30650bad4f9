"""One contract for both backends, plus what only the Redis backend must survive (crashes, restarts, outages)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from gru.backends.base import FORBIDDEN, OFFLINE, QUEUED, SENT, BackendUnavailable, Broadcast, Kept, Unicast
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


def test_history_never_returns_messages_older_than_the_time_to_live(backend):
    for message_id in (100, 200, 300):  # kept while they were recent enough
        backend.history_append("g:3", message_id, {"id": message_id}, size=10, ttl=60, min_id=0)
    assert backend.history_since(["g:3"], 50, min_id=200) == ([{"id": 200}, {"id": 300}], False)


def test_history_over_several_streams_is_incomplete_when_any_of_them_dropped_what_was_asked(backend):
    for message_id in range(100, 106):  # the group's stream keeps 3: it dropped 100..102
        backend.history_append("g:4", message_id, {"id": message_id}, size=3, ttl=60, min_id=0)
    backend.history_append("u:1:4", 106, {"id": 106}, size=3, ttl=60, min_id=0)
    for streams in (["g:4", "u:1:4"], ["u:1:4", "g:4"]):
        kept, complete = backend.history_since(streams, 101, min_id=0)
        assert [m["id"] for m in kept] == [103, 104, 105, 106] and complete is False


def test_an_offline_message_is_not_delivered_from_the_millisecond_it_expires(backend):
    user = UserKey("8", 1)
    expires = int(time.time() * 1000) + 60_000
    backend.offline_push(user, 1, {"id": 1}, expire_at_ms=expires + 1, size=3)
    backend.offline_push(user, 2, {"id": 2}, expire_at_ms=expires, size=3)
    assert backend.offline_take(user, now_ms=expires) == [{"id": 1}]


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


# -- unicast: one step for presence, scope, id, history and queue ---------------------------------


def unicast(user, body=None, scope=None, queue_until=0, floor=0):
    kept = Kept(f"u:{user.type}:{user.id}", 10, 60, 0)
    return Unicast(user, body or {"content": "hi"}, floor, kept, scope, queue_until, 5)


def test_unicast_sends_queues_or_refuses_and_keeps_what_it_accepts(backend):
    backend.presence_add("10", A, 1, "c1")
    backend.remember_group(A, "10", ttl=60)
    backend.remember_group(B, "11", ttl=60)
    sent = backend.unicast(unicast(A, scope="10", floor=1000))
    assert sent.outcome == SENT and sent.message_id >= 1000
    assert backend.unicast(unicast(A, scope="11")) == (FORBIDDEN, 0)  # online, but in another group
    assert backend.unicast(unicast(B, scope="11")) == (OFFLINE, 0)  # in scope, offline, no expire
    assert backend.unicast(unicast(B, scope="10", queue_until=1)) == (FORBIDDEN, 0)  # last seen elsewhere
    later = int(time.time() * 1000) + 60_000
    queued = backend.unicast(unicast(B, {"content": "later"}, scope="11", queue_until=later))
    assert queued.outcome == QUEUED and queued.message_id > sent.message_id
    assert backend.offline_take(B, int(time.time() * 1000)) == [{"id": queued.message_id, "content": "later"}]
    kept, complete = backend.history_since(["u:1:1"], 0, min_id=0)
    assert kept == [{"id": sent.message_id, "content": "hi"}] and complete is True
    assert backend.unicast(unicast(B)) == (OFFLINE, 0)  # no scope: only presence decides


def test_unicast_bodies_keep_their_text_exactly(backend):
    backend.presence_add("10", A, 1, "c1")
    body = {"createTime": 5, "content": "跳转 \"q\" \\ \ud800 é", "from": {"id": 10**30, "type": 1}}
    routed = backend.unicast(unicast(A, body))
    kept, _ = backend.history_since(["u:1:1"], 0, min_id=0)
    assert kept == [{"id": routed.message_id, **body}]
    assert list(kept[0]) == ["id", "createTime", "content", "from"]  # the id first, as on the wire


def test_unicast_is_published_only_to_the_other_processes_holding_the_target(pair, redis_server, redis_prefix):
    first, second = pair
    second.heartbeat(Instance("node_2:2:b", "node_2", None, 1, "up"))
    listener = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(*(f"{redis_prefix}:socketio{suffix}" for suffix in ("", ":node_1:1:a", ":node_2:2:b")))
    second.presence_add("10", A, 1, "c1")
    second.presence_add("10", A, 1, "c2")  # two connections, one process: one publish
    first.presence_add("10", B, 2, "c1")
    routed = first.unicast(unicast(A, {"content": "to A"}))
    second.unicast(unicast(A, {"content": "A is here"}))  # held by the sender's own process: no publish
    published, deadline = [], time.monotonic() + 0.5
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.1)  # None for the subscription's confirmation too
        if message is not None:
            published.append((message["channel"].decode(), message["data"]))
    expected = f'{{"id":{routed.message_id},"content":"to A"}}'.encode()
    assert published == [(f"{redis_prefix}:socketio:node_2:2:b", expected)]
    listener.close()


def test_unicast_during_an_outage_raises_and_changes_nothing(redis_server, redis_prefix):
    backend = redis_backend(redis_server.url, redis_prefix, "node_1:1:a")
    backend.presence_add("10", A, 1, "c1")
    redis_server.stop()
    try:
        with pytest.raises(BackendUnavailable):
            backend.unicast(unicast(A))
    finally:
        redis_server.start()
    backend.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
    assert backend.unicast(unicast(A)).outcome == SENT  # a fresh connection after the restart
    backend.close()


def test_a_broadcast_gets_a_growing_id_and_is_kept_with_it(backend):
    kept = Kept("g:10", 3, 60, 0)
    ids = [backend.broadcast(Broadcast("10", {"content": f"page {n}"}, 1000, kept)) for n in range(5)]
    assert ids == sorted(set(ids)) and ids[0] >= 1000
    found, complete = backend.history_since(["g:10"], 0, 0)
    assert found == [{"id": ids[n], "content": f"page {n}"} for n in (2, 3, 4)] and complete is False


def listen(url: str, *channels: str):
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*channels)
    return pubsub


def published(pubsub, seconds: float = 0.5) -> list[tuple[str, bytes]]:
    """(channel, data) of what a subscription received within ``seconds``."""
    received, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)  # None for the subscription's confirmation too
        if message is not None:
            received.append((message["channel"].decode(), message["data"]))
    return received


def test_a_broadcast_is_published_once_to_each_other_process_holding_a_member(redis_server, redis_prefix):
    """Two connections on node_2 (one publish there), one on the sender's own process (served
    locally: no publish), none on node_3 (nothing to decode there)."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1)
    backend = RedisBackend(client, Keys(redis_prefix), "node_1:1:a", TTL,
                           group_envelope=lambda group, conn: (f"<{group}|{conn}>".encode(), b"</>"))
    backend.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
    second = redis_backend(redis_server.url, redis_prefix, "node_2:2:b")
    third = redis_backend(redis_server.url, redis_prefix, "node_3:3:c")
    listener = listen(redis_server.url, *(f"{redis_prefix}:socketio{suffix}"
                                          for suffix in ("", ":node_1:1:a", ":node_2:2:b", ":node_3:3:c")))
    second.presence_add("10", A, 1, "c1")
    second.presence_add("10", B, 2, "c2")
    backend.presence_add("10", B, 2, "c1")
    third.presence_add("11", A, 1, "c1")  # another group
    message_id = backend.broadcast(Broadcast("10", {"content": "page 3"}, 0, None, "sid-1"))
    body = f'{{"id":{message_id},"content":"page 3"}}'
    assert published(listener) == [(f"{redis_prefix}:socketio:node_2:2:b", f"<10|sid-1>{body}</>".encode())]
    assert backend.broadcast(Broadcast("12", {"content": "nobody"}, 0, None)) > message_id  # accepted, kept
    assert published(listener, 0.2) == []
    listener.close()
    for made in (backend, second, third):
        made.close()


def holders(backend: RedisBackend, group: str) -> dict[str, int]:
    raw = backend._redis.hgetall(backend._keys.holders(group))
    return {owner.decode(): int(count) for owner, count in raw.items()}


def test_holders_count_each_process_connections_once_and_leave_with_the_last(pair):
    first, second = pair
    first.presence_add("10", A, 1, "c1")
    first.presence_add("10", A, 1, "c1")  # written again (as a replay does): counted once
    first.presence_add("10", B, 2, "c2")
    second.presence_add("10", A, 1, "c1")
    assert holders(first, "10") == {"node_1:1:a": 2, "node_2:2:b": 1}
    first.presence_remove("10", A, "c1")
    first.presence_remove("10", A, "c1")  # removed twice: counted once
    assert holders(first, "10") == {"node_1:1:a": 1, "node_2:2:b": 1}
    first.presence_remove("10", B, "c2")
    second.presence_remove("10", A, "c1")
    assert holders(first, "10") == {}
    assert first._redis.exists(first._keys.holders("10")) == 0  # nothing left behind


def test_holders_of_a_dead_process_are_swept_and_replays_recount(pair):
    first, second = pair
    first.presence_add("10", A, 1, "c1")
    first.presence_add("11", A, 1, "c2")
    second.presence_add("10", B, 2, "c1")
    second._redis.delete(second._keys.alive("node_1:1:a"))  # node_1 died
    assert second.online("10") == [2]  # a reader drops node_1's entries on the way
    assert second.sweep_dead_instances() == 1
    assert (holders(second, "10"), holders(second, "11")) == ({"node_2:2:b": 1}, {})
    second._redis.hset(second._keys.holders("10"), "node_2:2:b", 7)  # a count gone wrong
    second.presence_add("12", B, 2, "c2")
    second._dirty = True  # what a failed write or an outage leaves
    second.heartbeat(Instance("node_2:2:b", "node_2", None, 2, "up"))
    assert (holders(second, "10"), holders(second, "12")) == ({"node_2:2:b": 1}, {"node_2:2:b": 1})


# -- placement: the node each ticket names ---------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def registry(request):
    """An empty node registry of either backend (no node registered)."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_server").url, socket_timeout=1)
    made = RedisBackend(client, Keys(request.getfixturevalue("redis_prefix")), "tickets:1:a", 30)
    yield made
    made.close()


def beat(backend, node, connections=0, capacity=0, weight=1.0, state="up"):
    backend.heartbeat(Instance(f"{node}:1:a", node, f"http://{node}", connections, state, capacity, weight))


def placed(backend, tickets):
    counts = {}
    for _ in range(tickets):
        name = backend.place().nodes[0].name
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_place_spreads_tickets_before_any_node_reports_them(registry):
    for n in range(6):
        beat(registry, f"node_{n}")
    assert placed(registry, 600) == {f"node_{n}": 100 for n in range(6)}


def test_place_gives_nodes_shares_in_proportion_to_their_weights(registry):
    for name, weight in (("small", 1), ("big", 3), ("middle", 2)):
        beat(registry, name, weight=weight)
    assert placed(registry, 600) == {"small": 100, "middle": 200, "big": 300}


def test_place_counts_reported_connections_and_restarts_pending_at_each_report(registry):
    beat(registry, "a", connections=30)
    beat(registry, "b")
    assert placed(registry, 40) == {"a": 5, "b": 35}  # b catches up with a's 30, then they alternate
    beat(registry, "a", connections=35)  # a's 5 came
    beat(registry, "b", connections=0)  # none of b's 35 came: they are forgotten with the report
    assert placed(registry, 35) == {"b": 35}


def test_place_never_names_a_full_or_draining_node(registry):
    beat(registry, "full", connections=50, capacity=50)
    beat(registry, "nearly", connections=47, capacity=50)
    beat(registry, "leaving", state="draining")
    beat(registry, "free", connections=100)
    placement = registry.place()
    assert [n.name for n in placement.nodes] == ["nearly", "free"] and placement.full == 1
    assert placed(registry, 99) == {"nearly": 2, "free": 97}  # nearly: 47 + 3 tickets = its capacity
    beat(registry, "free", connections=200, capacity=200)
    assert registry.place() == ([], 3)  # every node that is up is full: nothing counted
    assert placed(registry, 0) == {}


def test_place_orders_backups_by_the_same_rule(registry):
    beat(registry, "busy", connections=900)
    beat(registry, "big", connections=20, weight=4)  # (20 + 1) / 4 beats quiet's 10 + 1
    beat(registry, "quiet", connections=10)
    beat(registry, "loaded", connections=300)
    first, *backups = registry.place().nodes
    assert (first.name, [n.name for n in backups]) == ("big", ["quiet", "loaded", "busy"])
    assert (first.pending, first.weight, first.connections) == (1, 4.0, 20)


def test_place_spreads_the_backups_of_one_node_over_the_others(registry):
    for n in range(4):
        beat(registry, f"node_{n}")
    first_backups = {}
    for _ in range(800):
        first, backup, *_ = registry.place().nodes
        if first.name == "node_0":
            first_backups[backup.name] = first_backups.get(backup.name, 0) + 1
    assert set(first_backups) == {"node_1", "node_2", "node_3"}  # a failover of node_0 spreads too
    assert max(first_backups.values()) < 0.6 * sum(first_backups.values())


def test_live_nodes_show_capacity_weight_and_pending_tickets(registry):
    beat(registry, "a", connections=3, capacity=10, weight=2.0)
    placed(registry, 4)
    [node] = registry.live_nodes()
    assert (node.connections, node.capacity, node.weight, node.pending) == (3, 10, 2.0, 4)
    beat(registry, "a", connections=5, capacity=10, weight=2.0)
    assert registry.live_nodes()[0].pending == 0


def test_a_burst_of_concurrent_calls_waits_for_pooled_connections_instead_of_failing(redis_server, redis_prefix):
    """A school joining at once: more concurrent presence calls in one process than the pool has
    connections. Each waits for a free connection (redis-py's default pool failed at once with
    "Too many connections", which became refusals)."""
    from concurrent.futures import ThreadPoolExecutor

    from gru.app import REDIS_OPTIONS
    from gru.backends.redis import POOL_CONNECTIONS, connect

    backend = RedisBackend(connect(redis_server.url, **REDIS_OPTIONS), Keys(redis_prefix), "burst", 30.0)
    backend.heartbeat(Instance("burst", "node_1", "http://127.0.0.1:1", 0, "up"))
    calls = 3 * POOL_CONNECTIONS

    def join(n: int) -> list:
        backend.presence_add("burst", UserKey(str(n), 1), n, f"c{n}")
        return backend.online("burst")

    with ThreadPoolExecutor(calls) as pool:
        results = list(pool.map(join, range(calls)))
    assert len(results) == calls
    assert sorted(backend.online("burst")) == list(range(calls))


# -- message scripts: the node's deadline and the history's time to live ---------------------------


def stall(server, seconds: float):
    """Stop redis-server for ``seconds``: it keeps its connections and runs what they queued afterwards."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    resume = threading.Timer(seconds, os.kill, (server.proc.pid, signal.SIGCONT))
    resume.start()
    return resume


def sender(server, prefix: str, reply_timeout: float | None, kind: str):
    """A process's backend whose Redis replies may take ``reply_timeout`` seconds, and a way to send
    one message of ``kind`` to group 10 (where user A is online)."""
    client = redis.Redis.from_url(server.url, socket_timeout=reply_timeout)
    backend = RedisBackend(client, Keys(prefix), "node_1:1:a", 30)
    backend.heartbeat(Instance("node_1:1:a", "node_1", None, 1, "up"))
    backend.presence_add("10", A, 1, "c1")

    def send(content: str) -> None:
        if kind == "broadcast":
            backend.broadcast(Broadcast("10", {"content": content}, 0, Kept("g:10", 10, 60, 0)))
        else:
            assert backend.unicast(unicast(A, {"content": content})).outcome == SENT

    stream = "g:10" if kind == "broadcast" else "u:1:1"
    return backend, send, lambda: [m["content"] for m in backend.history_since([stream], 0, 0)[0]]


@pytest.mark.parametrize("kind", ["broadcast", "unicast"])
def test_a_message_reaching_redis_after_the_nodes_deadline_is_refused_and_not_kept(redis_server, redis_prefix, kind):
    """Replies wait 0.4 s, so a script must refuse what it runs later than 0.2 s after the send
    (half the wait is left for the reply's way back): the node has answered -14 by then."""
    backend, send, kept = sender(redis_server, redis_prefix, 0.4, kind)
    resume = stall(redis_server, 0.05)  # runs 0.05 s after the send: in time
    try:
        send("in time")
    finally:
        resume.join()
    resume = stall(redis_server, 0.3)  # runs 0.3 s after the send: too late
    try:
        with pytest.raises(BackendUnavailable):
            send("late")
    finally:
        resume.join()
    assert kept() == ["in time"]
    backend.close()


@pytest.mark.parametrize("kind", ["broadcast", "unicast"])
def test_without_a_reply_timeout_a_stalled_redis_delays_messages_but_refuses_none(redis_server, redis_prefix, kind):
    backend, send, kept = sender(redis_server, redis_prefix, None, kind)
    resume = stall(redis_server, 0.3)
    try:
        send("slow")
    finally:
        resume.join()
    assert kept() == ["slow"]
    backend.close()


def test_history_lives_exactly_its_time_to_live(redis_server, redis_prefix):
    """GRU_HISTORY_TTL to the second, whichever way a message is kept (what Redis holds, in ms)."""
    backend = redis_backend(redis_server.url, redis_prefix, "node_1:1:a", ttl=30)
    backend.presence_add("10", A, 1, "c1")
    hour = 3600
    backend.broadcast(Broadcast("10", {"content": "b"}, 0, Kept("g:10", 1, hour, 0)))
    backend.broadcast(Broadcast("10", {"content": "b"}, 0, Kept("g:10", 1, hour, 0)))  # drops the first
    backend.unicast(Unicast(A, {"content": "u"}, 0, Kept("u:1:1", 10, hour, 0), None, 0, 5))
    backend.history_append("g:11", 10**15, {"id": 10**15}, size=10, ttl=hour, min_id=0)
    keys = backend._keys
    for key in (keys.history("g:10"), keys.dropped("g:10"), keys.history("u:1:1"), keys.history("g:11")):
        assert hour * 1000 - 1000 < backend._redis.pttl(key) <= hour * 1000, key
    backend.close()
