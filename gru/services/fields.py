"""Rules for the identifiers that arrive from clients: user ids, user types, group ids, names.

The ticket API (query strings) and the socket events (JSON) share these rules so that a user
is the same user on both doors: ``10`` and ``"10"`` are one id.
"""

from __future__ import annotations

import re

from gru.errors import Code, GruError
from gru.models import UserId

INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²"
MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 128


def _is_printable(text: str) -> bool:
    return text.isprintable() and text.strip() == text


def parse_id(value: object, what: str, code: Code = Code.BAD_FIELD) -> tuple[str, UserId]:
    """Return ``(normalised text, value as given)`` for an integer or non-empty string id."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise GruError(code, f"{what} must be a number or a string")
    if isinstance(value, int) and value.bit_length() > 4 * MAX_ID_LENGTH:
        raise GruError(code, f"{what} is too long")  # before str(): huge integers are slow or refused
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not _is_printable(text):
        raise GruError(code, f"{what} must be 1-{MAX_ID_LENGTH} printable characters without surrounding spaces")
    return text, value


def parse_user_type(value: object, allowed: dict[int, str], what: str, code: Code = Code.BAD_FIELD) -> int:
    """Return the user type as an int if it is one of the configured types (``"1"`` counts as 1)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()) and len(value) < 8:
        value = int(value)
    if not isinstance(value, int) or value not in allowed:
        choices = " or ".join(str(t) for t in sorted(allowed))
        raise GruError(code, f"{what} must be {choices}")
    return value


def parse_name(value: object, what: str, code: Code = Code.BAD_FIELD) -> str:
    """Return a display name: a non-empty string of bounded length."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise GruError(code, f"{what} must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    if not value.isprintable():
        raise GruError(code, f"{what} must not contain control characters")
    return value


def parse_group(value: object, what: str = "groupId") -> str:
    """Return the group id as text; ``10`` and ``"10"`` name the same group."""
    text, _ = parse_id(value, what, Code.BAD_GROUP)
    return text
