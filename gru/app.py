"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import socketio
from flask import Flask

from gru.backends.base import Backend
from gru.backends.memory import MemoryBackend
from gru.config import Settings
from gru.http.errors import install_error_handlers
from gru.http.ops import ops_blueprint
from gru.http.ticket import ticket_blueprint
from gru.logs import configure_logging
from gru.models import Node
from gru.services.ids import IdAllocator
from gru.services.messaging import Messaging
from gru.services.nodes import NodeDirectory
from gru.services.presence import Presence
from gru.services.sessions import Sessions
from gru.services.tickets import TicketService
from gru.services.token1 import AcceptVerifier, HmacVerifier, HttpVerifier, Token1Verifier
from gru.services.tokens import TokenService
from gru.sockets.delivery import SocketDelivery
from gru.sockets.events import EventHandlers
from gru.sockets.server import create_socket_server

log = logging.getLogger(__name__)


@dataclass
class Gru:
    """Everything one process runs, kept together so tests and the CLI can reach the parts."""

    settings: Settings
    backend: Backend
    flask_app: Flask
    sio: socketio.Server
    wsgi_app: socketio.WSGIApp


def create_backend(settings: Settings) -> Backend:
    """Memory when no Redis is configured; the Redis backend belongs to the cluster set-up."""
    if settings.redis_url:
        raise NotImplementedError("GRU_REDIS_URL: the Redis backend is not available in this version")
    return MemoryBackend()


def create_verifier(settings: Settings) -> Token1Verifier:
    """The token1 verifier named by ``GRU_TOKEN1_VERIFIER``."""
    if settings.verifier == "hmac":
        return HmacVerifier(settings.token1_secret.get_secret_value())
    if settings.verifier == "http":
        return HttpVerifier(settings.token1_url, settings.token1_timeout)
    return AcceptVerifier()


def build(settings: Settings) -> Gru:
    """Wire backend, services and both doors (HTTP and socket.io) from one settings object."""
    configure_logging(settings.log_level)
    if settings.secret is None:
        log.warning("GRU_SECRET is not set: token2 is signed with a random key that changes at every start")
    backend = create_backend(settings)
    user_types = settings.user_type_names
    tokens = TokenService(settings.signing_secret, settings.token_ttl)
    presence = Presence(backend)
    nodes = NodeDirectory(backend)
    nodes.announce(Node(settings.node_name, settings.public_addr))
    sio = create_socket_server(settings)
    sessions = Sessions(tokens, presence, user_types)
    messaging = Messaging(IdAllocator(backend), presence, SocketDelivery(sio), user_types, settings.max_content)
    EventHandlers(sio, sessions, messaging, presence, settings.auth_timeout).register()

    flask_app = Flask("gru")
    flask_app.json.sort_keys = False
    install_error_handlers(flask_app)
    flask_app.register_blueprint(ops_blueprint(settings.node_name))
    tickets = TicketService(create_verifier(settings), tokens, nodes, user_types)
    flask_app.register_blueprint(ticket_blueprint(tickets))
    wsgi_app = socketio.WSGIApp(sio, flask_app)
    log.info("gru ready: node=%s role=%s verifier=%s backend=%s", settings.node_name, settings.role,
             settings.verifier, type(backend).__name__)
    return Gru(settings, backend, flask_app, sio, wsgi_app)


def create_app(settings: Settings | None = None) -> socketio.WSGIApp:
    """The WSGI application for gunicorn (``wsgi:app``)."""
    return build(settings or Settings.from_env(os.environ)).wsgi_app
