"""Closing a node's connections when it shuts down, spread out so the clients' reconnects are too."""

from __future__ import annotations

import logging

import socketio

log = logging.getLogger(__name__)

BATCHES = 20


def close_connections(sio: socketio.Server, over_seconds: float) -> int:
    """Close every Engine.IO connection (clients see a transport close and reconnect); return how many."""
    sids = list(sio.eio.sockets)
    if not sids:
        return 0
    batch = max(1, len(sids) // BATCHES)
    pause = over_seconds / max(1, len(sids) // batch)
    for start in range(0, len(sids), batch):
        for sid in sids[start : start + batch]:
            if sid in sio.eio.sockets:
                sio.eio.disconnect(sid)
        sio.sleep(pause)
    log.info("drain: closed %d connections", len(sids))
    return len(sids)
