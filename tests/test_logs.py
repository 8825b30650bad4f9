"""Gru logs its own requests and connection events (gunicorn's access log is bypassed), as text or
JSON, and never a token or an API key."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
from conftest import start_gru

from gru.logs import make_formatter

API_KEY = "log-test-key-0123456789abcdef"
TOKEN1 = "token1-secret-value-42"


def wait_for_line(server, needle: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
        if needle in log or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["text", "json"])
def logged_gru(request):
    server = start_gru({"GRU_LOG_FORMAT": request.param, "GRU_API_KEYS": f"lms:{API_KEY}"})
    server.log_format = request.param
    yield server
    server.stop()


def run_a_session(server, clients, group) -> str:
    params = {"userType": 1, "userName": "Tom", "userId": "s-log", "token1": TOKEN1}
    ticket = requests.get(f"{server.url}/ticket", params=params, timeout=5).json()["data"]
    client = clients.new("python", ticket["addr"])
    client.emit("auth", json.dumps({"id": "s-log", "name": "Tom", "groupId": group, "token1": TOKEN1,
                                    "token2": ticket["token"], "type": 1}))
    assert client.wait_for("auth_result")["success"] is True
    requests.post(f"{server.url}/api/push", json={"groupId": group, "content": "x"},
                  headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    client.close()
    return ticket["token"]


def test_one_line_per_request_and_connection_event_and_no_secrets(logged_gru, clients, group):
    token2 = run_a_session(logged_gru, clients, group)
    log = wait_for_line(logged_gru, f"user=s-log group={group}")  # the disconnect line comes last
    events = ["ticket user=s-log", "connect sid=", "auth ok sid=", "disconnect sid=", "api push key=lms status=200"]
    for event in events:
        assert any(event in line for line in log.splitlines()), f"no log line for {event!r}"
    for secret in (TOKEN1, token2, API_KEY):
        assert secret not in log


def test_json_lines_carry_time_level_pid_logger_and_message(logged_gru, clients, group):
    if logged_gru.log_format != "json":
        pytest.skip("text format")
    run_a_session(logged_gru, clients, group)
    log = wait_for_line(logged_gru, "auth ok")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["msg"].startswith("ticket user=s-log") for r in records)
    for record in records:
        assert {"time", "level", "pid", "logger", "msg"} <= set(record)
        assert record["logger"].startswith("gru")


def test_the_json_formatter_keeps_extra_fields():
    record = logging.LogRecord("gru.test", logging.INFO, __file__, 1, "ticket user=%s", ("u1",), None)
    record.status = 200
    line = json.loads(make_formatter("json").format(record))
    assert line["msg"] == "ticket user=u1" and line["level"] == "INFO" and line["status"] == 200
