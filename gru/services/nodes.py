"""Which long-connection node a ticket names, and how a node keeps itself on that list."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gru.backends.base import Backend, BackendUnavailable
from gru.errors import Code, GruError
from gru.models import Instance, Node

log = logging.getLogger(__name__)


class NodeDirectory:
    """Chooses among live, non-draining nodes, least loaded first."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def choose(self) -> tuple[Node, list[Node]]:
        """Return ``(primary, backups)``; raise ``UNAVAILABLE`` when no node is live."""
        try:
            nodes = self._backend.live_nodes()
        except BackendUnavailable:
            raise GruError(Code.UNAVAILABLE, "node registry is unavailable") from None
        candidates = [n for n in nodes if n.state == "up"]
        if not candidates:
            raise GruError(Code.UNAVAILABLE, "no live long-connection node")
        candidates.sort(key=lambda n: (n.connections, n.name))
        return candidates[0], candidates[1:]


class NodeHeartbeat:
    """Announces this worker process of a node every ``interval`` seconds; a dead one is forgotten.

    Every ``sweep_every`` beats it also clears what crashed processes left in the shared state.
    """

    def __init__(self, backend: Backend, instance_id: str, node: str, addr: str | None,
                 connections: Callable[[], int], interval: float, sweep_every: int = 5) -> None:
        self._backend = backend
        self._instance_id = instance_id
        self._node = node
        self._addr = addr
        self._connections = connections
        self.interval = interval
        self._sweep_every = sweep_every
        self._beats = 0
        self._healthy: bool | None = None
        self.state = "up"

    def beat(self) -> bool:
        """One heartbeat; never raises, logs when the shared state goes away and comes back."""
        instance = Instance(self._instance_id, self._node, self._addr, self._connections(), self.state)
        try:
            self._backend.heartbeat(instance)
            self._beats += 1
            if self._beats % self._sweep_every == 0:
                self._backend.sweep_dead_instances()
        except BackendUnavailable as exc:
            if self._healthy is not False:
                log.error("heartbeat failed, node %s is invisible to tickets until it recovers: %s", self._node, exc)
            self._healthy = False
            return False
        if self._healthy is False:
            log.info("heartbeat recovered for node %s", self._node)
        self._healthy = True
        return True

    def run(self, sleep: Callable[[float], None]) -> None:
        """Beat forever (run it in a background greenlet)."""
        while True:
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any surprise
                log.exception("heartbeat crashed; retrying")
            sleep(self.interval)

    def drain(self) -> None:
        """Stop being handed out by tickets (the process is shutting down)."""
        self.state = "draining"
        self.beat()
