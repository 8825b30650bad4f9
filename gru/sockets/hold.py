"""Holding a connection's outgoing packets while it recovers missed messages.

A client that re-authenticates with ``lastMsgId`` must get what it missed before live traffic,
in id order, each message once. The connection joins its rooms *while held*: live packets for
it are buffered; then the missed messages are read and sent; then the buffer is flushed,
dropping the ``msg`` events that were already sent as missed ones.

A message can be in the history before its live copy reaches this connection: its sender's
script has run in Redis but the reply is still on its way (or, from another node, the relay is),
so the live copy comes after the release. For :data:`LATE_LIVE_SECONDS` after a release, such late
copies of replayed messages are dropped too; without that the client got them twice, the second
time behind newer messages.
"""

from __future__ import annotations

import json
import time

from socketio import packet as sio_packet

MSG_PREFIX = '2["msg",'
# Longer than a message's live copy can trail its history entry: the reply to its script (the
# Redis reply timeout, 2 s) or its relay through the subscription of another node.
LATE_LIVE_SECONDS = 10.0


class HoldingServerMixin:
    """For ``socketio.Server`` subclasses: ``hold(eio_sid)`` / ``release(eio_sid, first, skip_ids)``."""

    _held: dict
    _replayed: dict  # eio_sid -> (ids of replayed messages whose live copy may still come, until when)

    def hold(self, eio_sid: str) -> None:
        """Buffer every packet for this connection from now on."""
        if not hasattr(self, "_held"):
            self._held = {}
        self._held[eio_sid] = []

    def release(self, eio_sid: str, first: list[tuple[str, object]], skip_ids: set[int]) -> None:
        """Send ``first`` (event, data) pairs, then the buffered packets minus ``msg`` ids in ``skip_ids``;
        live copies of ``skip_ids`` that come later are dropped for a while."""
        buffered = self._held.pop(eio_sid, [])
        for event, data in first:
            self._send_packet(eio_sid, self.packet_class(sio_packet.EVENT, namespace="/", data=[event, data]))
        late = set(skip_ids)
        for eio_pkt in buffered:
            msg_id = _msg_id(eio_pkt) if skip_ids else None
            if msg_id is not None and msg_id in skip_ids:
                late.discard(msg_id)  # its live copy came: no other will
            else:
                super()._send_eio_packet(eio_sid, eio_pkt)
        if late:
            if not hasattr(self, "_replayed"):
                self._replayed = {}
            self._replayed[eio_sid] = (late, time.monotonic() + LATE_LIVE_SECONDS)

    def _send_eio_packet(self, eio_sid, eio_pkt):
        held = self.__dict__.get("_held")
        if held and eio_sid in held:
            held[eio_sid].append(eio_pkt)
            return
        replayed = self.__dict__.get("_replayed")
        if replayed and eio_sid in replayed and self._late_copy(replayed, eio_sid, eio_pkt):
            return
        super()._send_eio_packet(eio_sid, eio_pkt)

    def _late_copy(self, replayed: dict, eio_sid: str, eio_pkt) -> bool:
        """Whether ``eio_pkt`` is the live copy of a message this connection already got replayed."""
        ids, until = replayed[eio_sid]
        if time.monotonic() > until:
            del replayed[eio_sid]
            return False
        msg_id = _msg_id(eio_pkt)
        if msg_id not in ids:
            return False
        ids.discard(msg_id)
        if not ids:
            del replayed[eio_sid]
        return True

    def _handle_eio_disconnect(self, eio_sid: str, reason):
        self.__dict__.get("_replayed", {}).pop(eio_sid, None)
        return super()._handle_eio_disconnect(eio_sid, reason)


def _msg_id(eio_pkt) -> int | None:
    """The ``id`` of a ``msg`` event packet (``2["msg",{...}]``), else ``None``; kept on the packet,
    which a broadcast shares between its recipients."""
    cached = eio_pkt.__dict__.get("gru_msg_id", False)
    if cached is not False:
        return cached
    msg_id = _parse_msg_id(eio_pkt.data)
    eio_pkt.gru_msg_id = msg_id
    return msg_id


def _parse_msg_id(data: object) -> int | None:
    if not isinstance(data, str) or not data.startswith(MSG_PREFIX):
        return None
    try:
        body = json.loads(data[1:])[1]
        return body.get("id") if isinstance(body, dict) else None
    except (ValueError, IndexError):
        return None
