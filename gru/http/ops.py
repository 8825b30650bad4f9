"""Operational endpoints: liveness for load balancers and process supervisors."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gru import __version__


def ops_blueprint(node_name: str) -> Blueprint:
    """``/healthz``: the process is alive and serving HTTP."""
    blueprint = Blueprint("gru_ops", __name__)

    @blueprint.route("/healthz")
    def healthz():
        return jsonify({"status": "ok", "node": node_name, "version": __version__})

    return blueprint
