"""Messages from one sender reach each receiver in the order the server accepted them, whatever the
receiver's transport, also when the receiver reads slowly: several publishers push 3 KB broadcasts
while the receiver, with a small receive buffer, first reads nothing (the server has to queue more
than the kernel holds) and then keeps falling behind and catching up."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
import websocket
from conftest import get_ticket, start_gru
from support import raw_eio3, raw_eio4
from test_websocket_transport import authed_ws, recv_until

KEY = "lms-key-0123456789abcdef"
SENDERS = 4
PER_SENDER = 500
PADDING = "x" * 3000
SMALL_RCVBUF = ((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
TOTAL = SENDERS * PER_SENDER  # 6 MB: more than the kernel holds for a reader that does not read
HEAD_START = TOTAL // 2  # messages sent before the receiver starts reading
PAUSE_EVERY, PAUSE = 50, 0.01  # then it keeps falling behind and catching up


@pytest.fixture(scope="module")
def server() -> Iterator:
    handle = start_gru({"GRU_API_KEYS": f"lms:{KEY}", "GRU_MAX_BACKLOG": str(64 * 1024 * 1024)})
    yield handle
    handle.stop()


def auth_event(server, user_id: int, group: str) -> str:
    ticket = get_ticket(server, user_id)
    auth = {"id": user_id, "name": f"u{user_id}", "groupId": group, "token1": "t1", "token2": ticket["token"],
            "type": 1}
    return "42" + json.dumps(["auth", json.dumps(auth)])


def msg_content(packet: str) -> str | None:
    """The content of a Socket.IO ``msg`` event packet (``42["msg",{...}]``), else None."""
    return json.loads(packet[2:])[1]["content"] if packet.startswith('42["msg"') else None


Receiver = tuple[Callable[[], str], Callable[[], None]]  # (the next packet, close)


def eio4_websocket(server, group: str) -> Receiver:
    ws = authed_ws(server, 9100, group, sockopt=SMALL_RCVBUF)
    return (lambda: recv_until(ws, lambda f: f.startswith('42["msg"'), timeout=20)), ws.close


def eio3_websocket(server, group: str) -> Receiver:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=3&transport=websocket",
                                     timeout=20, sockopt=SMALL_RCVBUF)
    assert ws.recv().startswith("0{") and ws.recv() == "40"  # open, then the implicit connect to "/"
    ws.send(auth_event(server, 9101, group))
    assert '"success":true' in ws.recv()

    def next_msg() -> str:
        while (frame := ws.recv()) == "3":  # a pong
            pass
        return frame

    return next_msg, ws.close


def eio4_polling(server, group: str) -> Receiver:
    session = raw_eio4.Polling(server.url)
    session.open()
    assert session.post(auth_event(server, 9102, group)).status_code == 200
    assert '"success":true' in session.packets()[0]
    pending: list[str] = []

    def next_msg() -> str:
        while not pending:
            pending.extend(session.packets(timeout=20))
        return pending.pop(0)

    return next_msg, session.close


def eio3_polling(server, group: str) -> Receiver:
    session = raw_eio3.Polling(server.url)
    session.open()
    assert session.receive(1) == ["40"]  # the implicit connect to "/"
    assert session.post(auth_event(server, 9103, group)).status_code == 200
    assert '"success":true' in session.receive(1)[0]
    return (lambda: session.receive(1, timeout=20)[0]), session.http.close


RECEIVERS = {"eio4-websocket": eio4_websocket, "eio3-websocket": eio3_websocket,
             "eio4-polling": eio4_polling, "eio3-polling": eio3_polling}


@pytest.mark.parametrize("receiver", list(RECEIVERS))
def test_a_slow_reader_gets_each_senders_messages_in_the_order_they_were_sent(server, group, receiver):
    next_packet, close = RECEIVERS[receiver](server, group)
    sent = [0] * SENDERS
    stop_at = time.monotonic() + 30

    def push(n: int) -> None:
        """One sender: each message is accepted before the next one goes."""
        with requests.Session() as http:
            while sent[n] < PER_SENDER and time.monotonic() < stop_at:
                response = http.post(f"{server.url}/api/push", headers={"Authorization": f"Bearer {KEY}"},
                                     json={"groupId": group, "content": f"s{n} {sent[n]} {PADDING}"}, timeout=10)
                assert response.status_code == 200, response.text
                sent[n] += 1

    threads = [threading.Thread(target=push, args=(n,), daemon=True) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    while sum(sent) < HEAD_START and time.monotonic() < stop_at:
        time.sleep(0.01)  # the receiver reads nothing yet: the server queues for it
    got: list[list[str]] = []
    while len(got) < TOTAL:
        assert time.monotonic() < stop_at, f"only {len(got)} of {TOTAL} messages in time"
        content = msg_content(next_packet())
        if content is not None:
            got.append(content.split(" ", 2)[:2])
            if len(got) % PAUSE_EVERY == 0:
                time.sleep(PAUSE)
    for thread in threads:
        thread.join(10)
    assert sent == [PER_SENDER] * SENDERS
    for n in range(SENDERS):
        order = [int(i) for sender, i in got if sender == f"s{n}"]
        assert order == list(range(PER_SENDER)), f"sender {n}'s messages out of order: {order[:40]}..."
    close()
