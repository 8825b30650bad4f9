"""Gru logs its own requests and connection events (gunicorn's access log is bypassed), as text or
JSON, and never a token or an API key."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest
import requests
from conftest import start_gru

from gru.logs import log_safe, make_formatter

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


FORGED = "2030-01-01 00:00:00,000 INFO [1] gru.http.ticket: ticket user=admin status=200"


def test_a_client_cannot_forge_a_log_line_through_ticket_parameters(logged_gru):
    for user_id in (f"x\n{FORGED}", f"x\r{FORGED}", f"x\u2028{FORGED}", f"x\x1b[2K\r{FORGED}"):
        params = {"userType": f"1\n{FORGED}", "userName": "n", "userId": user_id, "token1": "t"}
        assert requests.get(f"{logged_gru.url}/ticket", params=params, timeout=5).status_code == 400
    params = {"userType": "1", "userName": "n", "userId": "ok-after-forgery", "token1": "t"}
    assert requests.get(f"{logged_gru.url}/ticket", params=params, timeout=5).status_code == 200
    log = wait_for_line(logged_gru, "ok-after-forgery")
    assert "ok-after-forgery" in log
    lines = log.split("\n")  # only a real newline ends a line; the others must not appear at all
    assert not any(line.startswith("2030") for line in lines)
    assert not any(char in log for char in "\r\u2028\x1b")
    attempts = [line for line in lines if "ticket user=" in line and "2030-01-01" in line]
    assert len(attempts) == 4  # each refused request: one line, the forgery inside it
    if logged_gru.log_format == "json":
        attempts = [json.loads(line)["msg"] for line in attempts]
    assert all('ticket user="x\\' in line for line in attempts)  # quoted: no field can be forged either


def record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("gru.test", logging.INFO, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("unsafe", ["\n", "\r", "\x1b", "\x85", "\u2028", "\u2029", "\u202e", "\ud800", "\x00"])
def test_every_log_line_escapes_what_a_client_put_in_it(fmt, unsafe):
    try:
        raise ValueError(f"bad value{unsafe}{FORGED}")
    except ValueError:
        exc_info = sys.exc_info()
    line = make_formatter(fmt).format(record("auth refused reason=%s", f"a{unsafe}{FORGED}", exc_info=exc_info))
    line.encode("utf-8")  # writable to a UTF-8 stream (a lone surrogate is not)
    assert unsafe not in line or unsafe == "\n"
    if fmt == "json":
        assert "\n" not in line and FORGED in json.loads(line)["msg"]
    else:
        first, *rest = line.split("\n")
        assert first.endswith(FORGED) and rest and all(part.startswith("  ") for part in rest)


@pytest.mark.parametrize(("value", "logged"), [
    ("s-log", "s-log"), ("", ""), ("10班", "10班"), ("a b", '"a b"'), ("1 status=200", '"1 status=200"'),
    ('say "hi"', '"say \\"hi\\""'), ("a\nb", "a\\nb"), ("a\\nb", "a\\\\nb"), ("a\u00a0b", '"a\u00a0b"'),
    ("x" * 70, "x" * 64 + "..."),
])
def test_log_safe_makes_a_client_value_one_unambiguous_field(value, logged):
    assert log_safe(value, 64) == logged
