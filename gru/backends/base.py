"""The interface every backend implements; services depend on this, never on a concrete one."""

from __future__ import annotations

from abc import ABC, abstractmethod

from gru.models import Instance, Node, UserId, UserKey


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
    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        """Record that connection ``conn_id`` (of this process) of ``user`` is authenticated in ``group``."""

    @abstractmethod
    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        """Forget connection ``conn_id``; the user stays online while other connections remain."""

    @abstractmethod
    def online(self, group: str) -> list[UserId]:
        """Ids of the users with at least one live connection in ``group``, each user once."""

    @abstractmethod
    def is_online(self, user: UserKey) -> bool:
        """Whether ``user`` has at least one live authenticated connection anywhere."""

    @abstractmethod
    def heartbeat(self, instance: Instance) -> None:
        """Announce (or refresh) this process as part of a node; keeps its presence alive."""

    @abstractmethod
    def live_nodes(self) -> list[Node]:
        """The nodes with at least one live process, connections summed, in no particular order."""

    @abstractmethod
    def sweep_dead_instances(self) -> int:
        """Delete what crashed processes left behind; return how many were swept."""

    @abstractmethod
    def ping(self) -> bool:
        """Whether the shared state is reachable now."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and background tasks."""
