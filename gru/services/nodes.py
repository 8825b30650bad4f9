"""Which long-connection node a ticket names, and which it offers as backups."""

from __future__ import annotations

from gru.backends.base import Backend
from gru.errors import Code, GruError
from gru.models import Node


class NodeDirectory:
    """Chooses among live, non-draining nodes, least loaded first."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def announce(self, node: Node) -> None:
        """Register this process's node so tickets can name it."""
        self._backend.register_node(node)

    def choose(self) -> tuple[Node, list[Node]]:
        """Return ``(primary, backups)``; raise ``UNAVAILABLE`` when no node is live."""
        candidates = [n for n in self._backend.live_nodes() if n.state == "up"]
        if not candidates:
            raise GruError(Code.UNAVAILABLE, "no live long-connection node")
        candidates.sort(key=lambda n: (n.connections, n.name))
        return candidates[0], candidates[1:]
