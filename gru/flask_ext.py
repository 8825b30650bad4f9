"""``Gru(app)`` / ``gru.init_app(app)``: Gru inside an existing Flask application.

The application keeps its own routes, error pages and configuration. Gru adds ``/ticket``,
``/api/*``, ``/healthz``, ``/readyz``, ``/metrics`` (and ``/demo`` in development) as blueprints
and serves socket.io on ``/socket.io/`` by wrapping ``app.wsgi_app``. Settings come from the
application's config keys named like the environment variables (``app.config["GRU_SECRET"]``);
keys the config does not set take their defaults. Run the application under gunicorn with the
gevent-websocket worker, as Gru itself runs (see docs/migration.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import socketio
from flask import Flask

from gru.config import ENV_PREFIX, Settings

GRU_PATHS = ("/ticket", "/api/push", "/api/online", "/api/nodes", "/api/openapi.json", "/healthz", "/readyz",
             "/metrics", "/demo")


class Gru:
    """The Flask extension; ``app.extensions["gru"]`` holds the running parts (``gru.app.Gru``)."""

    def __init__(self, app: Flask | None = None, settings: Settings | None = None) -> None:
        self.settings = settings
        self.parts = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Mount the ticket API, the publish API, the operational endpoints and socket.io into ``app``."""
        from gru.app import mount

        settings = self.settings or settings_from_config(app.config)
        taken = sorted({rule.rule for rule in app.url_map.iter_rules()} & set(GRU_PATHS))
        if taken:
            raise ValueError(f"the application already routes {', '.join(taken)}: Gru needs these paths")
        self.parts = mount(app, settings)
        if self.parts.sio is not None:
            app.wsgi_app = socketio.WSGIApp(self.parts.sio, app.wsgi_app)
        app.extensions["gru"] = self.parts
        app.gru = self.parts  # what gru.lifecycle's drain-on-SIGTERM hook looks for on the WSGI app

    @property
    def sio(self) -> socketio.Server | None:
        """The socket.io server, e.g. to add handlers for events of the application's own."""
        return self.parts.sio if self.parts is not None else None


def settings_from_config(config: Mapping[str, object]) -> Settings:
    """Settings from ``GRU_*`` keys of a Flask config (values may be strings, numbers or booleans)."""
    values = {name: _text(value) for name, value in config.items()
              if isinstance(name, str) and name.startswith(ENV_PREFIX) and value is not None}
    return Settings.from_env(values)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
