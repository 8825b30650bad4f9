"""Who is online in a group: one entry per authenticated connection, listed once per user."""

from __future__ import annotations

from gru.backends.base import Backend, BackendUnavailable
from gru.errors import Code, GruError
from gru.models import Session, UserId, UserKey
from gru.services import fields


class Presence:
    """Presence rules on top of the backend's bookkeeping."""

    def __init__(self, backend: Backend, remember_seconds: float = 7 * 86400, online_scope: str = "group") -> None:
        self._backend = backend
        self._remember_seconds = remember_seconds
        self._online_scope = online_scope

    def join(self, session: Session) -> None:
        """Mark the session's user online in its group."""
        self._backend.presence_add(session.group, session.user, session.display_id, session.conn_id)
        self._backend.remember_group(session.user, session.group, self._remember_seconds)

    def leave(self, session: Session) -> None:
        """Remove this connection; the user stays online while another connection remains."""
        self._backend.presence_remove(session.group, session.user, session.conn_id)

    def online(self, requester: Session, group: object) -> list[UserId]:
        """Ids of the users online in ``group``; with ``GRU_ONLINE_SCOPE=group`` only one's own group."""
        group_id = fields.parse_group(group)
        if self._online_scope == "group" and group_id != requester.group:
            raise GruError(Code.FORBIDDEN, "you may only list your own group")
        try:
            return self._backend.online(group_id)
        except BackendUnavailable:
            raise GruError(Code.STATE_UNAVAILABLE) from None

    def online_groups(self, user: UserKey) -> set[str]:
        """The groups where the user is online; may raise ``BackendUnavailable``."""
        return self._backend.online_groups(user)

    def last_group(self, user: UserKey) -> str | None:
        """The group the user last authenticated in; may raise ``BackendUnavailable``."""
        return self._backend.last_group(user)
