"""Pushing as the system: the publish API's service, and :class:`Emitter` for Python processes.

A business system pushes either over HTTP (``POST /api/push``) or, when it is a Python process
sharing the deployment's Redis, with :class:`Emitter` (no HTTP hop, no socket). Both go through
``Messaging.publish``, so pushed messages get the same ids, the same delivery (and the same
history) as messages sent by sockets. Their ``from`` is ``{"id": "system", "type": -1,
"name": <API key name or emitter name>}``.

    from gru.emitter import Emitter
    emitter = Emitter("redis://10.60.0.5:6379/0", prefix="gru", name="lms")
    emitter.broadcast("10", '{"page": 3}')
    emitter.unicast(123, 1, "see me after class")
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from dataclasses import asdict

from gru.backends.base import Backend, BackendUnavailable
from gru.config import Settings
from gru.errors import Code, GruError
from gru.models import Identity, Message, Session, UserId
from gru.services import fields
from gru.services.messaging import Messaging
from gru.services.presence import Presence
from gru.sockets.rooms import group_room, user_room

log = logging.getLogger(__name__)

SYSTEM_ID = "system"
SYSTEM_TYPE = -1


def system_session(name: str, group: str = "") -> Session:
    """The sender of a pushed message: no connection, ``from`` = ``{"id": "system", "type": -1, "name"}``."""
    identity = Identity(SYSTEM_ID, SYSTEM_TYPE, name, math.inf)
    return Session("", identity, group, SYSTEM_ID)


class SystemSender:
    """What a business system may do without a socket: push, read online lists, list nodes."""

    def __init__(self, messaging: Messaging, presence: Presence, backend: Backend) -> None:
        self._messaging = messaging
        self._presence = presence
        self._backend = backend

    def push(self, name: str, content: object, group: object = None, target: object = None,
             expire: object = 0) -> Message:
        """Broadcast ``content`` to ``group`` or unicast it to ``target`` (``{"id", "type"}``), as ``name``.

        ``expire`` (unicast only): seconds the message may wait for an offline target; 0 makes an
        offline target an error, as for sockets."""
        if (group is None) == (target is None):
            raise GruError(Code.BAD_FIELD, "give exactly one of groupId (broadcast) and target (unicast)")
        text = self._messaging.check_content(content)
        if target is None:
            if expire not in (None, 0):
                raise GruError(Code.BAD_FIELD, "expire applies to unicasts (target) only")
            return self._messaging.publish(system_session(name, fields.parse_group(group)), text)
        user = self._messaging.check_target(target)
        seconds = self._messaging.check_expire(expire)
        return self._messaging.publish(system_session(name), text, user, seconds)

    def online(self, group: object) -> list[UserId]:
        """Ids of the users online in ``group`` anywhere in the deployment."""
        group_id = fields.parse_group(group)
        return self._presence.online(system_session(SYSTEM_ID, group_id), group_id)

    def nodes(self) -> list[dict]:
        """The live nodes: name, address, connections and state (``up`` or ``draining``)."""
        try:
            nodes = self._backend.live_nodes()
        except BackendUnavailable:
            raise GruError(Code.STATE_UNAVAILABLE, "node registry is unavailable right now, try again") from None
        return [asdict(node) for node in sorted(nodes, key=lambda n: n.name)]


class QueueDelivery:
    """The delivery port over a write-only Redis manager: for processes that hold no sockets."""

    def __init__(self, manager) -> None:
        self._manager = manager

    def to_group(self, group: str, body: dict, exclude_conn: str | None) -> None:
        self._emit(body, group_room(group), exclude_conn or None)

    def to_user(self, user, body: dict) -> None:
        self._emit(body, user_room(user), None)

    def _emit(self, body: dict, room: str, skip: str | None) -> None:
        try:
            self._manager.emit("msg", body, namespace="/", room=room, skip_sid=skip)
        except Exception as exc:  # noqa: BLE001 - any failure means "not delivered"
            log.error("publish to %s failed: %s", room, exc)
            raise GruError(Code.DELIVERY_UNAVAILABLE) from None


class Emitter:
    """Push into a Redis-backed deployment from any Python process (a plain one, no gevent needed)."""

    def __init__(self, redis_url: str, prefix: str = "gru", name: str = "system",
                 user_types: str = "0:TEACHER,1:STUDENT", max_content: int = 65536) -> None:
        self.settings = Settings(redis_url=redis_url, redis_prefix=prefix, user_types=user_types,
                                 max_content=max_content, secret=secrets.token_urlsafe(32))
        self.name = name
        self._sender, self._backend = system_sender_for_redis(self.settings, f"emitter:{name}:{os.getpid()}")

    @classmethod
    def from_settings(cls, settings: Settings, name: str = "system") -> Emitter:
        """An emitter for the deployment that ``settings`` (e.g. ``Settings.from_env(os.environ)``) describe."""
        if not settings.redis_url:
            raise ValueError("an emitter needs GRU_REDIS_URL: it reaches the nodes through Redis")
        return cls(settings.redis_url, settings.redis_prefix, name, settings.user_types, settings.max_content)

    def broadcast(self, group: object, content: str) -> dict:
        """Send ``content`` to every connection of ``group``; return ``{"id", "createTime"}``."""
        return _receipt(self._sender.push(self.name, content, group=group))

    def unicast(self, user_id: UserId, user_type: int, content: str, expire: int = 0) -> dict:
        """Send ``content`` to every connection of one user; if they have none, queue it for
        ``expire`` seconds, or raise ``TARGET_OFFLINE`` when ``expire`` is 0."""
        target = {"id": user_id, "type": user_type}
        return _receipt(self._sender.push(self.name, content, target=target, expire=expire))

    def online(self, group: object) -> list[UserId]:
        """Ids of the users online in ``group``."""
        return self._sender.online(group)

    def nodes(self) -> list[dict]:
        """The deployment's live nodes."""
        return self._sender.nodes()

    def close(self) -> None:
        """Release the Redis connections."""
        self._backend.close()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def queue_delivery(settings: Settings) -> QueueDelivery:
    """Delivery through the deployment's Redis channel, for a process that holds no sockets."""
    from gru.app import REDIS_OPTIONS
    from gru.backends.redis import Keys
    from gru.sockets.metered import MeteredRedisManager

    manager = MeteredRedisManager(settings.redis_url, channel=Keys(settings.redis_prefix).channel, write_only=True,
                                  redis_options=dict(REDIS_OPTIONS))
    return QueueDelivery(manager)


def system_sender_for_redis(settings: Settings, instance_id: str) -> tuple[SystemSender, Backend]:
    """A sender of its own with its own Redis connections (:class:`Emitter`)."""
    from gru.app import create_backend, create_system_sender

    backend = create_backend(settings, instance_id)
    return create_system_sender(settings, backend, queue_delivery(settings)), backend


def _receipt(message: Message) -> dict:
    return {"id": message.id, "createTime": message.create_time, "queued": message.queued}
