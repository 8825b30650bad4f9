"""Prometheus metrics of a Gru process, and the hooks the rest of Gru calls to update them.

Under gunicorn every worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by
``gru/gunicorn_conf.py``), and ``/metrics`` on any worker adds up all of them. Without that
directory (tests, the Flask drop-in under another server) the process's own registry is used.
Every hook is cheap and never raises: metrics must not break message delivery.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

CONNECTIONS = Gauge("gru_connections", "socket.io connections open on this node, by state "
                    "(open: all, authenticated: after a successful auth)", ["state"], multiprocess_mode="livesum")
CONNECTIONS_TOTAL = Counter("gru_connections_opened", "socket.io connections accepted")
CONNECTIONS_REFUSED = Counter("gru_connections_refused", "connections refused before auth, by error code "
                              "(draining: 0, node full: -19, too many from one address: -20)", ["code"])
AUTH_OK = Counter("gru_auth_success", "successful auth events")
AUTH_FAILURES = Counter("gru_auth_failures", "refused auth events (and auth timeouts), by error code", ["code"])
MESSAGES = Counter("gru_messages", "messages accepted for delivery, by type (broadcast or unicast)", ["type"])
DELIVERIES = Counter("gru_deliveries", "msg events handed to connections of this node")
ERRORS = Counter("gru_errors", "error answers to socket events, by event and error code", ["event", "code"])
TICKETS = Counter("gru_ticket_requests", "GET /ticket answers, by result", ["result"])
API_REQUESTS = Counter("gru_api_requests", "publish API answers, by endpoint and HTTP status", ["endpoint", "status"])
REDIS_PUBLISH = Histogram("gru_redis_publish_seconds", "time to publish one emit to Redis",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
REDIS_PUBLISH_FAILURES = Counter("gru_redis_publish_failures", "emits Redis could not take (senders got -14)")
HISTORY_STORED = Counter("gru_history_stored", "messages written to the history")
HISTORY_RECOVERIES = Counter("gru_history_recoveries", "recoveries of missed messages, by result "
                             "(complete, or partial when the history no longer held everything)", ["result"])
HISTORY_RECOVERED = Counter("gru_history_recovered", "messages re-delivered by recoveries")
OFFLINE_QUEUED = Counter("gru_offline_queued", "messages queued for offline users (expire > 0)")
OFFLINE_DELIVERED = Counter("gru_offline_delivered", "queued messages delivered when their user came back")
OFFLINE_EXPIRED = Counter("gru_offline_expired", "queued messages dropped because they expired first")
BACKLOG_OVERFLOWS = Counter("gru_backlog_overflows", "connections closed because more than GRU_MAX_BACKLOG bytes "
                            "waited for them (a client that does not read, or stopped polling)")
HTTP_TIMEOUTS = Counter("gru_http_timeouts", "connections closed for sending no complete request in time, by "
                        "phase (head: GRU_HEADER_TIMEOUT, body: GRU_BODY_TIMEOUT, idle: GRU_KEEPALIVE_TIMEOUT "
                        "between requests)",
                        ["phase"])

FLUSH_SECONDS = 1.0


class Tally:
    """A counter on the message path, added up in memory and written out at most once a second.

    A multiprocess counter's ``inc`` takes a lock, checks the pid and writes an mmap'ed file: on
    every message and every delivery that was several percent of the server's CPU. Increments
    wait here until the next flush, which runs a second after the first pending one (a timer) or
    when ``/metrics`` is read in this process, whichever is first.
    """

    __slots__ = ("child", "pending")
    _all: list[Tally] = []
    _lock = threading.Lock()
    _armed = False

    def __init__(self, child) -> None:
        self.child = child
        self.pending = 0
        Tally._all.append(self)

    def inc(self, amount: int = 1) -> None:
        self.pending += amount
        if not Tally._armed:
            Tally._armed = True
            timer = threading.Timer(FLUSH_SECONDS, Tally.flush_all)
            timer.daemon = True
            timer.start()

    @classmethod
    def flush_all(cls) -> None:
        """Write every pending increment to its Prometheus counter."""
        with cls._lock:
            cls._armed = False
            for tally in cls._all:
                amount, tally.pending = tally.pending, 0
                if amount:
                    tally.child.inc(amount)


BROADCASTS = Tally(MESSAGES.labels("broadcast"))
UNICASTS = Tally(MESSAGES.labels("unicast"))
DELIVERED = Tally(DELIVERIES)
STORED = Tally(HISTORY_STORED)
ACCEPTED = {"broadcast": BROADCASTS, "unicast": UNICASTS}

TICKET_RESULTS = {200: "ok", 400: "bad_request", 401: "rejected", 405: "bad_method", 503: "unavailable"}


def exposition() -> bytes:
    """The text format of every metric of this gunicorn (all workers) or of this process."""
    Tally.flush_all()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # read by prometheus-client itself as well
    if not directory:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def connection_opened() -> None:
    """A socket.io connection was accepted."""
    CONNECTIONS.labels("open").inc()
    CONNECTIONS_TOTAL.inc()


def connection_closed(authenticated: bool) -> None:
    """A socket.io connection went away (``authenticated``: it had passed auth)."""
    CONNECTIONS.labels("open").dec()
    if authenticated:
        CONNECTIONS.labels("authenticated").dec()


def connection_refused(code: int) -> None:
    """A connection was refused at connect time (``code`` 0 when the node is draining)."""
    CONNECTIONS_REFUSED.labels(str(int(code))).inc()


def auth_succeeded() -> None:
    """A connection authenticated."""
    AUTH_OK.inc()
    CONNECTIONS.labels("authenticated").inc()


def auth_failed(code: int) -> None:
    """An auth was refused (or timed out) with ``code``."""
    AUTH_FAILURES.labels(str(int(code))).inc()


def event_error(event: str, code: int) -> None:
    """A ``msg``/``online`` (or other) event was answered with an error."""
    ERRORS.labels(event, str(int(code))).inc()


def message_accepted(kind: str) -> None:
    """A message was handed to delivery; ``kind`` is ``broadcast`` or ``unicast``."""
    tally = ACCEPTED.get(kind)
    if tally is not None:
        tally.inc()
    else:
        MESSAGES.labels(kind).inc()


def delivered(count: int) -> None:
    """``count`` connections of this process were sent a ``msg``."""
    if count > 0:
        DELIVERED.inc(count)


def ticket_answered(status: int) -> None:
    """One ``GET /ticket`` answer with HTTP ``status``."""
    TICKETS.labels(TICKET_RESULTS.get(status, "error")).inc()


def api_answered(endpoint: str, status: int) -> None:
    """One publish API answer."""
    API_REQUESTS.labels(endpoint, str(status)).inc()


def history_stored(count: int = 1) -> None:
    """Messages were written to the history."""
    STORED.inc(count)


def history_recovered(count: int, complete: bool = True) -> None:
    """A client's recovery re-delivered ``count`` messages (``complete=False``: some were too old)."""
    HISTORY_RECOVERIES.labels("complete" if complete else "partial").inc()
    if count > 0:
        HISTORY_RECOVERED.inc(count)


def offline_queued(count: int = 1) -> None:
    """Messages were queued for an offline user."""
    OFFLINE_QUEUED.inc(count)


def offline_delivered(count: int) -> None:
    """Queued messages reached their user on connect."""
    if count > 0:
        OFFLINE_DELIVERED.inc(count)


def offline_expired(count: int) -> None:
    """Queued messages expired before their user came back."""
    if count > 0:
        OFFLINE_EXPIRED.inc(count)


def backlog_overflow() -> None:
    """A connection was closed for the bytes waiting for it."""
    BACKLOG_OVERFLOWS.inc()


def http_timeout(phase: str) -> None:
    """A connection was closed waiting for a request head (``head``), a request body (``body``) or its next
    request (``idle``)."""
    HTTP_TIMEOUTS.labels(phase).inc()


class CountedDelivery:
    """Wraps a delivery port (socket or Redis queue) to count the messages it took, by type."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def to_group(self, group: str, body: dict, exclude_conn: str | None) -> None:
        self._inner.to_group(group, body, exclude_conn)
        message_accepted("broadcast")

    def to_user(self, user, body: dict) -> None:
        self._inner.to_user(user, body)
        message_accepted("unicast")
