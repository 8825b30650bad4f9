"""gunicorn settings for Gru, read from ``GRU_*`` variables (a ``--bind`` on the command line wins).

The master only imports the settings module: everything that touches the network is imported
by the workers after gevent has patched the standard library.
"""

import os
import shutil
import sys
import tempfile

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
keepalive = max(1, round(_settings.keepalive_timeout))  # applied by gru.lifecycle.timed_handler
control_socket_disable = True
loglevel = _settings.log_level.lower()
accesslog = None
proc_name = f"gru-{_settings.node_name}"

# metrics: every worker writes its samples to files in one directory (prometheus-client reads
# PROMETHEUS_MULTIPROC_DIR itself), so /metrics on any worker counts all of them
_metrics_dir = _settings.metrics_dir or tempfile.mkdtemp(prefix="gru-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    """Start from empty metric files: counters restart with the master, as Prometheus expects."""
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.unlink(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    """A worker is gone: its live gauges (open connections) must stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    """Remove the metrics directory this master made for itself."""
    if not _settings.metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Drain on SIGTERM: stop being handed out, then close connections so clients move elsewhere;
    bounded time for request heads, request bodies and idle keep-alive connections."""
    from gru.lifecycle import allow_long_query_strings, install_drain_on_term, install_request_timeouts

    install_drain_on_term(worker)
    allow_long_query_strings()
    install_request_timeouts(worker, _settings.header_timeout, _settings.keepalive_timeout, _settings.body_timeout)
