"""gunicorn settings for Gru, read from ``GRU_*`` variables (a ``--bind`` on the command line wins).

The master only imports the settings module: everything that touches the network is imported
by the workers after gevent has patched the standard library.
"""

import os
import sys

from gru.config import ConfigError, Settings

try:
    _settings = Settings.from_env(os.environ)
except ConfigError as exc:
    sys.exit(f"gru: {exc}")

bind = [_settings.bind]
workers = _settings.workers
worker_class = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
worker_connections = _settings.worker_connections
timeout = 30
graceful_timeout = max(10, int(_settings.drain_seconds) + 5)  # room for the drain on SIGTERM
keepalive = 5
control_socket_disable = True
loglevel = _settings.log_level.lower()
accesslog = None
proc_name = f"gru-{_settings.node_name}"


def post_worker_init(worker):
    """Drain on SIGTERM: stop being handed out, then close connections so clients move elsewhere."""
    from gru.lifecycle import install_drain_on_term

    install_drain_on_term(worker)
