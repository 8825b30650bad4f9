"""Message ids: unique, increasing, and safe as JavaScript numbers.

An id is ``max(previous + 1, now_ms * 1000)``. The time floor keeps ids increasing across
restarts of whatever stores the previous id (the counter can only be lost, never go back
below the clock); the ``+ 1`` keeps them unique and increasing within a millisecond and when
the clock steps back. ``now_ms * 1000`` stays below 2**53 - 1 until the year 2255.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gru.backends.base import Backend

MAX_SAFE_INTEGER = 2**53 - 1
IDS_PER_MS = 1000


class IdAllocator:
    """Hands out message ids through the backend, which makes the ``max`` atomic."""

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self._backend = backend
        self._clock = clock

    def next_id(self) -> tuple[int, int]:
        """Return ``(id, create_time_ms)`` for a newly accepted message."""
        floor, now_ms = self.floor()
        return checked(self._backend.allocate_id(floor)), now_ms

    def floor(self) -> tuple[int, int]:
        """``(lowest id allowed now, create_time_ms)``, for a backend operation that allocates the id itself."""
        now_ms = int(self._clock() * 1000)
        return now_ms * IDS_PER_MS, now_ms


def checked(message_id: int) -> int:
    """The id, if JavaScript clients can hold it exactly."""
    if message_id > MAX_SAFE_INTEGER:
        raise OverflowError("message id exceeds 2**53 - 1")
    return message_id


def id_floor(seconds: float) -> int:
    """The smallest id that can have been issued at or after this Unix time."""
    return int(seconds * 1000) * IDS_PER_MS
