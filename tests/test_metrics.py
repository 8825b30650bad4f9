"""``/metrics``: Prometheus text that counts what users did, added up over every gunicorn worker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from clients import ConnectionFailed
from conftest import get_ticket, start_gru, start_node
from prometheus_client.parser import text_string_to_metric_families

WORKERS = 2
SCRAPES = 6  # each scrape may land on either worker: every one must show the totals


def scrape(server) -> dict[tuple, float]:
    """``{(sample name, sorted labels): value}`` of one ``/metrics`` answer."""
    response = requests.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def settle(server, check, seconds: float = 5.0) -> dict:
    """Scrape until ``check(samples)`` holds (bounded), then return the samples."""
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


@pytest.fixture(scope="module")
def two_workers(redis_server):
    server = start_node(redis_server.url, "metrics", "node_m", role="all", workers=WORKERS,
                        env={"GRU_API_KEYS": "lms:metrics-key-0123456789ab"})
    yield server
    server.stop()


def connect(clients, server, user_id, group, user_type=1):
    ticket = get_ticket(server, user_id, user_type)
    client = clients.new("python", ticket["addr"])
    client.emit("auth", json.dumps({"id": user_id, "name": "n", "groupId": group, "token1": "t",
                                    "token2": ticket["token"], "type": user_type}))
    return client, client.wait_for("auth_result")


def test_every_worker_answers_with_the_totals_of_all_workers(two_workers, clients, group):
    before = scrape(two_workers)
    for i in range(6):
        _, result = connect(clients, two_workers, f"u{i}", group)
        assert result["success"] is True
    open_now = before.get(("gru_connections", (("state", "authenticated"),)), 0.0) + 6
    for _ in range(SCRAPES):
        samples = settle(two_workers, lambda s: value(s, "gru_connections", state="authenticated") >= open_now)
        assert value(samples, "gru_connections", state="authenticated") == open_now
        assert value(samples, "gru_auth_success_total") - value(before, "gru_auth_success_total") == 6


def test_user_actions_show_up_by_type_code_and_result(two_workers, clients, group):
    before = scrape(two_workers)
    teacher, _ = connect(clients, two_workers, "t1", group, user_type=0)
    s1, _ = connect(clients, two_workers, "s1", group)
    s2, _ = connect(clients, two_workers, "s2", group)
    bad = clients.new("python", two_workers.url)
    bad.emit("auth", json.dumps({"id": "x", "name": "n", "groupId": group, "token2": "forged", "type": 1}))
    assert bad.wait_for("auth_result")["errorCode"] == -4
    teacher.emit("msg", json.dumps({"type": 1, "content": "page 3"}))  # 2 deliveries
    teacher.emit("msg", json.dumps({"type": 0, "target": {"id": "s1", "type": 1}, "content": "hi"}))  # 1
    teacher.emit("msg", json.dumps({"type": 7, "content": "?"}))  # -2
    for _ in range(3):
        teacher.wait_for("msg_result")
    s1.wait_for("msg"), s1.wait_for("msg"), s2.wait_for("msg")
    requests.get(f"{two_workers.url}/ticket", params={"userType": 9}, timeout=5)  # 400
    requests.post(f"{two_workers.url}/api/push", json={"groupId": group, "content": "bell"},
                  headers={"Authorization": "Bearer metrics-key-0123456789ab"}, timeout=5)  # 2 + 1 deliveries
    s1.wait_for("msg"), s2.wait_for("msg"), teacher.wait_for("msg")

    def grew(samples, name, by, **labels):
        return value(samples, name, **labels) - value(before, name, **labels) == by

    expected = [("gru_messages_total", 2, {"type": "broadcast"}), ("gru_messages_total", 1, {"type": "unicast"}),
                ("gru_deliveries_total", 6, {}), ("gru_auth_failures_total", 1, {"code": "-4"}),
                ("gru_errors_total", 1, {"event": "msg_result", "code": "-2"}),
                ("gru_ticket_requests_total", 3, {"result": "ok"}),
                ("gru_ticket_requests_total", 1, {"result": "bad_request"}),
                ("gru_api_requests_total", 1, {"endpoint": "push", "status": "200"})]
    samples = settle(two_workers, lambda s: all(grew(s, n, b, **lb) for n, b, lb in expected))
    for name, by, labels in expected:
        assert value(samples, name, **labels) - value(before, name, **labels) == by, (name, labels)
    # messages are published by the Redis script that gives them their id, not by a separate emit
    assert value(samples, "gru_redis_publish_seconds_count") == value(before, "gru_redis_publish_seconds_count")


def test_closed_connections_leave_the_gauges(two_workers, clients, group):
    before = scrape(two_workers)
    client, _ = connect(clients, two_workers, "leaver", group)
    start = value(before, "gru_connections", state="open")
    samples = settle(two_workers, lambda s: value(s, "gru_connections", state="open") == start + 1)
    assert value(samples, "gru_connections", state="open") == start + 1
    client.close()
    samples = settle(two_workers, lambda s: value(s, "gru_connections", state="open") == start)
    assert value(samples, "gru_connections", state="open") == start
    assert value(samples, "gru_connections", state="authenticated") == value(before, "gru_connections",
                                                                              state="authenticated")


def test_history_and_offline_counters_are_exposed(two_workers):
    names = {name for name, _ in scrape(two_workers)}
    for name in ("gru_history_stored_total", "gru_history_recovered_total", "gru_offline_queued_total",
                 "gru_offline_delivered_total", "gru_offline_expired_total"):
        assert name in names


def test_every_metric_is_explained_in_the_operations_guide():
    from prometheus_client import Counter, Gauge, Histogram

    from gru import metrics

    guide = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    for value in vars(metrics).values():
        if isinstance(value, (Counter, Gauge, Histogram)):
            name = value._name + ("_total" if isinstance(value, Counter) else "")
            assert f"`{name}" in guide, f"{name} is not in docs/operations.md"


def test_the_readme_shows_the_demo_screenshot_made_by_the_browser_test():
    root = Path(__file__).resolve().parents[1]
    assert "](docs/demo.png)" in (root / "README.md").read_text(encoding="utf-8")
    assert (root / "docs" / "demo.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_refused_connections_are_counted_by_code(clients):
    server = start_gru({"GRU_MAX_PENDING_PER_ADDRESS": "1"})
    try:
        clients.new("python", server.url)  # waits for auth: the one pending connection allowed
        with pytest.raises(ConnectionFailed):
            clients.new("python", server.url)
        samples = settle(server, lambda s: value(s, "gru_connections_refused_total", code="-20") == 1)
        assert value(samples, "gru_connections_refused_total", code="-20") == 1
        assert value(samples, "gru_connections", state="open") == 1
    finally:
        server.stop()
