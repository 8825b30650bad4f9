"""Authentication of connections: ``auth`` payload + ``token2`` → an authenticated session."""

from __future__ import annotations

from gru.errors import Code, GruError
from gru.models import Session
from gru.services import fields
from gru.services.presence import Presence
from gru.services.tokens import TokenService


class Sessions:
    """The authenticated connections of this process, and the rules for becoming one."""

    def __init__(self, tokens: TokenService, presence: Presence, user_types: dict[int, str]) -> None:
        self._tokens = tokens
        self._presence = presence
        self._user_types = user_types
        self._by_conn: dict[str, Session] = {}

    def authenticate(self, conn_id: str, payload: dict) -> tuple[Session, str]:
        """Check the payload against its token2; return the session and the role name."""
        if conn_id in self._by_conn:
            raise GruError(Code.ALREADY_AUTHENTICATED)
        for name in ("id", "type", "groupId", "token2"):
            if payload.get(name) is None:
                raise GruError(Code.BAD_FIELD, f"auth: missing field {name}")
        text_id, display_id = fields.parse_id(payload["id"], "id")
        user_type = fields.parse_user_type(payload["type"], self._user_types, "type")
        group = fields.parse_group(payload["groupId"])
        self.recovery_point(payload)  # refuse a malformed lastMsgId before anything changes
        identity = self._tokens.verify(payload["token2"])
        if identity.user_id != text_id or identity.user_type != user_type:
            raise GruError(Code.IDENTITY_MISMATCH)
        session = Session(conn_id, identity, group, display_id)
        self._by_conn[conn_id] = session
        self._presence.join(session)
        return session, self._user_types[user_type]

    @staticmethod
    def recovery_point(payload: dict) -> int | None:
        """The optional ``lastMsgId`` of an ``auth``: the id of the last message the client saw."""
        value = payload.get("lastMsgId")
        if value is None:
            return None
        if isinstance(value, str) and fields.INTEGER.fullmatch(value) and len(value) <= 16:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53 - 1:
            raise GruError(Code.BAD_FIELD, "auth: lastMsgId must be a message id (a non-negative integer)")
        return value

    def get(self, conn_id: str) -> Session:
        """The session of an authenticated connection; ``NOT_AUTHENTICATED`` otherwise."""
        session = self._by_conn.get(conn_id)
        if session is None:
            raise GruError(Code.NOT_AUTHENTICATED)
        return session

    def is_authenticated(self, conn_id: str) -> bool:
        return conn_id in self._by_conn

    def end(self, conn_id: str) -> Session | None:
        """Forget a closed connection and take it out of presence."""
        session = self._by_conn.pop(conn_id, None)
        if session is not None:
            self._presence.leave(session)
        return session

    def count(self) -> int:
        """Number of authenticated connections in this process."""
        return len(self._by_conn)
