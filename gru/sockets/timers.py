"""One greenlet for many timers of the same delay, instead of a sleeping greenlet per connection.

python-engineio starts a greenlet per connection that sleeps ``ping_interval`` before every
ping, and the auth timeout was one more per new connection: two saved stacks per idle
connection (about 5 KiB) and a spawn per ping. All of those timers have the same delay, so
they expire in the order they were set: a queue ordered by arrival *is* ordered by due time,
and one greenlet can serve it, waking up once per batch of due items.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

SLACK_SECONDS = 0.05  # items due this close together are handled in one wake-up


class FixedDelayTimer:
    """``add(item)`` runs ``callback(item)`` about ``delay`` seconds later, in ``add`` order."""

    def __init__(self, delay: float, callback: Callable[[object], None],
                 spawn: Callable[..., object], sleep: Callable[[float], None]) -> None:
        self.delay = delay
        self._callback = callback
        self._spawn = spawn
        self._sleep = sleep
        self._due: deque = deque()
        self._running = False

    def __len__(self) -> int:
        return len(self._due)

    def add(self, item: object) -> None:
        self._due.append((time.monotonic() + self.delay, item))
        if not self._running:
            self._running = True
            self._spawn(self._run)

    def _run(self) -> None:
        due = self._due
        try:
            while due:
                wait = due[0][0] - time.monotonic()
                if wait > SLACK_SECONDS:
                    self._sleep(wait)
                    continue
                _, item = due.popleft()
                try:
                    self._callback(item)
                except Exception:  # noqa: BLE001 - one item's failure must not stop the others
                    log.exception("timer callback failed")
        finally:
            self._running = False
