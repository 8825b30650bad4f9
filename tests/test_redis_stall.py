"""A stalled Redis (stopped, not down): a message answered -14 is never delivered later, and other
groups resume as soon as Redis does (real redis-server, two nodes under gunicorn, real clients)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from support.redis_server import RedisServer
from test_cluster import Cluster
from test_sentinel import BUSY, join, send

STALL = 3.0  # seconds; the nodes' Redis reply timeout is 2 s


@pytest.fixture
def stalled_setup(redis_prefix):
    server = RedisServer().start()
    cluster = Cluster(server.url, redis_prefix)
    cluster.add("node_a", env=BUSY)
    cluster.add("node_b", env=BUSY)
    yield server, cluster
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    cluster.close()
    server.close()


def stall(server: RedisServer, seconds: float) -> threading.Thread:
    """Stop redis-server for ``seconds`` (it keeps its connections and its queued input)."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    resume = threading.Timer(seconds, os.kill, (server.proc.pid, signal.SIGCONT))
    resume.start()
    return resume


def test_a_message_refused_during_a_stall_is_never_delivered_and_others_resume_with_redis(stalled_setup, clients):
    server, cluster = stalled_setup
    teacher = join(clients, cluster, "node_a", 1, "stall-1", user_type=0)
    student = join(clients, cluster, "node_b", 2, "stall-1")
    speaker = join(clients, cluster, "node_b", 3, "stall-2", user_type=0)  # the bystanders: another group
    listener = join(clients, cluster, "node_b", 4, "stall-2")
    assert send(teacher, {"type": 1, "content": "before"})["success"] is True
    assert student.wait_for("msg")["content"] == "before"

    started = time.monotonic()
    resume = stall(server, STALL)
    result = send(teacher, {"type": 1, "content": "during"}, timeout=STALL + 5)
    answered = time.monotonic() - started
    assert result["success"] is False and result["errorCode"] == -14, result
    assert answered < STALL, f"the refusal took {answered:.1f} s"
    resume.join()

    first_after = None  # the bystanders: the first message that goes through once Redis is back
    for n in range(40):  # bounded: 40 tries, a few seconds
        reply = send(speaker, {"type": 1, "content": f"bystander {n}"}, timeout=5)
        if reply["success"]:
            assert listener.wait_for("msg")["content"] == f"bystander {n}"
            first_after = time.monotonic() - started - STALL
            break
        assert reply["errorCode"] == -14
        time.sleep(0.05)
    assert first_after is not None and first_after < 1.0, f"bystanders resumed {first_after} s after Redis"

    assert send(teacher, {"type": 1, "content": "after"})["success"] is True
    assert student.wait_for("msg")["content"] == "after"
    time.sleep(0.3)
    assert student.received("msg") == []  # "during" was refused, so it never arrives
