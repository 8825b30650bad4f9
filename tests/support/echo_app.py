"""Minimal socket.io server used to prove the client harness works.

Run as: gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker
tests.support.echo_app:app
"""

from gevent import monkey

monkey.patch_all()

# socketio must be imported only after monkey patching.
import socketio  # noqa: E402, RUF100

from gru.sockets.legacy.sio4 import LegacySocketIOServer  # noqa: E402

# async_handlers=False: handle each client's events in order, so replies are FIFO.
# The legacy-capable server also serves the Engine.IO 3 client kinds of the harness.
sio = LegacySocketIOServer(async_mode="gevent", async_handlers=False)
app = socketio.WSGIApp(sio)


@sio.on("echo")
def echo(sid: str, data: object = None) -> None:
    """Send the payload straight back, so tests can check round-trips."""
    sio.emit("echo_result", data, to=sid)


@sio.on("kick")
def kick(sid: str, *args: object) -> None:
    """Server-initiated disconnect, to exercise client disconnect reporting."""
    sio.disconnect(sid)
