"""Decoding of event arguments: clients send JSON strings (the original) or objects (newer code)."""

from __future__ import annotations

from gru.errors import Code, GruError
from gru.sockets import fastjson

MISSING = object()


def first_arg(args: tuple) -> object:
    """The single argument of an event; extra arguments are ignored, none is ``MISSING``."""
    return args[0] if args else MISSING


def decode_object(data: object, event: str) -> dict:
    """Return the event's payload as a dict, from a JSON string or an already-decoded object."""
    if isinstance(data, dict):
        return data
    if isinstance(data, (str, bytes)):
        try:
            value = fastjson.loads(data)
        except (ValueError, RecursionError):
            raise GruError(Code.BAD_JSON, f"{event}: payload is not valid JSON") from None
        if isinstance(value, dict):
            return value
    raise GruError(Code.BAD_FIELD, f"{event}: payload must be a JSON object (or a JSON string of one)")


def decode_group(data: object) -> object:
    """The group id of an ``online`` request: ``"10"``, ``10``, ``{"groupId": 10}`` or its JSON."""
    if isinstance(data, str) and data.strip()[:1] in ("{", '"'):
        try:
            data = fastjson.loads(data)
        except (ValueError, RecursionError):
            raise GruError(Code.BAD_JSON, "online: payload is not valid JSON") from None
    if isinstance(data, dict):
        return data.get("groupId")
    if data is MISSING:
        return None
    return data
