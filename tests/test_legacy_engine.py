"""Engine.IO 3 sessions on the engine alone (the conformance server's ``engineio`` mode).

Echo handler: every message comes straight back. Bad input of any kind gets a 400 (or a
closed websocket), never a crash or a hang, and a bystander session stays healthy throughout.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests
import websocket
from support.processes import ServerHandle, start_gunicorn
from support.raw_eio3 import Polling, WebSocket, encode_text, encode_xhr2

PATH = "/engine.io/"
V3_XHR2_VECTOR = bytes([0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4])


def assert_closed(ws: WebSocket, timeout: float = 3) -> None:
    """The server ends the websocket (a close frame or a dropped TCP connection) in time."""
    ws.ws.settimeout(timeout)
    try:
        while True:
            frame = ws.ws.recv()
            if frame == "":
                return
            assert frame in ("1", "3", "6"), f"unexpected frame {frame!r} on a connection that should end"
    except websocket.WebSocketTimeoutException:
        pytest.fail("the websocket is still open")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return


@pytest.fixture(scope="module")
def engine() -> Iterator[ServerHandle]:
    server = start_gunicorn("gru.conformance:create_app('engineio')", graceful_timeout=1)
    yield server
    server.stop()


@pytest.fixture
def bystander(engine) -> Iterator[Polling]:
    """A healthy session that must still echo after whatever the test did to the server."""
    session = Polling(engine.url, PATH)
    session.open()
    yield session
    session.post("4still here")
    assert session.receive(1) == ["4still here"]


def test_handshake_advertises_milliseconds_and_echo_works(engine):
    session = Polling(engine.url, PATH)
    session.open()
    assert (session.handshake["pingInterval"], session.handshake["pingTimeout"]) == (300, 200)
    response = session.post("4hello", "4跳转")
    assert (response.status_code, response.text) == (200, "ok")
    assert session.receive(2) == ["4hello", "4跳转"]


def test_xhr2_session_round_trips_the_v3_suite_vector(engine):
    session = Polling(engine.url, PATH, b64=False)
    session.open()
    assert session.post_raw(V3_XHR2_VECTOR, "application/octet-stream").status_code == 200
    response = session.get()
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.content == V3_XHR2_VECTOR


def test_jsonp_polling(engine):
    session = Polling(engine.url, PATH)
    session.query["j"] = "0"
    session.open_response = requests.get(session.endpoint(), timeout=5)
    assert session.open_response.headers["Content-Type"].startswith("text/javascript")
    assert session.open_response.text.startswith('___eio[0]("') and session.open_response.text.endswith('");')


def test_client_close_ends_the_waiting_poll_with_a_noop(engine):
    session = Polling(engine.url, PATH)
    session.open()
    result = {}
    poll = threading.Thread(target=lambda: result.update(r=session.get()))
    poll.start()
    threading.Event().wait(0.1)
    Polling.post(session, "1", ping=False)
    poll.join(5)
    assert (result["r"].status_code, result["r"].text) == (200, encode_text(["6"]))
    assert session.get().status_code == 400


@pytest.mark.parametrize("query", ["EIO=5&transport=polling", "EIO=abc&transport=polling", "transport=polling",
                                   "EIO=3", "EIO=3&transport=flash", "EIO=3&transport=polling&j=x",
                                   "EIO=3&transport=polling&sid=unknown", "EIO=3&transport=websocket"])
def test_bad_handshakes_are_refused(engine, bystander, query):
    response = requests.get(f"{engine.url}{PATH}?{query}", timeout=5)
    assert response.status_code == 400


@pytest.mark.parametrize("body", [b"abc", b"4:4ab", b"99:4hello", b"6:b4!!!!", b"\x00\x09\xff4",
                                  b"\x02\x01\xff4", b"", "1:4😀".encode()])
def test_bad_bodies_get_400_and_close_only_that_session(engine, bystander, body):
    session = Polling(engine.url, PATH)
    session.open()
    assert session.post_raw(body).status_code == 400
    assert session.get().status_code == 400


def test_oversize_body_is_refused(engine, bystander):
    session = Polling(engine.url, PATH)
    session.open()
    assert session.post_raw(encode_text(["4" + "x" * 1_000_000])).status_code == 400
    assert session.get().status_code == 400


def test_session_of_the_other_protocol_is_refused(engine, bystander):
    modern = requests.get(f"{engine.url}{PATH}?EIO=4&transport=polling", timeout=5)
    sid = json.loads(modern.text[1:])["sid"]
    assert requests.get(f"{engine.url}{PATH}?EIO=3&transport=polling&sid={sid}", timeout=5).status_code == 400


def test_overlapping_polls_close_the_session(engine, bystander):
    session = Polling(engine.url, PATH)
    session.open()
    first = threading.Thread(target=session.get)
    first.start()
    threading.Event().wait(0.1)
    assert requests.get(session.endpoint(), timeout=5).status_code == 400
    first.join(5)
    assert session.get().status_code == 400


def test_pong_from_the_client_is_ignored_and_ping_answered(engine):
    session = Polling(engine.url, PATH)
    session.open()
    session.post("3", "2probe", ping=False)
    assert session.get().text == encode_text(["3probe"])


def test_websocket_binary_frames_and_bad_frames(engine, bystander):
    ws = WebSocket(engine.url, PATH)
    ws.open()
    ws.send(b"\x04\x09\x08\x07")
    ws.send("4text")
    assert ws.receive(2) == [b"\x04\x09\x08\x07", "4text"]
    ws.send(b"\x05\x01")  # binary frame with a type byte other than 4: the connection ends
    assert_closed(ws)


@pytest.mark.parametrize("frame", ["", "x", "b4!!!", "9"])
def test_websocket_garbage_text_ends_only_that_connection(engine, bystander, frame):
    ws = WebSocket(engine.url, PATH)
    ws.open()
    ws.send(frame)
    assert_closed(ws)


def test_upgrade_then_second_websocket_and_stale_poll_are_refused(engine, bystander):
    session = Polling(engine.url, PATH)
    session.open()
    ws = WebSocket(engine.url, PATH, sid=session.sid)
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.send("5")
    ws.send("4after upgrade")
    assert ws.receive(1) == ["4after upgrade"]
    assert session.get().status_code == 400
    second = WebSocket(engine.url, PATH, sid=session.sid)
    assert_closed(second)
    ws.send("4first still works")
    assert ws.receive(1) == ["4first still works"]
    ws.close()


@pytest.mark.parametrize("protocol", ["3", "4"])
def test_a_post_of_fifty_packets_is_delivered_whole(engine, protocol):
    """Stock python-engineio answers 200 to more than 16 packets and drops them all (D2)."""
    if protocol == "3":
        session = Polling(engine.url, PATH)
        session.open()
        session.post(*[f"4m{i}" for i in range(50)], ping=False)
        assert session.receive(50) == [f"4m{i}" for i in range(50)]
        return
    http = requests.Session()
    url = f"{engine.url}{PATH}?EIO=4&transport=polling"
    sid = json.loads(http.get(url, timeout=5).text[1:])["sid"]
    url += f"&sid={sid}"
    assert http.post(url, data="\x1e".join(f"4m{i}" for i in range(50)), timeout=5).status_code == 200
    got: list[str] = []
    while len(got) < 50:
        response = http.get(url, timeout=5)
        assert response.status_code == 200
        batch = response.text.split("\x1e")
        assert len(batch) <= 16  # clients refuse larger batches
        got += [p for p in batch if p.startswith("4")]
    assert got == [f"4m{i}" for i in range(50)]


def test_xhr2_body_posted_as_text_is_still_decoded(engine):
    session = Polling(engine.url, PATH, b64=False)
    session.open()
    assert session.post_raw(encode_xhr2(["4sniffed"]), "text/plain").status_code == 200
    assert session.receive(1) == ["4sniffed"]
