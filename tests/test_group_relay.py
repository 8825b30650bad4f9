"""A broadcast reaches only the processes holding a member of its group (real nodes, real Redis).

Every process used to decode every broadcast of the deployment: a node's CPU per delivery grew
with the number of nodes. A process now receives a group's broadcasts only while one of its
connections is a member, including one that authenticated while the sender was sending.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from conftest import get_ticket
from test_cluster import Cluster, auth_on, drain, online, wait_until


@pytest.fixture(scope="module")
def cluster(redis_server):
    """Three nodes for the whole module (each test has groups of its own)."""
    made = Cluster(redis_server.url, f"t{uuid.uuid4().hex[:8]}")
    for name in ("node_1", "node_2", "node_3"):
        made.add(name)
    yield made
    made.close()


@pytest.fixture
def relays(redis_server, cluster):
    """Every message published on the deployment's channels (a pattern subscription: it is not
    counted as a subscriber of any channel, so it changes nothing the nodes' scripts check)."""
    pubsub = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(f"{cluster.prefix}:socketio*")
    drain(pubsub, 0.2)
    yield lambda: [(m["channel"].decode().removeprefix(f"{cluster.prefix}:socketio"), m["data"]) for m in drain(pubsub)]
    pubsub.close()


def broadcast(sender, content: str) -> int:
    sender.emit("msg", {"type": 1, "content": content})
    result = sender.wait_for("msg_result")
    assert result["success"] is True, result
    return result["data"]["id"]


def nodes_reached(published) -> list[str]:
    """The node of each relay (instance channels are ``:<node>:<pid>:<random>``; '' is the shared one)."""
    return [channel.split(":")[1] if channel else "shared" for channel, _ in published]


def test_a_node_holding_no_member_of_a_group_receives_none_of_its_broadcasts(cluster, clients, kind, group, relays):
    sender = auth_on(clients, kind, cluster.nodes["node_1"].url, get_ticket(cluster.ticket, 1), 1, group)
    local = auth_on(clients, "python", cluster.nodes["node_1"].url, get_ticket(cluster.ticket, 2), 2, group)
    remote = auth_on(clients, kind, cluster.nodes["node_2"].url, get_ticket(cluster.ticket, 3), 3, group)
    elsewhere = auth_on(clients, "python", cluster.nodes["node_3"].url, get_ticket(cluster.ticket, 4), 4,
                        f"{group}-other")  # node_3 is live and subscribed, but holds nobody of `group`
    sent = [broadcast(sender, f"page {n}") for n in range(3)]
    for member in (local, remote):
        assert [member.wait_for("msg")["id"] for _ in sent] == sent
    assert nodes_reached(relays()) == ["node_2"] * 3  # node_1 serves its own members; node_3 decodes nothing
    assert elsewhere.received("msg") == [] and [len(m.received("msg")) for m in (sender, local, remote)] == [0, 0, 0]

    # a member joining node_3 while the sender is sending gets every message after the last one it saw,
    # once each and in order: from history what came before its presence, live what came after
    last_seen = sent[-1]
    for n in range(10):
        sender.emit("msg", {"type": 1, "content": f"burst {n}"})
    joiner = clients.new(kind, cluster.nodes["node_3"].url)
    joiner.emit("auth", json.dumps({"id": 5, "name": "n", "groupId": group, "token1": "t", "type": 1,
                                    "token2": get_ticket(cluster.ticket, 5)["token"], "lastMsgId": last_seen}))
    assert joiner.wait_for("auth_result")["success"] is True
    burst = [sender.wait_for("msg_result")["data"]["id"] for _ in range(10)]
    after = broadcast(sender, "after the join")
    assert [joiner.wait_for("msg")["id"] for _ in range(11)] == [*burst, after]
    assert [remote.wait_for("msg")["id"] for _ in range(11)] == [*burst, after]
    assert "node_3" in nodes_reached(relays())

    joiner.close()  # node_3 holds nobody of the group again: it stops receiving its broadcasts
    assert wait_until(lambda: online(remote, group) == ["1", "2", "3"], timeout=5)
    relays()
    last = broadcast(sender, "node_3 left")
    assert remote.wait_for("msg", timeout=5)["id"] == last
    assert nodes_reached(relays()) == ["node_2"]
