"""A small Flask application of its own (routes, error page, config) that adopts Gru with ``Gru(app)``.

``HOST_FACTORY=1`` builds it the application-factory way (``gru.init_app(app)``).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify

from gru import Gru

extension = Gru()


def create_app() -> Flask:
    app = Flask("school")
    app.config["SCHOOL_NAME"] = "Riverside Primary"
    for name, value in os.environ.items():  # the test passes Gru's settings through the app config
        if name.startswith("HOST_GRU_"):
            app.config[name.removeprefix("HOST_")] = value

    @app.route("/")
    def home():
        return f"<h1>{app.config['SCHOOL_NAME']}</h1>"

    @app.route("/timetable")
    def timetable():
        return jsonify({"monday": ["maths", "music"]})

    @app.errorhandler(404)
    def not_found(exc):
        return "<p>no such page at the school</p>", 404

    if os.environ.get("HOST_FACTORY"):
        extension.init_app(app)
    else:
        Gru(app)
    return app


app = create_app()
