"""Rooms per connection, so that a disconnect costs the rooms it leaves, not all rooms.

python-socketio's ``basic_disconnect`` copies and scans every room of the namespace (each
connection has its own room, so that is every connection) to find the ones the leaving
connection is in: closing 5,000 connections at once was quadratic (6.6 s of CPU). This manager
keeps the reverse index beside ``self.rooms`` and answers the same questions from it.
"""

from __future__ import annotations

import socketio


class IndexedRoomsManager(socketio.Manager):
    """``socketio.Manager`` with an index ``(namespace, sid) → rooms``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: dict[tuple[str, str], set] = {}

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid, namespace, **kwargs):
        if namespace not in self.rooms:
            return
        rooms = self._rooms_of.pop((namespace, sid), set())
        for room in sorted(rooms, key=lambda r: r is None):  # the connection's own entry (None) last
            super().basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]
