"""Logging set-up: one line per event, to stderr, at the configured level, as text or as JSON.

Gru logs every ticket request, publish API call and connection event itself (gevent-websocket's
handler bypasses gunicorn's access log). No line carries a token or an API key: messages name
users, groups and API key *names* only.

Client-controlled text must not forge log lines: :func:`log_safe` makes one client value a safe
field (used where the value is logged), and both formatters escape whatever still reaches them,
so a newline, a carriage return, a line separator or a terminal escape sent by a client is
written as ``\\n``, ``\\r``, ``\\u2028``, ``\\x1b``, never as itself.
"""

from __future__ import annotations

import copy
import logging
import re

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
JSON_FIELDS = ["levelname", "process", "name", "message"]
JSON_RENAMES = {"levelname": "level", "process": "pid", "name": "logger", "message": "msg"}

# C0/C1 controls and DEL, line/paragraph separators, bidirectional overrides (which reorder what a
# terminal shows), and lone surrogates (which the UTF-8 stream cannot even encode).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """``text`` on one line: control and other unsafe characters written as escapes."""
    return _UNSAFE.sub(_escape_char, text)


def log_safe(value: object, limit: int = 100) -> str:
    """A client-supplied value as one log field: cut to ``limit`` characters, escaped (backslashes
    too, so the escapes are unambiguous), and quoted when it holds a space, a quote or ``=``, so
    it cannot pose as further ``key=value`` fields."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    text = escape(text.replace("\\", "\\\\"))
    if any(char.isspace() or char in '"=' for char in text):
        text = '"' + text.replace('"', '\\"') + '"'
    return text


def _escaped_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message escaped (a copy: other handlers see the original)."""
    message = record.getMessage()
    safe = escape(message)
    if safe == message:
        return record
    record = copy.copy(record)
    record.msg, record.args = safe, None
    return record


class TextFormatter(logging.Formatter):
    """One record, one line; a traceback's lines follow indented, so none can pass for a record."""

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(_escaped_record(record)).split("\n")
        return "\n".join([first, *("  " + escape(line) for line in rest)])


class SafeJsonFormatter(JsonFormatter):
    """python-json-logger's formatter, with the message and traceback escaped like the text ones."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_escaped_record(record))

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return "\n".join(escape(line) for line in super().formatException(ei).split("\n"))


def make_formatter(fmt: str = "text") -> logging.Formatter:
    """The text formatter, or a JSON one: ``{"time", "level", "pid", "logger", "msg"}`` plus any extras."""
    if fmt == "json":
        return SafeJsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp="time", json_ensure_ascii=False)
    return TextFormatter(FORMAT)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Give Gru's loggers a handler unless the host application already configured one."""
    logger = logging.getLogger("gru")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter(fmt))
        logger.addHandler(handler)
        logger.propagate = False
