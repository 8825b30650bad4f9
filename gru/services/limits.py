"""Limits that keep one misbehaving client from hurting the class: event rates and connection counts."""

from __future__ import annotations

import time
from collections.abc import Callable

from gru.errors import Code, GruError


class TokenBucket:
    """``rate`` events per second on average, bursts of up to ``burst``."""

    __slots__ = ("_rate", "_burst", "_tokens", "_stamp", "_clock")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ConnectionLimits:
    """Admission of new sessions: a cap per process, and per client address while unauthenticated.

    A session is counted from its handshake until it authenticates or closes, whether or not it
    ever joins Socket.IO: otherwise sessions that never go further would escape both caps. A
    refused session lives just long enough to be told why (its Socket.IO connect gets the error)
    and still counts; an address already holding twice its allowance is refused outright.
    """

    def __init__(self, max_connections: int, max_pending_per_address: int) -> None:
        self._max_connections = max_connections
        self._max_pending = max_pending_per_address
        self._pending: dict[str, int] = {}

    def admit(self, open_connections: int, address: str) -> GruError | None:
        """Count a new session of ``address``: None when admitted, else the refusal to tell it.

        Raises ``TOO_MANY_PENDING`` (and counts nothing) when the address is over twice its
        allowance: such a session is not even created.
        """
        held = self._pending.get(address, 0)
        if held >= 2 * self._max_pending:
            raise GruError(Code.TOO_MANY_PENDING)
        self._pending[address] = held + 1
        if open_connections > self._max_connections:
            return GruError(Code.NODE_FULL)
        if held >= self._max_pending:
            return GruError(Code.TOO_MANY_PENDING)
        return None

    def settled(self, address: str) -> None:
        """The counted session authenticated or went away."""
        count = self._pending.get(address, 0) - 1
        if count > 0:
            self._pending[address] = count
        else:
            self._pending.pop(address, None)
