"""A loopback TCP proxy whose "network" a test can cut silently (no FIN, no RST) and restore."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port; ``blackhole()`` stops all traffic without closing."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole(self) -> None:
        """Stop forwarding on every current connection; both ends see silence, as in a dead network."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Drop the silenced connections (their peers already gave up) and forward new ones again."""
        with self._lock:
            stale, self._sockets = self._sockets, []
        for sock in stale:
            sock.close()
        self._forwarding.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.restore()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            generation = self._forwarding.is_set()
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, generation), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, live: bool) -> None:
        try:
            while live:
                data = src.recv(65536)
                if not data or not self._forwarding.is_set():
                    break  # silenced: stop reading and writing, keep both sockets open
                dst.sendall(data)
        except OSError:
            pass
