"""Hostile input at the engine: bad polling bodies, overlapping polls, JSONP, binary attachments, deep nesting.

Against the real service in production settings (and the conformance server, which takes client
binary). Every refusal is answered at once, with an HTTP status or an ``error`` event carrying an
error code; it ends only the offending session, holds no open file or memory, leaves no traceback
in the log, and the class next door keeps working.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import websocket
from conftest import SECRET, start_gru
from support import raw_eio3, raw_eio4
from support.processes import ServerHandle, start_gunicorn

from gru.services.token1 import sign_token1

BUSINESS_KEY = "business-key-for-hostile-tests-0123456789"
API_KEY = "hostile-tests-api-key-0123456789"
MAX_PAYLOAD = 400_000
PRODUCTION = {"GRU_ENV": "production", "GRU_TOKEN1_VERIFIER": "hmac", "GRU_TOKEN1_SECRET": BUSINESS_KEY,
              "GRU_CORS_ORIGINS": "https://school.example", "GRU_AUTH_TIMEOUT": "30",
              "GRU_MAX_PAYLOAD": str(MAX_PAYLOAD), "GRU_API_KEYS": f"lms:{API_KEY}", "GRU_SECRET": SECRET}
HEADER_MANY = '45999999999-["msg",{"_placeholder":true,"num":0}]'
HEADER_ELEVEN = '4511-["msg"' + ',{"_placeholder":true,"num":0}' * 11 + "]"
HEADER_OUT_OF_RANGE = '451-["msg",{"_placeholder":true,"num":3}]'
HEADER_ACK = '461-0[{"_placeholder":true,"num":9}]'
BLOB = b"\x01\x02\x03\x04"
MB = 1024 * 1024


# --------------------------------------------------------------------------- the service and its worker


class Watched:
    """A server and the part of its log each test produced."""

    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.url = server.url
        self._offset = 0

    def new_log(self) -> str:
        with open(self.server.log_path, "rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        return data.decode("utf-8", "replace")

    def assert_no_traceback(self) -> None:
        text = self.new_log()
        assert "Traceback" not in text, text[text.find("Traceback"):][:3000]

    @property
    def worker(self) -> int:
        """The pid of the (only) gunicorn worker."""
        pid = self.server.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return int(children.read().split()[0])

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.worker}/fd"))

    def rss(self) -> int:
        """Resident memory of the worker, in bytes."""
        with open(f"/proc/{self.worker}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024


@pytest.fixture(scope="module")
def prod() -> Iterator[Watched]:
    server = start_gru(PRODUCTION)
    yield Watched(server)
    server.stop()


@pytest.fixture(scope="module")
def conformance() -> Iterator[Watched]:
    """The reference server: echo handlers that take client binary (python-socketio's own use)."""
    server = start_gunicorn("gru.conformance:create_app('socketio', ping_interval=5, ping_timeout=5)",
                            graceful_timeout=1)
    yield Watched(server)
    server.stop()


def ticket(server: Watched, user_id: str, user_type: int = 1) -> dict:
    expires = int(time.time()) + 600
    params = {"userType": user_type, "userName": f"user {user_id}", "userId": user_id,
              "token1": sign_token1(BUSINESS_KEY, user_id, user_type, expires)}
    response = requests.get(f"{server.url}/ticket", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["data"]


class Classroom:
    """A teacher (websocket) and a student (polling) who must not notice what a test does next door."""

    def __init__(self, server: Watched, clients, group: str) -> None:
        self.server, self.group = server, group
        self.teacher = self._member(clients, "1", 0, "websocket")
        self.student = self._member(clients, "2", 1, "polling")
        server.new_log()

    def _member(self, clients, user_id: str, user_type: int, transport: str):
        data = ticket(self.server, user_id, user_type)
        client = clients.new("python", data["addr"], transport)
        client.emit("auth", json.dumps({"id": user_id, "name": f"user {user_id}", "groupId": self.group,
                                        "type": user_type, "token2": data["token"]}))
        assert client.wait_for("auth_result")["success"] is True
        return client

    def check(self) -> None:
        """The class still works, and the service logged no traceback."""
        self.teacher.emit("msg", {"type": 1, "content": "page 3"})
        assert self.teacher.wait_for("msg_result")["success"] is True
        deadline = time.monotonic() + 10
        while self.student.wait_for("msg", timeout=max(deadline - time.monotonic(), 0.1))["content"] != "page 3":
            pass  # what the test itself sent to the class comes first
        assert requests.get(f"{self.server.url}/healthz", timeout=5).status_code == 200
        self.server.assert_no_traceback()


@pytest.fixture
def classroom(prod, clients, group) -> Classroom:
    return Classroom(prod, clients, group)


def in_background(call) -> tuple[threading.Thread, dict]:
    """Run ``call`` in a thread; its result lands in the returned dict under "r"."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=call()), daemon=True)
    thread.start()
    time.sleep(0.2)  # the request is waiting on the server
    return thread, result


def error_events(packets: list) -> list[dict]:
    """The payloads of ``error`` events among Socket.IO packets (``42["error",{...}]``)."""
    found = []
    for p in packets:
        if isinstance(p, str) and p.startswith('42["error"'):
            found.append(json.loads(p[2:])[1])
    return found


def ws_frames_until_closed(ws, timeout: float = 3) -> list:
    """Every frame the server sends until it ends the connection (pings answered); fails if it does not."""
    ws.settimeout(timeout)
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = ws.recv()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        except websocket.WebSocketTimeoutException:
            break
        if frame in ("", b""):
            return frames
        if frame == "2":
            ws.send("3")
        else:
            frames.append(frame)
    pytest.fail(f"the connection is still open after {frames}")


# --------------------------------------------------------------------------- 1. bad polling POSTs

BAD_EIO4_BODIES = ["9", "x", "b!!!", "", "40\x1e9", "d=4hi", "2", "0", "4hi\x1e", "4" * (MAX_PAYLOAD + 1)]
BAD_EIO3_BODIES = ["abc", "99:4hello", "6:b4!!!!"]


def test_bad_polling_posts_get_400_at_once_close_their_session_and_hold_nothing(classroom):
    server = classroom.server
    baseline = 0  # taken after the first round: files opened once (metrics) are open by then
    for _ in range(5):
        for body in BAD_EIO4_BODIES:
            session = raw_eio4.Polling(server.url)
            session.open()
            started = time.monotonic()
            response = session.post(body, timeout=3)
            assert response.status_code == 400, (body[:20], response.text)
            assert time.monotonic() - started < 2
            assert session.get(timeout=3).status_code == 400  # the session is gone
            session.close()
        for body in BAD_EIO3_BODIES:
            legacy = raw_eio3.Polling(server.url)
            legacy.open()
            assert legacy.post_raw(body).status_code == 400
            assert legacy.get().status_code == 400
            legacy.http.close()
        baseline = baseline or server.open_files()
    waiting = raw_eio4.Polling(server.url)
    waiting.open()
    poll, result = in_background(lambda: waiting.get(timeout=3))
    assert waiting.post("9", timeout=3).status_code == 400
    poll.join(3)
    assert result["r"].status_code == 200 and result["r"].text.split("\x1e")[-1] == "1"  # released: CLOSE
    waiting.close()
    deadline = time.monotonic() + 5
    while server.open_files() > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.open_files() <= baseline + 2
    assert requests.get(f"{server.url}/ticket", params={"userType": 1, "userName": "x", "userId": "9",
                                                        "token1": "bad"}, timeout=5).status_code == 401
    classroom.check()


# --------------------------------------------------------------------------- 6. overlapping polls


def test_overlapping_polls_close_the_engine_io_4_session(classroom):
    session = raw_eio4.Polling(classroom.server.url)
    session.open()
    poll, result = in_background(lambda: session.get(timeout=3))
    second = session.get(timeout=3)
    assert second.status_code == 400 and "Overlapping polls" in second.text
    poll.join(3)
    assert result["r"].status_code == 200 and result["r"].text.split("\x1e")[-1] == "1"
    assert session.post('42["online","x"]', timeout=3).status_code == 400  # nobody can send as the session
    assert session.get(timeout=3).status_code == 400
    classroom.check()


# --------------------------------------------------------------------------- 8, 9. JSONP


@pytest.mark.parametrize("index", ["²", "٣", "１", "-1", "1e3", "0x1"])
@pytest.mark.parametrize("eio", ["3", "4"])
def test_a_jsonp_index_that_is_not_ascii_digits_is_400(classroom, eio, index):
    response = requests.get(f"{classroom.server.url}/socket.io/", params={"EIO": eio, "transport": "polling",
                                                                         "j": index}, timeout=5)
    assert response.status_code == 400 and "JSONP" in response.text
    classroom.server.assert_no_traceback()


def test_jsonp_is_refused_on_engine_io_4(classroom):
    response = requests.get(f"{classroom.server.url}/socket.io/?EIO=4&transport=polling&j=0", timeout=5)
    assert response.status_code == 400 and "JSONP" in response.text
    session = raw_eio4.Polling(classroom.server.url)
    session.open()
    assert session.http.get(session.url + "&j=0", timeout=5).status_code == 400
    assert session.post('42["online","x"]').status_code == 200  # the session itself is not disturbed
    assert json.loads(session.packets()[0][2:])[0] == "online_result"
    classroom.check()


EVIL = '");globalThis.PWNED=`x`;//</script>\u2028\u2029\'"\\'


def run_jsonp(script: str) -> dict:
    """Run a JSONP response as a browser would, in a fresh Node context with ``___eio`` defined."""
    program = """
const vm = require('vm');
const got = [];
const context = {___eio: [], globalThis: undefined};
context.globalThis = context;
for (let i = 0; i < 10; i++) context.___eio[i] = (s) => got.push(s);
vm.runInNewContext(require('fs').readFileSync(0, 'utf8'), context);
process.stdout.write(JSON.stringify({got, pwned: context.PWNED === undefined ? null : String(context.PWNED)}));
"""
    done = subprocess.run(["node", "-e", program], input=script, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_broadcast_reaches_a_legacy_jsonp_client_as_data_never_as_script(classroom):
    server = classroom.server
    session = raw_eio3.Polling(server.url, j="0")
    opened = requests.get(session.endpoint(), timeout=5)
    payload = run_jsonp(opened.text)["got"][0]
    session.sid = json.loads(raw_eio3.decode_text(payload)[0][1:])["sid"]
    data = ticket(server, "3")
    auth = json.dumps(["auth", json.dumps({"id": "3", "groupId": classroom.group, "type": 1,
                                           "token2": data["token"]})])
    body = "d=" + requests.utils.quote(raw_eio3.encode_text(["42" + auth]), safe="")
    assert session.post_raw(body, "application/x-www-form-urlencoded").status_code == 200
    classroom.teacher.emit("msg", {"type": 1, "content": EVIL})
    received, deadline = [], time.monotonic() + 5
    while not any("msg" in p and "PWNED" in p for p in received) and time.monotonic() < deadline:
        ran = run_jsonp(session.get().text)
        assert ran["pwned"] is None
        received += [p for s in ran["got"] for p in raw_eio3.decode_text(s)]
    message = next(json.loads(p[2:])[1] for p in received if p.startswith('42["msg"'))
    assert message["content"] == EVIL
    classroom.check()


# --------------------------------------------------------------------------- 2. binary attachments


def refused_binary(error: dict) -> bool:
    return error["success"] is False and error["errorCode"] == -3 and "binary" in error["msg"]


def binary_refused_and_closed(server: Watched, protocol: int, transport: str, header: str, blob: bytes) -> None:
    """Send ``header`` and one attachment; the answer is an ``error`` event, then the session ends."""
    if transport == "websocket":
        if protocol == 4:
            ws = raw_eio4.WebSocket(server.url)
            ws.send(header)
            ws.send(blob)
        else:
            ws = raw_eio3.WebSocket(server.url)
            ws.open()
            ws.send(header)
            ws.send(b"\x04" + blob)
        frames = ws_frames_until_closed(ws.ws)
        assert any(refused_binary(e) for e in error_events(frames)), frames
        return
    if protocol == 4:
        session = raw_eio4.Polling(server.url)
        session.open()
        poll, result = in_background(lambda: session.get(timeout=3))
        session.post(header + "\x1eb" + base64.b64encode(blob).decode(), timeout=3)
        poll.join(3)
        packets = result["r"].text.split("\x1e")
        next_poll = session.get(timeout=3)
    else:
        session = raw_eio3.Polling(server.url)
        session.open()
        poll, result = in_background(lambda: session.get(timeout=3))
        session.post(header, blob, ping=False)
        poll.join(3)
        packets = raw_eio3.decode_response(result["r"])
        next_poll = session.get(timeout=3)
    assert any(refused_binary(e) for e in error_events(packets)), packets
    assert packets[-1] == "1" and next_poll.status_code == 400


@pytest.mark.parametrize("header", [HEADER_MANY, HEADER_ELEVEN, HEADER_OUT_OF_RANGE, HEADER_ACK])
@pytest.mark.parametrize(("protocol", "transport"), [(4, "websocket"), (4, "polling"), (3, "websocket"),
                                                     (3, "polling")])
def test_attachments_beyond_the_bounds_are_refused_and_close_that_connection(classroom, protocol, transport, header):
    binary_refused_and_closed(classroom.server, protocol, transport, header, BLOB)
    classroom.check()


def test_binary_data_without_a_binary_event_is_answered(classroom):
    got = answers(classroom.server, 4, "websocket", b"2[\"msg\"]")  # bytes that read like a packet
    error = json.loads(got[0][2:])[1]
    assert error["errorCode"] == -3 and "binary" in error["msg"]
    classroom.check()


def test_a_binary_event_within_the_bounds_is_answered_by_its_handler(classroom):
    ws = raw_eio4.WebSocket(classroom.server.url)
    ws.send('451-["msg",{"_placeholder":true,"num":0}]')
    ws.send(BLOB)
    answer = json.loads(ws.receive(1)[0][2:])
    assert answer[0] == "msg_result" and answer[1]["errorCode"] == -8  # not authenticated
    ws.close()
    classroom.check()


@pytest.mark.parametrize("protocol", [4, 3])
def test_a_flood_of_attachments_holds_no_memory(classroom, protocol):
    server = classroom.server
    before = server.rss()
    chunk = os.urandom(MAX_PAYLOAD // 2)
    flooders = []
    for _ in range(2):  # 2 x 60 x 200 kB announced as attachments: kept, they would grow the worker by 24 MB
        if protocol == 4:
            ws = raw_eio4.WebSocket(server.url)
        else:
            ws = raw_eio3.WebSocket(server.url)
            ws.open()
            chunk = b"\x04" + chunk[1:]
        flooders.append(ws)
        ws.send(HEADER_MANY)
        try:
            for _ in range(60):
                ws.send(chunk)
        except (OSError, websocket.WebSocketException):
            pass  # the server has closed the connection: the rest of the flood goes nowhere
    time.sleep(0.5)
    grown = server.rss() - before
    for ws in flooders:
        ws.close()
    assert grown < 8 * MB
    classroom.check()


def test_attachments_are_bounded_where_client_binary_is_allowed(conformance):
    """python-socketio's own use (the conformance server echoes binary): at most 10 attachments,
    their bytes within the payload limit, placeholders within the announced count."""
    for header, blobs in [('45999999999-["message",{"_placeholder":true,"num":0}]', [BLOB]),
                          ('4511-["message"' + ',{"_placeholder":true,"num":0}' * 11 + "]", [BLOB] * 11),
                          ('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
                           [b"\x00" * 600_000, b"\x00" * 600_000]),
                          ('451-["message",{"_placeholder":true,"num":5}]', [BLOB]),
                          ('451-["message",{"_placeholder":true,"num":"0"}]', [BLOB]),
                          ('451-["message",{"_placeholder":true,"num":0}]', ["4text instead of binary"]),
                          ('45-["message",{"_placeholder":true,"num":0}]', [BLOB]),
                          ('451-["message",' + "[" * 100 + '{"_placeholder":true,"num":0}' + "]" * 100 + "]", [BLOB])]:
        ws = raw_eio4.WebSocket(conformance.url)
        ws.receive(1)  # the server's "auth" greeting
        ws.send(header)
        for blob in blobs:
            ws.send(blob)
        frames = ws_frames_until_closed(ws.ws)
        errors = error_events(frames)
        assert errors and errors[0]["errorCode"] in (-1, -3), (header[:40], frames)
    ws = raw_eio4.WebSocket(conformance.url)
    ws.receive(1)
    ws.send('451-["message",{"_placeholder":true,"num":0}]')
    ws.send(BLOB)
    assert ws.receive(2) == ['451-["message-back",{"_placeholder":true,"num":0}]', BLOB]  # still allowed
    ws.close()
    conformance.assert_no_traceback()


# --------------------------------------------------------------------------- 12. deep nesting


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def answers(server: Watched, protocol: int, transport: str, packet: str | bytes) -> list[str]:
    """Send one Socket.IO packet on a fresh connection; the packets of the answer that follow."""
    if protocol == 4 and transport == "websocket":
        ws = raw_eio4.WebSocket(server.url)
        ws.send(packet)
        got = ws.receive(1, timeout=3)
        ws.send('42["online","x"]')  # the connection still answers
        got += ws.receive(1, timeout=3)
        ws.close()
        return got
    if protocol == 4:
        session = raw_eio4.Polling(server.url)
        session.open()
        assert session.post(packet).status_code == 200
        assert session.post('42["online","x"]').status_code == 200
        got = []
        while len(got) < 2:
            got += session.packets(timeout=3)
        return got
    if transport == "websocket":
        ws = raw_eio3.WebSocket(server.url)
        ws.open()
        ws.receive(1)  # the implicit "40"
        ws.send(packet)
        ws.send('42["online","x"]')
        got = ws.receive(2, timeout=3)
        ws.close()
        return got
    session = raw_eio3.Polling(server.url)
    session.open()
    session.post(packet, '42["online","x"]', ping=False)
    return [p for p in session.receive(3, timeout=3) if p != "40"][:2]


@pytest.mark.parametrize("depth", [100_000, 2000, 990, 500])
@pytest.mark.parametrize(("protocol", "transport"), [(4, "websocket"), (4, "polling"), (3, "websocket"),
                                                     (3, "polling")])
def test_deeply_nested_events_get_their_error_code(classroom, protocol, transport, depth):
    got = answers(classroom.server, protocol, transport, f'42["msg",{nested(depth)}]')
    first = json.loads(got[0][2:])
    assert first[0] in ("error", "msg_result") and first[1]["success"] is False, got[0][:200]
    assert first[1]["errorCode"] in (-1, -3, -8), first
    assert json.loads(got[1][2:])[0] == "online_result"
    classroom.check()


def test_a_deeply_nested_engine_io_message_is_answered(classroom):
    """Not a Socket.IO packet: the engine reads it as JSON first (upstream), then Socket.IO refuses it."""
    got = answers(classroom.server, 4, "websocket", "4" + nested(100_000))
    assert json.loads(got[0][2:])[1]["errorCode"] == -1
    classroom.check()


def test_a_deeply_nested_push_is_400(classroom):
    body = '{"groupId":"x","content":' + nested(50_000) + "}"
    response = requests.post(f"{classroom.server.url}/api/push", data=body, timeout=5,
                             headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["errorCode"] == 400, response.text
    classroom.check()
