"""Ready-made WebSocket frames, so a packet is framed once, not once per recipient.

gevent-websocket encodes the text, builds a header and writes for every ``send``: a broadcast
to a room of 1,000 did that 1,000 times for the same text. A text packet's frame is built by the
first connection that sends it and cached on the (shared) packet: server-to-client frames are
unmasked, so the bytes are the same for every recipient of either Engine.IO protocol. Binary
packets are framed per connection from ``pkt.data`` (their framing differs per protocol, and the
shared encode cache is never used for them: D1). :mod:`gru.sockets.ws_output` writes the frames.
"""

from __future__ import annotations

import struct

from engineio import packet as eio_packet

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
FIN = 0x80


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
