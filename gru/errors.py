"""The one table of error codes (part of the public contract) and the domain exception.

Socket-side codes are small negative integers carried in ``auth_result``, ``msg_result`` and
``online_result``; ticket-side codes equal the HTTP status of the answer. The table in
the README is generated from this one (``python -m gru.errors``); a test keeps them equal.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Every error code Gru answers with, and its default message."""

    def __new__(cls, value: int, message: str, where: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.message = message
        member.where = where
        return member

    OK = (0, "", "all")

    # HTTP (ticket API and other endpoints): errorCode equals the HTTP status.
    BAD_REQUEST = (400, "missing or invalid parameter", "http")
    TOKEN1_REJECTED = (401, "token1 rejected by the business system", "http")
    ORIGIN_NOT_ALLOWED = (403, "origin not allowed", "http")
    NOT_FOUND = (404, "not found", "http")
    METHOD_NOT_ALLOWED = (405, "method not allowed", "http")
    PAYLOAD_TOO_LARGE = (413, "request body is too large", "http")
    INTERNAL = (500, "internal error", "http")
    UNAVAILABLE = (503, "service unavailable", "http")

    # Socket events: small negative integers.
    BAD_JSON = (-1, "payload is not valid JSON", "socket")
    BAD_MSG_TYPE = (-2, "message type is invalid", "msg")
    BAD_FIELD = (-3, "missing or invalid field", "socket")
    TOKEN_INVALID = (-4, "token2 is invalid", "auth")
    TOKEN_EXPIRED = (-5, "token2 has expired", "auth")
    IDENTITY_MISMATCH = (-6, "id/type do not match token2", "auth")
    ALREADY_AUTHENTICATED = (-7, "connection is already authenticated", "auth")
    NOT_AUTHENTICATED = (-8, "not authenticated: send auth first", "socket")
    AUTH_TIMEOUT = (-9, "authentication timed out", "auth")
    BAD_TARGET = (-10, "target is missing or invalid", "msg")
    CONTENT_TOO_LARGE = (-11, "content is too large", "msg")
    TARGET_OFFLINE = (-12, "target user is offline", "msg")
    BAD_GROUP = (-13, "group id is missing or invalid", "socket")
    DELIVERY_UNAVAILABLE = (-14, "delivery is unavailable, message not sent", "msg")
    RATE_LIMITED = (-15, "too many events, slow down", "socket")
    FORBIDDEN = (-16, "not allowed", "socket")
    BAD_CONTENT = (-17, "content must be a string", "msg")
    STATE_UNAVAILABLE = (-18, "presence is unavailable right now, try again", "online")
    NODE_FULL = (-19, "this node is full, use a backup node", "connect")
    TOO_MANY_PENDING = (-20, "too many unauthenticated connections from your address", "connect")
    SERVER_ERROR = (-99, "internal server error", "socket")


class GruError(Exception):
    """A refusal with a code from :class:`Code`; the transport edge turns it into a wire answer."""

    def __init__(self, code: Code, message: str | None = None):
        self.code = code
        self.message = message or code.message
        super().__init__(f"{int(code)}: {self.message}")

    def as_result(self) -> dict:
        """The ``{"success": false, "errorCode": N, "msg": ...}`` object of the contract."""
        return {"success": False, "errorCode": int(self.code), "msg": self.message}


def markdown_table() -> str:
    """The error table as Markdown, for the docs."""
    rows = ["| code | name | used in | default message |", "|---:|---|---|---|"]
    for code in Code:
        if code is not Code.OK:
            rows.append(f"| {int(code)} | `{code.name}` | {code.where} | {code.message} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
