"""The port through which messaging hands messages to the transport (implemented by the socket layer)."""

from __future__ import annotations

from typing import Protocol

from gru.models import UserKey


class Delivery(Protocol):
    """Fan-out of an event body to a group or to every connection of a user."""

    def to_group(self, group: str, body: dict, exclude_conn: str | None) -> None:
        """Deliver ``body`` as ``msg`` to every connection in ``group`` except ``exclude_conn``."""

    def to_user(self, user: UserKey, body: dict) -> None:
        """Deliver ``body`` as ``msg`` to the connections of ``user`` in this process: the backend's
        unicast step has already relayed it to the other processes that hold the user."""
