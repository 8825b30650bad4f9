"""``msg``: validate a message, give it an id and a time, and route it (broadcast or unicast).

A unicast is one backend step (:meth:`Backend.unicast`): the target's presence, the scope check,
the id, the history entry and either the offline queue or the relay to the other processes that
hold the target happen together, so with Redis a unicast costs one round trip; the target's
connections in this process are then served directly, without the message queue.
"""

from __future__ import annotations

from gru.backends.base import FORBIDDEN, OFFLINE, QUEUED, Backend, BackendUnavailable, Broadcast, Unicast
from gru.errors import Code, GruError
from gru.models import Message, Session, UserKey
from gru.services import fields
from gru.services.delivery import Delivery
from gru.services.history import History, group_stream, user_stream
from gru.services.ids import IdAllocator, checked

UNICAST = 0
BROADCAST = 1


class Messaging:
    """The rules of sending: who may send what to whom."""

    def __init__(self, backend: Backend, ids: IdAllocator, delivery: Delivery, history: History,
                 user_types: dict[int, str], max_content: int, max_expire: int,
                 unicast_scope: str = "group") -> None:
        self._backend = backend
        self._ids = ids
        self._delivery = delivery
        self._history = history
        self._user_types = user_types
        self._max_content = max_content
        self._max_expire = max_expire
        self._unicast_scope = unicast_scope

    def send(self, sender: Session, payload: dict) -> Message:
        """Accept and hand over one message; raise :class:`GruError` if it cannot be."""
        kind = payload.get("type")
        if type(kind) is not int or kind not in (UNICAST, BROADCAST):
            raise GruError(Code.BAD_MSG_TYPE, "message type is invalid: use 1 (broadcast) or 0 (unicast)")
        content = self.check_content(payload.get("content"))
        target = self.check_target(payload.get("target")) if kind == UNICAST else None
        expire = self.check_expire(payload.get("expire")) if kind == UNICAST else 0
        return self.publish(sender, content, target, expire)

    def publish(self, sender: Session, content: str, target: UserKey | None = None, expire: int = 0,
                scoped: bool | None = None) -> Message:
        """Give a checked message its id and time, keep it for recovery and hand it over: to
        ``target`` if given (queued for up to ``expire`` seconds if the target is offline), else
        to the sender's group except the sender's connection. Used by sockets and by system
        senders; ``scoped`` (default: the sender is a connection) applies ``GRU_UNICAST_SCOPE``."""
        scoped = bool(sender.conn_id) if scoped is None else scoped
        try:
            if target is None:
                return self._broadcast(sender, content)
            return self._unicast(sender, content, target, expire, scoped)
        except BackendUnavailable:
            raise GruError(Code.DELIVERY_UNAVAILABLE) from None

    def _broadcast(self, sender: Session, content: str) -> Message:
        floor, created = self._ids.floor()
        body = Message(0, created, content, sender).as_wire()
        del body["id"]  # the backend allocates it
        kept = self._history.kept(group_stream(sender.group))
        message_id = checked(self._backend.broadcast(Broadcast(sender.group, body, floor, kept, sender.conn_id or None)))
        self._delivery.to_group(sender.group, {"id": message_id, **body}, exclude_conn=sender.conn_id)
        return Message(message_id, created, content, sender)

    def _unicast(self, sender: Session, content: str, target: UserKey, expire: int, scoped: bool) -> Message:
        """With ``GRU_UNICAST_SCOPE=group`` users write only to users online (or, when offline, last
        seen) in their own group; the answer never tells whether an outsider is online."""
        floor, created = self._ids.floor()
        expire_time = created + expire * 1000 if expire else 0
        body = Message(0, created, content, sender, expire_time).as_wire()
        del body["id"]  # the backend allocates it
        scope_group = sender.group if scoped and self._unicast_scope != "any" else None
        routed = self._backend.unicast(Unicast(target, body, floor, self._history.kept(user_stream(target)),
                                               scope_group, expire_time, self._history.offline_size))
        if routed.outcome == FORBIDDEN:
            raise GruError(Code.FORBIDDEN, "target is not in your group")
        if routed.outcome == OFFLINE:
            raise GruError(Code.TARGET_OFFLINE)
        message_id = checked(routed.message_id)
        if routed.outcome != QUEUED:
            self._delivery.to_user(target, {"id": message_id, **body})
        return Message(message_id, created, content, sender, expire_time, routed.outcome == QUEUED)

    def check_expire(self, expire: object) -> int:
        """Seconds an undeliverable unicast may wait: absent/0, or 1..``max_expire``."""
        if expire is None or expire == 0:
            return 0
        if isinstance(expire, bool) or not isinstance(expire, int) or not 0 < expire <= self._max_expire:
            raise GruError(Code.BAD_FIELD, f"expire must be an integer number of seconds from 1 to {self._max_expire}")
        return expire

    def check_content(self, content: object) -> str:
        """A string within the size limit, or ``BAD_CONTENT``/``CONTENT_TOO_LARGE``."""
        if content is None:
            raise GruError(Code.BAD_CONTENT, "content is missing")
        if not isinstance(content, str):
            raise GruError(Code.BAD_CONTENT)
        if len(content) * 4 > self._max_content and len(content.encode("utf-8", "surrogatepass")) > self._max_content:
            raise GruError(Code.CONTENT_TOO_LARGE, f"content is larger than {self._max_content} bytes")
        return content

    def check_target(self, target: object) -> UserKey:
        """``{"id", "type"}`` of a configured user type, or ``BAD_TARGET``."""
        if not isinstance(target, dict) or target.get("id") is None or target.get("type") is None:
            raise GruError(Code.BAD_TARGET, "target must be an object with id and type")
        user_id, _ = fields.parse_id(target["id"], "target.id", Code.BAD_TARGET)
        user_type = fields.parse_user_type(target["type"], self._user_types, "target.type", Code.BAD_TARGET)
        return UserKey(user_id, user_type)
