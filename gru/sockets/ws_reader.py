"""Reading open websockets from the event loop instead of one blocked greenlet per connection.

gevent-websocket serves a websocket from the greenlet that handled its HTTP upgrade: the
greenlet blocks in a read at the bottom of a deep stack (pywsgi, the WSGI middleware,
python-engineio) for the whole life of the connection. Every idle connection keeps that
greenlet's saved stack, its suspended frames and an 8 KiB read buffer, and every message costs
two switches of that deep stack.

Once the handshake is done, :func:`detach` takes the connection over: it detaches the socket's
file descriptor from pywsgi's socket object, collects whatever the HTTP reader had already
buffered, marks the gevent-websocket object closed (so nothing more is written or read through
it) and lets the handler greenlet return; pywsgi then finishes the request without closing the
connection. From then on a libev read watcher parses frames as bytes arrive, in the event loop,
and a :class:`Dispatcher` greenlet runs the messages of one connection in order (handlers may
wait on Redis). A connection whose handlers fall behind stops being read until they catch up,
so a flood is held back by TCP, not buffered here.

What :class:`FrameReader` enforces is RFC 6455 for a server: masked or unmasked client frames,
fragmented messages, ping answered with pong, close answered with close, strict UTF-8 for
text (1007), no reserved bits (1002), messages larger than the engine's limit (1009).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable

import gevent
from gevent import socket as gevent_socket

from gru.sockets import frames

log = logging.getLogger(__name__)

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009
RECV_SIZE = 256 * 1024
MAX_PENDING = 64  # messages waiting for their handlers before the connection stops being read
CLOSE_GRACE_SECONDS = 5.0  # after our close frame, how long the peer has to close the connection

try:
    from wsaccel.xormask import XorMaskerSimple

    def unmask(mask: bytes, payload: bytes) -> bytes:
        return XorMaskerSimple(mask).process(payload)
except ImportError:  # pragma: no cover - wsaccel is a requirement; this keeps the module usable
    def unmask(mask: bytes, payload: bytes) -> bytes:
        size = len(payload)
        key = (mask * (size // 4 + 1))[:size]
        return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")

_recv_buffer = bytearray(RECV_SIZE)  # shared: read callbacks run one at a time in the event loop


class ProtocolViolation(Exception):
    """The peer broke the WebSocket protocol; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """A final, unmasked server frame."""
    return frames.header(opcode, len(payload)) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])


class FrameReader:
    """Turns received bytes into messages (``str`` for text, ``bytes`` for binary) and control events."""

    __slots__ = ("max_size", "buffer", "fragments", "fragment_opcode")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.buffer = b""
        self.fragments: list[bytes] | None = None
        self.fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, object]]:
        """``(opcode, payload)`` of every complete message or control frame in what arrived so far."""
        buf = self.buffer + data if self.buffer else data
        out = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolViolation(CLOSE_PROTOCOL, "reserved bits set")
            size, head = b1 & 0x7F, pos + 2
            if size == 126:
                if end - head < 2:
                    break
                size, head = struct.unpack_from("!H", buf, head)[0], head + 2
            elif size == 127:
                if end - head < 8:
                    break
                size, head = struct.unpack_from("!Q", buf, head)[0], head + 8
            opcode = b0 & 0x0F
            if size > self.max_size + 16:
                raise ProtocolViolation(CLOSE_TOO_BIG, "frame too large")
            masked = b1 & 0x80
            start = head + 4 if masked else head
            if end - start < size:
                break
            payload = bytes(buf[start:start + size])
            if masked:
                payload = unmask(bytes(buf[head:head + 4]), payload)
            pos = start + size
            message = self._message(b0 & 0x80, opcode, payload)
            if message is not None:
                out.append(message)
        self.buffer = bytes(buf[pos:]) if pos < end else b""
        return out

    def _message(self, fin: int, opcode: int, payload: bytes) -> tuple[int, object] | None:
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125 or opcode > OP_PONG:
                raise ProtocolViolation(CLOSE_PROTOCOL, "bad control frame")
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if self.fragments is None:
                raise ProtocolViolation(CLOSE_PROTOCOL, "continuation without a message")
            self.fragments.append(payload)
            if sum(map(len, self.fragments)) > self.max_size + 16:
                raise ProtocolViolation(CLOSE_TOO_BIG, "message too large")
            if not fin:
                return None
            opcode, payload = self.fragment_opcode, b"".join(self.fragments)
            self.fragments = None
        elif opcode in (OP_TEXT, OP_BINARY):
            if self.fragments is not None:
                raise ProtocolViolation(CLOSE_PROTOCOL, "new message inside a fragmented one")
            if not fin:
                self.fragments, self.fragment_opcode = [payload], opcode
                return None
        else:
            raise ProtocolViolation(CLOSE_PROTOCOL, f"unknown opcode {opcode}")
        if opcode == OP_BINARY:
            return opcode, payload
        try:
            return opcode, payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(CLOSE_BAD_DATA, "text is not valid UTF-8") from None


class DetachedWebSocket:
    """One websocket read by the event loop; ``on_message`` runs in a greenlet, in order.

    ``on_message(data)`` returns False to end the connection. ``write(frame)`` hands a control
    frame to the owner's ordered output; ``on_end()`` runs once, in a greenlet, after the last
    message, when the connection is over for any reason.
    """

    __slots__ = ("sock", "fd", "reader", "watcher", "pending", "running", "ended", "close_sent", "read_all",
                 "on_message", "write", "on_end", "__weakref__")

    def __init__(self, sock, reader: FrameReader, on_message: Callable[[object], bool],
                 write: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = reader
        self.on_message = on_message
        self.write = write
        self.on_end = on_end
        self.pending: list = []
        self.running = False
        self.read_all = False  # end of stream, close frame or protocol error: nothing more is read
        self.ended = False
        self.close_sent = False
        self.watcher = gevent.get_hub().loop.io(self.fd, 1)

    def start(self, already_read: bytes) -> None:
        if already_read:
            self._received(already_read)
        if not self.ended and not self.read_all:
            self.watcher.start(self._readable)

    # --- the event loop side ------------------------------------------------
    def _readable(self) -> None:
        try:
            size = self.sock.recv_into(_recv_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        if not size:
            self._stop_reading()
            self._queue(None)
            return
        self._received(bytes(_recv_buffer[:size]) if size < 4096 else bytes(memoryview(_recv_buffer)[:size]))

    def _received(self, data: bytes) -> None:
        try:
            events = self.reader.feed(data)
        except ProtocolViolation as exc:
            log.info("websocket protocol error from fd %d: %s", self.fd, exc)
            self.send_close(exc.code, str(exc))
            self._stop_reading()
            self._queue(None)
            return
        for opcode, payload in events:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                self._queue(payload)
            elif opcode == OP_PING:
                self.write(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
                self.send_close(code if code < 5000 and code not in (1005, 1006, 1015) else CLOSE_PROTOCOL)
                self._stop_reading()
                self._queue(None)
                return
        if len(self.pending) > MAX_PENDING:
            self.watcher.stop()  # the handlers are behind: let TCP hold the rest

    def _queue(self, item: object) -> None:
        self.pending.append(item)
        if not self.running:
            self.running = True
            DISPATCHER.submit(self)

    def _stop_reading(self) -> None:
        self.read_all = True
        self.watcher.stop()

    # --- the greenlet side --------------------------------------------------
    def run(self) -> None:
        """Handle this connection's pending messages, in order (called by a dispatcher greenlet)."""
        pending = self.pending
        try:
            while pending and not self.ended:
                item = pending.pop(0)
                if item is None or not self.on_message(item):
                    self._end()
                    return
                if len(pending) == MAX_PENDING // 2 and not self.read_all and not self.ended:
                    self.watcher.start(self._readable)
        except Exception:  # noqa: BLE001 - a handler bug ends this connection only
            log.exception("websocket message handling failed")
            self._end()
        finally:
            self.running = False

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.pending.clear()
        self._stop_reading()
        try:
            self.on_end()
        finally:
            self.release()

    # --- closing ------------------------------------------------------------
    def send_close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake (once) through the owner's ordered output."""
        data = self.closing_frame(code, reason)
        if data:
            self.write(data)

    def closing_frame(self, code: int = CLOSE_NORMAL, reason: str = "") -> bytes | None:
        """The close frame to send, once; the connection is dropped if the peer does not finish
        the closing handshake within ``CLOSE_GRACE_SECONDS``."""
        if self.close_sent or self.ended:
            return None
        self.close_sent = True
        gevent.get_hub().loop.timer(CLOSE_GRACE_SECONDS).start(self.abort)
        return close_frame(code, reason)

    def abort(self) -> None:
        """Drop the connection now; the reader then ends it the usual way."""
        if self.ended:
            return
        try:
            self.sock.shutdown(gevent_socket.SHUT_RDWR)
        except OSError:
            pass
        if not self.watcher.active:  # not reading (held back, or finished): end it from here
            self._queue(None)

    def release(self) -> None:
        self.watcher.stop()
        self.watcher.close()
        try:
            self.sock.close()
        except OSError:
            pass


class Dispatcher:
    """Runs connections with pending messages on as few greenlets as keep everybody moving.

    A greenlet per burst of messages would be spawned and torn down for almost every message.
    Instead, connections that have messages wait in one queue, and a dispatcher greenlet takes
    them one after the other. Before a dispatcher runs a connection while others are ready, it
    starts a successor if none is free, and a connection queued while every dispatcher is inside a
    handler starts one: so nobody waits behind a handler that waits on Redis, and handlers that
    wait together can share one round trip (:mod:`gru.backends.redis_lane`). Dispatchers end
    when the queue is empty. One connection is never run by two dispatchers at once, so its
    messages stay in order.
    """

    def __init__(self) -> None:
        self.ready: deque = deque()
        self.dispatchers = 0  # alive
        self.busy = 0  # inside a connection's handlers

    def submit(self, conn: DetachedWebSocket) -> None:
        self.ready.append(conn)
        if self.busy == self.dispatchers:  # none is free to pick it up
            self.dispatchers += 1
            gevent.spawn_raw(self._dispatch)

    def _dispatch(self) -> None:
        ready = self.ready
        try:
            while ready:
                conn = ready.popleft()
                if ready and self.busy + 1 == self.dispatchers:
                    self.dispatchers += 1  # a successor for the rest, should this connection's handler wait
                    gevent.spawn_raw(self._dispatch)
                self.busy += 1
                try:
                    conn.run()
                finally:
                    self.busy -= 1
        finally:
            self.dispatchers -= 1


DISPATCHER = Dispatcher()


def detach(ws_raw, handler_socket) -> tuple[object, bytes] | None:
    """Take a gevent-websocket connection over: ``(gevent socket on the same descriptor, bytes
    already read)``, or None if this is not a gevent-websocket connection on a real socket.

    The descriptor is detached from pywsgi's socket object (which then closes nothing), not
    duplicated: a duplicate would leave the original's registration in the kernel's epoll set
    after pywsgi closed it, and libev would then miss events of a new connection reusing its
    number.
    """
    handler = getattr(ws_raw, "handler", None)
    rfile = getattr(handler, "rfile", None)
    if handler is None or rfile is None or not hasattr(handler_socket, "detach"):
        return None
    handler_socket.settimeout(0.0)
    try:
        already_read = rfile.peek(RECV_SIZE)  # what the HTTP reader buffered (or can read now)
    except (BlockingIOError, OSError, ValueError):
        already_read = b""
    try:
        fd = handler_socket.detach()
    except OSError:
        return None
    sock = gevent_socket.socket(fileno=fd)
    sock.setblocking(False)
    ws_raw.closed = True  # gevent-websocket must not write a close frame when its handler returns
    handler.close_connection = True  # and pywsgi must not read another request from this connection
    return sock, already_read or b""
