"""The socket.io implementation of the messaging service's delivery port."""

from __future__ import annotations

import logging

import socketio

from gru.errors import Code, GruError
from gru.models import UserKey
from gru.sockets.rooms import group_room, user_room

log = logging.getLogger(__name__)


class SocketDelivery:
    """Emits ``msg`` to rooms; any failure of the emit path becomes ``DELIVERY_UNAVAILABLE``."""

    def __init__(self, sio: socketio.Server) -> None:
        self._sio = sio

    def to_group(self, group: str, body: dict, exclude_conn: str | None) -> None:
        self._emit(body, group_room(group), exclude_conn)

    def to_user(self, user: UserKey, body: dict) -> None:
        self._emit(body, user_room(user), None)

    def _emit(self, body: dict, room: str, skip: str | None) -> None:
        try:
            self._sio.emit("msg", body, to=room, skip_sid=skip)
        except Exception as exc:  # noqa: BLE001 - any emit failure means "not delivered"
            log.error("emit to %s failed: %s", room, exc)
            raise GruError(Code.DELIVERY_UNAVAILABLE) from None
