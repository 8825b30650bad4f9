"""In-process backend: the embedded default and the fast path for single-process tests."""

from __future__ import annotations

import threading

from gru.backends.base import Backend
from gru.models import Instance, Node, UserId, UserKey


class MemoryBackend(Backend):
    """All state in dictionaries of this process; correct only for one worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._groups: dict[str, dict[UserKey, dict[str, UserId]]] = {}
        self._user_conns: dict[UserKey, set[str]] = {}
        self._nodes: dict[str, Node] = {}

    def allocate_id(self, floor: int) -> int:
        with self._lock:
            self._last_id = max(self._last_id + 1, floor)
            return self._last_id

    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        with self._lock:
            self._groups.setdefault(group, {}).setdefault(user, {})[conn_id] = display_id
            self._user_conns.setdefault(user, set()).add(conn_id)

    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        with self._lock:
            members = self._groups.get(group, {})
            conns = members.get(user, {})
            conns.pop(conn_id, None)
            if not conns:
                members.pop(user, None)
            if not members:
                self._groups.pop(group, None)
            user_conns = self._user_conns.get(user, set())
            user_conns.discard(conn_id)
            if not user_conns:
                self._user_conns.pop(user, None)

    def online(self, group: str) -> list[UserId]:
        with self._lock:
            members = self._groups.get(group, {})
            return [next(iter(conns.values())) for conns in members.values()]

    def is_online(self, user: UserKey) -> bool:
        with self._lock:
            return bool(self._user_conns.get(user))

    def heartbeat(self, instance: Instance) -> None:
        with self._lock:
            self._nodes[instance.node] = Node(instance.node, instance.addr, instance.connections, instance.state)

    def live_nodes(self) -> list[Node]:
        with self._lock:
            return list(self._nodes.values())

    def sweep_dead_instances(self) -> int:
        return 0  # one process: nothing can die without taking this state along

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the state goes with the process."""
