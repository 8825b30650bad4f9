"""C-accelerated WebSocket frame reading for gevent-websocket, from the ``wsaccel`` package.

gevent-websocket checks incoming text for valid UTF-8 and unmasks every client frame (clients
must mask) in pure Python, byte by byte. It picks up wsaccel's UTF-8 validator by itself when the
package is installed; unmasking it always does in Python, so :func:`install` points it at
wsaccel's XOR masker. Without wsaccel nothing changes.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def install() -> bool:
    """Use wsaccel for unmasking client frames; True if it is in use (idempotent)."""
    try:
        from geventwebsocket import utf8validator
        from geventwebsocket.websocket import Header
        from wsaccel.xormask import XorMaskerSimple
    except ImportError:
        return False
    if getattr(Header.unmask_payload, "gru_accelerated", False):
        return True

    def unmask_payload(header: Header, payload: bytes) -> bytes:
        return XorMaskerSimple(header.mask).process(payload)

    unmask_payload.gru_accelerated = True
    Header.mask_payload = Header.unmask_payload = unmask_payload
    if not utf8validator.Utf8Validator.__module__.startswith("wsaccel"):
        log.warning("gevent-websocket checks UTF-8 in Python: wsaccel was imported after it")
    return True
