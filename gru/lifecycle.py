"""Gunicorn worker glue: on SIGTERM, drain this worker before gunicorn stops it."""

from __future__ import annotations

import signal

import gevent


def install_drain_on_term(worker) -> None:
    """Make SIGTERM mark the node draining and close its connections, then let gunicorn stop as usual.

    gunicorn's worker stops once no request is in progress, and open websockets are not requests
    in progress (they are read by the event loop, see :mod:`gru.sockets.ws_reader`): so the worker
    is told to stop only after the drain has closed them. gunicorn's ``graceful_timeout`` leaves
    room for the drain (``gru/gunicorn_conf.py``).
    """
    gru = getattr(worker.wsgi, "gru", None)
    if gru is None:
        return
    previous = worker.handle_exit

    def drain_then_stop(sig, frame):
        try:
            gru.drain()
        finally:
            previous(sig, frame)

    def handle_exit(sig, frame):
        gevent.spawn(drain_then_stop, sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)


MAX_REQUEST_LINE = 64 * 1024


def allow_long_query_strings() -> None:
    """Let gevent's HTTP server read request lines up to 64 KiB (its default, 8 KiB, answers 414
    with an empty body to a ``/ticket`` whose ``token1`` of 4096 characters is percent-encoded)."""
    import gevent.pywsgi

    gevent.pywsgi.MAX_REQUEST_LINE = max(gevent.pywsgi.MAX_REQUEST_LINE, MAX_REQUEST_LINE)
