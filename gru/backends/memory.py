"""In-process backend: the embedded default and the fast path for single-process tests."""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from collections.abc import Callable

from gru.backends.base import (
    FORBIDDEN,
    OFFLINE,
    QUEUED,
    SENT,
    Backend,
    Broadcast,
    Placement,
    Routed,
    Unicast,
    rank_nodes,
    salt,
)
from gru.models import Instance, Node, UserId, UserKey


class MemoryBackend(Backend):
    """All state in dictionaries of this process; correct only for one worker."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_id = 0
        self._groups: dict[str, dict[UserKey, dict[str, UserId]]] = {}
        self._user_conns: dict[UserKey, dict[str, str]] = {}  # user → conn → group
        self._nodes: dict[str, Node] = {}
        self._last_groups: dict[UserKey, tuple[str, float]] = {}
        self._history: dict[str, list[tuple[int, dict]]] = {}
        self._dropped: dict[str, int] = {}  # stream → highest id dropped by the bounds
        self._offline: dict[UserKey, list[tuple[int, dict, int]]] = {}

    def allocate_id(self, floor: int) -> int:
        with self._lock:
            return self._allocate(floor)

    def broadcast(self, message: Broadcast) -> int:
        with self._lock:
            message_id = self._allocate(message.floor)
            kept = message.kept
            if kept is not None:
                self._append(kept.stream, message_id, {"id": message_id, **message.body}, kept.size, kept.min_id)
            return message_id  # every connection is in this process: nothing to relay

    def unicast(self, message: Unicast) -> Routed:
        user = message.user
        with self._lock:
            groups = set(self._user_conns.get(user, {}).values())
            if message.scope_group is not None and message.scope_group not in (groups or {self._last_group(user)}):
                return Routed(FORBIDDEN, 0)
            if not groups and not message.queue_until_ms:
                return Routed(OFFLINE, 0)
            message_id = self._allocate(message.floor)
            body = {"id": message_id, **message.body}
            if message.kept is not None:
                kept = message.kept
                self._append(kept.stream, message_id, body, kept.size, kept.min_id)
            if groups:
                return Routed(SENT, message_id)  # every connection is in this process: nothing to relay
            self._queue(user, message_id, body, message.queue_until_ms, message.queue_size)
            return Routed(QUEUED, message_id)

    def _allocate(self, floor: int) -> int:
        self._last_id = max(self._last_id + 1, floor)
        return self._last_id

    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        with self._lock:
            self._groups.setdefault(group, {}).setdefault(user, {})[conn_id] = display_id
            self._user_conns.setdefault(user, {})[conn_id] = group

    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        with self._lock:
            members = self._groups.get(group, {})
            conns = members.get(user, {})
            conns.pop(conn_id, None)
            if not conns:
                members.pop(user, None)
            if not members:
                self._groups.pop(group, None)
            user_conns = self._user_conns.get(user, {})
            user_conns.pop(conn_id, None)
            if not user_conns:
                self._user_conns.pop(user, None)

    def online(self, group: str) -> list[UserId]:
        with self._lock:
            members = self._groups.get(group, {})
            return [next(iter(conns.values())) for conns in members.values()]

    def online_groups(self, user: UserKey) -> set[str]:
        with self._lock:
            return set(self._user_conns.get(user, {}).values())

    def remember_group(self, user: UserKey, group: str, ttl: float) -> None:
        with self._lock:
            self._last_groups[user] = (group, self._clock() + ttl)

    def last_group(self, user: UserKey) -> str | None:
        with self._lock:
            return self._last_group(user)

    def _last_group(self, user: UserKey) -> str | None:
        group, until = self._last_groups.get(user, (None, 0.0))
        return group if until > self._clock() else None

    def history_append(self, stream: str, message_id: int, body: dict, size: int, ttl: float, min_id: int) -> None:
        with self._lock:
            self._append(stream, message_id, body, size, min_id)

    def _append(self, stream: str, message_id: int, body: dict, size: int, min_id: int) -> None:
        entries = self._history.setdefault(stream, [])
        if not entries or message_id > entries[-1][0]:
            entries.append((message_id, body))  # ids grow: the usual case needs no search
        else:
            bisect.insort(entries, (message_id, body), key=_entry_id)
        expired = bisect.bisect_left(entries, min_id, key=_entry_id) if entries[0][0] < min_id else 0
        keep_from = max(len(entries) - size, expired)
        if keep_from > 0:
            self._dropped[stream] = max(self._dropped.get(stream, 0), entries[keep_from - 1][0])
            del entries[:keep_from]

    def history_since(self, streams: list[str], after_id: int, min_id: int) -> tuple[list[dict], bool]:
        with self._lock:
            found = [entry for stream in streams for entry in self._history.get(stream, [])
                     if entry[0] > after_id and entry[0] >= min_id]
            dropped = max((self._dropped.get(stream, 0) for stream in streams), default=0)
        complete = dropped <= after_id and after_id >= min_id
        return [body for _, body in sorted(found, key=lambda entry: entry[0])], complete

    def offline_push(self, user: UserKey, message_id: int, body: dict, expire_at_ms: int, size: int) -> None:
        with self._lock:
            self._queue(user, message_id, body, expire_at_ms, size)

    def _queue(self, user: UserKey, message_id: int, body: dict, expire_at_ms: int, size: int) -> None:
        queue = self._offline.setdefault(user, [])
        bisect.insort(queue, (message_id, body, expire_at_ms), key=lambda entry: entry[0])
        del queue[:-size]  # the lowest ids go first, as in Redis

    def offline_take(self, user: UserKey, now_ms: int) -> list[dict]:
        with self._lock:
            queue = self._offline.pop(user, [])
        return [body for _, body, expire_at in queue if expire_at > now_ms]

    def heartbeat(self, instance: Instance) -> None:
        with self._lock:  # the report counts the tickets that came: nothing is pending any more
            self._nodes[instance.node] = Node(instance.node, instance.addr, instance.connections, instance.state,
                                              instance.capacity, instance.weight)

    def live_nodes(self) -> list[Node]:
        with self._lock:
            return list(self._nodes.values())

    def place(self) -> Placement:
        with self._lock:
            placement = rank_nodes(list(self._nodes.values()), salt())
            if not placement.nodes:
                return placement
            chosen = placement.nodes[0]
            chosen = self._nodes[chosen.name] = dataclasses.replace(chosen, pending=chosen.pending + 1)
            return placement._replace(nodes=[chosen, *placement.nodes[1:]])

    def sweep_dead_instances(self) -> int:
        return 0  # one process: nothing can die without taking this state along

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the state goes with the process."""


def _entry_id(entry: tuple) -> int:
    return entry[0]
