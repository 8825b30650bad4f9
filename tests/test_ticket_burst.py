"""The 8:00 bell: a burst of ticket requests against a real ticket service over a real redis-server.

Every request of a burst of 1,000 in flight is answered with a ticket while Redis is up and a node
is live; a refusal that does happen is logged at WARNING with its cause, once per interval.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from conftest import start_node
from support.processes import REPO_ROOT
from support.redis_server import RedisServer

BURST = REPO_ROOT / "scripts" / "ticket_burst.py"
GOOD = {"userType": 1, "userName": "student", "userId": 5, "token1": "t1"}


@pytest.fixture
def cluster(redis_server, redis_prefix):
    """One node and one ticket service, each a real gunicorn, meeting in Redis."""
    node = start_node(redis_server.url, redis_prefix, "node_1")
    tickets = start_node(redis_server.url, redis_prefix, "tickets", role="ticket")
    yield tickets
    tickets.stop()
    node.stop()


def test_a_burst_of_1000_in_flight_gets_1000_tickets(cluster):
    out = subprocess.run([sys.executable, str(BURST), cluster.url, "--total", "1000", "--in-flight", "1000",
                          "--timeout", "15"], capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(out.stdout)
    print(json.dumps(report))  # successes and p50/p99 latency, shown with -s
    assert report["statuses"] == {"200": 1000}, report
    assert report["nodes"] == {"node_1": 1000}


def test_a_refusal_is_logged_at_warning_with_its_cause_once_per_interval(redis_prefix):
    own = RedisServer().start()  # this test stops it
    node = start_node(own.url, redis_prefix, "node_1")
    tickets = start_node(own.url, redis_prefix, "tickets", role="ticket")
    try:
        assert requests.get(f"{tickets.url}/ticket", params=GOOD, timeout=5).status_code == 200
        own.stop()
        answers = [requests.get(f"{tickets.url}/ticket", params=GOOD, timeout=5) for _ in range(5)]
        assert {a.status_code for a in answers} == {503}
        assert answers[0].json() == {"success": False, "errorCode": 503, "msg": "node registry is unavailable"}
        deadline = time.monotonic() + 5
        while "ticket refused" not in tickets.log_tail(200) and time.monotonic() < deadline:
            time.sleep(0.05)
        refusals = [line for line in tickets.log_tail(200).splitlines() if "ticket refused" in line]
        assert len(refusals) == 1, refusals  # not one line per refused request
        assert " WARNING " in refusals[0] and "node registry is unavailable: " in refusals[0]
        assert "Connection refused" in refusals[0] or "Error 111" in refusals[0], refusals[0]  # the real cause
    finally:
        tickets.stop()
        node.stop()
        own.close()
