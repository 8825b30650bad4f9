"""Messages from one sender reach each receiver in the order the server accepted them, whatever the
receiver's transport, also when the receiver reads slowly: several publishers push 3 KB broadcasts
while the receiver, with a small receive buffer, first reads nothing (the server has to queue more
than the kernel holds) and then keeps falling behind and catching up. Across a recovery, a message
whose live copy is still on its way when the history is read arrives once, in its place."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
import websocket
from conftest import get_ticket, start_gru, start_node
from support import raw_eio3, raw_eio4
from support.tcp_proxy import TcpProxy
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


# --------------------------------------------------------------------------- across a recovery

SCRIPT_REPLY_DELAY = 0.05  # seconds a message script's reply takes to come back from Redis
PUBLISHERS = 3


class SlowScriptReplies(TcpProxy):
    """A link to Redis on which the replies to scripts (the message path: id, history and publish in
    one step) come back late, other replies at once: a message is in the history a while before its
    sender gets its id and delivers it here, as when Redis or the node is busy."""

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            scripts = threading.Event()  # the last request on this connection ran a script
            threading.Thread(target=self._requests, args=(client, upstream, scripts), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, scripts), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket, scripts: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if b"EVALSHA" in data:
                    scripts.set()
                else:
                    scripts.clear()
                dst.sendall(data)
        except OSError:
            pass

    def _replies(self, src: socket.socket, dst: socket.socket, scripts: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if scripts.is_set():
                    time.sleep(SCRIPT_REPLY_DELAY)
                dst.sendall(data)
        except OSError:
            pass


@pytest.fixture
def slow_script_node(redis_server, redis_prefix) -> Iterator:
    link = SlowScriptReplies(redis_server.port)
    node = start_node(f"redis://127.0.0.1:{link.port}/0", redis_prefix, "node_o", role="all",
                      env={"GRU_API_KEYS": f"lms:{KEY}", "GRU_HISTORY_SIZE": "1000"})
    yield node
    node.stop()
    link.close()


def recovering_ws(server, user_id: int, group: str, last_id: int) -> websocket.WebSocket:
    """A websocket that authenticates with ``lastMsgId``; returns once ``auth_result`` arrived."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    assert ws.recv().startswith("0{")
    ws.send("40")
    recv_until(ws, lambda f: f.startswith("40"))
    ticket = get_ticket(server, user_id)
    auth = {"id": user_id, "name": "n", "groupId": group, "token2": ticket["token"], "type": 1, "lastMsgId": last_id}
    ws.send("42" + json.dumps(["auth", json.dumps(auth)]))
    result = json.loads(recv_until(ws, lambda f: f.startswith('42["auth_result"'), timeout=10)[2:])[1]
    assert result["success"] is True and result["data"]["recovered"] is True, result
    return ws


def test_a_message_in_flight_during_a_recovery_arrives_once_and_in_order(slow_script_node, group):
    node = slow_script_node
    first = authed_ws(node, 9200, group)
    with requests.Session() as http:
        http.post(f"{node.url}/api/push", headers={"Authorization": f"Bearer {KEY}"},
                  json={"groupId": group, "content": "before"}, timeout=10).raise_for_status()
    last_id = json.loads(recv_until(first, lambda f: f.startswith('42["msg"'))[2:])[1]["id"]
    first.close()
    sent = [0] * PUBLISHERS
    stop = threading.Event()

    def publish(n: int) -> None:
        """Publishes without pause until told to stop (bounded in count and time)."""
        stop_at = time.monotonic() + 20
        with requests.Session() as http:
            while not stop.is_set() and sent[n] < 200 and time.monotonic() < stop_at:
                response = http.post(f"{node.url}/api/push", headers={"Authorization": f"Bearer {KEY}"},
                                     json={"groupId": group, "content": f"p{n} {sent[n]}"}, timeout=10)
                assert response.status_code == 200, response.text
                sent[n] += 1

    threads = [threading.Thread(target=publish, args=(n,), daemon=True) for n in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # messages are in flight when the recovery reads the history
    back = recovering_ws(node, 9200, group, last_id)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(10)
    got = []
    back.settimeout(2)
    try:
        while True:
            frame = recv_until(back, lambda f: f.startswith('42["msg"'), timeout=2)
            got.append(json.loads(frame[2:])[1])
    except (AssertionError, websocket.WebSocketTimeoutException):
        pass  # nothing more came
    back.close()
    ids = [m["id"] for m in got]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"{len(duplicates)} messages arrived twice"
    for n in range(PUBLISHERS):
        assert [m["content"] for m in got if m["content"].startswith(f"p{n} ")] == [f"p{n} {i}" for i in range(sent[n])]
