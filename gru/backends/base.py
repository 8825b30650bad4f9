"""The interface every backend implements; services depend on this, never on a concrete one."""

from __future__ import annotations

import hashlib
import secrets
from abc import ABC, abstractmethod
from typing import NamedTuple

from gru.models import Instance, Node, UserId, UserKey

SENT, QUEUED, OFFLINE, FORBIDDEN = "sent", "queued", "offline", "forbidden"


class Kept(NamedTuple):
    """Where a message is kept for recovery: the newest ``size`` of ``stream``, none below ``min_id``,
    the stream forgotten after ``ttl`` idle seconds."""

    stream: str
    size: int
    ttl: float
    min_id: int


class Unicast(NamedTuple):
    """A unicast for :meth:`Backend.unicast`: everything one atomic step needs to decide and record it.

    ``body`` is the wire body without ``id``: the backend allocates the id (at least ``floor``) and
    puts it first. ``scope_group``, when given, admits the message only if the target is online in
    that group or, when offline, was last seen there. ``queue_until_ms`` (0: refuse when offline)
    keeps it for an offline target, at most ``queue_size`` per user."""

    user: UserKey
    body: dict
    floor: int
    kept: Kept | None
    scope_group: str | None = None
    queue_until_ms: int = 0
    queue_size: int = 0


class Broadcast(NamedTuple):
    """A broadcast for :meth:`Backend.broadcast`: ``body`` is the wire body without ``id`` (the backend
    allocates it, at least ``floor``, and puts it first); ``sender_conn`` is the connection it came
    from, which does not get it back."""

    group: str
    body: dict
    floor: int
    kept: Kept | None
    sender_conn: str | None = None


class Routed(NamedTuple):
    """What became of a unicast: ``SENT``, ``QUEUED``, ``OFFLINE`` or ``FORBIDDEN``, and its id (0 if refused)."""

    outcome: str
    message_id: int


class Placement(NamedTuple):
    """The nodes one ticket names: ``nodes`` holds the chosen node first (the ticket already counted
    against it), then the backups in the order they would be chosen next; empty when no live, up
    node has room. ``full`` counts the live, up nodes left out because they are at capacity."""

    nodes: list[Node]
    full: int = 0


def salt() -> str:
    """A fresh random salt for :func:`rank_nodes`."""
    return secrets.token_hex(4)


def rank_nodes(nodes: list[Node], salt: str) -> Placement:
    """The placement rule, which every backend applies in one atomic step with the ticket's count.

    Load is connections plus pending tickets; a node is chosen by its load after one more
    connection per unit of weight, ``(load + 1) / weight``, so a burst fills nodes in proportion
    to their weights. Draining nodes and nodes at capacity are left out. Equal scores are ordered
    by ``sha1(salt + name)``, a shuffle that changes with every ticket's random ``salt``: tickets
    of a burst spread over equal nodes, and so do their backups, so a failover burst spreads too.
    """
    up = [node for node in nodes if node.state == "up"]
    room = [node for node in up if not node.capacity or node.connections + node.pending < node.capacity]
    room.sort(key=lambda node: ((node.connections + node.pending + 1) / node.weight,
                                hashlib.sha1(f"{salt}{node.name}".encode()).hexdigest()))
    return Placement(room, len(up) - len(room))


class BackendUnavailable(Exception):
    """The shared state cannot be reached right now (e.g. Redis is down); callers report it."""


class Backend(ABC):
    """Shared state of a deployment: message ids, presence, node registry.

    Presence writes never fail for the caller: a backend that cannot reach its store keeps
    the change and replays it when the store is back. Reads and id allocation raise
    :class:`BackendUnavailable` instead of answering wrongly.
    """

    @abstractmethod
    def allocate_id(self, floor: int) -> int:
        """Return an id greater than every id returned before and not below ``floor``."""

    @abstractmethod
    def unicast(self, message: Unicast) -> Routed:
        """Check the target's presence (and the scope), allocate an id, keep the message in history
        and either queue it (target offline) or relay it to the *other* processes holding the target,
        all in one step, so a unicast costs one round trip to the shared state. Delivering to the
        target's connections in this process is left to the caller, after ``SENT``."""

    @abstractmethod
    def broadcast(self, message: Broadcast) -> int:
        """Allocate an id, keep the message in history and relay it to every *other* process, in one
        step, so a broadcast costs one round trip to the shared state; return the id. Delivering to
        the group's connections in this process is left to the caller."""

    @abstractmethod
    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        """Record that connection ``conn_id`` (of this process) of ``user`` is authenticated in ``group``."""

    @abstractmethod
    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        """Forget connection ``conn_id``; the user stays online while other connections remain."""

    @abstractmethod
    def online(self, group: str) -> list[UserId]:
        """Ids of the users with at least one live connection in ``group``, each user once."""

    def is_online(self, user: UserKey) -> bool:
        """Whether ``user`` has at least one live authenticated connection anywhere."""
        return bool(self.online_groups(user))

    @abstractmethod
    def online_groups(self, user: UserKey) -> set[str]:
        """The groups in which ``user`` has a live authenticated connection (empty when offline)."""

    @abstractmethod
    def remember_group(self, user: UserKey, group: str, ttl: float) -> None:
        """Remember the group a user last authenticated in, for ``ttl`` seconds."""

    @abstractmethod
    def last_group(self, user: UserKey) -> str | None:
        """The group a user last authenticated in, if remembered."""

    @abstractmethod
    def history_append(self, stream: str, message_id: int, body: dict, size: int, ttl: float, min_id: int) -> None:
        """Keep ``body`` in ``stream``'s history: the newest ``size`` entries with an id of at least
        ``min_id``; an idle stream is forgotten after ``ttl`` seconds."""

    @abstractmethod
    def history_since(self, streams: list[str], after_id: int, min_id: int) -> tuple[list[dict], bool]:
        """Kept messages of ``streams`` with an id above ``after_id``, in id order, and whether that is
        complete: nothing above ``after_id`` was dropped, and ``after_id`` is not older than ``min_id``."""

    @abstractmethod
    def offline_push(self, user: UserKey, message_id: int, body: dict, expire_at_ms: int, size: int) -> None:
        """Queue a message for an offline user until ``expire_at_ms`` (at most ``size`` kept)."""

    @abstractmethod
    def offline_take(self, user: UserKey, now_ms: int) -> list[dict]:
        """Remove and return the user's queued, unexpired messages in id order (each is taken once)."""

    @abstractmethod
    def heartbeat(self, instance: Instance) -> None:
        """Announce (or refresh) this process as part of a node; keeps its presence alive."""

    @abstractmethod
    def live_nodes(self) -> list[Node]:
        """The nodes with at least one live process, connections summed, in no particular order."""

    @abstractmethod
    def place(self) -> Placement:
        """Choose the node for one ticket by :func:`rank_nodes` and count the ticket as pending on it,
        in one atomic step (several ticket processes agree); a node's pending count restarts from
        what it reports at its heartbeats, whose connections include the tickets that came."""

    @abstractmethod
    def sweep_dead_instances(self) -> int:
        """Delete what crashed processes left behind; return how many were swept."""

    @abstractmethod
    def ping(self) -> bool:
        """Whether the shared state is reachable now."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and background tasks."""
