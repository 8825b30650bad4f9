"""Operational endpoints: liveness, readiness and metrics for load balancers, supervisors and Prometheus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, jsonify

from gru import __version__, metrics

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """What ``/readyz`` checks; each check is a callable so this layer knows no backend or server.

    ``redis``: whether the configured Redis answers (None: no Redis configured).
    ``registered``: whether this node is on the live node list (None: no node in this process).
    ``draining``: whether this node is shutting down.
    """

    role: str
    redis: Callable[[], bool] | None = None
    registered: Callable[[], bool] | None = None
    draining: Callable[[], bool] = lambda: False

    def report(self) -> tuple[bool, dict]:
        """``(ready, checks)``; a check that raises counts as failed."""
        checks = {"redis": _run(self.redis) if self.redis else "not configured",
                  "registered": _run(self.registered) if self.registered else "no node",
                  "draining": _run(self.draining)}
        ready = checks["redis"] is not False and checks["registered"] is not False and checks["draining"] is False
        return ready, checks


def _run(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing check means "not ready", not a crash
        log.warning("readiness check failed", exc_info=True)
        return False


def ops_blueprint(node_name: str, readiness: Readiness | None = None, serve_metrics: bool = True) -> Blueprint:
    """``/healthz`` (alive), ``/readyz`` (fit to be handed out) and ``/metrics`` (Prometheus text)."""
    blueprint = Blueprint("gru_ops", __name__)
    readiness = readiness or Readiness("all")

    @blueprint.route("/healthz")
    def healthz():
        return jsonify({"status": "ok", "node": node_name, "version": __version__})

    @blueprint.route("/readyz")
    def readyz():
        ready, checks = readiness.report()
        body = {"status": "ready" if ready else "not ready", "node": node_name, "role": readiness.role,
                "checks": checks}
        response = jsonify(body)
        response.status_code = 200 if ready else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    if serve_metrics:
        @blueprint.route("/metrics")
        def prometheus_metrics():
            return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)

    return blueprint
