"""Test puppet for the python-socketio 4.6.1 client (runs in .venv-legacy, not in Gru's venv).

Same JSON-lines protocol as tests/node/puppet.js: commands on stdin (connect, emit, close,
exit), reports on stdout (ready, connect, upgrade, event, disconnect, connect_error, error).
Binary values travel as {"$bytes_b64": "..."}.
"""

import base64
import json
import sys
import threading
import time

import engineio
import socketio

BYTES_KEY = "$bytes_b64"
_out_lock = threading.Lock()
_sockets = {}


def send(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def to_wire(value):
    if isinstance(value, (bytes, bytearray)):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value):
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {BYTES_KEY}:
            return base64.b64decode(value[BYTES_KEY])
        return {k: from_wire(v) for k, v in value.items()}
    return value


class InOrderEngineClient(engineio.Client):
    """python-engineio 3.14 runs every message handler in a new thread, so a burst of events
    can reach the application out of order; the tests check the server's order, so the
    puppet handles messages on the reading thread."""

    def _trigger_event(self, event, *args, **kwargs):
        kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class RecordingClient(socketio.Client):
    """Reports every event of the default namespace to the test process."""

    def __init__(self, name):
        super().__init__(reconnection=False)
        self.puppet_name = name

    def _engineio_client_class(self):
        return InOrderEngineClient

    def _trigger_event(self, event, namespace, *args):
        if namespace == "/":
            if event == "connect":
                send({"name": self.puppet_name, "type": "connect", "transport": self.transport()})
                threading.Thread(target=self._watch_upgrade, daemon=True).start()
            elif event == "disconnect":
                send({"name": self.puppet_name, "type": "disconnect", "reason": "disconnect"})
            else:
                send({"name": self.puppet_name, "type": "event", "event": event, "args": to_wire(list(args))})
        return super()._trigger_event(event, namespace, *args)

    def _watch_upgrade(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.eio.state != "disconnected":
            if self.transport() == "websocket":
                send({"name": self.puppet_name, "type": "upgrade", "transport": "websocket"})
                return
            time.sleep(0.02)


def connect(cmd):
    name = cmd["name"]
    client = RecordingClient(name)
    _sockets[name] = client

    def run():
        try:
            client.connect(cmd["url"], transports=cmd.get("transports") or ["polling", "websocket"])
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            send({"name": name, "type": "connect_error", "message": str(exc)})

    threading.Thread(target=run, daemon=True).start()


def close(name):
    client = _sockets.pop(name, None)
    if client is not None:
        threading.Thread(target=client.disconnect, daemon=True).start()


def handle(line):
    cmd = json.loads(line)
    op = cmd.get("op")
    if op == "connect":
        connect(cmd)
    elif op == "emit":
        client = _sockets[cmd["name"]]
        client.emit(cmd["event"], tuple(from_wire(cmd.get("args") or [])))
    elif op == "close":
        close(cmd["name"])
    elif op == "exit":
        return False
    else:
        raise ValueError(f"unknown op {op!r}")
    return True


def main():
    send({"type": "ready", "version": socketio.__version__ if hasattr(socketio, "__version__") else "4"})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            if not handle(line):
                break
        except Exception as exc:  # noqa: BLE001 - a bad command must not end the puppet
            send({"type": "error", "message": str(exc)})
    for name in list(_sockets):
        client = _sockets.pop(name)
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


if __name__ == "__main__":
    main()
