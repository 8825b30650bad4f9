"""A cheaper readiness check for redis-py under gevent.

Before every command, redis-py's connection pool asks whether the connection it hands out has
unread data, with a zero-timeout ``select.poll()``. Under gevent's monkey-patching that poll is
gevent's cooperative one, which sets up and tears down event-loop watchers each time: about a
fifth of a node's CPU per message with Redis. A zero-timeout check never blocks, so it can use
the operating system's own ``poll``; checks with a timeout keep gevent's cooperative one.
"""

from __future__ import annotations

import select

from redis._parsers import hiredis as hiredis_parser


def _original_poll():
    try:
        from gevent import monkey

        return monkey.get_original("select", "poll")
    except ImportError:  # no gevent: select.poll is the original
        return select.poll


def install() -> None:
    """Route redis-py's zero-timeout readiness checks to the operating system's poll (idempotent)."""
    cooperative = getattr(hiredis_parser._socket_can_read, "cooperative", hiredis_parser._socket_can_read)
    os_poll = _original_poll()

    def socket_can_read(sock, timeout: float) -> bool:
        if timeout != 0 or (hasattr(sock, "pending") and sock.pending()):
            return cooperative(sock, timeout)
        poller = os_poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    socket_can_read.cooperative = cooperative
    hiredis_parser._socket_can_read = socket_can_read
