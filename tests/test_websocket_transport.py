"""The websocket transport read by the event loop: RFC 6455 framing, closing, slow readers.

Unit tests drive the frame reader with byte streams cut at random places; end-to-end tests talk
to the real service with a raw websocket client, so every frame on the wire is the test's own.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
import websocket
from conftest import get_ticket
from hypothesis import given
from hypothesis import strategies as st

from gru.sockets.timers import FixedDelayTimer
from gru.sockets.ws_reader import (
    CLOSE_BAD_DATA,
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameReader,
    ProtocolViolation,
)

# --------------------------------------------------------------------------- frame reader


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = b"\x01\x02\x03\x04",
                 rsv: int = 0) -> bytes:
    """A frame as a client writes it (masked unless ``mask`` is None)."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    if size < 126:
        head = bytes((first, (0x80 if mask else 0) | size))
    elif size <= 0xFFFF:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


MESSAGES = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=70_000)), min_size=1, max_size=6)


@given(messages=MESSAGES, pieces=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 200_000), max_size=8), masked=st.booleans())
def test_messages_survive_any_fragmentation_and_any_split_of_the_stream(messages, pieces, cuts, masked):
    stream = b""
    for message in messages:
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        data = message.encode("utf-8") if isinstance(message, str) else message
        parts = [data[i:i + max(1, len(data) // pieces[0])] for i in range(0, len(data), max(1, len(data) // pieces[0]))] or [b""]
        for index, part in enumerate(parts):
            stream += client_frame(opcode if index == 0 else 0, part, fin=index == len(parts) - 1,
                                   mask=os.urandom(4) if masked else None)
        stream += client_frame(OP_PING, b"hi")  # control frames may sit between messages
    reader = FrameReader(max_size=1_000_000)
    got = []
    positions = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in zip(positions, positions[1:], strict=False):
        got += reader.feed(stream[start:end])
    assert [payload for opcode, payload in got if opcode != OP_PING] == messages
    assert [payload for opcode, payload in got if opcode == OP_PING] == [b"hi"] * len(messages)


@pytest.mark.parametrize(("stream", "code"), [
    (client_frame(OP_TEXT, b"x", rsv=0x40), CLOSE_PROTOCOL),
    (client_frame(0, b"x"), CLOSE_PROTOCOL),  # continuation of nothing
    (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), CLOSE_PROTOCOL),
    (client_frame(OP_PING, b"x", fin=False), CLOSE_PROTOCOL),
    (client_frame(OP_PING, b"x" * 126), CLOSE_PROTOCOL),
    (client_frame(0x3, b"x"), CLOSE_PROTOCOL),
    (client_frame(OP_TEXT, b"\xff\xfe"), CLOSE_BAD_DATA),
    (client_frame(OP_TEXT, "\ud800".encode("utf-8", "surrogatepass")), CLOSE_BAD_DATA),
    (client_frame(OP_BINARY, b"x" * 2000), CLOSE_TOO_BIG),
    (client_frame(OP_TEXT, b"x" * 600, fin=False) + client_frame(0, b"x" * 600), CLOSE_TOO_BIG),
])
def test_protocol_violations_carry_their_close_code(stream, code):
    with pytest.raises(ProtocolViolation) as caught:
        FrameReader(max_size=1000).feed(stream)
    assert caught.value.code == code


def test_a_declared_huge_frame_is_refused_before_its_payload_arrives():
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**40)
    with pytest.raises(ProtocolViolation) as caught:
        FrameReader(max_size=1000).feed(header + b"\x00" * 4)
    assert caught.value.code == CLOSE_TOO_BIG


def test_the_fixed_delay_timer_fires_each_item_once_in_order_after_the_delay():
    fired: list[tuple[int, float]] = []
    done = threading.Event()

    def spawn(target):
        threading.Thread(target=target, daemon=True).start()

    def callback(item):
        fired.append((item, time.monotonic()))
        if item == 4:
            raise RuntimeError("one failing item does not stop the others")
        if len(fired) == 10:
            done.set()

    timer = FixedDelayTimer(0.2, callback, spawn, time.sleep)
    start = time.monotonic()
    for item in range(10):
        timer.add(item)
    assert done.wait(5)
    assert [item for item, _ in fired] == list(range(10))
    assert all(at - start >= 0.2 - 0.06 for _, at in fired)


# --------------------------------------------------------------------------- end to end


def open_ws(server, timeout: float = 5, sockopt: tuple = ()) -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=timeout, sockopt=sockopt)
    opening = ws.recv()
    assert opening.startswith("0{")
    return ws


def recv_until(ws: websocket.WebSocket, predicate, timeout: float = 5) -> str:
    """Frames until one matches (server pings are answered on the way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.recv()
        if frame == "2":
            ws.send("3")
            continue
        if predicate(frame):
            return frame
    raise AssertionError("no matching frame in time")


def authed_ws(server, user_id: int, group: str, sockopt: tuple = ()) -> websocket.WebSocket:
    ticket = get_ticket(server, user_id)
    ws = open_ws(server, sockopt=sockopt)
    ws.send("40")
    recv_until(ws, lambda f: f.startswith("40"))
    auth = {"id": user_id, "name": f"u{user_id}", "groupId": group, "token1": "t1", "token2": ticket["token"],
            "type": 1}
    ws.send("42" + json.dumps(["auth", json.dumps(auth)]))
    result = recv_until(ws, lambda f: f.startswith('42["auth_result"'))
    assert json.loads(result[2:])[1]["success"] is True
    return ws


def test_a_message_split_over_continuation_frames_is_one_event(gru, group):
    ws = authed_ws(gru, 7001, group)
    text = "42" + json.dumps(["online", group])
    ws.send_frame(websocket.ABNF(0, 0, 0, 0, websocket.ABNF.OPCODE_TEXT, 1, text[:5].encode()))
    ws.send_frame(websocket.ABNF(0, 0, 0, 0, websocket.ABNF.OPCODE_CONT, 1, text[5:12].encode()))
    ws.send_frame(websocket.ABNF(1, 0, 0, 0, websocket.ABNF.OPCODE_CONT, 1, text[12:].encode()))
    answer = recv_until(ws, lambda f: f.startswith('42["online_result"'))
    assert json.loads(answer[2:])[1] == [7001]  # the ids online in the group
    ws.close()


def test_a_websocket_ping_is_answered_with_a_pong_carrying_its_data(gru):
    ws = open_ws(gru)
    ws.ping("are you there")
    opcode, data = ws.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    ws.close()


def test_invalid_utf8_closes_that_connection_with_1007_and_nobody_else(gru, group):
    bystander = authed_ws(gru, 7002, group)
    ws = open_ws(gru)
    ws.send_frame(websocket.ABNF(1, 0, 0, 0, websocket.ABNF.OPCODE_TEXT, 1, b"42\xff\xfe"))
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == OP_CLOSE and struct.unpack("!H", data[:2])[0] == CLOSE_BAD_DATA
    bystander.send("42" + json.dumps(["online", group]))
    assert json.loads(recv_until(bystander, lambda f: f.startswith('42["online_result"'))[2:])[1] == [7002]
    bystander.close()


def test_the_server_closes_with_a_close_frame_after_its_last_packet(gru):
    ws = open_ws(gru)
    ws.send("40")
    recv_until(ws, lambda f: f.startswith("40"))
    # no auth: after GRU_AUTH_TIMEOUT the answer, the socket.io disconnect, then the websocket close
    frames = []
    ws.settimeout(10)
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == OP_CLOSE:
            break
        frames.append(data.decode())
    assert any(f.startswith('42["auth_result"') and '"errorCode":-9' in f for f in frames)
    assert "41" in frames


def test_a_client_that_stops_reading_holds_up_nobody(gru, group):
    """Broadcasts to a room with a stalled member: the others get every message at once."""
    stalled = authed_ws(gru, 7003, group, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    reader = authed_ws(gru, 7004, group)
    sender = authed_ws(gru, 7005, group)
    content = "x" * 60_000
    count = 35  # 2 MB, within the sender's rate burst: far more than the stalled connection's buffers hold
    started = time.monotonic()
    for _ in range(count):
        sender.send("42" + json.dumps(["msg", json.dumps({"type": 1, "content": content})]))
    received = 0
    while received < count:
        recv_until(reader, lambda f: f.startswith('42["msg"'), timeout=15)
        received += 1
    assert time.monotonic() - started < 15
    results = 0
    while results < count:
        frame = recv_until(sender, lambda f: f.startswith('42["msg_result"'), timeout=15)
        assert json.loads(frame[2:])[1]["success"] is True
        results += 1
    # the stalled member still gets everything, in order, once it reads again
    ids = []
    while len(ids) < count:
        frame = recv_until(stalled, lambda f: f.startswith('42["msg"'), timeout=30)
        ids.append(json.loads(frame[2:])[1]["id"])
    assert ids == sorted(ids) and len(set(ids)) == count
    for ws in (stalled, reader, sender):
        ws.close()
