"""Engine.IO and Socket.IO adjustments that keep clients from losing data.

* D2: python-engineio's payload decoder refuses a polling body of more than 16 packets and
  the server then answers 200 and drops them all. The server accepts bodies of any packet
  count (the body size is bounded by ``max_http_buffer_size`` already).
* Clients (python-engineio 3 and 4 alike) refuse more than 16 packets per long-poll
  response, so the server hands at most 16 to one response; the rest wait for the next poll.
* D1: ``engineio.packet.Packet.encode()`` caches its first encoding and ignores ``b64``
  afterwards, so a binary broadcast shared by a websocket and a polling client crashed the
  polling response. Each socket dequeues private copies of binary packets.
* A websocket frame the engine cannot decode ends that connection cleanly instead of
  raising out of the transport loop and leaving the session behind.
* R7: a client event named ``connect`` or ``disconnect`` would run the server's own
  connection handlers (and ``*`` would reach the catch-all handler with its arguments shifted);
  such events, events without a name and packets that cannot be decoded are answered with an
  ``error`` event and go no further.
* Speed: packets for an open websocket are written at once as ready-made frames, without a
  writer greenlet per connection (see :mod:`gru.sockets.ws_output`); a broadcast's text frame is
  built once and shared (:mod:`gru.sockets.frames`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

import engineio
import engineio.payload
import socketio
from engineio import exceptions
from engineio import packet as eio_packet

from gru.errors import Code, GruError
from gru.sockets import frames
from gru.sockets.fastpacket import GruPacket
from gru.sockets.hold import HoldingServerMixin
from gru.sockets.timers import FixedDelayTimer
from gru.sockets.ws_output import DirectWebSocketOutput

log = logging.getLogger(__name__)

CLIENT_MAX_PACKETS_PER_POLL = 16
SERVER_MAX_DECODE_PACKETS = 10_000
# Names python-socketio treats specially: a client event with one of them would run the server's
# connection handlers ("connect", "disconnect") or reach the catch-all handler with its arguments
# shifted ("*"). They are answered with an error instead.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "*"})


def private_copy(pkt: eio_packet.Packet) -> eio_packet.Packet:
    """A binary packet this socket may encode without touching the shared encode cache."""
    if isinstance(pkt.data, (bytes, bytearray)):
        return eio_packet.Packet(eio_packet.MESSAGE, data=pkt.data)
    return pkt


class GuardedWebSocket:
    """Wraps the async driver's websocket; frames are checked before the engine decodes them.

    ``wait()`` returns a valid frame, or ``None`` (treated as a client close) for garbage.
    During an upgrade it returns a noop frame instead, which makes the upgrade fail cleanly.
    """

    def __init__(self, ws: object, socket: engineio.socket.Socket) -> None:
        self._ws = ws
        self._socket = socket
        self.raw = frames.raw_websocket(ws)

    def __getattr__(self, name: str) -> object:
        return getattr(self._ws, name)

    def wait(self) -> str | bytes | None:
        data = self._ws.wait()
        if data is None:
            return None
        frame = self.inbound(data)
        if frame is None:
            log.info("%s: undecodable websocket frame, closing", self._socket.sid)
            return "6" if self._socket.upgrading else None
        return frame

    def send(self, data: str | bytes) -> None:
        self._ws.send(data)

    def frame(self, pkt: eio_packet.Packet) -> bytes:
        """The websocket frame of one packet: text frames are shared, binary ones private (D1)."""
        if pkt.binary:
            return frames.binary_frame(pkt.data)
        return frames.text_frame(pkt)

    def close(self) -> None:
        self._ws.close()

    def release(self) -> None:
        """The connection was taken over (detached): let go of gevent-websocket's objects."""
        self._ws = None
        self.raw = None

    def inbound(self, data: str | bytes | bytearray) -> str | bytes | None:
        """The frame as the engine should see it, or None if it is not a valid EIO4 frame."""
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        if not data:
            return None
        if data[0] == "b":
            try:
                base64.b64decode(data[1:], validate=True)
            except (binascii.Error, ValueError):
                return None
            return data
        return data if data[0].isdigit() else None


class BoundedPollSocket(DirectWebSocketOutput, engineio.socket.Socket):
    """An Engine.IO 4 socket: at most 16 packets per poll, private binary copies, guarded frames,
    direct websocket writes."""

    protocol = 4
    frame_ws: GuardedWebSocket | None = None

    def poll(self) -> list:
        queue_empty = self.server.get_queue_empty_exception()
        try:
            first = self.queue.get(timeout=self.server.ping_interval + self.server.ping_timeout)
            self.queue.task_done()
        except queue_empty:
            raise exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [first]
        while len(packets) < CLIENT_MAX_PACKETS_PER_POLL:
            try:
                pkt = self.queue.get(block=False)
                self.queue.task_done()
            except queue_empty:
                break
            if pkt is None:
                self.queue.put(None)
                break
            packets.append(pkt)
        return [private_copy(p) for p in packets]

    def schedule_ping(self) -> None:
        """Ping ``ping_interval`` from now, from the server's one ping timer (not a greenlet each)."""
        if self.last_ping:
            self.last_ping = None
            ping_timer(self.server).add(self)

    def ping_due(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def wrap_websocket(self, ws: object) -> GuardedWebSocket:
        """The frame adapter for this socket's protocol."""
        self.frame_ws = GuardedWebSocket(ws, self)
        return self.frame_ws


def plain_environ(environ: dict) -> dict:
    """The request's variables without the server's objects (input stream, websocket, handler):
    kept for the life of a connection, those would hold its HTTP read buffer and more."""
    return {key: value for key, value in environ.items() if isinstance(value, (str, int, float, tuple))}


def ping_timer(server: engineio.Server) -> FixedDelayTimer:
    """The engine server's shared ping timer."""
    timer = getattr(server, "gru_ping_timer", None)
    if timer is None:
        timer = FixedDelayTimer(server.ping_interval, BoundedPollSocket.ping_due, server.start_background_task,
                                server.sleep)
        server.gru_ping_timer = timer
    return timer


class GruSocketServer(HoldingServerMixin, socketio.Server):
    """python-socketio's server with the fixes above."""

    def __init__(self, *args, **kwargs) -> None:
        engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                          SERVER_MAX_DECODE_PACKETS)
        super().__init__(*args, **kwargs)
        GruPacket.json = self.packet_class.json
        self.packet_class = GruPacket

    def reply(self, sid: str, event: str, data: object) -> None:
        """Send one event to one connection of this process: no room lookup, no message queue."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        if eio_sid is None:
            return
        payload = [event, data]
        if GruPacket.data_is_binary(payload):  # binary attachments: the general path frames them
            self.emit(event, data, to=sid, ignore_queue=True)
            return
        text = "2" + self.packet_class.json.dumps(payload, separators=(",", ":"))  # an EVENT on "/"
        self._send_eio_packet(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, text))

    # Admission (gru.sockets.events): a session counts against the connection limits and its auth
    # timeout runs from its Engine.IO handshake, not from a Socket.IO connect it may never send.
    engine_opened = None  # (eio_sid, environ) -> None, or the error object of a refusal (HTTP 401)
    engine_closed = None  # (eio_sid) -> None

    def _handle_eio_disconnect(self, eio_sid: str, reason):
        try:
            return super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            if self.engine_closed is not None:
                self.engine_closed(eio_sid)

    def _handle_eio_connect(self, eio_sid: str, environ: dict):
        refusal = self.engine_opened(eio_sid, environ) if self.engine_opened is not None else None
        if refusal is not None:
            return refusal
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) is engineio.socket.Socket:
            socket.__class__ = BoundedPollSocket  # same state, bounded poll()
        result = super()._handle_eio_connect(eio_sid, environ)
        if eio_sid in self.environ:
            self.environ[eio_sid] = plain_environ(environ)
        return result

    def _handle_eio_message(self, eio_sid: str, data):
        if type(data) is str and data[:2] == "2[" and eio_sid not in self._binary_packet \
                and self._plain_event(eio_sid, data):
            return None
        try:
            return super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:  # a packet python-socketio cannot decode (bad JSON, huge numbers...)
            log.info("undecodable packet from %s: %s", eio_sid, exc)
            self._refuse_event(eio_sid, "/", Code.BAD_JSON, "packet could not be decoded")

    def _plain_event(self, eio_sid: str, text: str) -> bool:
        """The common packet, an event without ack on ``/`` with a registered handler, straight to
        that handler: what python-socketio's decode and dispatch would do, in one step. False
        leaves the packet to the general path (errors, acks, namespaces, unknown events)."""
        try:
            data = self.packet_class.json.loads(text[1:])
        except ValueError:
            return False
        if type(data) is not list or not data or type(data[0]) is not str or data[0] in RESERVED_EVENTS:
            return False
        handler = self.handlers.get("/", {}).get(data[0])
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if handler is None or sid is None or not self.manager.is_connected(sid, "/"):
            return False
        handler(sid, *data[1:])
        return True

    def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: list) -> None:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            log.info("refused malformed event from %s", eio_sid)
            self._refuse_event(eio_sid, namespace, Code.BAD_FIELD, "an event needs a name")
            return
        if data[0] in RESERVED_EVENTS:
            log.info("refused client event with reserved name %r from %s", data[0], eio_sid)
            self._refuse_event(eio_sid, namespace, Code.BAD_FIELD, f"event name {data[0]!r} is reserved")
            return
        super()._handle_event(eio_sid, namespace, id, data)

    def _refuse_event(self, eio_sid: str, namespace: str | None, code: Code, message: str) -> None:
        """Answer an event that cannot be handled, so the client is not left waiting."""
        answer = GruError(code, message).as_result()
        self._send_packet(eio_sid, self.packet_class(socketio.packet.EVENT, namespace=namespace or "/",
                                                     data=["error", answer]))
