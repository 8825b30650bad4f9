"""Raw Engine.IO 4 clients (websocket and polling, Socket.IO protocol 5) for protocol tests."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import requests
import websocket


class WebSocket:
    """Opens ``?EIO=4&transport=websocket``, joins ``/`` and answers the server's pings."""

    def __init__(self, url: str, path: str = "/socket.io/", connect: bool = True) -> None:
        query = urlencode({"EIO": "4", "transport": "websocket"})
        self.ws = websocket.create_connection(f"{url.replace('http', 'ws', 1)}{path}?{query}", timeout=5)
        first = self.ws.recv()
        assert first.startswith("0"), first
        self.handshake = json.loads(first[1:])
        if connect:
            self.send("40")
            assert self.receive(1)[0].startswith("40")

    def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send(frame)

    def receive(self, count: int, timeout: float = 5) -> list[str | bytes]:
        """The next ``count`` frames other than pings (which are answered)."""
        deadline, got = time.monotonic() + timeout, []
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {got} after {timeout}s"
            frame = self.ws.recv()
            if frame == "2":
                self.send("3")
            else:
                got.append(frame)
        return got

    def close(self) -> None:
        self.ws.close()


class Polling:
    """One Engine.IO 4 polling session, raw: bodies are ``\\x1e``-separated packets."""

    def __init__(self, url: str, path: str = "/socket.io/", **query: str) -> None:
        self.base = f"{url}{path}?{urlencode({'EIO': '4', 'transport': 'polling', **query})}"
        self.http = requests.Session()
        self.sid: str | None = None

    @property
    def url(self) -> str:
        return self.base + (f"&sid={self.sid}" if self.sid else "")

    def open(self, connect: bool = True) -> None:
        """Handshake, then (``connect``) join ``/`` and read the Socket.IO CONNECT answer."""
        response = self.http.get(self.url, timeout=5)
        assert response.status_code == 200 and response.text.startswith("0"), response.text
        self.sid = json.loads(response.text[1:])["sid"]
        if connect:
            assert self.post("40").status_code == 200
            assert self.get().text.startswith("40")

    def post(self, body: str | bytes, timeout: float = 5) -> requests.Response:
        return self.http.post(self.url, data=body.encode() if isinstance(body, str) else body, timeout=timeout,
                              headers={"Content-Type": "text/plain;charset=UTF-8"})

    def get(self, timeout: float = 5) -> requests.Response:
        return self.http.get(self.url, timeout=timeout)

    def packets(self, timeout: float = 5) -> list[str]:
        """The packets of the next poll that answers 200 (pings answered, not returned)."""
        response = self.get(timeout)
        assert response.status_code == 200, response.text
        packets = response.text.split("\x1e")
        if "2" in packets:
            self.post("3")
        return [p for p in packets if p != "2"]

    def close(self) -> None:
        self.http.close()
