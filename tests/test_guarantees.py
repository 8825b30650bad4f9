"""Guarantees that simpler tests let slip: an idle connection cannot bank a flood, live traffic during a
recovery neither jumps the queue nor arrives twice, and a message the queue cannot take is an error."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
import redis
import socketio
from conftest import get_ticket, start_node
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from support.processes import free_port
from support.tcp_proxy import TcpProxy

from gru.errors import Code, GruError
from gru.services.limits import ConnectionLimits, TokenBucket
from gru.sockets import hold
from gru.sockets.hold import HoldingServerMixin
from gru.sockets.manager import GruRedisManager, QueueUnavailable


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def takes(bucket: TokenBucket, attempts: int = 1000) -> int:
    return sum(bucket.take() for _ in range(attempts))


def test_a_new_connection_may_send_a_burst_and_then_the_rate():
    clock = Clock()  # steps of 1/16 s: exact in binary, so no rounding decides the test
    bucket = TokenBucket(rate=8, burst=5, clock=clock)
    assert takes(bucket) == 5
    clock.now += 1 / 16  # half a token
    assert takes(bucket) == 0
    clock.now += 1 / 16
    assert takes(bucket) == 1
    clock.now += 7 / 16
    assert takes(bucket) == 3  # 3.5 tokens earned, half a token kept
    clock.now += 1 / 16
    assert takes(bucket) == 1


def test_an_idle_connection_banks_no_more_than_the_burst():
    clock = Clock()
    bucket = TokenBucket(rate=8, burst=5, clock=clock)
    clock.now += 3600  # an hour of silence is not a licence for 28,800 events
    assert takes(bucket) == 5
    clock.now += 1 / 8
    assert takes(bucket) == 1


def test_each_connection_has_its_own_bucket():
    clock = Clock()
    flooder, quiet = TokenBucket(10, 3, clock=clock), TokenBucket(10, 3, clock=clock)
    assert takes(flooder) == 3
    assert takes(quiet) == 3


@pytest.mark.parametrize("start", [0.0, 0.25])
def test_the_rate_does_not_depend_on_where_the_clock_starts(start):
    clock = Clock()
    clock.now = start  # a monotonic clock read soon after boot
    bucket = TokenBucket(rate=8, burst=5, clock=clock)
    assert takes(bucket) == 5
    clock.now += 1 / 2
    assert takes(bucket) == 4


@pytest.mark.parametrize("allowance", [3, 200])
def test_an_address_is_refused_outright_at_twice_its_allowance(allowance):
    limits = ConnectionLimits(max_connections=10_000, max_pending_per_address=allowance)
    told = [limits.admit(n, "10.0.0.1") for n in range(2 * allowance)]
    assert told[:allowance] == [None] * allowance
    assert all(refusal.code is Code.TOO_MANY_PENDING for refusal in told[allowance:])
    with pytest.raises(GruError):
        limits.admit(2 * allowance, "10.0.0.1")


def test_addresses_whose_sessions_all_settled_are_forgotten():
    """The count per address is what an unauthenticated peer makes the process hold: it goes with
    the address's last session."""
    limits = ConnectionLimits(max_connections=10_000, max_pending_per_address=5)
    for n in range(100):
        limits.admit(n, f"10.0.{n}.1")
        limits.settled(f"10.0.{n}.1")
    limits.settled("10.9.9.9")  # never counted
    assert limits._pending == {}


def test_a_process_admits_up_to_its_connection_cap():
    limits = ConnectionLimits(max_connections=3, max_pending_per_address=100)
    assert limits.admit(3, "10.0.0.1") is None  # the session being admitted is already among the open ones
    assert limits.admit(4, "10.0.0.2").code is Code.NODE_FULL


def test_unauthenticated_sessions_are_capped_per_address_until_they_settle():
    limits = ConnectionLimits(max_connections=100, max_pending_per_address=2)
    assert limits.admit(1, "10.0.0.1") is None and limits.admit(2, "10.0.0.1") is None
    assert limits.admit(3, "10.0.0.1").code is Code.TOO_MANY_PENDING  # told why, and counted meanwhile
    assert limits.admit(4, "10.0.0.1").code is Code.TOO_MANY_PENDING
    with pytest.raises(GruError) as info:  # twice the allowance: not even a session to tell it in
        limits.admit(5, "10.0.0.1")
    assert info.value.code is Code.TOO_MANY_PENDING
    assert limits.admit(5, "10.0.0.2") is None  # another address is not affected
    for _ in range(3):
        limits.settled("10.0.0.1")
    assert limits.admit(3, "10.0.0.1") is None  # one slot is free again, and only one
    assert limits.admit(4, "10.0.0.1").code is Code.TOO_MANY_PENDING
    for _ in range(5):
        limits.settled("10.0.0.2")  # settling more than was counted banks nothing
    assert limits.admit(4, "10.0.0.2") is None and limits.admit(5, "10.0.0.2") is None
    assert limits.admit(6, "10.0.0.2").code is Code.TOO_MANY_PENDING


class HeldServer(HoldingServerMixin, socketio.Server):
    """A socket.io server whose engine records what each connection is sent, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self.eio.send = lambda sid, data: self.sent.append((sid, data))
        self.eio.send_packet = lambda sid, pkt: self.sent.append((sid, pkt.data))

    def live(self, sid: str, msg_id: int) -> None:
        """A live ``msg`` reaching this connection (as the manager emits it)."""
        data = sio_packet.Packet(sio_packet.EVENT, namespace="/", data=["msg", {"id": msg_id}]).encode()
        self._send_eio_packet(sid, eio_packet.Packet(eio_packet.MESSAGE, data=data))

    def got(self, sid: str) -> list:
        """What ``sid`` was sent: message ids, other events by name, anything else as it is."""
        sent = [data for to, data in self.sent if to == sid]
        return [_event(data) if isinstance(data, str) and data.startswith("2[") else data for data in sent]


def _event(data: str):
    with contextlib.suppress(ValueError):
        name, body = json.loads(data[1:])
        return body["id"] if name == "msg" else name
    return data


def test_a_held_connection_gets_its_missed_messages_first_then_live_ones_once(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(hold, "time", clock)
    server = HeldServer()
    server.hold("a")
    server.hold("c")
    server.live("a", 7)  # already in the history: it will be replayed
    server.live("b", 7)  # another connection is not held
    online = eio_packet.Packet(eio_packet.MESSAGE, data='2["online",[1]]')
    odd = ['2["msg",oops]', b"\x01binary"]  # passed on as they are
    for packet in (online, *(eio_packet.Packet(eio_packet.MESSAGE, data=data) for data in odd)):
        server._send_eio_packet("a", packet)
        server._send_eio_packet("c", packet)  # one packet object for both, as a broadcast's
    server.live("a", 8)
    assert server.got("a") == [] and server.got("b") == [7]
    missed = [("msg", {"id": n}) for n in (4, 5, 6, 7)]
    server.release("a", missed, {4, 5, 6, 7})
    server.release("c", missed[:1], {4})
    assert server.got("a") == [4, 5, 6, 7, "online", *odd, 8]
    assert server.got("c") == [4, "online", *odd]
    server.live("a", 9)
    clock.now += hold.LATE_LIVE_SECONDS
    server.live("a", 6)  # late live copies of replayed messages, within the time they may trail: dropped
    server.live("a", 5)
    assert server.got("a")[8:] == [9]
    clock.now += 1 / 16  # a copy later than that is not one: sent
    server.live("a", 4)
    assert server.got("a")[8:] == [9, 4]


def test_late_copies_are_only_awaited_for_messages_whose_live_copy_has_not_come(monkeypatch):
    monkeypatch.setattr(hold, "time", Clock())
    server = HeldServer()
    server.hold("a")
    server.live("a", 5)
    server.release("a", [("msg", {"id": 5})], {5})
    assert server.got("a") == [5]
    server.live("a", 5)  # not a late copy (that came while held): another delivery of it, sent
    server.release("b", [("msg", {"id": 1})], set())  # nothing replayed: nothing awaited
    server.live("b", 1)
    assert server.got("a") == [5, 5] and server.got("b") == [1, 1]


BACKLOG = 100
PADDING = "x" * 200
TALKERS = 4
MIN_LIVE, MAX_LIVE = 30, 500  # per talker
REDIS_DELAY = 0.003  # each way: a recovery's reads take a while, and live traffic goes on meanwhile


class SlowLink(TcpProxy):
    """A loopback link to Redis that holds every chunk a few milliseconds, like a network would."""

    def _pump(self, src, dst, live: bool) -> None:
        try:
            while data := src.recv(65536):
                time.sleep(REDIS_DELAY)
                dst.sendall(data)
        except OSError:
            pass


@pytest.fixture
def recovering_node(redis_server, redis_prefix):
    """A node on Redis behind a slow link, so that a recovery's reads overlap live messages in flight."""
    link = SlowLink(redis_server.port)
    env = {"GRU_RATE_LIMIT": "100000", "GRU_RATE_BURST": "100000",
           "GRU_HISTORY_SIZE": str(BACKLOG + TALKERS * MAX_LIVE)}
    server = start_node(f"redis://127.0.0.1:{link.port}/0", redis_prefix, "node_h", role="all", env=env)
    yield server
    server.stop()
    link.close()


def auth_payload(user_id, group, ticket, last_id=None) -> str:
    payload = {"id": user_id, "name": "n", "groupId": group, "token2": ticket["token"], "type": 1}
    if last_id is not None:
        payload["lastMsgId"] = last_id
    return json.dumps(payload)


def test_live_messages_during_a_recovery_arrive_once_after_the_missed_ones(recovering_node, clients, group):
    node = recovering_node
    sender = clients.authed("python", node, 1, group, user_type=0)
    talkers = [clients.authed("python", node, 10 + t, group) for t in range(TALKERS)]
    ticket = get_ticket(node, 2)
    student = clients.new("python", node.url)
    student.emit("auth", auth_payload(2, group, ticket))
    assert student.wait_for("auth_result")["success"] is True
    sender.emit("msg", {"type": 1, "content": "before"})
    last_seen = student.wait_for("msg", timeout=10)["id"]
    student.close()

    for i in range(BACKLOG):
        sender.emit("msg", {"type": 1, "content": f"missed {i} {PADDING}"})
    assert all(sender.wait_for("msg_result", timeout=30)["success"] for _ in range(BACKLOG))

    back = clients.new("python", node.url)
    recovered = threading.Event()
    sent = [0] * TALKERS

    def talk(n: int) -> None:
        """Live traffic that goes on until the recovery is over (bounded in count and time)."""
        stop_at = time.monotonic() + 20
        while sent[n] < MAX_LIVE and time.monotonic() < stop_at:
            talkers[n].emit("msg", {"type": 1, "content": f"live{n} {sent[n]}"})
            sent[n] += 1
            if recovered.is_set() and sent[n] >= MIN_LIVE:
                return
            time.sleep(0.01)  # about the pace the node keeps up with over the slow link

    threads = [threading.Thread(target=talk, args=(n,), daemon=True) for n in range(TALKERS)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the live messages are already flowing when the recovery starts
    back.emit("auth", auth_payload(2, group, ticket, last_seen))
    result = back.wait_for("auth_result", timeout=30)
    time.sleep(0.05)  # and go on a while after it
    recovered.set()
    assert result["success"] is True and result["data"]["recovered"] is True
    for thread in threads:
        thread.join(30)
    for talker, count in zip(talkers, sent, strict=True):
        assert all(talker.wait_for("msg_result", timeout=30)["success"] for _ in range(count))
    live = sum(sent)

    got = [back.wait_for("msg", timeout=30) for _ in range(BACKLOG + live)]
    time.sleep(0.3)
    extra = back.received("msg")
    assert extra == [], f"{len(extra)} messages arrived twice"
    ids = [m["id"] for m in got]
    assert len(set(ids)) == len(ids), "a message arrived twice"
    contents = [m["content"] for m in got]
    assert contents[:BACKLOG] == [f"missed {i} {PADDING}" for i in range(BACKLOG)], "live traffic jumped the queue"
    replayed = result["data"]["missed"]  # the backlog and the live messages stored before the recovery read
    assert BACKLOG <= replayed < BACKLOG + live
    assert ids[:replayed] == sorted(ids[:replayed])
    assert min(ids[replayed:]) > max(ids[:replayed]), "live traffic overtook the missed messages"
    for n in range(TALKERS):  # live messages keep each sender's order (senders race each other)
        assert [c for c in contents if c.startswith(f"live{n} ")] == [f"live{n} {i}" for i in range(sent[n])]


@pytest.fixture
def server_on(redis_server):
    """A socket.io server whose manager publishes to ``url`` (the test's Redis, or a port nobody serves)."""
    made = []

    def make(url: str) -> socketio.Server:
        sio = socketio.Server(client_manager=GruRedisManager(url, channel="gru-test-manager"))
        made.append(sio)
        return sio

    return make


def test_an_emit_the_queue_cannot_take_fails_instead_of_claiming_success(server_on):
    sio = server_on(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        sio.emit("notice", {"text": "bell"}, to="sid-1")
    with pytest.raises(QueueUnavailable):
        sio.emit("notice", {"text": "bell"})
    assert time.monotonic() - started < 5


def test_an_emit_is_published_for_every_node(server_on, redis_server):
    subscriber = redis.Redis.from_url(redis_server.url).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("gru-test-manager")
    sio = server_on(redis_server.url)
    sio.emit("notice", {"text": "bell"}, to="sid-1")
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.5)
    subscriber.close()
    assert message is not None
    body = json.loads(message["data"])
    assert (body["event"], body["room"], body["data"]) == ("notice", "sid-1", [{"text": "bell"}])
    assert body["namespace"] == "/"  # what every node's manager decodes


def recording(sio: socketio.Server) -> list:
    """What the engine is given to send (to connections of this process), recorded instead."""
    sent: list = []
    sio.eio.send = lambda sid, data: sent.append((sid, data))
    sio.eio.send_packet = lambda sid, pkt: sent.append((sid, pkt.data))
    return sent


def test_an_emit_the_queue_cannot_take_reaches_nobody_here_either(server_on, redis_server):
    down = server_on(f"redis://127.0.0.1:{free_port()}/0")
    sent = recording(down)
    sid = down.manager.connect("eio-1", "/")
    with pytest.raises(QueueUnavailable):
        down.emit("notice", {"text": "bell"}, to=sid)
    assert sent == []  # not delivered here while the sender is told it failed
    up = server_on(redis_server.url)
    sent = recording(up)
    sid = up.manager.connect("eio-1", "/")
    up.emit("notice", {"text": "bell"}, to=sid)
    assert sent == [("eio-1", '2["notice",{"text":"bell"}]')]  # published, then served here at once


@pytest.mark.parametrize("how", [{"to": "u:1:7"}, {"to": "g:10"}, {"to": "sid-1", "ignore_queue": True}])
def test_an_emit_served_here_only_never_needs_the_queue(server_on, how):
    """Messages to user and group rooms are relayed by the backend's scripts, replies go to the
    caller: none of them waits for, or fails with, the message queue."""
    sio = server_on(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    sio.emit("msg", {"id": 1}, **how)
