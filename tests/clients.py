"""One Python interface over several real socket.io client implementations.

Tests are written once against `Client` and run with every kind in
CLIENT_KINDS, so protocol differences between client libraries show up as
test failures instead of production surprises.
"""

from __future__ import annotations

import atexit
import base64
import itertools
import json
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import engineio
import socketio

REPO_ROOT = Path(__file__).resolve().parents[1]
PUPPET_JS = REPO_ROOT / "tests" / "node" / "puppet.js"
NODE_MODULES = REPO_ROOT / "node_modules"
LEGACY_PY_PUPPET = REPO_ROOT / "tests" / "legacy_py" / "puppet.py"
LEGACY_VENV = REPO_ROOT / ".venv-legacy"

# kind -> npm module the puppet requires (npm aliases in package.json)
NODE_KINDS = {"node4": "socket.io-client", "node2": "socket.io-client-2", "node1": "socket.io-client-1"}
# python-socketio 4.6.1 (Engine.IO 3, XHR2 binary polling) in its own venv
LEGACY_PY_KIND = "python4"
# Engine.IO protocol of each kind: 3 for socket.io 1.x/2.x and python-socketio 4
PROTOCOLS = {"python": 4, "node4": 4, LEGACY_PY_KIND: 3, "node2": 3, "node1": 3}
CLIENT_KINDS = ["python", LEGACY_PY_KIND, *NODE_KINDS]
TRANSPORTS = ["websocket", "polling", "upgrade"]
_TRANSPORT_LISTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


class ConnectionFailed(Exception):
    """The client could not establish a socket.io connection."""


def _transport_list(transport: str) -> list[str]:
    try:
        return _TRANSPORT_LISTS[transport]
    except KeyError:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}") from None


class Client(ABC):
    """Uniform test client: connect, emit, and wait for server events.

    Received events are queued per event name (FIFO) until a test consumes
    them, so a test never misses an event that arrived before it waited.
    """

    kind: str

    def __init__(self, name: str) -> None:
        self.name = name
        self.disconnect_reason: str | None = None
        self._cond = threading.Condition()
        self._inbox: defaultdict[str, deque[Any]] = defaultdict(deque)
        self._connected = False
        self._disconnected = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}:{self.name}>"

    # --- driven by the concrete implementations -------------------------
    def _on_event(self, event: str, args: list | tuple) -> None:
        with self._cond:
            self._inbox[event].append(args[0] if args else None)
            self._cond.notify_all()

    def _on_connect(self) -> None:
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, reason: str) -> None:
        with self._cond:
            self._connected = False
            self._disconnected = True
            self.disconnect_reason = reason
            self._cond.notify_all()

    def _debug_info(self) -> str:
        """Extra context for timeout messages (e.g. Node stderr)."""
        return ""

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
        with self._cond:
            if self._cond.wait_for(predicate, timeout):
                return
            pending = {k: len(v) for k, v in self._inbox.items() if v}
            connected = self._connected
        raise TimeoutError(
            f"{self!r}: timed out after {timeout}s waiting for {what}; "
            f"connected={connected}, unconsumed events={pending}{self._debug_info()}"
        )

    # --- the interface ---------------------------------------------------
    @abstractmethod
    def connect(self, url: str, transport: str = "websocket", timeout: float = 5.0) -> None:
        """Connect to `url`; raises ConnectionFailed. transport: websocket|polling|upgrade."""

    @abstractmethod
    def emit(self, event: str, *args: Any) -> None:
        """Send an event to the server (bytes are sent as binary)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect from the client side; safe to call more than once."""

    def wait_for(self, event: str, timeout: float = 5.0) -> Any:
        """First argument of the oldest unconsumed `event` (None if it had no args)."""
        self._wait(lambda: bool(self._inbox[event]), timeout, f"event {event!r}")
        with self._cond:
            return self._inbox[event].popleft()

    def received(self, event: str) -> list:
        """All unconsumed first arguments of `event`, consuming them; never blocks."""
        with self._cond:
            items = list(self._inbox[event])
            self._inbox[event].clear()
            return items

    def wait_disconnected(self, timeout: float = 5.0) -> None:
        """Return once the connection is gone (server disconnect or dropped transport)."""
        self._wait(lambda: self._disconnected, timeout, "disconnect")

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    @abstractmethod
    def transport(self) -> str | None:
        """Current engine.io transport ("polling"/"websocket"), None when not connected."""


class InOrderEngineClient(engineio.Client):
    """python-engineio runs every message handler in a new thread, so events that arrive back to
    back can be recorded out of order; the tests check the server's order, so messages are
    handled on the reading thread, as they arrive (the legacy puppet does the same)."""

    def _trigger_event(self, event, *args, **kwargs):
        kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return InOrderEngineClient


class PythonClient(Client):
    """python-socketio's threaded client, without reconnection; events recorded in arrival order."""

    kind = "python"
    _names = itertools.count(1)

    def __init__(self) -> None:
        super().__init__(f"py{next(self._names)}")
        self._sio = InOrderClient(reconnection=False)
        self._sio.on("*", lambda event, *args: self._on_event(event, args))
        self._sio.on("connect", self._on_connect)
        self._sio.on("disconnect", lambda reason=None: self._on_disconnect(str(reason)))

    def connect(self, url: str, transport: str = "websocket", timeout: float = 5.0) -> None:
        # engine.io's python client only upgrades if "websocket" is in transports,
        # so ["polling"] stays on polling.
        try:
            self._sio.connect(url, transports=_transport_list(transport), wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as exc:
            raise ConnectionFailed(f"{self!r} could not connect to {url} ({transport}): {exc}") from exc

    def emit(self, event: str, *args: Any) -> None:
        self._sio.emit(event, args)  # a tuple is sent as that many arguments

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sio.disconnect()

    @property
    def transport(self) -> str | None:
        return self._sio.transport() if self.connected else None


# --- Node clients --------------------------------------------------------

_BYTES_KEY = "$bytes_b64"


def _to_wire(value: Any) -> Any:
    """bytes -> {"$bytes_b64": ...} so binary survives the JSON-lines pipe."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


def _from_wire(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {_BYTES_KEY}:
            return base64.b64decode(value[_BYTES_KEY])
        return {k: _from_wire(v) for k, v in value.items()}
    return value


class LinePuppet:
    """One long-lived client process speaking JSON lines, hosting many named sockets.

    A single process keeps interpreter startup cost out of every test.
    """

    def __init__(self, kind: str, command: list[str], label: str, ready_timeout: float = 15.0) -> None:
        self.kind = kind
        self.module = label
        self.errors: list[dict] = []  # {"type":"error"} reports not tied to a socket
        self.version: str | None = None
        self._clients: dict[str, NodeClient] = {}
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stderr: deque[str] = deque(maxlen=200)  # last lines, for error messages
        self._proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"puppet-{kind}", daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        if not self._ready.wait(ready_timeout):
            self.close()
            raise RuntimeError(f"puppet ({self.module}) did not start{self.debug_info()}")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                self.errors.append({"type": "error", "message": f"unparsable output: {line!r}"})
                continue
            if msg.get("type") == "ready":
                self.version = msg.get("version")
                self._ready.set()
                continue
            client = self._clients.get(msg.get("name", ""))
            if client is not None:
                client._on_puppet_message(msg)
            else:
                self.errors.append(msg)
        # stdout closed: the puppet is gone, so every live socket is too.
        for client in list(self._clients.values()):
            client._on_disconnect("puppet exited")

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def send(self, cmd: dict) -> None:
        """Write one command line; raises with Node's stderr if the puppet died."""
        with self._lock:
            if self._proc.poll() is not None or self._proc.stdin is None:
                raise RuntimeError(f"node puppet is not running{self.debug_info()}")
            try:
                self._proc.stdin.write(json.dumps(cmd, ensure_ascii=False) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise RuntimeError(f"node puppet pipe broke: {exc}{self.debug_info()}") from exc

    def stderr_tail(self, lines: int = 40) -> str:
        return "".join(list(self._stderr)[-lines:])

    def debug_info(self) -> str:
        parts = [f"\n  puppet: {self.module} {self.version or ''} exit={self._proc.poll()}"]
        if self.errors:
            parts.append(f"\n  puppet errors: {self.errors[-5:]}")
        stderr = self.stderr_tail().strip()
        if stderr:
            parts.append(f"\n  node stderr:\n{stderr}")
        return "".join(parts)

    def new_client(self, kind: str | None = None) -> NodeClient:
        kind = kind or self.kind
        client = NodeClient(self, f"{kind}-{next(self._names)}", kind)
        self._clients[client.name] = client
        return client

    def close(self, timeout: float = 5.0) -> None:
        """Ask the puppet to exit (closing all sockets); kill it if it won't."""
        if self._proc.poll() is None:
            try:
                self.send({"op": "exit"})
                self._proc.stdin.close()  # type: ignore[union-attr]
            except (RuntimeError, OSError):
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._reader.join(timeout)
        self._stderr_reader.join(timeout)


class NodePuppet(LinePuppet):
    """`node tests/node/puppet.js MODULE`: hosts Node clients of every kind in NODE_KINDS."""

    def __init__(self, kind: str = "node4", ready_timeout: float = 15.0) -> None:
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown node client kind {kind!r}; known: {list(NODE_KINDS)}")
        for module in NODE_KINDS.values():
            if not (NODE_MODULES / module).is_dir():
                raise RuntimeError(f"{NODE_MODULES / module} is missing: run `npm ci` in {REPO_ROOT}")
        super().__init__(kind, ["node", str(PUPPET_JS), NODE_KINDS[kind]], NODE_KINDS[kind], ready_timeout)


class LegacyPythonPuppet(LinePuppet):
    """tests/legacy_py/puppet.py under .venv-legacy: python-socketio 4.6.1 clients."""

    def __init__(self, ready_timeout: float = 15.0) -> None:
        python = LEGACY_VENV / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} is missing: run `scripts/setup.sh dev`")
        super().__init__(LEGACY_PY_KIND, [str(python), str(LEGACY_PY_PUPPET)], "python-socketio 4.6.1",
                         ready_timeout)


_legacy_py_puppet: LegacyPythonPuppet | None = None
_legacy_py_lock = threading.Lock()


def legacy_python_puppet() -> LegacyPythonPuppet:
    """The one python-socketio 4.6.1 puppet of this test process, started on first use."""
    global _legacy_py_puppet
    with _legacy_py_lock:
        if _legacy_py_puppet is None or _legacy_py_puppet._proc.poll() is not None:
            _legacy_py_puppet = LegacyPythonPuppet()
            atexit.register(_legacy_py_puppet.close)
        return _legacy_py_puppet


class NodeClient(Client):
    """A socket living in a puppet process (Node or legacy Python), driven over stdin/stdout."""

    def __init__(self, puppet: LinePuppet, name: str, kind: str | None = None) -> None:
        super().__init__(name)
        self.kind = kind or puppet.kind
        self._puppet = puppet
        self._connect_error: str | None = None
        self._transport: str | None = None

    def _on_puppet_message(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "event":
            self._on_event(msg["event"], _from_wire(msg.get("args", [])))
        elif kind in ("connect", "upgrade"):
            with self._cond:
                self._transport = msg.get("transport")
            if kind == "connect":
                self._on_connect()
        elif kind == "disconnect":
            self._on_disconnect(msg.get("reason", ""))
        elif kind == "connect_error":
            with self._cond:
                self._connect_error = msg.get("message", "")
                self._cond.notify_all()
        else:
            self._puppet.errors.append(msg)

    def _debug_info(self) -> str:
        return self._puppet.debug_info()

    @property
    def transport(self) -> str | None:
        with self._cond:
            return self._transport if self._connected else None

    def connect(self, url: str, transport: str = "websocket", timeout: float = 5.0) -> None:
        self._puppet.send({
            "op": "connect", "name": self.name, "url": url, "module": NODE_KINDS.get(self.kind),
            "transports": _transport_list(transport), "reconnection": False,
            "timeout": int(timeout * 1000),
        })
        deadline = time.monotonic() + timeout + 1.0  # let the client's own timeout fire first
        with self._cond:
            self._cond.wait_for(
                lambda: self._connected or self._disconnected or self._connect_error is not None,
                max(0.0, deadline - time.monotonic()),
            )
            if self._connected:
                return
            error = self._connect_error or self.disconnect_reason or "no answer"
        self.close()
        raise ConnectionFailed(f"{self!r} could not connect to {url} ({transport}): {error}")

    def emit(self, event: str, *args: Any) -> None:
        self._puppet.send({"op": "emit", "name": self.name, "event": event, "args": _to_wire(args)})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._puppet.send({"op": "close", "name": self.name})
        except RuntimeError:
            pass  # puppet already gone: the socket is gone with it


def make_client(kind: str, puppet: NodePuppet | None = None) -> Client:
    """A fresh, unconnected client of `kind`; node kinds need a NodePuppet (any node kind)."""
    if kind == "python":
        return PythonClient()
    if kind == LEGACY_PY_KIND:
        return legacy_python_puppet().new_client()
    if kind in NODE_KINDS:
        if not isinstance(puppet, NodePuppet):
            raise ValueError(f"client kind {kind!r} needs a NodePuppet")
        return puppet.new_client(kind)
    raise ValueError(f"unknown client kind {kind!r}; known: {CLIENT_KINDS}")
