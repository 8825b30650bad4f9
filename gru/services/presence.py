"""Who is online in a group: one entry per authenticated connection, listed once per user."""

from __future__ import annotations

from gru.backends.base import Backend, BackendUnavailable
from gru.errors import Code, GruError
from gru.models import Session, UserId, UserKey
from gru.services import fields


class Presence:
    """Presence rules on top of the backend's bookkeeping."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def join(self, session: Session) -> None:
        """Mark the session's user online in its group."""
        self._backend.presence_add(session.group, session.user, session.display_id, session.conn_id)

    def leave(self, session: Session) -> None:
        """Remove this connection; the user stays online while another connection remains."""
        self._backend.presence_remove(session.group, session.user, session.conn_id)

    def online(self, requester: Session, group: object) -> list[UserId]:
        """Ids of the users online in ``group`` (any group id a caller names is allowed for now)."""
        group_id = fields.parse_group(group)
        try:
            return self._backend.online(group_id)
        except BackendUnavailable:
            raise GruError(Code.STATE_UNAVAILABLE) from None

    def is_online(self, user: UserKey) -> bool:
        """Whether the user has any authenticated connection; may raise ``BackendUnavailable``."""
        return self._backend.is_online(user)
