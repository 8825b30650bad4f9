"""Socket.IO protocol 4 over Engine.IO 3, raw on the wire.

Each expectation runs against Node's socket.io 2.5.0 (the original implementation, from npm)
and against Gru's conformance server (``python -m gru.conformance --mode socketio`` under
gunicorn), so the suite itself is validated by the reference before it judges Gru.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from support.processes import REPO_ROOT, ServerHandle, free_port, start_gunicorn
from support.raw_eio3 import Polling, WebSocket, encode_text, js_len

BLOB = b"\x01\x02\x03\x04"
PLACEHOLDER = '{"_placeholder":true,"num":0}'


class NodeReference:
    """tests/node/reference_server.js: socket.io 2.5.0 with the conformance handlers."""

    kind = "node"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(["node", "tests/node/reference_server.js", str(self.port)], cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "listening"

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module", params=["node", "gru"])
def server(request) -> Iterator[NodeReference | ServerHandle]:
    if request.param == "node":
        reference = NodeReference()
        yield reference
        reference.stop()
        return
    handle = start_gunicorn("gru.conformance:create_app('socketio')", graceful_timeout=1)
    handle.kind = "gru"
    yield handle
    handle.stop()


def events(packets: list) -> list:
    """The JSON arrays of EVENT packets (``42[...]``)."""
    return [json.loads(p[2:]) for p in packets if isinstance(p, str) and p.startswith("42")]


# --- handshake and namespaces ---------------------------------------------------------------

def test_polling_handshake_joins_the_default_namespace_implicitly(server):
    session = Polling(server.url)
    session.open()
    assert set(session.handshake) >= {"sid", "upgrades", "pingInterval", "pingTimeout"}
    assert session.handshake["upgrades"] == ["websocket"]
    assert (session.handshake["pingInterval"], session.handshake["pingTimeout"]) == (300, 200)
    assert session.pending[0] == "40"  # CONNECT "/" without any payload, in the first response
    assert session.receive(2) == ["40", '42["auth",{}]']


def test_namespace_connect_with_query_then_unknown_and_refused_namespaces(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)  # auth of "/"
    session.post("40/custom?x=1,", "40/random,", "40/refuse,", "40/refuse-data,")
    packets = session.receive(5)
    assert "40/custom," in packets  # no payload: 2.x clients reject one
    assert '42/custom,["auth",{"x":"1"}]' in packets
    assert '44/random,"Invalid namespace"' in packets
    assert '44/refuse,"Not authorized"' in packets
    assert '44/refuse-data,{"code":42}' in packets


def test_events_acks_and_heartbeat_over_polling(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    session.post('42["message","hi",1]', '421["message-with-ack","a",2]', ping=False)
    assert session.receive(2) == ['42["message-back","hi",1]', '431["a",2]']
    session.post(ping=True)
    response = session.get()
    assert response.status_code == 200 and encode_text(["3"]) in response.text


def test_binary_event_in_a_b64_session_travels_as_b4_base64(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    response = session.post(f'451-["message",{PLACEHOLDER}]', BLOB)
    assert response.status_code == 200
    raw = session.get().text
    assert raw.endswith(encode_text([f'451-["message-back",{PLACEHOLDER}]']) + "10:b4AQIDBA==")


def test_binary_event_in_an_xhr2_session_uses_binary_framing(server):
    session = Polling(server.url, b64=False)
    session.open()
    session.receive(2)
    session.post(f'451-["message",{PLACEHOLDER}]', BLOB)
    response = session.get()
    assert response.headers["Content-Type"].startswith("application/octet-stream")
    header = f'451-["message-back",{PLACEHOLDER}]'.encode()
    assert response.content.endswith(b"\x01\x05\xff\x04" + BLOB)
    assert b"\x00" + bytes(int(d) for d in str(len(header))) + b"\xff" + header in response.content


def test_ascii_text_in_an_xhr2_session_stays_text_framed(server):
    session = Polling(server.url, b64=False)
    session.open()
    session.receive(2)
    session.post('42["message","plain"]', ping=False)
    response = session.get()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == encode_text(['42["message-back","plain"]'])


def test_lengths_count_utf16_units_both_ways(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    text = "€😀张三"
    packet = json.dumps(["message", text], ensure_ascii=False, separators=(",", ":"))
    assert js_len("42" + packet) == len("42" + packet) + 1  # the emoji counts twice
    session.post("42" + packet)
    assert events(session.receive(1)) == [["message-back", text]]


def test_socket_io_1x_double_encoded_utf8_is_understood(server):
    if server.kind == "node":
        pytest.skip("socket.io 2.x servers garble text from 1.x polling clients; Gru decodes it")
    session = Polling(server.url)
    session.open()
    session.receive(2)
    packet = '42["message","张三"]'.encode().decode("latin-1")  # what engine.io-parser 1.x sends
    session.post(packet)
    assert events(session.receive(1)) == [["message-back", "张三"]]


# --- websocket ------------------------------------------------------------------------------

def test_websocket_session_binary_frames_carry_the_type_byte(server):
    ws = WebSocket(server.url)
    ws.open()
    assert ws.handshake["upgrades"] == []
    assert ws.receive(2) == ["40", '42["auth",{}]']
    ws.send(f'451-["message",{PLACEHOLDER}]')
    ws.send(b"\x04" + BLOB)
    assert ws.receive(2) == [f'451-["message-back",{PLACEHOLDER}]', b"\x04" + BLOB]
    ws.send("40/custom?x=2,")
    assert ws.receive(2) == ["40/custom,", '42/custom,["auth",{"x":"2"}]']
    ws.close()


def test_upgrade_ends_the_pending_poll_with_a_noop_then_moves_to_the_websocket(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    ws = WebSocket(server.url, sid=session.sid)
    ws.send("2probe")
    assert ws.recv() == "3probe"
    assert session.get().text == encode_text(["6"])
    ws.send("5")
    ws.send('42["message","over ws"]')
    assert ws.receive(1) == ['42["message-back","over ws"]']
    assert session.get().status_code == 400  # polling is over for this session
    ws.close()


# --- liveness and bad input -----------------------------------------------------------------

def test_a_client_that_stops_pinging_is_dropped(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    time.sleep(0.3 + 0.2 + 0.4)
    assert session.get().status_code == 400


def test_a_garbage_body_ends_the_session(server):
    session = Polling(server.url)
    session.open()
    session.receive(2)
    response = session.post_raw("abc")
    if server.kind == "gru":
        assert response.status_code == 400
    assert session.get().status_code == 400


def test_unknown_sid_is_refused(server):
    session = Polling(server.url)
    session.sid = "not-a-session"
    assert session.get().status_code == 400
