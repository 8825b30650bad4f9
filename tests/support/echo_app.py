"""Minimal socket.io server used to prove the client harness works.

Run as: gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker
tests.support.echo_app:app
"""

from gevent import monkey

monkey.patch_all()

# socketio must be imported only after monkey patching.
import socketio  # noqa: E402, RUF100

# async_handlers=False: handle each client's events in order, so replies are FIFO.
sio = socketio.Server(async_mode="gevent", async_handlers=False)
app = socketio.WSGIApp(sio)


@sio.on("echo")
def echo(sid: str, data: object = None) -> None:
    """Send the payload straight back, so tests can check round-trips."""
    sio.emit("echo_result", data, to=sid)


@sio.on("kick")
def kick(sid: str, *args: object) -> None:
    """Server-initiated disconnect, to exercise client disconnect reporting."""
    sio.disconnect(sid)
