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
* Polling (both protocol generations): a POST body is decoded whole before any packet is
  delivered; a bad or oversize one is answered 400 and closes its session at once. Upstream
  closed it waiting for a poll to drain its queue, so with no GET waiting the POST hung forever
  and held its socket. A second GET while one waits closes the session too (the Engine.IO
  protocol's rule; upstream split the packets between the two requests).
* Binary attachments from clients are bounded: at most ``max_attachments`` (10) per event, their
  bytes within ``max_http_buffer_size`` in all, placeholders within the announced count and a few
  levels deep. Anything else is answered with an ``error`` event and closes the connection;
  upstream kept every attachment announced (up to 10^10) in memory, and raised on a placeholder
  out of range or binary data sent without a binary packet.
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
# Engine.IO packets a client may POST: close, pong, message, upgrade (what upstream's receive takes).
CLIENT_POLLING_TYPES = frozenset("1345")
BINARY_PACKETS = frozenset("56")  # Socket.IO BINARY_EVENT and BINARY_ACK
MAX_PLACEHOLDER_DEPTH = 32  # python-socketio rebuilds binary events recursively


class BadPayloadError(exceptions.EngineIOError):
    """A polling request the engine refuses: it is answered 400 and its session closes."""


def wants_upgrade(environ: dict) -> bool:
    """The request asks to switch to a websocket (``Connection: upgrade``, ``Upgrade: websocket``)."""
    connection = [token.strip() for token in environ.get("HTTP_CONNECTION", "").lower().split(",")]
    return "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() == "websocket"


def read_body(environ: dict, limit: int) -> bytes:
    """A POST body of at most ``limit`` bytes; one announced larger is refused without reading it."""
    length = environ.get("CONTENT_LENGTH") or ""
    if length and not (length.isascii() and length.isdigit()):
        raise BadPayloadError("bad Content-Length")
    if length and int(length) > limit:
        raise BadPayloadError(f"payload larger than {limit} bytes")
    body = environ["wsgi.input"].read(int(length) if length else limit + 1)
    if len(body) > limit:
        raise BadPayloadError(f"payload larger than {limit} bytes")
    return body


def decode_payload(body: bytes) -> list[eio_packet.Packet]:
    """The packets of an Engine.IO 4 polling body (``\\x1e``-separated); messages stay text."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayloadError("payload is not UTF-8") from None
    if not text:
        raise BadPayloadError("empty payload")
    packets = []
    for encoded in text.split("\x1e"):
        if encoded[:1] == "b":
            try:
                packets.append(eio_packet.Packet(eio_packet.MESSAGE, data=base64.b64decode(encoded[1:], validate=True)))
            except (binascii.Error, ValueError):
                raise BadPayloadError("bad base64 in a binary packet") from None
        elif encoded[:1] in CLIENT_POLLING_TYPES:
            packets.append(eio_packet.Packet(int(encoded[0]), data=encoded[1:]))
        else:
            raise BadPayloadError(f"packet type {encoded[:1]!r} is not accepted from a client")
    return packets


def drop_session(server: engineio.Server, socket: engineio.socket.Socket) -> None:
    """Close a session after a protocol error without waiting for a poll to drain its queue."""
    socket.close(wait=False, reason=server.reason.TRANSPORT_ERROR)
    if server.sockets.get(socket.sid) is socket:
        del server.sockets[socket.sid]


def placeholder_problem(data: object, count: int) -> str | None:
    """Why the placeholders of a binary packet's data do not fit ``count`` attachments, or None."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_PLACEHOLDER_DEPTH:
            return f"binary event nested deeper than {MAX_PLACEHOLDER_DEPTH} levels"
        if isinstance(item, dict):
            if item.get("_placeholder") and "num" in item:
                num = item["num"]
                if type(num) is not int or not 0 <= num < count:
                    return f"binary attachment placeholder {str(num)[:20]!r} is out of range"
                continue
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
    return None


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
    get_waiting = False  # a long-poll GET of this session is waiting for packets

    def handle_get_request(self, environ, start_response):
        if wants_upgrade(environ):
            return super().handle_get_request(environ, start_response)
        self.get_waiting = True
        try:
            return super().handle_get_request(environ, start_response)
        finally:
            self.get_waiting = False

    def handle_post_request(self, environ) -> None:
        """Deliver a POST body's packets; a bad body delivers none, closes the session and raises
        :class:`BadPayloadError`."""
        try:
            packets = self.decode_body(read_body(environ, self.max_body))
        except BadPayloadError as exc:
            log.info("%s: bad polling body (%s), closing", self.sid, exc)
            self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise
        for pkt in packets:
            self.receive(pkt)
            if pkt.packet_type == eio_packet.CLOSE or self.closed:
                break

    @property
    def max_body(self) -> int:
        return self.server.max_http_buffer_size

    def decode_body(self, body: bytes) -> list[eio_packet.Packet]:
        """The packets of a POST body in this protocol's framing."""
        return decode_payload(body)

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

    def __init__(self, *args, max_attachments: int = 10, **kwargs) -> None:
        engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                          SERVER_MAX_DECODE_PACKETS)
        super().__init__(*args, **kwargs)
        GruPacket.json = self.packet_class.json
        self.packet_class = GruPacket
        self.max_attachments = max_attachments  # binary attachments per client event or ack

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
        if eio_sid in self._binary_packet:
            refusal = self._attachment_refusal(self._binary_packet[eio_sid], data)
            if refusal is not None:
                return self._refuse_and_close(eio_sid, self._binary_packet[eio_sid].namespace, refusal)
        elif type(data) is str and data[:1] in BINARY_PACKETS:
            refusal = self._binary_refusal(eio_sid, data)
            if refusal is not None:
                return self._refuse_and_close(eio_sid, None, refusal)
        elif type(data) is str and data[:2] == "2[" and self._plain_event(eio_sid, data):
            return None
        elif type(data) is not str:  # upstream reads bytes as a packet: a TypeError, or worse
            log.info("binary data without a binary packet from %s", eio_sid)
            return self._refuse_event(eio_sid, "/", Code.BAD_FIELD, "binary data without a binary event")
        try:
            return super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError) as exc:  # a packet python-socketio cannot decode (bad JSON...)
            log.info("undecodable packet from %s: %s", eio_sid, type(exc).__name__)
            self._refuse_event(eio_sid, "/", Code.BAD_JSON, "packet could not be decoded")

    def _binary_refusal(self, eio_sid: str, text: str) -> str | None:
        """Why a binary event or ack announcing attachments is refused, or None."""
        try:
            pkt = self.packet_class(encoded_packet=text)
        except (ValueError, RecursionError):
            return f"binary packet could not be decoded (at most {self.max_attachments} attachments)"
        if not 1 <= pkt.attachment_count <= self.max_attachments:
            return f"a binary packet takes 1 to {self.max_attachments} attachments"
        if self.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/") is None:
            return "binary packet for a namespace that is not connected"
        return placeholder_problem(pkt.data, pkt.attachment_count)

    def _attachment_refusal(self, pkt: socketio.packet.Packet, data: object) -> str | None:
        """Why an attachment is refused (not binary, or over the payload limit in all), or None."""
        if not isinstance(data, (bytes, bytearray)):
            return "a binary attachment was expected"
        pkt.attachment_bytes = getattr(pkt, "attachment_bytes", 0) + len(data)
        if pkt.attachment_bytes > self.eio.max_http_buffer_size:
            return f"binary attachments larger than {self.eio.max_http_buffer_size} bytes"
        return None

    def _refuse_and_close(self, eio_sid: str, namespace: str | None, message: str) -> None:
        """Answer with an ``error`` event, then close the session: what follows is not worth reading."""
        log.info("%s: %s, closing", eio_sid, message)
        self._binary_packet.pop(eio_sid, None)
        self._refuse_event(eio_sid, namespace, Code.BAD_FIELD, message)
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            drop_session(self.eio, socket)

    def _plain_event(self, eio_sid: str, text: str) -> bool:
        """The common packet, an event without ack on ``/`` with a registered handler, straight to
        that handler: what python-socketio's decode and dispatch would do, in one step. False
        leaves the packet to the general path (errors, acks, namespaces, unknown events)."""
        try:
            data = self.packet_class.json.loads(text[1:])
        except (ValueError, RecursionError):
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
