"""Hostile and slow clients against one Gru node, for ``scripts/soak.py --hostile``.

Each attack runs in its own thread, in rounds, until told to stop; every round is bounded in
count and time and every address is loopback. The attackers connect from other loopback
addresses than the normal clients (127.0.0.2 and up), as they would come from other machines, so
per-address limits apply to them and not to the class.

What each attack does, and what a correct node answers:

* ``bad_post``: an Engine.IO 4 polling session, then a POST with an invalid body (``9``) or a
  body over ``GRU_MAX_PAYLOAD``, with no GET waiting: answered 400 at once, the session closed.
* ``attachments``: a websocket announcing a huge number of binary attachments, then binary
  frames of 500 KB: refused and the connection closed, nothing buffered.
* ``eio_only``: Engine.IO handshakes that never send the Socket.IO connect: closed after
  ``GRU_AUTH_TIMEOUT`` like any unauthenticated connection.
* ``slowloris``: idle TCP connections and request heads sent a byte at a time: closed after the
  header timeout.
* ``slow_reader``: an authenticated user whose socket stops reading while its group receives
  60 KB broadcasts: queued up to the backlog limit, then closed; nobody else is affected.
* ``overlap``: two concurrent long-poll GETs on one session: refused, the session closed.

The counters say how many attempts each attack made and how the node answered; ``held`` counts
attempts the node had not closed when the attack checked (a correct node keeps that at 0).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable

import websocket

PATH = "/socket.io/"
ATTACKS = ("bad_post", "attachments", "eio_only", "slowloris", "slow_reader", "overlap")


class Target:
    """The node under attack: its address, its limits and a way to get tickets."""

    def __init__(self, url: str, ticket_url: str, auth_timeout: float, header_timeout: float,
                 max_payload: int = 1_000_000) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.ticket_url = ticket_url.rstrip("/")
        self.auth_timeout = auth_timeout
        self.header_timeout = header_timeout
        self.max_payload = max_payload

    def connection(self, source: str, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout, source_address=(source, 0))

    def raw_socket(self, source: str, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout, source_address=(source, 0))

    def ws_url(self, sid: str | None = None) -> str:
        query = {"EIO": "4", "transport": "websocket", **({"sid": sid} if sid else {})}
        return f"ws://{self.host}:{self.port}{PATH}?{urllib.parse.urlencode(query)}"

    def token2(self, user_id: str) -> dict:
        query = urllib.parse.urlencode({"userType": 1, "userName": user_id, "userId": user_id, "token1": "hostile"})
        conn = http.client.HTTPConnection(*urllib.parse.urlsplit(self.ticket_url).netloc.split(":"), timeout=10)
        try:
            conn.request("GET", f"/ticket?{query}")
            return json.loads(conn.getresponse().read())["data"]
        finally:
            conn.close()


def polling_open(target: Target, source: str) -> str:
    """A new Engine.IO 4 polling session's sid."""
    conn = target.connection(source)
    try:
        conn.request("GET", f"{PATH}?EIO=4&transport=polling")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return json.loads(body[1:])["sid"]


def polling_request(target: Target, source: str, method: str, sid: str, body: bytes | None = None,
                    timeout: float = 10.0) -> int | None:
    """The status of one polling request, or None if the node did not answer within ``timeout``."""
    conn = target.connection(source, timeout)
    try:
        conn.request(method, f"{PATH}?EIO=4&transport=polling&sid={sid}", body=body,
                     headers={"Content-Type": "text/plain;charset=UTF-8"} if body is not None else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except TimeoutError:
        return None
    except OSError:
        return -1  # closed without an answer
    finally:
        conn.close()


def session_closed(target: Target, source: str, sid: str) -> bool:
    """True if the node no longer knows the polling session (a GET is refused at once)."""
    return polling_request(target, source, "GET", sid, timeout=2.0) == 400


def bad_post(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    bodies = (b"9", b"4" + b"x" * (target.max_payload + 1000))
    while not stop.is_set():
        for body in bodies:
            sid = polling_open(target, source)
            status = polling_request(target, source, "POST", sid, body)
            stats["attempts"] += 1
            stats[f"answer_{status}"] += 1
            if status is None or not session_closed(target, source, sid):
                stats["held"] += 1
        stop.wait(0.2)


def attachments(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    chunk = b"\x00" * 500_000
    while not stop.is_set():
        stats["attempts"] += 1
        ws = websocket.create_connection(target.ws_url(), timeout=5, source_address=(source, 0))
        try:
            ws.recv()
            ws.send("40")
            ws.recv()
            ws.send('45999999999-["msg",{"_placeholder":true,"num":0}]')
            sent = 0
            for _ in range(40):
                ws.send_binary(chunk)
                sent += 1
            ws.settimeout(3)
            while True:  # the node answers (an error event) and closes
                if ws.recv() in ("", None):
                    break
        except (websocket.WebSocketException, OSError):
            stats["closed"] += 1
        else:
            stats["closed"] += 1
        finally:
            ws.close()
        stop.wait(0.5)


def eio_only(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    while not stop.is_set():
        sids = [polling_open(target, source) for _ in range(20)]
        stats["attempts"] += len(sids)
        time.sleep(target.auth_timeout + 2.0)  # checked even when stopping: the check is the point
        stats["held"] += sum(not session_closed(target, source, sid) for sid in sids)


def slowloris(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    while not stop.is_set():
        idle = [target.raw_socket(source) for _ in range(10)]
        slow = [target.raw_socket(source) for _ in range(10)]
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        stats["attempts"] += len(idle) + len(slow)
        end = time.monotonic() + target.header_timeout + 3.0
        while time.monotonic() < end:
            for sock in slow:
                try:
                    sock.send(b"X")  # one more header byte now and then
                except OSError:
                    pass
            time.sleep(1.0)
        for sock in idle + slow:
            sock.settimeout(0.5)
            try:
                sock.recv(1)  # b"" (closed) or an answer: the node let go of it
            except TimeoutError:
                stats["held"] += 1
            except OSError:
                pass
            sock.close()


SLOW_READER_CONTENT = 60_000  # characters of each broadcast the slow reader's group receives


def slow_reader(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    group = f"hostile-{source}"  # one group: its history (kept by design) is bounded by GRU_HISTORY_SIZE
    while not stop.is_set():
        reader = authenticated_ws(target, source, f"slow-{source}", group, rcvbuf=8192)
        sender = authenticated_ws(target, source, f"fast-{source}", group)
        content = "x" * SLOW_READER_CONTENT
        payload = json.dumps(["msg", {"type": 1, "content": content}])
        stats["attempts"] += 1
        sent_until = time.monotonic() + 6.0
        while time.monotonic() < sent_until and not stop.is_set():
            try:
                sender.send("42" + payload)
                drain(sender)
            except (websocket.WebSocketException, OSError):
                break
            time.sleep(0.06)
        reader.settimeout(5)
        try:  # a correct node has closed it once the backlog went past its limit
            reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            while reader.recv():
                pass
            stats["closed"] += 1
        except (websocket.WebSocketException, OSError):
            stats["closed"] += 1
        finally:
            reader.close()
            sender.close()


def overlap(target: Target, source: str, stats: Counter, stop: threading.Event) -> None:
    while not stop.is_set():
        sid = polling_open(target, source)
        polling_request(target, source, "POST", sid, b"40")
        polling_request(target, source, "GET", sid, timeout=2.0)  # the connect answer
        results: list = []

        def poll(sid: str = sid, results: list = results) -> None:
            results.append(polling_request(target, source, "GET", sid, timeout=target.auth_timeout + 5))

        threads = [threading.Thread(target=poll) for _ in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.1)
        for thread in threads:
            thread.join()
        stats["attempts"] += 1
        stats["refused_400"] += results.count(400)
        if 400 not in results or not session_closed(target, source, sid):
            stats["held"] += 1
        stop.wait(0.2)


def authenticated_ws(target: Target, source: str, user_id: str, group: str, rcvbuf: int | None = None):
    """A raw Engine.IO 4 websocket that has joined ``/`` and authenticated as ``user_id``."""
    ticket = target.token2(user_id)
    sockopt = ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),) if rcvbuf else ()
    ws = websocket.create_connection(target.ws_url(), timeout=5, source_address=(source, 0), sockopt=sockopt)
    ws.recv()
    ws.send("40")
    ws.recv()
    ws.send("42" + json.dumps(["auth", {"id": user_id, "type": 1, "groupId": group, "token2": ticket["token"]}]))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frame = ws.recv()
        if frame.startswith("42") and "auth_result" in frame:
            if '"success":true' not in frame.replace(" ", ""):
                raise RuntimeError(f"hostile client could not authenticate: {frame[:200]}")
            return ws
        if frame == "2":
            ws.send("3")
    raise RuntimeError("hostile client got no auth_result")


def drain(ws) -> None:
    """Read what is already there (the sender's own results) without waiting."""
    ws.settimeout(0)
    try:
        while True:
            frame = ws.recv()
            if frame == "2":
                ws.send("3")
    except (websocket.WebSocketException, OSError, BlockingIOError):
        pass
    finally:
        ws.settimeout(5)


class Attack:
    """The chosen attacks in threads; ``stop()`` ends them and returns their counters."""

    FUNCTIONS: dict[str, Callable] = {"bad_post": bad_post, "attachments": attachments, "eio_only": eio_only,
                                      "slowloris": slowloris, "slow_reader": slow_reader, "overlap": overlap}

    def __init__(self, target: Target, names: tuple[str, ...] = ATTACKS) -> None:
        self.stop_event = threading.Event()
        self.stats: dict[str, Counter] = {name: Counter() for name in names}
        self.errors: dict[str, str] = {}
        self.threads = [threading.Thread(target=self._run, args=(name, target, f"127.0.0.{2 + i}"), daemon=True)
                        for i, name in enumerate(names)]

    def _run(self, name: str, target: Target, source: str) -> None:
        while not self.stop_event.is_set():
            try:
                self.FUNCTIONS[name](target, source, self.stats[name], self.stop_event)
            except (OSError, websocket.WebSocketException, RuntimeError, ValueError, KeyError) as exc:
                self.stats[name]["client_errors"] += 1  # the attacker's own trouble: noted, the attack goes on
                self.errors[name] = f"{type(exc).__name__}: {exc}"[:200]
                self.stop_event.wait(0.5)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> dict:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return {"stats": {name: dict(counter) for name, counter in self.stats.items()},
                "still_running": [t.name for t in self.threads if t.is_alive()], "last_errors": self.errors}
