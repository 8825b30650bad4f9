"""Pipelined Redis calls: concurrent callers share a connection, yet each gets its own reply exactly once.

The lane tests run greenlets in this (unpatched) process with gevent sockets given to redis-py only;
the end-to-end tests drive a real node under gunicorn with real clients.
"""

from __future__ import annotations

import functools
import json
import threading
import time

import gevent
import gevent.socket
import pytest
import redis
import redis.connection
from conftest import get_ticket, start_node

from gru.backends.redis_lane import Lane


def own_hub(test):
    """Run the test in a thread of its own, with a gevent hub of its own: greenlets that earlier
    tests left in this process's main hub (an in-process app's heartbeat, say) cannot starve it."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        outcome: dict = {}

        def target():
            try:
                test(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's own thread
                outcome["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(120)
        assert not thread.is_alive(), "the test did not finish"
        if "error" in outcome:
            raise outcome["error"]
    return run


@pytest.fixture
def lane_client(redis_server, monkeypatch):
    """A client whose connections use gevent sockets, as under the server's monkey-patching."""
    monkeypatch.setattr(redis.connection, "socket", gevent.socket)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=0.5)
    yield client
    client.close()


def burst(lane, calls):
    """Run each call in its own greenlet at once; return each one's reply or exception, in order."""
    def run(call):
        try:
            return call(lane)
        except Exception as exc:  # noqa: BLE001 - the test compares what each caller got
            return exc
    greenlets = [gevent.spawn(run, call) for call in calls]
    gevent.joinall(greenlets, timeout=30)
    assert all(g.dead for g in greenlets)
    return [g.value for g in greenlets]


@own_hub
def test_concurrent_callers_get_their_own_replies_on_one_connection(lane_client, redis_prefix):
    lane = Lane(lane_client, pipelined=True)
    key = f"{redis_prefix}:n"

    def caller(i):
        return lambda lane: [lane.call("ECHO", f"{i}-{j}") for j in range(20)] + [lane.call("INCR", key)]

    replies = burst(lane, [caller(i) for i in range(100)])
    assert [r[:20] for r in replies] == [[f"{i}-{j}".encode() for j in range(20)] for i in range(100)]
    assert sorted(r[20] for r in replies) == list(range(1, 101))  # each INCR ran once
    clients = [c for c in lane_client.client_list() if c["cmd"] in ("echo", "incr")]
    assert len(clients) == 1  # all of it on one connection
    lane.close()


@own_hub
def test_an_error_reply_reaches_only_its_caller(lane_client, redis_prefix):
    lane = Lane(lane_client, pipelined=True)
    calls = [lambda lane, i=i: lane.call("ECHO", str(i)) for i in range(30)]
    calls[10] = lambda lane: lane.call("NOSUCHCOMMAND", "x")
    replies = burst(lane, calls)
    assert isinstance(replies[10], redis.ResponseError)
    assert [r for i, r in enumerate(replies) if i != 10] == [str(i).encode() for i in range(30) if i != 10]
    assert lane.call("PING") == b"PONG"
    lane.close()


@own_hub
def test_scripts_unknown_to_the_server_are_loaded_and_run_once_each(lane_client, redis_prefix):
    lane = Lane(lane_client, pipelined=True)
    script = lane_client.register_script("return redis.call('INCR', KEYS[1])")
    lane_client.script_flush()
    replies = burst(lane, [lambda lane: lane.evalsha(script, [f"{redis_prefix}:runs"], []) for _ in range(50)])
    assert sorted(replies) == list(range(1, 51))
    lane.close()


@own_hub
def test_an_outage_fails_every_waiting_caller_and_a_new_connection_serves_later_calls(lane_client, redis_server,
                                                                                    redis_prefix):
    lane = Lane(lane_client, pipelined=True)
    key = f"{redis_prefix}:q"
    blocker = gevent.spawn(lambda: lane.call("BLPOP", key, 5))  # holds the connection's later replies back
    waiting = [gevent.spawn(lane.call, "INCR", f"{redis_prefix}:n") for _ in range(20)]
    gevent.sleep(0.2)
    redis_server.stop()
    try:
        gevent.joinall([blocker, *waiting], timeout=5)
        assert all(isinstance(g.exception, redis.ConnectionError) for g in [blocker, *waiting])
    finally:
        redis_server.start()
    assert lane.call("INCR", f"{redis_prefix}:n") == 1  # nothing replayed: a fresh server, a fresh connection
    lane.close()


@own_hub
def test_a_server_that_stops_answering_fails_the_waiting_callers_after_the_socket_timeout(redis_server, monkeypatch,
                                                                                         redis_prefix):
    monkeypatch.setattr(redis.connection, "socket", gevent.socket)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.3)
    lane = Lane(client, pipelined=True)
    started = time.monotonic()
    blocker = gevent.spawn(lambda: lane.call("BLPOP", f"{redis_prefix}:q", 5))
    waiting = [gevent.spawn(lane.call, "PING") for _ in range(10)]
    gevent.joinall([blocker, *waiting], timeout=3)
    assert all(isinstance(g.exception, redis.TimeoutError) for g in [blocker, *waiting])
    assert time.monotonic() - started < 2
    assert lane.call("PING") == b"PONG"
    lane.close()
    client.close()


def test_without_gevent_sockets_each_call_has_a_connection_of_its_own(redis_server, redis_prefix):
    client = redis.Redis.from_url(redis_server.url, socket_timeout=1)
    lane = Lane(client)  # this process is not monkey-patched
    assert lane.call("ECHO", "plain") == b"plain"
    assert lane._pipe is None
    lane.close()
    client.close()


# -- end to end: many senders at once through one node --------------------------------------------

SENDERS, EACH = 12, 40


@pytest.fixture
def node(redis_server, redis_prefix):
    handle = start_node(redis_server.url, redis_prefix, "node_1", role="all",
                        env={"GRU_RATE_LIMIT": "1000", "GRU_RATE_BURST": "1000"})
    yield handle
    handle.stop()


def authed(clients, node, user_id, group):
    ticket = get_ticket(node, user_id)
    client = clients.new("python", ticket["addr"])
    client.emit("auth", json.dumps({"id": user_id, "name": "n", "groupId": group, "token1": "t",
                                    "token2": ticket["token"], "type": 1}))
    assert client.wait_for("auth_result")["success"] is True
    return client


def send_bursts(senders, target_id, tag, then=None):
    """Every sender's messages interleaved, so the node has many in flight at once; their results in order."""
    for j in range(EACH):
        for i, sender in enumerate(senders):
            sender.emit("msg", {"type": 0, "target": {"id": target_id, "type": 1}, "content": f"{tag}{i}-{j}"})
    first = senders[0].wait_for("msg_result", timeout=15)
    if then is not None:
        then()
    results = [[sender.wait_for("msg_result", timeout=15) for _ in range(EACH)] for sender in senders[1:]]
    return [[first, *(senders[0].wait_for("msg_result", timeout=15) for _ in range(EACH - 1))], *results]


def by_sender(messages):
    got: dict[str, list[int]] = {}
    for message in messages:
        sender, j = message["content"].split("-")
        got.setdefault(sender, []).append(int(j))
    return got


def test_concurrent_unicasts_through_one_node_arrive_exactly_once_in_order(node, clients, group):
    target = authed(clients, node, 1, group)
    senders = [authed(clients, node, 100 + i, group) for i in range(SENDERS)]
    results = send_bursts(senders, 1, "a")
    assert all(r["success"] for per_sender in results for r in per_sender)
    messages = [target.wait_for("msg", timeout=10) for _ in range(SENDERS * EACH)]
    assert by_sender(messages) == {f"a{i}": list(range(EACH)) for i in range(SENDERS)}
    time.sleep(0.3)
    assert target.received("msg") == []


def test_redis_killed_mid_burst_fails_pending_senders_and_duplicates_nothing(node, clients, group, redis_server):
    target = authed(clients, node, 1, group)
    senders = [authed(clients, node, 100 + i, group) for i in range(SENDERS)]
    try:
        results = send_bursts(senders, 1, "b", then=redis_server.stop)  # once the first is answered
    finally:
        redis_server.start()
    codes = {r["errorCode"] for per_sender in results for r in per_sender if not r["success"]}
    assert codes <= {-14}
    assert any(not r["success"] for per_sender in results for r in per_sender)
    accepted = {f"b{i}": [j for j, r in enumerate(per_sender) if r["success"]] for i, per_sender in enumerate(results)}
    time.sleep(0.5)
    delivered = by_sender(target.received("msg"))
    assert {s: js for s, js in delivered.items()} == {s: js for s, js in accepted.items() if js}

    deadline = time.monotonic() + 15  # after the restart: full service, nothing from before comes again
    while True:
        senders[0].emit("msg", {"type": 0, "target": {"id": 1, "type": 1}, "content": "after-0"})
        result = senders[0].wait_for("msg_result", timeout=5)
        if result["success"]:
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.2)
    assert [m["content"] for m in [target.wait_for("msg", timeout=5)]] == ["after-0"]
    time.sleep(0.3)
    assert target.received("msg") == []
