"""Holding a connection's outgoing packets while it recovers missed messages.

A client that re-authenticates with ``lastMsgId`` must get what it missed before live traffic,
in id order, each message once. The connection joins its rooms *while held*: live packets for
it are buffered; then the missed messages are read and sent; then the buffer is flushed,
dropping the ``msg`` events that were already sent as missed ones.
"""

from __future__ import annotations

import json

from socketio import packet as sio_packet

MSG_PREFIX = '2["msg",'


class HoldingServerMixin:
    """For ``socketio.Server`` subclasses: ``hold(eio_sid)`` / ``release(eio_sid, first, skip_ids)``."""

    _held: dict

    def hold(self, eio_sid: str) -> None:
        """Buffer every packet for this connection from now on."""
        if not hasattr(self, "_held"):
            self._held = {}
        self._held[eio_sid] = []

    def release(self, eio_sid: str, first: list[tuple[str, object]], skip_ids: set[int]) -> None:
        """Send ``first`` (event, data) pairs, then the buffered packets minus ``msg`` ids in ``skip_ids``."""
        buffered = self._held.pop(eio_sid, [])
        for event, data in first:
            self._send_packet(eio_sid, self.packet_class(sio_packet.EVENT, namespace="/", data=[event, data]))
        for eio_pkt in buffered:
            if not (skip_ids and _msg_id(eio_pkt.data) in skip_ids):
                super()._send_eio_packet(eio_sid, eio_pkt)

    def _send_eio_packet(self, eio_sid, eio_pkt):
        held = self.__dict__.get("_held")
        if held and eio_sid in held:
            held[eio_sid].append(eio_pkt)
            return
        super()._send_eio_packet(eio_sid, eio_pkt)


def _msg_id(data: object) -> int | None:
    """The ``id`` of a ``msg`` event packet (``2["msg",{...}]``), else ``None``."""
    if not isinstance(data, str) or not data.startswith(MSG_PREFIX):
        return None
    try:
        body = json.loads(data[1:])[1]
        return body.get("id") if isinstance(body, dict) else None
    except (ValueError, IndexError):
        return None
