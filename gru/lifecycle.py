"""Gunicorn worker glue: on SIGTERM, drain this worker before gunicorn stops it."""

from __future__ import annotations

import signal

import gevent


def install_drain_on_term(worker) -> None:
    """Make SIGTERM mark the node draining and close its connections, then let gunicorn stop as usual.

    gunicorn's worker closes its listener, then stops once no request is in progress; open
    websockets are not requests in progress (they are read by the event loop, see
    :mod:`gru.sockets.ws_reader`), so the worker's run is extended until the drain is done.
    gunicorn's ``graceful_timeout`` leaves room for it (``gru/gunicorn_conf.py``).
    """
    gru = getattr(worker.wsgi, "gru", None)
    if gru is None:
        return
    previous = worker.handle_exit
    drains: list = []

    def handle_exit(sig, frame):
        previous(sig, frame)
        drains.append(gevent.spawn(gru.drain))

    run = worker.run

    def run_until_drained():
        run()
        gevent.joinall(drains, timeout=worker.cfg.graceful_timeout)

    worker.run = run_until_drained
    signal.signal(signal.SIGTERM, handle_exit)


MAX_REQUEST_LINE = 64 * 1024


def allow_long_query_strings() -> None:
    """Let gevent's HTTP server read request lines up to 64 KiB (its default, 8 KiB, answers 414
    with an empty body to a ``/ticket`` whose ``token1`` of 4096 characters is percent-encoded)."""
    import gevent.pywsgi

    gevent.pywsgi.MAX_REQUEST_LINE = max(gevent.pywsgi.MAX_REQUEST_LINE, MAX_REQUEST_LINE)
