"""Scripts on the per-message path, sent on connections used directly rather than through the client.

A command through ``redis.Redis`` costs about 35 µs of Python on top of the round trip (pool
checkout with its readiness poll, locks, retries, observability hooks): more than the rest of a
unicast's Redis work. A :class:`Lane` keeps connections of the client's own pool class (so URL,
password, database, TLS, Unix sockets and Sentinel master discovery stay redis-py's) and sends on
them directly, about 8 µs per command. Each call has a connection to itself for its
request and reply, so greenlets never read each other's replies.

Nothing is retried after it may have run: a lost reply is reported, never replayed, because a
replayed unicast would be delivered twice. A connection whose server went away while it was idle
(a Redis restart) is noticed before use and replaced, so only a command in flight sees an outage.
"""

from __future__ import annotations

import select

import redis
from redis.exceptions import NoScriptError, ResponseError

try:
    from hiredis import pack_command
except ImportError:  # without hiredis, the connection's own packer
    pack_command = None

try:
    from gevent import monkey

    _os_poll = monkey.get_original("select", "poll")
except ImportError:  # no gevent: select.poll is the operating system's
    _os_poll = select.poll


class Lane:
    """Request/reply on idle connections of ``client``'s pool class, one caller per connection."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list = []  # (connection, its OS poller)

    def evalsha(self, script: redis.commands.core.Script, keys: list, args: list):
        """Run a registered script; load it first if the server does not know it (e.g. after a restart)."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.call("SCRIPT", "LOAD", script.script)  # NOSCRIPT: it did not run, so running it now is safe
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def call(self, *args):
        """Send one command and return its reply; raises redis-py's exceptions."""
        conn, poller = self._checkout()
        try:
            conn.send_packed_command([pack_command(args)] if pack_command else conn.pack_command(*args),
                                     check_health=False)
            reply = conn.read_response()
        except ResponseError:
            self._idle.append((conn, poller))  # an error reply: the connection itself is fine
            raise
        except BaseException:
            conn.disconnect()  # the reply may still come: never hand this connection out again
            raise
        if poller is None and conn._sock is not None:
            poller = _os_poll()
            poller.register(conn._sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        self._idle.append((conn, poller))
        return reply

    def _checkout(self):
        while self._idle:
            conn, poller = self._idle.pop()
            if conn._sock is not None and poller is not None and not poller.poll(0):
                return conn, poller
            conn.disconnect()  # closed by the server (readable: end of stream), or data nobody asked for
        return self._pool.make_connection(), None

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].disconnect()
