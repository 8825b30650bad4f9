"""The JSON module python-socketio encodes and decodes packets with: orjson, ASCII-only output.

Every event, broadcast and reply goes through ``dumps``/``loads``; orjson does them several
times faster than the standard library. Its output is UTF-8, but Engine.IO 3 clients need pure
ASCII text (docs/legacy.md, decision 6) and the shared broadcast encoding reaches them too, so
non-ASCII characters are escaped as ``\\uXXXX`` the way ``json.dumps`` does by default. Whatever
orjson refuses (keys that are not strings, integers beyond 64 bits, NaN) falls back to the
standard library, so the accepted inputs and outputs stay what they were. Text nested too deeply
for either is a ``ValueError`` like any other bad JSON, never a ``RecursionError``.
"""

from __future__ import annotations

import json
import re

import orjson

NON_ASCII = re.compile(r"[^\x00-\x7f]")
JSONDecodeError = json.JSONDecodeError


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def dumps(obj: object, **kwargs: object) -> str:
    """Compact JSON text, ASCII only (``separators`` and other options are those orjson always uses)."""
    try:
        data = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj, separators=(",", ":"))
    if data.isascii():
        return data.decode("ascii")
    return NON_ASCII.sub(_escape, data.decode("utf-8"))


MAX_INTEGER_DIGITS = 100


def _bounded_int(digits: str) -> int | str:
    """Integers of more than 100 digits stay text: converting them is slow (or refused past 4300
    digits), and no field of Gru's takes one, so the event gets its ordinary field error."""
    return int(digits) if len(digits) <= MAX_INTEGER_DIGITS else digits


LONG_DIGITS = re.compile(r"[0-9]{19}")  # orjson reads integers beyond 64 bits as (rounded) floats
LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19}")


def loads(text: str | bytes, **kwargs: object) -> object:
    """Decode JSON text; what orjson refuses, or would round, gets the standard library's verdict."""
    long_digits = LONG_DIGITS if isinstance(text, str) else LONG_DIGITS_BYTES
    if not long_digits.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
