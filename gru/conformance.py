"""Conformance server: the reference behaviour the official Engine.IO/Socket.IO suites expect.

``python -m gru.conformance --port 3000 --mode engineio|socketio`` runs Gru's legacy-capable
engine (``engineio`` mode, path ``/engine.io/``) or socket.io server (``socketio`` mode, path
``/socket.io/``) under gunicorn's gevent-websocket worker with the suites' settings: ping
interval 300 ms, ping timeout 200 ms, max payload 1e6, CORS ``*``, echo handlers and the
``/custom`` namespace. Gru's own tests use it for binary payloads, which the product never
sends. Extra events (``join``, ``room-broadcast``) exist for those tests only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import engineio
import socketio

from gru.sockets.legacy.engine import LegacyEngineIOServer
from gru.sockets.legacy.sio4 import LegacySocketIOServer

SETTINGS = {"async_mode": "gevent", "ping_interval": 0.3, "ping_timeout": 0.2,
            "max_http_buffer_size": 1_000_000, "cors_allowed_origins": "*", "async_handlers": False}
WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"


def engineio_app(**overrides: object) -> engineio.WSGIApp:
    """A raw engine that sends every message straight back (text stays text, bytes stay bytes)."""
    eio = LegacyEngineIOServer(**{**SETTINGS, **overrides})
    eio.on("message", lambda sid, data: eio.send(sid, data))
    return engineio.WSGIApp(eio, engineio_path="engine.io")


def socketio_server(**overrides: object) -> socketio.Server:
    """The Socket.IO v5 suite's reference handlers (and their protocol 4 equivalents)."""
    sio = LegacySocketIOServer(always_connect=True, **{**SETTINGS, **overrides})
    for namespace in ("/", "/custom"):
        sio.on("connect", _bind_namespace(sio, namespace), namespace=namespace)
        sio.on("message", _echo(sio, namespace), namespace=namespace)
        sio.on("message-with-ack", lambda sid, *args: args, namespace=namespace)
        sio.on("join", _join(sio, namespace), namespace=namespace)
        sio.on("room-broadcast", _room_broadcast(sio, namespace), namespace=namespace)
    sio.on("connect", _refuse("Not authorized"), namespace="/refuse")
    sio.on("connect", _refuse("refused", {"code": 42}), namespace="/refuse-data")
    return sio


def _bind_namespace(sio: socketio.Server, namespace: str):
    """``auth`` back with the CONNECT payload (protocol 5) or namespace query (protocol 4)."""

    def on_connect(sid: str, environ: dict, auth: object = None) -> None:
        # from a task, so the event follows the CONNECT reply for both protocols (a protocol 4
        # connect is answered after its handler returned, to be able to refuse with ERROR)
        sio.start_background_task(sio.emit, "auth", auth if auth is not None else {}, to=sid, namespace=namespace)
    return on_connect


def _echo(sio: socketio.Server, namespace: str):
    def on_message(sid: str, *args: object) -> None:
        sio.emit("message-back", args, to=sid, namespace=namespace)
    return on_message


def _join(sio: socketio.Server, namespace: str):
    def on_join(sid: str, room: str) -> str:
        sio.enter_room(sid, room, namespace=namespace)
        return room
    return on_join


def _room_broadcast(sio: socketio.Server, namespace: str):
    def on_room_broadcast(sid: str, room: str, *args: object) -> None:
        sio.emit("room-message", args, to=room, namespace=namespace)
    return on_room_broadcast


def _refuse(message: str, data: object = None):
    def on_connect(sid: str, environ: dict, auth: object = None) -> None:
        raise socketio.exceptions.ConnectionRefusedError(message, *([data] if data is not None else []))
    return on_connect


def socketio_app(**overrides: object) -> socketio.WSGIApp:
    """The socket.io server at ``/socket.io/``."""
    return socketio.WSGIApp(socketio_server(**overrides))


def create_app(mode: str, **overrides: object):
    """gunicorn's app factory: ``gru.conformance:create_app('socketio')``.

    Keyword overrides (e.g. ``ping_interval=5``) are for Gru's own load-bearing tests, whose
    many clients per process would not keep the suites' 300 ms heartbeat on a busy machine.
    """
    if mode == "engineio":
        return engineio_app(**overrides)
    if mode == "socketio":
        return socketio_app(**overrides)
    raise ValueError(f"mode must be engineio or socketio, not {mode!r}")


def gunicorn_command(mode: str, host: str, port: int) -> list[str]:
    """The gunicorn command line that serves ``mode`` on ``host:port``."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return [str(gunicorn) if gunicorn.exists() else (shutil.which("gunicorn") or "gunicorn"),
            "-k", WORKER, "-w", "1", "--no-control-socket", "--graceful-timeout", "1",
            "-b", f"{host}:{port}", f"gru.conformance:create_app('{mode}')"]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and replace this process with gunicorn."""
    parser = argparse.ArgumentParser(prog="python -m gru.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--mode", choices=["engineio", "socketio"], default="socketio")
    args = parser.parse_args(argv)
    command = gunicorn_command(args.mode, args.host, args.port)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
