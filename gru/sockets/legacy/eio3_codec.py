"""Engine.IO protocol 3 wire format: pure functions, no I/O, no shared state.

Framings (see docs/legacy.md): text payloads ``<len>:<packet>`` where ``len`` counts UTF-16
code units (JavaScript ``String.length``); binary packets inside text as ``b4<base64>``;
XHR2 binary payloads (``0|1``, length digits as byte values, ``0xff``, packet); JSONP.
Every decoder raises :class:`PayloadError` on malformed input and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from engineio import packet as eio_packet

MAX_LENGTH_DIGITS = 10  # a length of more digits cannot fit any body we accept
_ACCEPTED_TYPES = range(eio_packet.OPEN, eio_packet.NOOP + 1)
_JSONP_NEWLINE = re.compile(r"(\\)?\\n")


class PayloadError(ValueError):
    """A polling body or a frame does not follow the Engine.IO 3 format."""


def utf16_len(text: str) -> int:
    """JavaScript's ``String.length`` of ``text`` (characters outside the BMP count twice)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def is_binary(pkt: eio_packet.Packet) -> bool:
    """True for packets carrying bytes (read from the data, never from the encode cache)."""
    return isinstance(pkt.data, (bytes, bytearray))


def encode_text_packet(pkt: eio_packet.Packet) -> str:
    """The string form of a packet; binary data becomes ``b4<base64>`` (no cache involved)."""
    if is_binary(pkt):
        return "b4" + base64.b64encode(bytes(pkt.data)).decode("ascii")
    data = pkt.data
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":"))
    return str(pkt.packet_type) + ("" if data is None else str(data))


def double_utf8(text: str) -> str:
    """The socket.io 1.x polling dialect: each UTF-8 byte of ``text`` as one character."""
    return text.encode("utf-8").decode("latin-1")


def encode_text_payload(packets: list[eio_packet.Packet], utf8_twice: bool = False) -> str:
    """``<len>:<packet>`` for every packet, lengths in UTF-16 units."""
    parts = []
    for pkt in packets:
        encoded = encode_text_packet(pkt)
        if utf8_twice and not is_binary(pkt):
            encoded = double_utf8(encoded)
        parts.append(f"{utf16_len(encoded)}:{encoded}")
    return "".join(parts)


def _length_bytes(length: int) -> bytes:
    return bytes(int(d) for d in str(length))


def encode_binary_payload(packets: list[eio_packet.Packet]) -> bytes:
    """XHR2 binary framing: strings as UTF-8 bytes, binary as type byte 4 + data."""
    out = bytearray()
    for pkt in packets:
        if is_binary(pkt):
            body = b"\x04" + bytes(pkt.data)
            out += b"\x01"
        else:
            body = encode_text_packet(pkt).encode("utf-8")
            out += b"\x00"
        out += _length_bytes(len(body)) + b"\xff" + body
    return bytes(out)


def jsonp_wrap(index: int, payload: str) -> str:
    """The script a JSONP poll answers with (quotes, backslashes, U+2028/9 escaped)."""
    return f"___eio[{index}]({json.dumps(payload)});"


def jsonp_unwrap(body: str) -> str:
    """The payload inside a JSONP POST body ``d=<payload>``, newline escaping undone."""
    values = parse_qs(body, keep_blank_values=True).get("d")
    if not values:
        raise PayloadError("JSONP body without d=")
    data = _JSONP_NEWLINE.sub(lambda m: m.group(0) if m.group(1) else "\n", values[0])
    return data.replace("\\\\n", "\\n")


def packet_from_text(text: str) -> eio_packet.Packet:
    """One text-encoded packet (``4hello``, ``2probe``, ``b4AQID``) as an engineio Packet."""
    if not text:
        raise PayloadError("empty packet")
    if text[0] == "b":
        if text[1:2] != "4":
            raise PayloadError("binary packet must be a message")
        return eio_packet.Packet(eio_packet.MESSAGE, data=_b64decode(text[2:]))
    if not text[0].isdigit() or int(text[0]) not in _ACCEPTED_TYPES:
        raise PayloadError(f"unknown packet type {text[:1]!r}")
    return eio_packet.Packet(int(text[0]), data=text[1:] if len(text) > 1 else None)


def packet_from_binary(data: bytes | bytearray) -> eio_packet.Packet:
    """One binary-encoded packet: type byte 4, then the message bytes."""
    if not data or data[0] != eio_packet.MESSAGE:
        raise PayloadError("binary packet must start with type byte 4")
    return eio_packet.Packet(eio_packet.MESSAGE, data=bytes(data[1:]))


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise PayloadError("bad base64 in binary packet") from None


def split_text_payload(text: str) -> list[str]:
    """Split ``<len>:<packet>...`` into packet strings, counting UTF-16 units."""
    if not text:
        raise PayloadError("empty payload")
    units = text.encode("utf-16-le")
    packets, pos, end = [], 0, len(units) // 2
    while pos < end:
        colon = _find_colon(units, pos, end)
        digits = units[2 * pos:2 * colon].decode("utf-16-le")
        if not digits.isdigit() or not digits.isascii():
            raise PayloadError("bad length prefix")
        length = int(digits)
        start, stop = colon + 1, colon + 1 + length
        if length == 0 or stop > end:
            raise PayloadError("length beyond the body")
        try:
            packets.append(units[2 * start:2 * stop].decode("utf-16-le"))
        except UnicodeDecodeError:
            raise PayloadError("length splits a character") from None
        pos = stop
    return packets


def _find_colon(units: bytes, pos: int, end: int) -> int:
    for i in range(pos, min(end, pos + MAX_LENGTH_DIGITS + 1)):
        if units[2 * i:2 * i + 2] == b":\x00":
            if i == pos:
                raise PayloadError("empty length prefix")
            return i
    raise PayloadError("length prefix missing or too long")


def decode_binary_payload(body: bytes) -> list[eio_packet.Packet]:
    """Decode an XHR2 binary payload."""
    packets, pos = [], 0
    while pos < len(body):
        kind = body[pos]
        if kind not in (0, 1):
            raise PayloadError("bad packet kind byte")
        end = body.find(b"\xff", pos + 1, pos + 2 + MAX_LENGTH_DIGITS)
        digits = body[pos + 1:end]
        if end < 0 or not digits or any(d > 9 for d in digits):
            raise PayloadError("bad length header")
        length = int("".join(str(d) for d in digits))
        start, stop = end + 1, end + 1 + length
        if length == 0 or stop > len(body):
            raise PayloadError("length beyond the body")
        chunk = body[start:stop]
        if kind == 1:
            packets.append(packet_from_binary(chunk))
        else:
            try:
                packets.append(packet_from_text(chunk.decode("utf-8")))
            except UnicodeDecodeError:
                raise PayloadError("string packet is not UTF-8") from None
        pos = stop
    return packets


def undo_double_utf8(text: str) -> str | None:
    """``text`` decoded once more if it is recognisably double-encoded UTF-8, else None."""
    if text.isascii() or any(ord(ch) > 0xFF for ch in text):
        return None
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_payload(body: bytes, fix_text: Callable[[str], str] | None = None) -> list[eio_packet.Packet]:
    """Decode a POST body of any EIO3 framing.

    The framing is chosen by the first byte: 0x00/0x01 XHR2 binary, ``d=`` JSONP, else text.
    ``fix_text`` sees each packet string of a text-framed body (the UTF-8 dialect step).
    """
    if not body:
        raise PayloadError("empty payload")
    if body[0] in (0, 1):
        return decode_binary_payload(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("text payload is not UTF-8") from None
    if text.startswith("d="):
        text = jsonp_unwrap(text)
    strings = split_text_payload(text)
    if fix_text is not None:
        strings = [fix_text(s) for s in strings]
    return [packet_from_text(s) for s in strings]
