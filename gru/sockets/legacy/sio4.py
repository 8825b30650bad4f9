"""``LegacySocketIOServer``: Socket.IO protocol 4 (socket.io 1.x/2.x) on python-socketio 5.

Only three things differ from protocol 5 on the wire, all per recipient and so never on the
shared broadcast path: the default namespace is joined implicitly at the engine handshake;
a client's CONNECT carries a query string instead of an auth object; the server's CONNECT
carries no payload and a refusal is a bare value (``44/admin,"Not authorized"``).
A protocol 4 CONNECT is answered once the connect handler has returned (there is no
"connect, then disconnect" refusal in protocol 4), whatever ``always_connect`` says.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from socketio import packet as sio_packet

from gru.sockets.engine import GruSocketServer
from gru.sockets.legacy.engine import LegacyEngineIOServer

log = logging.getLogger(__name__)


def parse_connect(data: str) -> tuple[str, dict | None]:
    """Namespace and query of a protocol 4 CONNECT: ``0/admin?token=x,`` → ('/admin', {...})."""
    body = data[1:]
    if not body.startswith("/"):
        return "/", None
    name = body.split(",", 1)[0]
    name, _, query = name.partition("?")
    return name, (dict(parse_qsl(query, keep_blank_values=True)) or None)


def legacy_refusal(data: object) -> object:
    """Protocol 4 ERROR payload: the refusal's ``data`` if any, else its message (like Node 2.x)."""
    if data == "Unable to connect":
        return "Invalid namespace"
    if isinstance(data, dict):
        return data.get("data") if data.get("data") is not None else data.get("message")
    return data


class LegacySocketIOServer(GruSocketServer):
    """Gru's socket.io server, serving protocol 4 clients on Engine.IO 3 sessions too."""

    def _engineio_server_class(self):
        return LegacyEngineIOServer

    def is_legacy(self, eio_sid: str) -> bool:
        """True when the engine session speaks Engine.IO 3 (a gone session counts as current)."""
        return getattr(self.eio.sockets.get(eio_sid), "protocol", 4) == 3

    def _accepts(self, namespace: str) -> bool:
        return (namespace in self.handlers or namespace in self.namespace_handlers
                or self.namespaces == "*" or namespace in self.namespaces)

    def _handle_eio_connect(self, eio_sid: str, environ: dict):
        refusal = super()._handle_eio_connect(eio_sid, environ)
        if refusal is not None:
            return refusal  # refused by the connection limits before the session exists
        if self.is_legacy(eio_sid) and self._accepts("/"):
            self._handle_connect(eio_sid, "/", None)  # protocol 4: "/" is joined implicitly
        return None  # a namespace refusal is a Socket.IO ERROR packet, never an engine-level 401

    def _handle_eio_message(self, eio_sid: str, data):
        if isinstance(data, str) and data[:1] == "0" and eio_sid not in self._binary_packet \
                and self.is_legacy(eio_sid):
            namespace, query = parse_connect(data)
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is not None and self.manager.is_connected(sid, namespace):
                self._send_packet(eio_sid, self.packet_class(sio_packet.CONNECT, namespace=namespace))
            else:
                self._handle_connect(eio_sid, namespace, query)
            return
        super()._handle_eio_message(eio_sid, data)

    def _handle_connect(self, eio_sid: str, namespace: str, data) -> None:
        if not (self.always_connect and self.is_legacy(eio_sid)):
            return super()._handle_connect(eio_sid, namespace, data)
        # protocol 4 has no "connect, then disconnect" refusal: answer as always_connect=False
        self.always_connect = False
        try:
            return super()._handle_connect(eio_sid, namespace, data)
        finally:
            self.always_connect = True

    def _send_packet(self, eio_sid: str, pkt) -> None:
        if pkt.packet_type in (sio_packet.CONNECT, sio_packet.CONNECT_ERROR, sio_packet.DISCONNECT) \
                and self.is_legacy(eio_sid):
            data = legacy_refusal(pkt.data) if pkt.packet_type == sio_packet.CONNECT_ERROR else None
            pkt = self.packet_class(pkt.packet_type, data=data, namespace=pkt.namespace)
        super()._send_packet(eio_sid, pkt)
