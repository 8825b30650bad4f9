"""``/demo``: a page to try Gru in a browser (log in, see who is online, send and receive) and to
watch a deployment (nodes, groups, pushes through the publish API).

The socket.io browser client is the npm package the set-up installs (``node_modules``), served
as it is; it is not copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_file

from gru.errors import Code
from gru.http.responses import status_response

STATIC = Path(__file__).resolve().parents[1] / "static" / "demo"
CLIENT_JS = Path(__file__).resolve().parents[2] / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


def demo_blueprint(client_js: Path = CLIENT_JS) -> Blueprint:
    """The page, its script and style, and the socket.io client from ``node_modules``."""
    blueprint = Blueprint("gru_demo", __name__, static_folder=str(STATIC), static_url_path="/demo/static")

    @blueprint.route("/demo")
    def page():
        response = send_file(STATIC / "index.html", mimetype="text/html", max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @blueprint.route("/demo/socket.io.min.js")
    def client():
        if not client_js.is_file():
            return status_response(int(Code.NOT_FOUND), "the socket.io browser client is not installed: run "
                                   "scripts/setup.sh dev (npm ci) in the Gru checkout")
        return send_file(client_js, mimetype="text/javascript", max_age=3600)

    return blueprint
