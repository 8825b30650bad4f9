"""A raw Engine.IO 4 websocket client (Socket.IO protocol 5) for protocol tests."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

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
