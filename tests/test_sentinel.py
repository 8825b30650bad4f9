"""Nodes behind Redis Sentinel act as one server: a real master, replica and three sentinels on
loopback, the ticket service and two nodes under gunicorn, real clients; a failover mid-traffic."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from conftest import SECRET, get_ticket
from support.processes import free_port
from support.redis_server import SentinelSetup
from test_cluster import Cluster, auth_on, online

from gru.backends.redis import connect
from gru.backends.redis_lane import Lane
from gru.config import ConfigError, Settings

# GRU_NODE_TTL outlasts a failover (about 3 s here), as docs/deployment.md asks: the nodes stay
# alive in Redis meanwhile, so a message for a node not yet subscribed again is refused, not lost
BUSY = {"GRU_RATE_LIMIT": "1000", "GRU_RATE_BURST": "1000", "GRU_NODE_TTL": "10"}
REFUSED = -14  # delivery unavailable: acceptable while the master changes


@pytest.fixture
def sentinel():
    setup = SentinelSetup().start()
    yield setup
    setup.close()


@pytest.fixture
def two_nodes(sentinel, redis_prefix):
    cluster = Cluster(sentinel.url, redis_prefix)
    cluster.add("node_a", env=BUSY)
    cluster.add("node_b", env=BUSY)
    yield cluster
    cluster.close()


def join(clients, cluster, node, user_id, group, user_type=1, last_id=None):
    ticket = get_ticket(cluster.ticket, user_id, user_type)
    if last_id is None:
        return auth_on(clients, "python", cluster.nodes[node].url, ticket, user_id, group, user_type)
    client = clients.new("python", cluster.nodes[node].url)
    client.emit("auth", json.dumps({"id": user_id, "name": "n", "groupId": group, "token1": "t",
                                    "token2": ticket["token"], "type": user_type, "lastMsgId": last_id}))
    result = client.wait_for("auth_result")
    assert result["success"] is True, result
    return client, result["data"]


def send(client, payload, timeout=10.0):
    client.emit("msg", payload)
    return client.wait_for("msg_result", timeout)


def contents(client):
    return [m["content"] for m in client.received("msg")]


def test_the_script_lane_talks_to_the_master_the_sentinels_name(sentinel):
    lane = Lane(connect(sentinel.url, socket_timeout=2.0), pipelined=False)
    info = lane.call("CLIENT", "INFO").decode()
    assert f"laddr=127.0.0.1:{sentinel.master_port()} " in info
    lane.close()


def test_broadcast_unicast_online_and_recovery_across_nodes(two_nodes, clients, group):
    teacher = join(clients, two_nodes, "node_a", 1, group, user_type=0)
    students = {uid: join(clients, two_nodes, "node_b", uid, group) for uid in (11, 12, 13)}
    for n in range(5):
        assert send(teacher, {"type": 1, "content": f"page {n}"})["success"] is True
    for student in students.values():
        assert [student.wait_for("msg")["content"] for _ in range(5)] == [f"page {n}" for n in range(5)]
    assert send(students[11], {"type": 0, "target": {"id": 1, "type": 0}, "content": "b to a"})["success"] is True
    assert teacher.wait_for("msg")["content"] == "b to a"
    assert send(teacher, {"type": 0, "target": {"id": 12, "type": 1}, "content": "a to b"})["success"] is True
    assert students[12].wait_for("msg")["content"] == "a to b"
    assert online(students[13], group) == ["1", "11", "12", "13"]

    students[13].close()
    missed = [send(teacher, {"type": 1, "content": f"missed {n}"})["data"]["id"] for n in range(3)]
    back, data = join(clients, two_nodes, "node_a", 13, group, last_id=missed[0] - 1)
    assert data["recovered"] is True and data["missed"] == 3
    assert [back.wait_for("msg")["content"] for _ in range(3)] == [f"missed {n}" for n in range(3)]
    time.sleep(0.3)
    assert contents(students[11]) == contents(students[12]) == [f"missed {n}" for n in range(3)]
    assert back.received("msg") == []


def test_a_master_failover_mid_traffic_loses_no_message_answered_success(sentinel, two_nodes, clients, group):
    teacher = join(clients, two_nodes, "node_a", 1, group, user_type=0)
    near = join(clients, two_nodes, "node_a", 21, group)
    far = {uid: join(clients, two_nodes, "node_b", uid, group) for uid in (22, 23)}
    students = {21: near, **far}
    promoted = threading.Event()

    def fail_over():
        time.sleep(0.5)
        sentinel.failover()
        promoted.set()

    switch = threading.Thread(target=fail_over, daemon=True)
    switch.start()
    broadcasts, unicasts, after = {}, {}, 0
    deadline = time.monotonic() + 25
    n = 0
    while after < 15 and time.monotonic() < deadline:  # bounded in count and time
        n += 1
        was_promoted = promoted.is_set()
        broadcasts[f"b{n}"] = send(teacher, {"type": 1, "content": f"b{n}"})
        unicasts[f"u{n}"] = send(far[22], {"type": 0, "target": {"id": 1, "type": 0}, "content": f"u{n}"})
        after += was_promoted and broadcasts[f"b{n}"]["success"] and unicasts[f"u{n}"]["success"]
        time.sleep(0.02)
    switch.join(20)
    assert promoted.is_set(), "the sentinels did not promote the replica"
    assert after >= 15, f"delivery did not resume after the failover: {after} sent afterwards"

    for results in (broadcasts, unicasts):
        assert {r["errorCode"] for r in results.values() if not r["success"]} <= {REFUSED}
    sent_b = [c for c, r in broadcasts.items() if r["success"]]
    sent_u = [c for c, r in unicasts.items() if r["success"]]
    time.sleep(0.5)
    for uid, student in students.items():
        got = contents(student)
        assert sorted(set(got) & set(sent_b)) == sorted(sent_b), f"student {uid} missed broadcasts answered success"
        assert len(got) == len(set(got)), f"student {uid} got a broadcast twice"
    got = contents(teacher)
    assert sorted(set(got) & set(sent_u)) == sorted(sent_u), "the teacher missed unicasts answered success"
    assert online(teacher, group) == ["1", "21", "22", "23"]


def test_a_sentinel_url_without_a_master_name_is_refused():
    with pytest.raises(ConfigError, match="GRU_REDIS_URL: must name the database and the master"):
        Settings.from_env({"GRU_REDIS_URL": "redis+sentinel://127.0.0.1:26379/0", "GRU_SECRET": SECRET})


def test_sentinels_that_monitor_no_such_master_stop_the_start_with_a_clear_error(sentinel, redis_prefix):
    url = sentinel.url.replace("/mymaster", "/typo")
    with pytest.raises(RuntimeError) as failed:
        Cluster(url, redis_prefix)
    assert "the Redis Sentinels at" in str(failed.value)
    assert "monitor no master named 'typo' (they monitor: mymaster)" in str(failed.value)


def test_unreachable_sentinels_are_named_in_the_log_and_the_service_is_not_ready(redis_prefix):
    ports = [free_port(), free_port()]
    url = f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/0/mymaster"
    cluster = Cluster(url, redis_prefix)  # it starts, as without Sentinel: Redis may come later
    try:
        assert (f"GRU_REDIS_URL: no Redis Sentinel answers at 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}"
                in cluster.ticket.log_tail())
        ready = requests.get(f"{cluster.ticket.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
    finally:
        cluster.close()
