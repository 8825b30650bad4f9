"""End-to-end check of a running deployment, as a client sees it (``gru smoke``, ``scripts/ticket_smoke.sh``)."""

from __future__ import annotations

import json
import queue
import secrets
import time
from collections.abc import Callable

import requests
import socketio

from gru.services.token1 import sign_token1

MAX_SAFE_INTEGER = 2**53 - 1


class SmokeFailed(Exception):
    """A check failed; the message says which and why."""


class _Peer:
    """One smoke user: a ticket, a socket.io connection and a queue of what arrived."""

    def __init__(self, base_url: str, user_id: str, user_type: int, token1: str, timeout: float) -> None:
        self.user_id, self.user_type, self.token1, self.timeout = user_id, user_type, token1, timeout
        self.ticket = _get_ticket(base_url, user_id, user_type, token1, timeout)
        self.events: queue.Queue = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", lambda event, *args: self.events.put((event, args[0] if args else None)))

    def connect(self) -> None:
        try:
            self.client.connect(self.ticket["addr"], transports=["websocket"], wait_timeout=self.timeout)
        except socketio.exceptions.ConnectionError as exc:
            raise SmokeFailed(f"cannot connect to {self.ticket['addr']}: {exc}") from None

    def wait(self, event: str) -> object:
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if name == event:
                return data
        raise SmokeFailed(f"user {self.user_id}: no '{event}' within {self.timeout:.0f}s")

    def close(self) -> None:
        self.client.disconnect()


def _get_ticket(base_url: str, user_id: str, user_type: int, token1: str, timeout: float) -> dict:
    params = {"userType": user_type, "userName": f"smoke {user_id}", "userId": user_id, "token1": token1}
    try:
        response = requests.get(f"{base_url.rstrip('/')}/ticket", params=params, timeout=timeout)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise SmokeFailed(f"GET /ticket failed: {exc}") from None
    if response.status_code != 200 or body.get("success") is not True:
        raise SmokeFailed(f"GET /ticket answered HTTP {response.status_code}: {json.dumps(body)[:300]}")
    data = body.get("data") or {}
    for field in ("time", "addr", "name", "token", "backupNodes"):
        if field not in data:
            raise SmokeFailed(f"ticket has no data.{field}")
    return data


def run_smoke(base_url: str, token1: str | None = None, token1_secret: str | None = None, group: str = "smoke",
              timeout: float = 10.0, echo: Callable[[str], None] = print) -> None:
    """Run every check, printing one line per check; raise :class:`SmokeFailed` at the first failure."""
    run = secrets.token_hex(4)

    def credential(user_id: str, user_type: int) -> str:
        if token1:
            return token1
        if token1_secret:
            return sign_token1(token1_secret, user_id, user_type, int(time.time()) + 600)
        return "smoke"

    teacher_id, student_id = f"smoke-t-{run}", f"smoke-s-{run}"
    teacher = _Peer(base_url, teacher_id, 0, credential(teacher_id, 0), timeout)
    student = _Peer(base_url, student_id, 1, credential(student_id, 1), timeout)
    echo(f"ok   ticket: node {teacher.ticket['name']} at {teacher.ticket['addr']}, "
         f"{len(teacher.ticket['backupNodes'])} backup node(s)")
    peers = [teacher, student]
    try:
        for peer in peers:
            peer.connect()
            auth = {"id": peer.user_id, "name": f"smoke {peer.user_id}", "groupId": group,
                    "token1": peer.token1, "token2": peer.ticket["token"], "type": peer.user_type}
            peer.client.emit("auth", json.dumps(auth))
            result = peer.wait("auth_result")
            if not isinstance(result, dict) or result.get("success") is not True:
                raise SmokeFailed(f"auth of {peer.user_id} refused: {result}")
            echo(f"ok   connect + auth as {result['data']['userType']} {peer.user_id}")
        _check_broadcast(teacher, student, run, echo)
        _check_online(student, group, [teacher_id, student_id], echo)
    finally:
        for peer in peers:
            peer.close()


def _check_broadcast(sender: _Peer, receiver: _Peer, run: str, echo: Callable[[str], None]) -> None:
    content = json.dumps({"smoke": run, "text": "跳转到第三页"}, ensure_ascii=False)
    sender.client.emit("msg", json.dumps({"type": 1, "content": content}))
    result = sender.wait("msg_result")
    if not isinstance(result, dict) or result.get("success") is not True:
        raise SmokeFailed(f"broadcast refused: {result}")
    message = receiver.wait("msg")
    if not isinstance(message, dict) or message.get("content") != content:
        raise SmokeFailed(f"broadcast arrived altered: {message}")
    if not isinstance(message.get("id"), int) or not 0 < message["id"] <= MAX_SAFE_INTEGER:
        raise SmokeFailed(f"message id {message.get('id')!r} is not a JavaScript-safe integer")
    echo(f"ok   broadcast delivered intact (id {message['id']})")


def _check_online(peer: _Peer, group: str, expected: list[str], echo: Callable[[str], None]) -> None:
    peer.client.emit("online", group)
    online = peer.wait("online_result")
    if not isinstance(online, list) or not set(expected) <= set(online):
        raise SmokeFailed(f"online list {online} lacks {expected}")
    echo(f"ok   online lists both smoke users ({len(online)} online in group {group})")
