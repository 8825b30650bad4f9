"""Ready-made WebSocket frames: what a connection's writer sends in one write.

python-engineio's websocket writer sends each queued packet on its own through gevent-websocket,
which encodes the text, builds a header and makes one ``sendall`` per packet. A broadcast to a
room of 1,000 did that 1,000 times for the same text. Here the writer gets one :class:`Batch`
per wake-up: every packet queued for the connection, framed and joined, one write. A text
packet's frame is built by the first connection that sends it and cached on the (shared)
packet: server-to-client frames are unmasked, so the bytes are the same for every recipient of
either Engine.IO protocol. Binary packets are framed per connection from ``pkt.data`` (their
framing differs per protocol, and the shared encode cache is never used for them: D1).

Order is kept: frames leave in queue order, from the connection's one writer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from engineio import packet as eio_packet

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
FIN = 0x80


class Frames(bytes):
    """Bytes that are already WebSocket frames (the writer hands them over as they are)."""


class Batch:
    """Everything queued for one connection, in order; the writer's ``encode()`` gets its frames."""

    __slots__ = ("ws", "packets")

    packet_type = eio_packet.MESSAGE
    binary = False

    def __init__(self, ws, packets: Iterable[eio_packet.Packet]) -> None:
        self.ws = ws
        self.packets = list(packets)

    def encode(self, b64: bool = False) -> Frames:
        frame = self.ws.frame
        return Frames(b"".join([frame(p) for p in self.packets]))


def header(opcode: int, length: int) -> bytes:
    """A final, unmasked frame header (server to client)."""
    if length < 126:
        return bytes((FIN | opcode, length))
    if length <= 0xFFFF:
        return struct.pack("!BBH", FIN | opcode, 126, length)
    return struct.pack("!BBQ", FIN | opcode, 127, length)


def text_frame(pkt: eio_packet.Packet) -> bytes:
    """The text frame of a packet, built once per packet object and shared by its recipients."""
    frame = pkt.__dict__.get("ws_frame")
    if frame is None:
        frame = text_bytes_frame(pkt.encode().encode("utf-8"))
        pkt.ws_frame = frame
    return frame


def text_bytes_frame(payload: bytes) -> bytes:
    return header(OPCODE_TEXT, len(payload)) + payload


def binary_frame(payload: bytes) -> bytes:
    return header(OPCODE_BINARY, len(payload)) + bytes(payload)


def raw_websocket(ws: object):
    """gevent-websocket's connection behind python-engineio's wrapper, or None for another driver."""
    raw = getattr(ws, "_sock", None)
    return raw if hasattr(raw, "raw_write") and hasattr(raw, "closed") else None


def write(raw, data: Frames) -> None:
    """Write frames to the connection; a closed one raises, which ends its writer."""
    if not data:
        return
    if raw.closed or raw.raw_write is None:
        raise ConnectionError("websocket is closed")
    raw.raw_write(data)
