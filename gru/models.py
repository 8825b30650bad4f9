"""Small frozen values shared by every layer.

The values made for every message (user keys, messages) are named tuples: immutable like the
frozen dataclasses, and several times cheaper to create on the message path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

UserId = int | str


class UserKey(NamedTuple):
    """A user as the system addresses them: id (normalised to text) and type."""

    id: str
    type: int


@dataclass(frozen=True, slots=True)
class Identity:
    """What a valid ``token2`` proves: who the holder is, until when."""

    user_id: str
    user_type: int
    user_name: str
    expires_at: float

    @property
    def key(self) -> UserKey:
        return UserKey(self.user_id, self.user_type)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated connection: who, in which group, and the id as the user sent it."""

    conn_id: str
    identity: Identity
    group: str
    display_id: UserId

    @property
    def user(self) -> UserKey:
        return self.identity.key


class Message(NamedTuple):
    """An accepted message, ready for the wire."""

    id: int
    create_time: int
    content: str
    sender: Session
    expire_time: int = 0
    queued: bool = False  # kept for an offline target rather than delivered now

    def as_wire(self) -> dict:
        """The ``msg`` event body of the contract (with the allowed ``from`` addition)."""
        return {
            "id": self.id,
            "createTime": self.create_time,
            "content": self.content,
            "expireTime": self.expire_time,
            "from": {
                "id": self.sender.display_id,
                "type": self.sender.identity.user_type,
                "name": self.sender.identity.user_name,
            },
        }


@dataclass(frozen=True, slots=True)
class Node:
    """A long-connection node as the ticket service sees it (all its worker processes together).

    ``capacity``: connections its processes accept together (0: unbounded); ``weight``: its share
    of new connections relative to other nodes; ``pending``: tickets naming it since its processes
    last reported, which may still become connections."""

    name: str
    addr: str | None
    connections: int = 0
    state: str = "up"
    capacity: int = 0
    weight: float = 1.0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class Instance:
    """One worker process of a node: the unit that heart-beats and owns connections."""

    id: str
    node: str
    addr: str | None
    connections: int = 0
    state: str = "up"  # "up" or "draining"
    capacity: int = 0  # connections this process accepts (GRU_MAX_CONNECTIONS); 0: unbounded
    weight: float = 1.0  # GRU_NODE_WEIGHT of its node
