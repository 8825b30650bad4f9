"""Bounded message history and offline queues, so a client that blinked misses nothing.

Every accepted message is kept in the history of its stream (its group for broadcasts, its
target user for unicasts): at most ``size`` per stream, none older than ``ttl`` seconds. A client
that re-authenticates with ``lastMsgId`` gets what it missed from both of its streams. Unicasts
with ``expire`` to an offline user wait in that user's offline queue until they expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gru.backends.base import Backend, BackendUnavailable, Kept
from gru.models import Session, UserKey
from gru.services.ids import id_floor

log = logging.getLogger(__name__)


def group_stream(group: str) -> str:
    return f"g:{group}"


def user_stream(user: UserKey) -> str:
    return f"u:{user.type}:{user.id}"


class History:
    """Recording and replaying messages within the configured bounds."""

    def __init__(self, backend: Backend, size: int, ttl: float, offline_size: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._size = size
        self._ttl = ttl
        self._offline_size = offline_size
        self._clock = clock

    def kept(self, stream: str) -> Kept | None:
        """How a backend operation that records a message itself keeps it in ``stream`` (``None``: not at all)."""
        return Kept(stream, self._size, self._ttl, self._min_id()) if self._size > 0 else None

    @property
    def offline_size(self) -> int:
        return self._offline_size

    def queue(self, user: UserKey, message_id: int, body: dict, expire_at_ms: int) -> None:
        """Keep a unicast for an offline user until it expires."""
        self._backend.offline_push(user, message_id, body, expire_at_ms, self._offline_size)

    def missed(self, session: Session, after_id: int | None) -> tuple[list[dict], bool | None]:
        """What this session's user has not seen: queued unicasts, and with ``after_id`` the history
        of its group and of the user after that id; plus whether the history reached back that far
        (``None`` when no ``after_id`` was given). When the shared state is unreachable: nothing,
        reported as incomplete; queued unicasts stay queued for the next authentication."""
        complete = None
        try:
            found = self._backend.offline_take(session.user, int(self._clock() * 1000))
            if after_id is not None:
                streams = [group_stream(session.group), user_stream(session.user)]
                kept, complete = self._backend.history_since(streams, after_id, self._min_id())
                found.extend(kept)
        except BackendUnavailable as exc:
            log.warning("recovery for user %s unavailable: %s", session.identity.user_id, exc)
            return [], (False if after_id is not None else None)
        unique = {body["id"]: body for body in found}
        return [unique[i] for i in sorted(unique)], complete

    def _min_id(self) -> int:
        return id_floor(self._clock() - self._ttl)
