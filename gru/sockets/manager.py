"""python-socketio's Redis manager, adjusted so a sender is never told "sent" when it was not.

Upstream delivers an emit locally first, then publishes it, and only logs a failed publish.
Gru publishes first and raises :class:`QueueUnavailable` if that fails, so nobody gets the
message and the sender gets an error instead of a false success. Replies to the caller
(``ignore_queue=True``) never touch Redis. The subscriber retries every second or two
instead of backing off to a minute, so a node is whole again soon after Redis returns.

Messages are relayed by the backend, in the same step that gives them an id and keeps them for
recovery, on the instance channel of each other process holding a recipient: a unicast wrapped in
:func:`relay_envelope`, a broadcast in :func:`group_envelope` (so a process decodes only the
broadcasts of groups it holds members of); :meth:`_handle_emit` takes both as emits. An emit to a
user's or a group's room here only serves this process's connections. Each process subscribes to
its own instance channel and to the shared one (python-socketio's other messages), in one command
on one connection; the backend's scripts refuse a message for a process not subscribed.

Behind Sentinel the subscription must sit on the master, where the scripts publish: redis-py's
pub/sub reconnects by itself and may land on a demoted master (now a replica) during a failover,
so the listener checks every :data:`MASTER_CHECK` seconds that its server is still the master
the sentinels name, and subscribes again if not.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
import time

import redis
import socketio
from redis.sentinel import SentinelConnectionPool
from socketio.packet import Packet

from gru.models import UserKey
from gru.sockets import fastjson
from gru.sockets.rooms import GROUP_ROOM_PREFIX, USER_ROOM_PREFIX, group_room, user_room

log = logging.getLogger(__name__)

MAX_RETRY_SLEEP = 2.0
MASTER_CHECK = 1.0


@functools.lru_cache(maxsize=4096)
def relay_envelope(user: UserKey) -> tuple[bytes, bytes]:
    """The text before and after a ``msg`` body that makes it, on an instance channel, an emit to
    ``user``'s room in the format ``PubSubManager._handle_emit`` decodes (no sender host: the relay
    never goes to the process that published it)."""
    room = fastjson.dumps(user_room(user)).encode()
    head = b'{"method":"emit","event":"msg","namespace":"/","room":' + room + \
        b',"skip_sid":null,"callback":null,"binary":false,"host_id":null,"data":['
    return head, b"]}"


def group_envelope(host_id: str):
    """The ``(group, sender connection) → (head, tail)`` envelope of broadcasts relayed to other
    processes: an emit to the group's room from process ``host_id``, skipping the sender's connection."""
    host = fastjson.dumps(host_id).encode()

    @functools.lru_cache(maxsize=4096)
    def envelope(group: str, sender_conn: str | None) -> tuple[bytes, bytes]:
        room, skip = fastjson.dumps(group_room(group)).encode(), fastjson.dumps(sender_conn).encode()
        head = b'{"method":"emit","event":"msg","namespace":"/","room":' + room + b',"skip_sid":' + skip + \
            b',"callback":null,"binary":false,"host_id":' + host + b',"data":['
        return head, b"]}"

    return envelope


def is_relayed_room(room: object) -> bool:
    """Emits to a user's or a group's room are relayed by the backend (one script with the id and
    history); the manager serves local connections only."""
    return isinstance(room, str) and (room.startswith(USER_ROOM_PREFIX) or room.startswith(GROUP_ROOM_PREFIX))


class QueueUnavailable(Exception):
    """The message queue (Redis) could not take the message."""


class GruRedisManager(socketio.RedisManager):
    """Publish-first emits that fail loudly; unicasts local only; quick re-subscription after an outage."""

    def __init__(self, url: str, channel: str = "socketio", instance_channel: str | None = None, **kwargs) -> None:
        super().__init__(url, channel=channel, **kwargs)
        self.instance_channel = instance_channel
        self.first_subscription = threading.Event()  # set once this process has subscribed

    def wait_first_subscription(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until this process has subscribed once: until then the message
        scripts refuse messages for its users (they would reach nobody)."""
        return self.first_subscription.wait(timeout)

    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        room = to or room
        if is_relayed_room(room):
            kwargs["ignore_queue"] = True
        if kwargs.get("ignore_queue") or callback is not None:
            return super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                                callback=callback, **kwargs)
        message = self._emit_message(event, data, namespace or "/", room, skip_sid)
        self._publish(message)  # raises QueueUnavailable: then nobody, here or elsewhere, gets it
        self._handle_emit(message)

    def _emit_message(self, event, data, namespace, room, skip_sid) -> dict:
        """The queue message for an emit, in the format every node's manager decodes."""
        data = list(data) if isinstance(data, tuple) else [data]
        binary = Packet.data_is_binary(data)
        if binary:
            data, attachments = Packet.deconstruct_binary(data)
            data = [data, *[base64.b64encode(a).decode() for a in attachments]]
        return {"method": "emit", "event": event, "data": data, "binary": binary, "namespace": namespace,
                "room": room, "skip_sid": skip_sid, "callback": None, "host_id": self.host_id}

    def _publish(self, data):
        last_error = None
        for _ in range(2):  # a dropped connection gets one reconnect
            try:
                if not self.connected:
                    self._redis_connect()
                return self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as exc:  # noqa: BLE001 - any failure means "not published"
                self.connected = False
                last_error = exc
        log.error("cannot publish to Redis: %s", last_error)
        raise QueueUnavailable(str(last_error))

    @property
    def channels(self) -> list[str]:
        """The shared channel, and this process's own one when it has an instance id."""
        return [self.channel, self.instance_channel] if self.instance_channel else [self.channel]

    def _listen(self):
        channels = {channel.encode() for channel in self.channels}
        for message in self._redis_listen_with_retries():
            if message["channel"] in channels and message["type"] == "message" and "data" in message:
                yield message["data"]

    def _redis_listen_with_retries(self):
        retry_sleep = 0.5
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(*self.channels)
                    subscribed = True
                    self.first_subscription.set()
                    if retry_sleep > 0.5:
                        log.info("re-subscribed to Redis channels %s", self.channels)
                    retry_sleep = 0.5
                yield from self._messages()
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                if subscribed or retry_sleep == 0.5:
                    log.error("lost the Redis subscription, retrying: %s", exc)
                subscribed = False
                self._drop_subscription()
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, MAX_RETRY_SLEEP)

    def _drop_subscription(self) -> None:
        """Close the old subscription's connection: left open, it would stay subscribed where it is."""
        try:
            if self.pubsub is not None:
                self.pubsub.close()
        except Exception:  # noqa: BLE001 - it is being dropped anyway
            pass

    def _messages(self):
        """The subscription's messages; behind Sentinel, ends with an error once its server is no
        longer the master (then the caller subscribes again, on the master)."""
        pool = self.redis.connection_pool
        if not isinstance(pool, SentinelConnectionPool):
            yield from self.pubsub.listen()
            return
        next_check = time.monotonic() + MASTER_CHECK
        while self.pubsub.subscribed:
            message = self.pubsub.get_message(timeout=MASTER_CHECK)
            if message is not None:
                yield message
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + MASTER_CHECK
                self._check_on_master(pool)

    def _check_on_master(self, pool: SentinelConnectionPool) -> None:
        conn = self.pubsub.connection
        try:
            master = pool.get_master_address()
        except redis.ConnectionError:
            return  # no sentinel answers: keep what we have
        if conn is not None and (conn.host, conn.port) != tuple(master):
            raise redis.ConnectionError(f"subscribed on {conn.host}:{conn.port}, but the master is now "
                                        f"{master[0]}:{master[1]}")
