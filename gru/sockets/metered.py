"""Client managers that feed the metrics: ``msg`` deliveries to local connections, Redis publish time.

The counting sits just above python-socketio's ``Manager.emit``, which is where every local
delivery ends up: direct emits, emits received from Redis (``PubSubManager._handle_emit`` calls
``super().emit``, which resolves to :class:`DeliveryCounting` in the classes below) and replies.
"""

from __future__ import annotations

from gru import metrics
from gru.sockets.manager import GruRedisManager
from gru.sockets.room_index import IndexedRoomsManager

COUNTED_EVENT = "msg"


class DeliveryCounting(IndexedRoomsManager):
    """Counts the connections a ``msg`` emit reaches in this process (room size, less the skipped one)."""

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        if event == COUNTED_EVENT:
            metrics.delivered(self._local_recipients(namespace or "/", to or room, skip_sid))
        return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
                            **kwargs)

    def _local_recipients(self, namespace: str, room: str | None, skip_sid) -> int:
        members = self.rooms.get(namespace, {}).get(room)
        if not members:
            return 0
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        return len(members) - sum(1 for sid in skipped if sid is not None and sid in members)


class MeteredManager(DeliveryCounting):
    """The in-memory manager of a single-process node, with delivery counts."""


class MeteredRedisManager(GruRedisManager, DeliveryCounting):
    """Gru's Redis manager with delivery counts and publish timing.

    Method resolution order: ``GruRedisManager`` → ``RedisManager`` → ``PubSubManager`` →
    ``DeliveryCounting`` → ``Manager``, so the local half of every emit is counted once.
    """

    def _publish(self, data):
        try:
            with metrics.REDIS_PUBLISH.time():
                return super()._publish(data)
        except Exception:
            metrics.REDIS_PUBLISH_FAILURES.inc()
            raise
