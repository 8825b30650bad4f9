"""A Socket.IO packet whose check for binary data is a loop, not a recursive reduce.

Every emitted packet is scanned for ``bytes`` to choose between a text and a binary event.
python-socketio's scan builds a list and a reduce with a lambda at every level of the payload;
on a unicast that was about 5 % of the server's CPU. This one walks the same containers (lists
and dict values) with an explicit stack and stops at the first bytes it meets.
"""

from __future__ import annotations

from socketio import packet as sio_packet

BINARY_TYPES = (bytes, bytearray)


class GruPacket(sio_packet.Packet):
    """``socketio.packet.Packet`` with a faster, equivalent ``data_is_binary``."""

    @classmethod
    def data_is_binary(cls, data: object) -> bool:
        if isinstance(data, BINARY_TYPES):
            return True
        if not isinstance(data, (list, dict)):
            return False
        stack = [data]
        while stack:
            item = stack.pop()
            values = item.values() if isinstance(item, dict) else item
            for value in values:
                if isinstance(value, BINARY_TYPES):
                    return True
                if isinstance(value, (list, dict)):
                    stack.append(value)
        return False
