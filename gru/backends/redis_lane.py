"""Scripts on the per-message path, sent on connections used directly rather than through the client.

A command through ``redis.Redis`` costs about 35 µs of Python on top of the round trip (pool
checkout with its readiness poll, locks, retries, observability hooks): more than the rest of a
unicast's Redis work. A :class:`Lane` keeps connections of the client's own pool class (so URL,
password, database, TLS, Unix sockets and Sentinel master discovery stay redis-py's) and sends on
them directly, about 8 µs per command.

Under gevent, concurrent callers share one connection (:class:`_Pipe`): what they queue while a
batch is in flight leaves as the next batch in one write, and the replies come back in order, so
a burst of unicasts costs one ``send`` and a few ``recv`` instead of one of each per message.
Without gevent (the emitter in a plain process, threads), each call has a connection to itself.

Nothing is retried after it may have run: a lost reply is reported, never replayed, because a
replayed unicast would be delivered twice. A connection whose server went away while it was idle
(a Redis restart) is noticed before use and replaced, so only commands in flight see an outage.
"""

from __future__ import annotations

import select
from collections import deque

import redis
from redis.exceptions import NoScriptError, ResponseError

try:
    from hiredis import pack_command
except ImportError:  # without hiredis, the connection's own packer
    pack_command = None

try:
    from gevent import get_hub, monkey, spawn_raw
    from gevent.hub import Waiter

    _os_poll = monkey.get_original("select", "poll")
except ImportError:  # no gevent: select.poll is the operating system's
    _os_poll = select.poll
    monkey = None


def _gevent_sockets() -> bool:
    """Whether redis-py's sockets are gevent's (monkey-patched), so waiting for a reply yields."""
    return monkey is not None and monkey.is_module_patched("socket")


class Lane:
    """Request/reply on connections of ``client``'s pool class: shared and pipelined under gevent,
    one caller per connection otherwise (``pipelined`` overrides the choice)."""

    def __init__(self, client: redis.Redis, pipelined: bool | None = None) -> None:
        self._pool = client.connection_pool
        self._idle: list = []  # (connection, its OS poller), when not pipelined
        self._pipe: _Pipe | None = None
        self._pipelined = _gevent_sockets() if pipelined is None else pipelined

    def evalsha(self, script: redis.commands.core.Script, keys: list, args: list):
        """Run a registered script; load it first if the server does not know it (e.g. after a restart)."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.call("SCRIPT", "LOAD", script.script)  # NOSCRIPT: it did not run, so running it now is safe
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def call(self, *args):
        """Send one command and return its reply; raises redis-py's exceptions."""
        if self._pipelined:
            pipe = self._pipe
            if pipe is None or not pipe.usable():
                pipe = self._pipe = _Pipe(self._connection())
            return pipe.call(pack_command(args) if pack_command else b"".join(pipe.conn.pack_command(*args)))
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
            poller = _poller(conn)
        self._idle.append((conn, poller))
        return reply

    def _checkout(self):
        while self._idle:
            conn, poller = self._idle.pop()
            if conn._sock is not None and poller is not None and not poller.poll(0):
                return conn, poller
            conn.disconnect()  # closed by the server (readable: end of stream), or data nobody asked for
        conn = self._connection()
        conn.connect()
        return conn, None

    def _connection(self):
        """A new connection as the pool would make it, but not counted against its ``max_connections``:
        the lane replaces every connection an outage broke, and the pool never gets them back.

        Whoever sends first connects it with ``connect()``, as the pool does: a Sentinel connection
        asks the sentinels for the master there, while ``send_packed_command`` on an unconnected one
        would go to redis-py's default address (localhost:6379), perhaps another Redis that
        answers every script."""
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].disconnect()
        if self._pipe is not None:
            self._pipe.fail(redis.ConnectionError("lane closed"))
            self._pipe = None


def _poller(conn):
    poller = _os_poll()
    poller.register(conn._sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return poller


class _Pipe:
    """One connection shared by concurrent callers: commands leave in batches, replies come back in order.

    A caller queues its packed command and a waiter. If nobody drives the connection, the caller
    does: it sends everything queued with one ``sendall``, reads the batch's replies (several per
    ``recv``, parsed by the connection's hiredis reader) and wakes their callers first in, first
    out; then it sends what was queued meanwhile as the next batch. Once its own reply is in it
    returns, leaving the rest to a new greenlet. One batch in flight at a time keeps the order
    and lets a busy process batch more: alone, a caller pays one send and one receive as before.

    An error reply goes to its own caller only. A broken connection or a read past the socket
    timeout fails every command queued or sent on it, since any of them may have run, and the
    lane opens a new connection for later calls.
    """

    __slots__ = ("conn", "queued", "waiters", "unanswered", "driving", "failed", "poller", "loop")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.queued: list[bytes] = []  # packed, not yet sent
        self.waiters: deque = deque()  # one per command sent or queued, in order
        self.unanswered = 0  # sent, reply not yet read
        self.driving = False
        self.failed = False
        self.poller = None  # to see, while idle, whether the server closed the connection
        self.loop = get_hub().loop

    def usable(self) -> bool:
        if self.failed:
            return False
        if self.waiters or self.poller is None or not self.poller.poll(0):
            return True
        self.fail(redis.ConnectionError("Connection closed by server."))  # end of stream, or data nobody asked for
        return False

    def call(self, packed: bytes):
        waiter = Waiter()
        self.queued.append(packed)
        self.waiters.append(waiter)
        if not self.driving:
            self.driving = True
            self._drive(waiter)
        return waiter.get()

    def _drive(self, mine: Waiter | None = None) -> None:
        """Send batches and hand out their replies until ``mine`` is answered (or nothing is left)."""
        conn, waiters, run = self.conn, self.waiters, self.loop.run_callback
        try:
            while not self.failed:
                if not self.unanswered:
                    if not self.queued:
                        break
                    batch, self.queued = self.queued, []
                    if conn._sock is None:
                        conn.connect()  # the first batch: see Lane._connection
                    conn.send_packed_command([b"".join(batch) if len(batch) > 1 else batch[0]], check_health=False)
                    self.unanswered = len(batch)
                    if self.poller is None and conn._sock is not None:
                        self.poller = _poller(conn)
                try:
                    reply, hand = conn.read_response(disconnect_on_error=False), Waiter.switch
                except ResponseError as exc:
                    reply, hand = exc, Waiter.throw
                self.unanswered -= 1
                waiter = waiters.popleft()
                if waiter is not mine:
                    run(hand, waiter, reply)  # only the hub may switch to a waiting greenlet
                    continue
                hand(waiter, reply)  # kept until this greenlet asks for it
                if self.unanswered or self.queued:
                    spawn_raw(self._drive)  # still driving: the next driver takes over
                    return
                break
        except BaseException as exc:  # noqa: BLE001 - a broken or silent connection fails every waiter
            self.fail(exc)
        self.driving = False

    def fail(self, exc: BaseException) -> None:
        """Give every waiting caller the error and drop the connection (a late reply must reach nobody)."""
        self.failed = True
        self.conn.disconnect()
        waiters, self.waiters, self.queued = self.waiters, deque(), []
        if not isinstance(exc, redis.RedisError):
            exc = redis.ConnectionError(f"Redis connection lost: {exc!r}")
        run = self.loop.run_callback
        for waiter in waiters:
            run(waiter.throw, type(exc)(*exc.args))
