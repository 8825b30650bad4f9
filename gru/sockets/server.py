"""Construction of the python-socketio server with Gru's engine settings."""

from __future__ import annotations

import engineio.payload
import socketio

from gru.config import Settings

# python-engineio drops a whole polling POST (and answers "ok") when it holds more than 16
# packets; a client that emits quickly over long-polling would lose messages. The body size
# is already bounded by max_http_buffer_size, so the packet count needs no bound of its own.
POLLING_MAX_PACKETS = 10_000


def create_socket_server(settings: Settings, client_manager: socketio.Manager | None = None) -> socketio.Server:
    """A gevent-mode socket.io server configured from settings."""
    engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                      POLLING_MAX_PACKETS)
    return socketio.Server(
        async_mode="gevent",
        client_manager=client_manager,
        logger=False,
        engineio_logger=False,
        cors_allowed_origins=settings.cors_allowed,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=settings.max_payload,
        cookie=None,
        transports=["polling", "websocket"],
    )
