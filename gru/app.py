"""The composition root: the only place that names concrete classes and wires them together."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass

import socketio
from flask import Blueprint, Flask

from gru.backends import redis_speedups
from gru.backends.base import Backend
from gru.backends.memory import MemoryBackend
from gru.backends.redis import Keys, RedisBackend, connect
from gru.config import Settings
from gru.emitter import SystemSender, queue_delivery
from gru.http.api import api_blueprint
from gru.http.demo import demo_blueprint
from gru.http.errors import install_error_handlers
from gru.http.ops import Readiness, ops_blueprint
from gru.http.ticket import ticket_blueprint
from gru.logs import configure_logging
from gru.metrics import CountedDelivery, ticket_answered
from gru.services.history import History
from gru.services.ids import IdAllocator
from gru.services.limits import ConnectionLimits
from gru.services.messaging import Messaging
from gru.services.nodes import NodeDirectory, NodeHeartbeat
from gru.services.presence import Presence
from gru.services.sessions import Sessions
from gru.services.tickets import TicketService
from gru.services.token1 import AcceptVerifier, HmacVerifier, HttpVerifier, Token1Verifier
from gru.services.tokens import TokenService
from gru.sockets.delivery import SocketDelivery
from gru.sockets.drain import close_connections
from gru.sockets.events import EventHandlers
from gru.sockets.manager import group_envelope, relay_envelope
from gru.sockets.metered import MeteredManager, MeteredRedisManager
from gru.sockets.server import create_socket_server

log = logging.getLogger(__name__)

DRAIN_DELAY = 1.2  # seconds for gunicorn to close its listener before connections are closed

REDIS_OPTIONS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0, "health_check_interval": 15}


@dataclass
class Gru:
    """Everything one process runs, kept together so tests, the CLI and gunicorn hooks reach the parts."""

    settings: Settings
    backend: Backend
    flask_app: Flask
    sio: socketio.Server | None
    heartbeat: NodeHeartbeat | None
    handlers: EventHandlers | None
    wsgi_app: object

    def drain(self) -> None:
        """Shutting down: stop being handed out by tickets, then close connections so clients move."""
        if self.heartbeat is None or self.sio is None or self.handlers is None:
            return
        log.info("draining node %s", self.settings.node_name)
        self.heartbeat.drain()
        self.handlers.stop_accepting()
        self.sio.sleep(DRAIN_DELAY)
        close_connections(self.sio, self.settings.drain_seconds)


def create_backend(settings: Settings, instance_id: str) -> Backend:
    """Memory when no Redis is configured, Redis otherwise."""
    if not settings.redis_url:
        return MemoryBackend()
    redis_speedups.install()
    client = connect(settings.redis_url, **REDIS_OPTIONS)
    return RedisBackend(client, Keys(settings.redis_prefix), instance_id, settings.node_ttl, envelope=relay_envelope,
                        group_envelope=group_envelope(instance_id))


def create_verifier(settings: Settings) -> Token1Verifier:
    """The token1 verifier named by ``GRU_TOKEN1_VERIFIER``."""
    if settings.verifier == "hmac":
        return HmacVerifier(settings.token1_secret.get_secret_value())
    if settings.verifier == "http":
        return HttpVerifier(settings.token1_url, settings.token1_timeout)
    return AcceptVerifier()


def _socket_side(settings: Settings, backend: Backend, tokens: TokenService, instance_id: str):
    """The long-connection node: socket.io server, its handlers and its heartbeat."""
    manager = MeteredManager()
    if settings.redis_url:
        keys = Keys(settings.redis_prefix)
        manager = MeteredRedisManager(settings.redis_url, channel=keys.channel,
                                      instance_channel=keys.instance_channel(instance_id))
        manager.host_id = instance_id  # the sender named in this process's broadcast relays
    sio = create_socket_server(settings, manager)
    if settings.redis_url:  # subscribe now, not at the first connection (python-socketio's default)
        sio.manager_initialized = True
        manager.initialize()
    user_types = settings.user_type_names
    presence, history, messaging = create_messaging(settings, backend, SocketDelivery(sio))
    sessions = Sessions(tokens, presence, user_types)
    limits = ConnectionLimits(settings.max_connections, settings.max_pending_per_address)
    handlers = EventHandlers(sio, sessions, messaging, presence, history, settings.auth_timeout, limits,
                             settings.rate_limit, settings.rate_burst)
    handlers.register()
    heartbeat = NodeHeartbeat(backend, instance_id, settings.node_name, settings.public_addr,
                              lambda: len(sio.eio.sockets), settings.heartbeat_interval,
                              capacity=settings.max_connections, weight=settings.node_weight)
    heartbeat.beat()  # be on the node list before the first ticket is asked for
    sio.start_background_task(heartbeat.run, sio.sleep)
    return sio, heartbeat, handlers


def build(settings: Settings) -> Gru:
    """Gru as its own WSGI application (``wsgi:app``, ``gru serve``): JSON answers for every error."""
    flask_app = Flask("gru")
    flask_app.json.sort_keys = False
    install_error_handlers(flask_app)
    return mount(flask_app, settings)


def mount(flask_app: Flask, settings: Settings) -> Gru:
    """Wire backend, services and the doors the role asks for into ``flask_app`` (Gru's own or a host's)."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.secret is None:
        log.warning("GRU_SECRET is not set: token2 is signed with a random key that changes at every start")
    instance_id = f"{settings.node_name}:{os.getpid()}:{secrets.token_hex(3)}"
    backend = create_backend(settings, instance_id)
    tokens = TokenService(settings.token_keys, settings.token_ttl)
    sio = heartbeat = handlers = None
    if settings.role in ("all", "node"):
        sio, heartbeat, handlers = _socket_side(settings, backend, tokens, instance_id)
    for blueprint in _http_side(settings, backend, tokens, sio, heartbeat):
        flask_app.register_blueprint(blueprint)
    wsgi_app = socketio.WSGIApp(sio, flask_app) if sio is not None else flask_app
    gru = Gru(settings, backend, flask_app, sio, heartbeat, handlers, wsgi_app)
    log.info("gru ready: node=%s role=%s verifier=%s backend=%s", settings.node_name, settings.role,
             settings.verifier, type(backend).__name__)
    return gru


def _http_side(settings: Settings, backend: Backend, tokens: TokenService, sio: socketio.Server | None,
               heartbeat: NodeHeartbeat | None) -> list[Blueprint]:
    """The HTTP doors: operations, tickets (ticket roles), the publish API and the demo page."""
    readiness = Readiness(settings.role, redis=backend.ping if settings.redis_url else None,
                          registered=(lambda: _registered(backend, settings.node_name)) if heartbeat else None,
                          draining=lambda: heartbeat is not None and heartbeat.state == "draining")
    blueprints = [ops_blueprint(settings.node_name, readiness)]
    if settings.role in ("all", "ticket"):
        tickets = TicketService(create_verifier(settings), tokens, NodeDirectory(backend), settings.user_type_names)
        ticket = ticket_blueprint(tickets, settings.origin_allowed)
        ticket.after_request(_count_ticket)
        blueprints.append(ticket)
    delivery = SocketDelivery(sio) if sio is not None else queue_delivery(settings)
    sender = create_system_sender(settings, backend, delivery)
    blueprints.append(api_blueprint(sender, settings.api_key_names, settings.max_payload))
    if settings.demo_enabled:
        blueprints.append(demo_blueprint())
    return blueprints


def create_messaging(settings: Settings, backend: Backend, delivery) -> tuple[Presence, History, Messaging]:
    """Presence, history and messaging over one delivery port: the same rules for every sender."""
    presence = Presence(backend, remember_seconds=settings.max_expire, online_scope=settings.online_scope)
    history = History(backend, settings.history_size, settings.history_ttl, settings.offline_size)
    messaging = Messaging(backend, IdAllocator(backend), CountedDelivery(delivery), history,
                          settings.user_type_names, settings.max_content, settings.max_expire, settings.unicast_scope)
    return presence, history, messaging


def create_system_sender(settings: Settings, backend: Backend, delivery) -> SystemSender:
    """The sender behind ``/api/push`` and ``gru.emitter``: same rules, ids and history as sockets."""
    presence, _, messaging = create_messaging(settings, backend, delivery)
    return SystemSender(messaging, presence, backend)


def _registered(backend: Backend, node_name: str) -> bool:
    return any(node.name == node_name for node in backend.live_nodes())


def _count_ticket(response):
    ticket_answered(response.status_code)
    return response


def create_app(settings: Settings | None = None):
    """The WSGI application for gunicorn (``wsgi:app``); ``app.gru`` reaches the parts."""
    gru = build(settings or Settings.from_env(os.environ))
    app = gru.wsgi_app
    app.gru = gru
    return app
