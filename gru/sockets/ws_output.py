"""WebSocket output without a writer greenlet per connection.

python-engineio gives every websocket connection a writer greenlet that waits on the
connection's queue (with a timeout per wait) and wakes up for every packet: for a unicast that
is a queue put, a wake-up, two greenlet switches and a timer before the bytes move, and an idle
connection keeps the greenlet's saved stack in memory.

Here a packet for an open websocket is framed and handed to the kernel at once, from the
greenlet that sends it, with one non-blocking ``send``. Only when the kernel does not take all of
it (a slow reader), or while such a backlog exists, do frames go to the connection's queue, and
a writer greenlet is started for as long as the queue has something in it; it waits for the
socket to become writable and keeps the unsent part of a frame, so a client that falls behind
for a while gets everything, in order. Order is kept: a packet is written directly only when
nothing is queued and no writer is active, and nothing switches greenlets between that check and
the write. A sender is never blocked by a slow recipient.

What waits is bounded: a connection whose unsent bytes would exceed ``GRU_MAX_BACKLOG`` (the
websocket backlog, or the queue of a polling client that stopped polling) is closed, with a log
line and ``gru_backlog_overflows``. A connection whose socket fails is shut down, which ends its
reader and closes the session the usual way.

After the handshake the connection is read by the event loop (:mod:`gru.sockets.ws_reader`);
where that is not possible (another websocket driver) the handler greenlet keeps reading it.
"""

from __future__ import annotations

import logging
import socket as stdlib_socket

import gevent
from engineio import exceptions
from engineio import packet as eio_packet
from gevent.socket import wait_write

from gru import metrics
from gru.sockets import ws_reader

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKLOG = 4 * 1024 * 1024  # bytes; the server's ``gru_max_backlog`` (GRU_MAX_BACKLOG) wins


def max_backlog(server) -> int:
    """Unsent bytes a connection of ``server`` may have before it is closed."""
    return getattr(server, "gru_max_backlog", DEFAULT_MAX_BACKLOG)


def packet_size(pkt) -> int:
    """About how many bytes a queued packet will take on the wire."""
    data = getattr(pkt, "data", None)
    return len(data) + 2 if isinstance(data, (str, bytes, bytearray)) else 16


def nonblocking_socket(raw: object):
    """The operating-system socket under a gevent-websocket connection, or None (another driver)."""
    stream = getattr(raw, "stream", None)
    gevent_socket = getattr(getattr(stream, "handler", None), "socket", None)
    sock = getattr(gevent_socket, "_sock", None)
    if sock is None or sock.gettimeout() != 0.0:
        return None
    return sock


class RawFrame:
    """A ready WebSocket control frame (pong, close) in a connection's output queue."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class DirectWebSocketOutput:
    """Mixin for ``engineio.socket.Socket`` subclasses whose ``frame_ws`` frames packets."""

    ws_open = False  # the websocket transport is live: sends go straight to the socket
    _sock = None  # the non-blocking OS socket of the websocket
    _gsock = None  # the same connection as a gevent socket (detached mode)
    _conn = None  # the event-loop reader (detached mode)
    _writer = None  # the greenlet writing a backlog, while one exists
    _backlog = 0  # websocket bytes queued or in the writer, not yet taken by the kernel
    _poll_backlog = 0  # polling: bytes queued at most (recounted exactly when it looks too many)
    _overflowed = False  # closed for exceeding the backlog limit: nothing more is queued

    # --- the transport ------------------------------------------------------
    def _websocket_handler(self, ws):
        ws = self.wrap_websocket(ws)
        sock = nonblocking_socket(ws.raw)
        if sock is None:
            return self._upstream_websocket_handler(ws)
        if self.connected:  # an upgrade from polling
            self.upgrading = True  # sends are queued until the upgrade is done
            if not self._probe(ws):
                self.upgrading = False
                return []
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        taken = ws_reader.detach(ws.raw, ws.raw.handler.socket)
        if taken is None:
            return self._serve_in_greenlet(ws, sock)
        self._gsock, already_read = taken
        ws.release()
        self._sock = self._gsock._sock
        self._conn = ws_reader.DetachedWebSocket(self._gsock, ws_reader.FrameReader(self.server.max_http_buffer_size),
                                                 self._on_ws_message, self._write_control, self._on_ws_end)
        self.ws_open = True
        self._kick()  # whatever was queued during the upgrade leaves first, in order
        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)
        self._conn.start(already_read)
        return []

    def _serve_in_greenlet(self, ws, sock):
        """Fallback: this greenlet reads the websocket until it closes."""
        self._sock = sock
        self.ws_open = True
        self._kick()
        try:
            while True:
                try:
                    data = self._wait_frame(ws)
                except Exception as exc:  # noqa: BLE001 - any read failure ends the connection
                    if not self.closed:
                        self.server.logger.info('%s: Unexpected error "%s", closing connection', self.sid, exc)
                    return []
                if data is None or not self._on_ws_message(data, checked=True):
                    return []
        finally:
            self._stop_output()
            self._close_websocket()
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    def _upstream_websocket_handler(self, ws):
        return super()._websocket_handler(ws)

    def _probe(self, ws) -> bool:
        """The upgrade handshake: ``2probe`` → ``3probe``, then ``5``; the pending poll is ended."""
        pkt = self._wait_frame(ws)
        decoded = eio_packet.Packet(encoded_packet=pkt)
        if decoded.packet_type != eio_packet.PING or decoded.data != "probe":
            self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
            return False
        ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end the poll
        pkt = self._wait_frame(ws)
        if eio_packet.Packet(encoded_packet=pkt).packet_type != eio_packet.UPGRADE:
            self.server.logger.info("%s: Failed websocket upgrade, expected UPGRADE packet", self.sid)
            return False
        return True

    def _wait_frame(self, ws):
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    def _on_ws_message(self, data, checked: bool = False) -> bool:
        """One message from the client; False ends the connection."""
        if not checked:
            if len(data) > self.server.max_http_buffer_size:
                log.info("%s: websocket message too large, closing", self.sid)
                return False
            data = self.frame_ws.inbound(data)
            if data is None:
                log.info("%s: undecodable websocket frame, closing", self.sid)
                return False
        try:
            if type(data) is str and data[:1] == "4" and data[1:2].isdigit():  # a Socket.IO packet
                self._message(data[1:])
            else:
                self.receive(eio_packet.Packet(encoded_packet=data))
        except exceptions.UnknownPacketError:
            pass
        except exceptions.SocketIsClosedError:
            return False
        except Exception:  # noqa: BLE001 - log it and end this connection only
            self.server.logger.exception("Unknown receive error")
            return False
        return True

    def _message(self, text: str) -> None:
        """An Engine.IO message to the engine's ``message`` handler (python-socketio), as
        ``receive`` would pass it, without its per-packet logging and event plumbing."""
        server = self.server
        handler = server.handlers.get("message")
        if handler is None or server.async_handlers:
            server._trigger_event("message", self.sid, text, run_async=server.async_handlers)
            return
        try:
            handler(self.sid, text)
        except Exception:  # noqa: BLE001 - as the engine does: log it, keep the connection
            server.logger.exception("message handler error")

    def _on_ws_end(self) -> None:
        """The detached connection is over: finish the output, then close the session."""
        self._stop_output()
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]  # the upgrade request that would have done it returned long ago

    # --- output -------------------------------------------------------------
    def send(self, pkt):
        if self._overflowed:
            return None
        if not self.ws_open:
            super().send(pkt)
            self._count_polling(pkt)
            return None
        if not self.check_ping_timeout() or self._output_closed():
            return None  # closing: nothing may follow the websocket's close frame
        data = pkt.__dict__.get("ws_frame") or self.frame_ws.frame(pkt)  # a broadcast's frame is shared
        if not data:
            return None
        if self._writer is not None or self.queue.qsize():
            self._queue_frame(data)
        else:
            self._write_now(data)
        return None

    def _queue_frame(self, data: bytes) -> None:
        """Behind a backlog: the frame waits its turn, unless that makes the backlog too large."""
        self._backlog += len(data)
        if self._backlog > max_backlog(self.server):
            self._overflow(self._backlog)
            return
        self.queue.put(RawFrame(data))
        self._kick()

    def _count_polling(self, pkt) -> None:
        """A packet queued for a poll: close the session if the queue holds too much."""
        if self.closed:
            return
        self._poll_backlog = packet_size(pkt) + (self._poll_backlog if self.queue.qsize() > 1 else 0)
        limit = max_backlog(self.server)
        if self._poll_backlog > limit:  # an upper bound: what was polled since is not subtracted
            self._poll_backlog = sum(packet_size(p) for p in list(self.queue.queue) if p is not None)
            if self._poll_backlog > limit:
                self._overflow(self._poll_backlog)

    def _overflow(self, size: int) -> None:
        """The client does not read what it is sent: close its connection."""
        self._overflowed = True
        log.warning("%s: %d bytes wait for a client that does not read them (GRU_MAX_BACKLOG is %d), "
                    "closing the connection", self.sid, size, max_backlog(self.server))
        metrics.backlog_overflow()
        if not self.ws_open:  # closed from its own greenlet: the sender may be walking a room
            self.server.start_background_task(self._close_polling)
            return
        self._take_queued(until_close=False)
        self._backlog = 0
        self._shutdown()

    def _close_polling(self) -> None:
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]  # its queue goes with it; a later poll is answered 400

    def _write_control(self, data: bytes) -> None:
        """A control frame from the reader (pong, close), in order with everything else."""
        if not self.ws_open or self._overflowed:
            return
        if self._writer is not None or not self.queue.empty():
            self._queue_frame(data)
        else:
            self._write_now(data)

    def close(self, wait=True, abort=False, reason=None):
        if not self.ws_open:
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return None
        self.closing = True
        self.server._trigger_event("disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT,
                                   run_async=False)
        if not abort:
            self.send(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.queue.put(None)  # the writer closes the websocket after what is queued before it
        self._kick()
        if self._writer is not None:  # a backlog: the client gets a while to read it, no more
            gevent.get_hub().loop.timer(ws_reader.CLOSE_GRACE_SECONDS).start(self._shutdown)
        if wait:
            self.queue.join()
        return None

    def _output_closed(self) -> bool:
        if self._conn is not None:
            return self._conn.close_sent or self._conn.ended
        return self.frame_ws.raw.closed

    def _write_now(self, data: bytes) -> None:
        """One non-blocking send; what the kernel does not take goes to a writer greenlet."""
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._broken(exc)
            return
        if sent < len(data):
            rest = data[sent:]
            self._backlog += len(rest)
            self._writer = self.server.start_background_task(self._write_backlog, rest)

    def _kick(self) -> None:
        """Start a writer if the queue holds packets and none is running."""
        if self.ws_open and self._writer is None and not self.queue.empty():
            self._writer = self.server.start_background_task(self._write_backlog, b"")

    def _write_backlog(self, rest: bytes) -> None:
        """Write ``rest``, then everything queued, until the queue is empty (or the close marker)."""
        frame = self.frame_ws.frame
        try:
            if rest:
                self._sendall(rest)
            while True:
                packets = self._take_queued()
                if not packets:
                    return
                closing = packets[-1] is None
                if closing:
                    packets.pop()
                framed = [frame(p) for p in packets if type(p) is not RawFrame]  # queued before the upgrade
                self._backlog += sum(map(len, framed))
                framed.reverse()
                data = b"".join([p.data if type(p) is RawFrame else framed.pop() for p in packets])
                if data:
                    self._sendall(data)
                if closing:
                    self._close_websocket()
                    return
        except Exception as exc:  # noqa: BLE001 - a dead socket ends this connection only
            self._take_queued(until_close=False)
            self._backlog = 0
            if not self._overflowed:
                self._broken(exc)
        finally:
            self._writer = None

    def _take_queued(self, until_close: bool = True) -> list:
        """Everything queued now, in order; stops after the close marker (``None``)."""
        packets = []
        queue = self.queue
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            packets.append(pkt)
            if pkt is None and until_close:
                break
        return packets

    def _sendall(self, data: bytes) -> None:
        """Write all of ``data``, waiting (this greenlet only) while the peer is slow; what the kernel
        took leaves the backlog as it goes, what it did not stays for the next try."""
        if self._conn is None:
            raw = self.frame_ws.raw
            if raw.closed or raw.raw_write is None:
                raise ConnectionError("websocket is closed")
            raw.raw_write(data)
            self._backlog -= len(data)
            return
        view, sock, fd = memoryview(data), self._sock, self._conn.fd
        while view:
            if self._conn.ended or self._overflowed:
                raise ConnectionError("websocket is closed")
            try:
                sent = sock.send(view)
            except BlockingIOError:
                wait_write(fd)
                continue
            view = view[sent:]
            self._backlog -= sent

    def _close_websocket(self) -> None:
        """Send the close frame (once)."""
        if self._conn is not None:
            data = self._conn.closing_frame()
            if data:
                self._sendall(data)
        elif not self.frame_ws.raw.closed:
            self.frame_ws.close()

    def _broken(self, exc: BaseException) -> None:
        """The socket cannot be written: shut it down, so the reader ends the session."""
        log.info("%s: websocket write failed (%s), closing", self.sid, exc)
        self._shutdown()

    def _shutdown(self) -> None:
        """Drop the connection: a waiting writer fails, the reader sees the end and closes the session."""
        if self._conn is not None and not self._conn.ended:
            self._conn.abort()
            return
        try:
            self._sock.shutdown(stdlib_socket.SHUT_RDWR)
        except OSError:
            pass

    def _stop_output(self) -> None:
        """The reader is done: let a running writer finish, for a while."""
        writer = self._writer
        if writer is not None:
            self.queue.put(None)
            writer.join(ws_reader.CLOSE_GRACE_SECONDS)
            if not writer.dead:  # the client does not read: stop waiting for it
                self._shutdown()
                writer.join()
        self.ws_open = False
