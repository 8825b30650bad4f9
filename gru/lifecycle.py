"""Gunicorn worker glue: drain on SIGTERM, long request lines, time limits for request heads and bodies."""

from __future__ import annotations

import logging
import signal
import time

import gevent

from gru import metrics

log = logging.getLogger(__name__)


def install_drain_on_term(worker) -> None:
    """Make SIGTERM mark the node draining and close its connections, then let gunicorn stop as usual.

    gunicorn's worker closes its listener, then stops once no request is in progress; open
    websockets are not requests in progress (they are read by the event loop, see
    :mod:`gru.sockets.ws_reader`), so the worker's run is extended until the drain is done.
    gunicorn's ``graceful_timeout`` leaves room for it (``gru/gunicorn_conf.py``).
    """
    gru = getattr(worker.wsgi, "gru", None)
    if gru is None:
        return
    previous = worker.handle_exit
    drains: list = []

    def handle_exit(sig, frame):
        previous(sig, frame)
        drains.append(gevent.spawn(gru.drain))

    run = worker.run

    def run_until_drained():
        run()
        gevent.joinall(drains, timeout=worker.cfg.graceful_timeout)

    worker.run = run_until_drained
    signal.signal(signal.SIGTERM, handle_exit)


MAX_REQUEST_LINE = 64 * 1024


def allow_long_query_strings() -> None:
    """Let gevent's HTTP server read request lines up to 64 KiB (its default, 8 KiB, answers 414
    with an empty body to a ``/ticket`` whose ``token1`` of 4096 characters is percent-encoded)."""
    import gevent.pywsgi

    gevent.pywsgi.MAX_REQUEST_LINE = max(gevent.pywsgi.MAX_REQUEST_LINE, MAX_REQUEST_LINE)


REQUEST_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def install_request_timeouts(worker, header_timeout: float, keepalive_timeout: float, body_timeout: float) -> None:
    """Serve this worker's connections with :func:`timed_handler` around its configured handler."""
    worker.wsgi_handler = timed_handler(worker.wsgi_handler, header_timeout, keepalive_timeout, body_timeout)


class BodyTimeout(BaseException):
    """A request body did not arrive in time. A BaseException, so that it passes the application's
    ``except Exception`` (Flask, python-engineio) up to the handler, which closes the connection."""


class DeadlineReader:
    """A request's input stream whose reads, together, must end by a deadline."""

    __slots__ = ("_rfile", "_deadline")

    def __init__(self, rfile, seconds: float) -> None:
        self._rfile = rfile
        self._deadline = time.monotonic() + seconds

    def _call(self, read, *args):
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout
        timer = gevent.Timeout.start_new(left, BodyTimeout)
        try:
            return read(*args)
        finally:
            timer.cancel()

    def read(self, *args):
        return self._call(self._rfile.read, *args)

    def readline(self, *args):
        return self._call(self._rfile.readline, *args)


def timed_handler(base: type, header_timeout: float, keepalive_timeout: float, body_timeout: float = 30.0) -> type:
    """``base`` (a gevent pywsgi handler) with a deadline for each request head and for idle keep-alive.

    gevent's HTTP server reads request heads without any timeout, so a connection that sends
    nothing, or a head a byte at a time (slowloris), or that stays idle between requests, holds one
    of the worker's connection slots forever. Here a connection must deliver a complete request
    head within ``header_timeout`` of being accepted (or of its previous request's first byte), and
    start its next request within ``keepalive_timeout`` of the previous answer; otherwise it is
    closed (an incomplete head gets ``408`` first). The deadline ends once the head is read. A
    request body (a polling POST, a push) must then arrive within ``body_timeout`` of reading it
    (``408`` and the connection closed otherwise). Long-polls and websockets (read by the event
    loop after their upgrade) have no body and are not affected.
    """

    class TimedHandler(base):
        requests_served = 0
        head_started = False  # a byte of the current request has arrived
        head_deadline: gevent.Timeout | None = None

        def handle_one_request(self):
            if self.requests_served and not self._next_request_starts():
                return None
            self.requests_served += 1
            self.head_started = False
            self.head_deadline = gevent.Timeout.start_new(header_timeout)
            try:
                return super().handle_one_request()
            except gevent.Timeout as exc:
                if exc is not self.head_deadline:
                    raise
                log.info("closing connection from %s: no complete request head within %gs (GRU_HEADER_TIMEOUT)",
                         _peer(self), header_timeout)
                metrics.http_timeout("head")
                if self.head_started:
                    self._answer_timeout()
                return None
            finally:
                self.head_deadline.cancel()

        def read_requestline(self):
            self.head_started = bool(self.rfile.peek(1))  # blocks until the first byte (or the end)
            return super().read_requestline()

        def read_request(self, raw_requestline):
            try:
                return super().read_request(raw_requestline)
            finally:
                self.head_deadline.cancel()  # the head is in: the application may take its time

        def get_environ(self):
            env = super().get_environ()
            if env.get("wsgi.input") is self.wsgi_input and (self.content_length or self.wsgi_input.chunked_input):
                self.wsgi_input.rfile = DeadlineReader(self.rfile, body_timeout)
            return env

        def handle_error(self, t, v, tb):
            if not isinstance(v, BodyTimeout):
                return super().handle_error(t, v, tb)
            log.info("closing connection from %s: request body not complete within %gs (GRU_BODY_TIMEOUT)",
                     _peer(self), body_timeout)
            metrics.http_timeout("body")
            self.close_connection = True
            if not self.response_length and not self.headers_sent:
                self._answer_timeout()
            return None

        def _next_request_starts(self) -> bool:
            """Wait up to ``keepalive_timeout`` for the first byte of another request."""
            timer = gevent.Timeout.start_new(keepalive_timeout)
            try:
                return bool(self.rfile.peek(1))
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                metrics.http_timeout("idle")
                return False
            except OSError:
                return False
            finally:
                timer.cancel()

        def _answer_timeout(self) -> None:
            """408 without waiting on a peer that may not read."""
            try:
                self.socket.setblocking(False)
                self.socket.send(REQUEST_TIMEOUT_RESPONSE)
            except OSError:
                pass

    TimedHandler.__name__ = TimedHandler.__qualname__ = f"Timed{base.__name__}"
    return TimedHandler


def _peer(handler) -> str:
    address = getattr(handler, "client_address", None)
    return address[0] if isinstance(address, tuple) and address else str(address or "?")
