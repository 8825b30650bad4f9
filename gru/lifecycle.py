"""Gunicorn worker glue: on SIGTERM, drain this worker before gunicorn stops it."""

from __future__ import annotations

import signal

import gevent


def install_drain_on_term(worker) -> None:
    """Make SIGTERM mark the node draining and close its connections, then let gunicorn stop as usual."""
    gru = getattr(worker.wsgi, "gru", None)
    if gru is None:
        return
    previous = worker.handle_exit

    def handle_exit(sig, frame):
        previous(sig, frame)
        gevent.spawn(gru.drain)

    signal.signal(signal.SIGTERM, handle_exit)
