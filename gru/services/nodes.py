"""Which long-connection node a ticket names, and how a node keeps itself on that list."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gru.backends.base import Backend, BackendUnavailable
from gru.errors import Code, GruError
from gru.models import Instance, Node

log = logging.getLogger(__name__)


class NodeDirectory:
    """Chooses the node for each ticket (see :func:`gru.backends.base.rank_nodes`): least loaded per
    unit of weight, counting the tickets already handed out, never a draining or full node.

    Every refusal is logged at WARNING with its cause: the first at once, then at most one line
    per ``log_every`` seconds with the number of refusals since, so a burst cannot flood the log.
    """

    def __init__(self, backend: Backend, log_every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._backend = backend
        self._log_every = log_every
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    def choose(self) -> tuple[Node, list[Node]]:
        """Return ``(primary, backups)`` and count the ticket against the primary; raise ``UNAVAILABLE``
        when the registry cannot be read or no live node has room."""
        try:
            placement = self._backend.place()
        except BackendUnavailable as exc:
            self._refused("node registry is unavailable: %s", exc)
            raise GruError(Code.UNAVAILABLE, "node registry is unavailable") from None
        if placement.nodes:
            return placement.nodes[0], placement.nodes[1:]
        if placement.full:
            self._refused("every live node is full (%d at capacity)", placement.full)
            raise GruError(Code.UNAVAILABLE, "every long-connection node is full, try again later")
        self._refused("no live long-connection node")
        raise GruError(Code.UNAVAILABLE, "no live long-connection node")

    def _refused(self, reason: str, *args: object) -> None:
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._log_every:
            self._unlogged += 1
            return
        since = f" ({self._unlogged} more refused since the last line)" if self._unlogged else ""
        log.warning("ticket refused: " + reason + "%s", *args, since)
        self._logged_at, self._unlogged = now, 0


class NodeHeartbeat:
    """Announces this worker process of a node every ``interval`` seconds, with its connections,
    ``capacity`` (0: unbounded) and its node's ``weight``; a dead one is forgotten.

    Every ``sweep_every`` beats it also clears what crashed processes left in the shared state.
    """

    def __init__(self, backend: Backend, instance_id: str, node: str, addr: str | None,
                 connections: Callable[[], int], interval: float, sweep_every: int = 5,
                 capacity: int = 0, weight: float = 1.0) -> None:
        self._backend = backend
        self._capacity, self._weight = capacity, weight
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
        instance = Instance(self._instance_id, self._node, self._addr, self._connections(), self.state,
                            self._capacity, self._weight)
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
