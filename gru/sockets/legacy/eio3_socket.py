"""The Engine.IO 3 session: client-driven heartbeat, v3 polling bodies, v3 websocket frames.

Everything else (queue, upgrade sequence, close) is python-engineio's ``Socket``.
"""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import parse_qs

from engineio import exceptions
from engineio import packet as eio_packet

from gru.sockets import frames
from gru.sockets.engine import BadPayloadError, BoundedPollSocket, GuardedWebSocket, wants_upgrade
from gru.sockets.legacy import eio3_codec as codec

log = logging.getLogger(__name__)


def wants_b64(environ: dict) -> bool:
    """The client asked for base64 binary (``b64=1``): it cannot receive binary frames."""
    return parse_qs(environ.get("QUERY_STRING", "")).get("b64", [""])[0] in ("1", "true")


class Eio3WebSocket(GuardedWebSocket):
    """Translates EIO3 websocket frames to what the upstream (EIO4) socket code expects."""

    def __init__(self, ws: object, socket: Eio3Socket, b64: bool) -> None:
        super().__init__(ws, socket)
        self._b64 = b64

    def inbound(self, data: str | bytes | bytearray) -> str | bytes | None:
        """``0x04``+data and ``b4<base64>`` become raw bytes; other text passes if valid."""
        try:
            if isinstance(data, (bytes, bytearray)):
                return codec.packet_from_binary(data).data
            pkt = codec.packet_from_text(data)
        except codec.PayloadError:
            return None
        return pkt.data if codec.is_binary(pkt) else data

    def frame(self, pkt: eio_packet.Packet) -> bytes:
        """EIO3 framing: text as EIO4 (shared), binary with its type byte or as ``b4`` base64."""
        if pkt.binary:
            if self._b64:
                return frames.text_bytes_frame(b"b4" + base64.b64encode(bytes(pkt.data)))
            return frames.binary_frame(b"\x04" + bytes(pkt.data))
        if pkt.packet_type == eio_packet.NOOP:
            return b""  # upgrade noop: only meaningful for a waiting poll, never on the websocket
        return frames.text_frame(pkt)

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str) and data.startswith("b"):
            data = base64.b64decode(data[1:])  # a cached EIO4 base64 encoding: re-frame for v3
        if isinstance(data, (bytes, bytearray)):
            if self._b64:
                data = "b4" + base64.b64encode(bytes(data)).decode("ascii")
            else:
                data = b"\x04" + bytes(data)
        elif data == "6":
            return  # upgrade noop: only meaningful for a waiting poll, never on the websocket
        self._ws.send(data)


class Eio3Socket(BoundedPollSocket):
    """An Engine.IO 3 session: the client pings, the server answers and watches the silence."""

    protocol = 3

    def __init__(self, server, sid: str, b64: bool = False, jsonp: bool = False) -> None:
        super().__init__(server, sid)
        self.b64 = b64
        self.jsonp = jsonp
        self.ws_b64 = False
        self.utf8_dialect = server.legacy_utf8_dialect  # auto, v1 or v2

    # --- heartbeat: client-driven ----------------------------------------
    def schedule_ping(self) -> None:
        """EIO3 servers never ping."""

    def _send_ping(self) -> None:
        """EIO3 servers never ping."""

    def receive(self, pkt: eio_packet.Packet) -> None:
        if pkt.packet_type == eio_packet.PING:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PONG, data=pkt.data))
        elif pkt.packet_type == eio_packet.PONG:
            return  # wrong direction for v3; harmless, ignored
        else:
            super().receive(pkt)

    def expired(self) -> bool:
        """True when the client has been silent for longer than interval + grace + timeout."""
        server = self.server
        limit = server.ping_interval + server.ping_interval_grace_period + server.ping_timeout
        return time.time() - self.last_ping > limit

    def check_ping_timeout(self) -> bool:
        if self.closed:
            raise exceptions.SocketIsClosedError()
        if self.closing or not self.expired():
            return True
        log.info("%s: EIO3 client stopped pinging, closing", self.sid)
        self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
        return False

    # --- polling ---------------------------------------------------------
    def handle_get_request(self, environ, start_response):
        if wants_upgrade(environ):
            self.ws_b64 = wants_b64(environ)
        return super().handle_get_request(environ, start_response)

    @property
    def max_body(self) -> int:
        return self.server.legacy_max_body

    def decode_body(self, body: bytes) -> list[eio_packet.Packet]:
        try:
            return codec.decode_payload(body, self._fix_text)
        except codec.PayloadError as exc:
            raise BadPayloadError(str(exc)) from None

    def _fix_text(self, text: str) -> str:
        """Undo socket.io 1.x's second UTF-8 encoding; learn the client's dialect."""
        if self.utf8_dialect == "v2" or text.isascii():
            return text
        fixed = codec.undo_double_utf8(text)
        if fixed is not None:
            self.utf8_dialect = "v1"
            return fixed
        if self.utf8_dialect == "auto" and any(ord(ch) > 0xFF for ch in text):
            self.utf8_dialect = "v2"
        return text

    def wrap_websocket(self, ws: object) -> Eio3WebSocket:
        self.frame_ws = Eio3WebSocket(ws, self, self.ws_b64)
        return self.frame_ws
