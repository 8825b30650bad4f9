"""The interface every backend implements; services depend on this, never on a concrete one."""

from __future__ import annotations

from abc import ABC, abstractmethod

from gru.models import Node, UserId, UserKey


class Backend(ABC):
    """Shared state of a deployment: message ids, presence, node registry."""

    @abstractmethod
    def allocate_id(self, floor: int) -> int:
        """Return an id greater than every id returned before and not below ``floor``."""

    @abstractmethod
    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        """Record that connection ``conn_id`` of ``user`` is authenticated in ``group``."""

    @abstractmethod
    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        """Forget connection ``conn_id``; the user stays online while other connections remain."""

    @abstractmethod
    def online(self, group: str) -> list[UserId]:
        """Ids of the users with at least one connection in ``group``, each user once."""

    @abstractmethod
    def is_online(self, user: UserKey) -> bool:
        """Whether ``user`` has at least one authenticated connection anywhere."""

    @abstractmethod
    def register_node(self, node: Node) -> None:
        """Announce (or refresh) a long-connection node."""

    @abstractmethod
    def live_nodes(self) -> list[Node]:
        """The nodes that are currently alive, in no particular order."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and background tasks."""
