"""Logging set-up: one line per event, to stderr, at the configured level, as text or as JSON.

Gru logs every ticket request, publish API call and connection event itself (gevent-websocket's
handler bypasses gunicorn's access log). No line carries a token or an API key: messages name
users, groups and API key *names* only.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
JSON_FIELDS = ["levelname", "process", "name", "message"]
JSON_RENAMES = {"levelname": "level", "process": "pid", "name": "logger", "message": "msg"}


def make_formatter(fmt: str = "text") -> logging.Formatter:
    """The text formatter, or a JSON one: ``{"time", "level", "pid", "logger", "msg"}`` plus any extras."""
    if fmt == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp="time", json_ensure_ascii=False)
    return logging.Formatter(FORMAT)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Give Gru's loggers a handler unless the host application already configured one."""
    logger = logging.getLogger("gru")
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter(fmt))
        logger.addHandler(handler)
        logger.propagate = False
