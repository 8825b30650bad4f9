"""A raw Engine.IO 3 client for protocol tests: framing written here independently of Gru's codec.

Packets are strings (``42["a"]``) or bytes (binary messages). Every POST starts with a ping, so
a session survives the conformance servers' 300 ms + 200 ms heartbeat however slow a test is;
the matching pongs (``3``) are filtered from what the tests see.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

import requests
import websocket

JSON_ASCII = json.dumps


def js_len(text: str) -> int:
    """JavaScript String.length."""
    return len(text.encode("utf-16-le")) // 2


def encode_text(packets: list[str | bytes]) -> str:
    """``<len>:<packet>`` framing, binary as ``b4<base64>``."""
    out = []
    for p in packets:
        if isinstance(p, bytes):
            p = "b4" + base64.b64encode(p).decode()
        out.append(f"{js_len(p)}:{p}")
    return "".join(out)


def decode_text(body: str) -> list[str | bytes]:
    """Inverse of encode_text (lengths in UTF-16 units); ``b4`` packets become bytes."""
    units, out, pos = body.encode("utf-16-le"), [], 0
    while pos < len(units):
        colon = units.index(b":\x00", pos)
        while (colon - pos) % 2:
            colon = units.index(b":\x00", colon + 1)
        length = int(units[pos:colon].decode("utf-16-le"))
        start = colon + 2
        packet = units[start:start + 2 * length].decode("utf-16-le")
        assert js_len(packet) == length, f"length {length} does not match {packet!r}"
        out.append(base64.b64decode(packet[2:]) if packet.startswith("b4") else packet)
        pos = start + 2 * length
    return out


def encode_xhr2(packets: list[str | bytes]) -> bytes:
    """XHR2 binary framing."""
    out = bytearray()
    for p in packets:
        body = b"\x04" + p if isinstance(p, bytes) else p.encode("utf-8")
        out += bytes([1 if isinstance(p, bytes) else 0]) + bytes(int(d) for d in str(len(body))) + b"\xff" + body
    return bytes(out)


def decode_xhr2(body: bytes) -> list[str | bytes]:
    out, pos = [], 0
    while pos < len(body):
        kind, end = body[pos], body.index(b"\xff", pos)
        length = int("".join(str(d) for d in body[pos + 1:end]))
        chunk = body[end + 1:end + 1 + length]
        if kind == 1:
            assert chunk[0] == 4, "binary packet without type byte 4"
            out.append(bytes(chunk[1:]))
        else:
            out.append(chunk.decode("utf-8"))
        pos = end + 1 + length
    return out


def decode_response(response: requests.Response) -> list[str | bytes]:
    if response.headers.get("Content-Type", "").startswith("application/octet-stream"):
        return decode_xhr2(response.content)
    return decode_text(response.content.decode("utf-8"))


class Polling:
    """One EIO3 polling session against ``url`` + ``path``."""

    def __init__(self, url: str, path: str = "/socket.io/", b64: bool = True, **query: str) -> None:
        self.url, self.path, self.b64 = url, path, b64
        self.query = {"EIO": "3", "transport": "polling", **({"b64": "1"} if b64 else {}), **query}
        self.http = requests.Session()
        self.sid: str | None = None
        self.handshake: dict = {}
        self.pending: list[str | bytes] = []

    def endpoint(self, **extra: str) -> str:
        query = {**self.query, **({"sid": self.sid} if self.sid else {}), "t": str(time.monotonic_ns()), **extra}
        return f"{self.url}{self.path}?{urlencode(query)}"

    def open(self) -> None:
        """Handshake; the packets that came with the open packet wait in ``pending``."""
        response = self.http.get(self.endpoint(), timeout=5)
        assert response.status_code == 200, response.text
        packets = decode_response(response)
        assert packets[0].startswith("0"), packets
        self.handshake = json.loads(packets[0][1:])
        self.sid = self.handshake["sid"]
        self.pending = [p for p in packets[1:] if p not in ("3", "6")]

    def get(self, timeout: float = 5) -> requests.Response:
        return self.http.get(self.endpoint(), timeout=timeout)

    def post_raw(self, body: bytes | str, content_type: str = "text/plain;charset=UTF-8") -> requests.Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.http.post(self.endpoint(), data=data, headers={"Content-Type": content_type}, timeout=5)

    def post(self, *packets: str | bytes, xhr2: bool | None = None, ping: bool = True) -> requests.Response:
        packets = (("2",) if ping else ()) + packets
        if xhr2 if xhr2 is not None else not self.b64:
            return self.post_raw(encode_xhr2(list(packets)), "application/octet-stream")
        return self.post_raw(encode_text(list(packets)))

    def receive(self, count: int, timeout: float = 5) -> list[str | bytes]:
        """The next ``count`` packets other than pongs and noops, polling as needed."""
        deadline = time.monotonic() + timeout
        while len([p for p in self.pending]) < count:
            assert time.monotonic() < deadline, f"only {self.pending} after {timeout}s"
            self.post()  # keep the session alive while waiting
            response = self.get()
            assert response.status_code == 200, response.text
            self.pending += [p for p in decode_response(response) if p not in ("3", "6")]
        got, self.pending = self.pending[:count], self.pending[count:]
        return got


class WebSocket:
    """One EIO3 websocket session (direct, or an upgrade of a polling session)."""

    def __init__(self, url: str, path: str = "/socket.io/", sid: str | None = None, **query: str) -> None:
        params = {"EIO": "3", "transport": "websocket", **({"sid": sid} if sid else {}), **query}
        self.ws = websocket.create_connection(f"{url.replace('http', 'ws', 1)}{path}?{urlencode(params)}",
                                              timeout=5)
        self.handshake: dict = {}

    def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send(frame)

    def recv(self) -> str | bytes:
        return self.ws.recv()

    def receive(self, count: int, timeout: float = 5) -> list[str | bytes]:
        """The next ``count`` frames other than pongs; pings the server while waiting."""
        deadline, got = time.monotonic() + timeout, []
        self.ws.settimeout(0.1)
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {got} after {timeout}s"
            self.send("2")
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if frame != "3":
                got.append(frame)
        self.ws.settimeout(5)
        return got

    def open(self) -> None:
        """Read the open frame."""
        first = self.ws.recv()
        assert first.startswith("0"), first
        self.handshake = json.loads(first[1:])

    def close(self) -> None:
        self.ws.close()
