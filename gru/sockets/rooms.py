"""Names of the socket.io rooms Gru uses; kept in one place so every emitter agrees."""

from __future__ import annotations

from gru.models import UserKey

GROUP_ROOM_PREFIX = "g:"
USER_ROOM_PREFIX = "u:"


def group_room(group: str) -> str:
    """Every authenticated connection of a group."""
    return f"{GROUP_ROOM_PREFIX}{group}"


def user_room(user: UserKey) -> str:
    """Every connection of one user (several devices)."""
    return f"{USER_ROOM_PREFIX}{user.type}:{user.id}"
