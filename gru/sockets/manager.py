"""python-socketio's Redis manager, adjusted so a sender is never told "sent" when it was not.

Upstream delivers an emit locally first, then publishes it, and only logs a failed publish.
Gru publishes first and raises :class:`QueueUnavailable` if that fails, so nobody gets the
message and the sender gets an error instead of a false success. Replies to the caller
(``ignore_queue=True``) never touch Redis. The subscriber retries every second or two
instead of backing off to a minute, so a node is whole again soon after Redis returns.
"""

from __future__ import annotations

import base64
import logging
import time

import socketio
from socketio.packet import Packet

log = logging.getLogger(__name__)

MAX_RETRY_SLEEP = 2.0


class QueueUnavailable(Exception):
    """The message queue (Redis) could not take the message."""


class GruRedisManager(socketio.RedisManager):
    """Publish-first emits that fail loudly; quick re-subscription after an outage."""

    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        room = to or room
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

    def _redis_listen_with_retries(self):
        retry_sleep = 0.5
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(self.channel)
                    subscribed = True
                    if retry_sleep > 0.5:
                        log.info("re-subscribed to Redis channel %s", self.channel)
                    retry_sleep = 0.5
                yield from self.pubsub.listen()
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                if subscribed or retry_sleep == 0.5:
                    log.error("lost the Redis subscription, retrying: %s", exc)
                subscribed = False
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, MAX_RETRY_SLEEP)
