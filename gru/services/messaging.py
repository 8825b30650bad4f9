"""``msg``: validate a message, give it an id and a time, and route it (broadcast or unicast)."""

from __future__ import annotations

from gru.backends.base import BackendUnavailable
from gru.errors import Code, GruError
from gru.models import Message, Session, UserKey
from gru.services import fields
from gru.services.delivery import Delivery
from gru.services.ids import IdAllocator
from gru.services.presence import Presence

UNICAST = 0
BROADCAST = 1


class Messaging:
    """The rules of sending: who may send what to whom."""

    def __init__(self, ids: IdAllocator, presence: Presence, delivery: Delivery,
                 user_types: dict[int, str], max_content: int) -> None:
        self._ids = ids
        self._presence = presence
        self._delivery = delivery
        self._user_types = user_types
        self._max_content = max_content

    def send(self, sender: Session, payload: dict) -> Message:
        """Accept and hand over one message; raise :class:`GruError` if it cannot be."""
        kind = payload.get("type")
        if isinstance(kind, bool) or kind not in (UNICAST, BROADCAST):
            raise GruError(Code.BAD_MSG_TYPE, "message type is invalid: use 1 (broadcast) or 0 (unicast)")
        content = self.check_content(payload.get("content"))
        target = self.check_target(payload.get("target")) if kind == UNICAST else None
        return self.publish(sender, content, target)

    def publish(self, sender: Session, content: str, target: UserKey | None = None) -> Message:
        """Give a checked message its id and time and hand it over: to ``target`` if given, else to
        the sender's group except the sender's connection. Used by sockets and by system senders."""
        try:
            return self._route(sender, content, target)
        except BackendUnavailable:
            raise GruError(Code.DELIVERY_UNAVAILABLE) from None

    def _route(self, sender: Session, content: str, target: UserKey | None) -> Message:
        if target is not None and not self._presence.is_online(target):
            raise GruError(Code.TARGET_OFFLINE)
        message_id, created = self._ids.next_id()
        message = Message(message_id, created, content, sender)
        if target is None:
            self._delivery.to_group(sender.group, message.as_wire(), exclude_conn=sender.conn_id)
        else:
            self._delivery.to_user(target, message.as_wire())
        return message

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
