"""Construction of the socket.io server with Gru's engine settings."""

from __future__ import annotations

import socketio

from gru.config import Settings
from gru.sockets import fastjson, ws_speedups
from gru.sockets.legacy.sio4 import LegacySocketIOServer


def create_socket_server(settings: Settings, client_manager: socketio.Manager | None = None) -> socketio.Server:
    """A gevent-mode socket.io server for Engine.IO 4 and (unless disabled) Engine.IO 3 clients."""
    ws_speedups.install()
    server = LegacySocketIOServer(
        async_mode="gevent",
        client_manager=client_manager,
        logger=False,
        engineio_logger=False,
        json=fastjson,  # orjson, ASCII-only output (Engine.IO 3 clients need it)
        async_handlers=False,  # events of one connection are handled in arrival order
        cors_allowed_origins=_origin_policy(settings),
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_payload,
        cookie=None,
        transports=["polling", "websocket"],
        legacy_eio3=settings.legacy_eio3,
        legacy_max_body=settings.legacy_max_body or settings.max_payload,
        legacy_cookie=settings.legacy_cookie or None,
        legacy_utf8_dialect=settings.legacy_utf8_dialect,
    )
    server.eio.gru_max_backlog = settings.max_backlog  # unsent bytes per connection (gru.sockets.ws_output)
    return server


def _origin_policy(settings: Settings):
    """``*``, or a check that admits the allowed origins and the server's own (same-origin) one."""
    if settings.cors_allowed == "*":
        return "*"

    def allowed(origin: str | None, environ: dict) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return settings.origin_allowed(origin, own)

    return allowed
