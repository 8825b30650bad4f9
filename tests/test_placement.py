"""Which node tickets name under a burst: real ticket services over a real redis-server.

Most tests register their nodes from the test process through the backend's own ``heartbeat()``
(what a node process writes), so six nodes cost no six gunicorns on a two-core machine; the last
test runs real node processes, whose heartbeats carry ``GRU_NODE_WEIGHT`` and ``GRU_MAX_CONNECTIONS``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager

import pytest
import redis
import requests
from conftest import get_ticket, start_node
from support.processes import REPO_ROOT

from gru.backends.redis import Keys, RedisBackend
from gru.models import Instance

BURST = REPO_ROOT / "scripts" / "ticket_burst.py"
FAIR = 100  # 600 tickets over 6 equal nodes


@pytest.fixture(scope="module")
def prefix() -> str:
    return "placement"


@pytest.fixture(scope="module")
def ticket_services(redis_server, prefix):
    """Two ticket services (no sockets of their own) sharing one Redis, as behind a balancer."""
    made = [start_node(redis_server.url, prefix, f"tickets_{n}", role="ticket") for n in (1, 2)]
    yield made
    for server in made:
        server.stop()


@contextmanager
def nodes(redis_server, prefix, *specs: tuple):
    """Register nodes ``(name, connections, capacity, weight)`` as their heartbeats would, then remove them."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    backend = RedisBackend(client, Keys(prefix), "test:0:0", node_ttl=60)
    for name, connections, capacity, weight in specs:
        backend.heartbeat(Instance(f"{name}:1:a", name, f"http://{name}.example:1", connections, "up", capacity, weight))
    try:
        yield backend
    finally:
        client.delete(*(Keys(prefix).alive(f"{spec[0]}:1:a") for spec in specs))
        client.hdel(Keys(prefix).instances, *(f"{spec[0]}:1:a" for spec in specs))
        backend.close()


def burst(urls: list[str], total: int) -> dict:
    out = subprocess.run([sys.executable, str(BURST), *urls, "--total", str(total), "--in-flight", str(total),
                          "--timeout", "20"], capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(out.stdout)
    print(json.dumps(report))  # the figures, shown with -s
    assert report["statuses"] == {"200": total}, report
    return report


@pytest.mark.parametrize("services", [1, 2], ids=["one ticket service", "two ticket services"])
def test_a_burst_of_600_spreads_over_6_equal_nodes(ticket_services, redis_server, prefix, services):
    names = [f"node_{n}" for n in range(1, 7)]
    with nodes(redis_server, prefix, *((name, 0, 0, 1.0) for name in names)):
        report = burst([server.url for server in ticket_services[:services]], 600)
    assert set(report["nodes"]) == set(names)
    assert max(report["nodes"].values()) <= 1.25 * FAIR, report["nodes"]
    assert max(report["nodes"].values()) - min(report["nodes"].values()) <= 2, report["nodes"]  # counted, not luck
    first_backups = Counter()  # which node the clients of node_1 fall back to: not all to the same one
    for pair, count in report["first_backups"].items():
        if pair.startswith("node_1>"):
            first_backups[pair.partition(">")[2]] += count
    assert len(first_backups) == 5 and max(first_backups.values()) <= 0.5 * sum(first_backups.values()), first_backups


def test_weights_give_proportional_shares(ticket_services, redis_server, prefix):
    with nodes(redis_server, prefix, ("small", 0, 0, 1.0), ("middle", 0, 0, 2.0), ("big", 0, 0, 3.0)):
        report = burst([ticket_services[0].url, ticket_services[1].url], 600)
    for name, share in (("small", 100), ("middle", 200), ("big", 300)):
        assert 0.8 * share <= report["nodes"][name] <= 1.2 * share, report["nodes"]


def test_a_full_node_is_never_named_and_all_full_is_a_clear_503(ticket_services, redis_server, prefix):
    with nodes(redis_server, prefix, ("full", 50, 50, 1.0), ("nearly", 45, 50, 1.0), ("roomy", 100, 0, 1.0)):
        report = burst([ticket_services[0].url, ticket_services[1].url], 200)
        assert report["nodes"] == {"nearly": 5, "roomy": 195}
        assert not any("full" in pair.split(">") for pair in report["first_backups"])
    with nodes(redis_server, prefix, ("full", 50, 50, 1.0), ("also_full", 3, 3, 1.0)):
        response = requests.get(f"{ticket_services[0].url}/ticket", timeout=5,
                                params={"userType": 1, "userName": "late", "userId": 1, "token1": "t1"})
    assert response.status_code == 503
    assert response.json() == {"success": False, "errorCode": 503,
                               "msg": "every long-connection node is full, try again later"}


def test_backups_follow_the_load(ticket_services, redis_server, prefix):
    with nodes(redis_server, prefix, ("busy", 900, 0, 1.0), ("big", 20, 0, 4.0), ("quiet", 10, 0, 1.0),
               ("loaded", 300, 0, 1.0)):
        ticket = get_ticket(ticket_services[0], 7)
    assert ticket["name"] == "big"
    assert [n["name"] for n in ticket["backupNodes"]] == ["quiet", "loaded", "busy"]
    assert ticket["backupNodes"][0]["addr"] == "http://quiet.example:1"


def test_real_nodes_report_their_weight_and_capacity(redis_server, redis_prefix):
    slow = {"GRU_HEARTBEAT_INTERVAL": "5", "GRU_NODE_TTL": "15"}  # no report (and reset) during the test
    servers = [start_node(redis_server.url, redis_prefix, "heavy", env={**slow, "GRU_NODE_WEIGHT": "3"}),
               start_node(redis_server.url, redis_prefix, "light", env={**slow, "GRU_MAX_CONNECTIONS": "5"})]
    try:
        servers.append(start_node(redis_server.url, redis_prefix, "tickets", role="ticket"))
        names = [get_ticket(servers[2], n)["name"] for n in range(16)]
        assert 11 <= names.count("heavy") <= 13  # 3:1 while both have room
        names += [get_ticket(servers[2], n)["name"] for n in range(24)]
        assert names.count("light") == 5  # its GRU_MAX_CONNECTIONS
    finally:
        for server in servers:
            server.stop()
