"""The simulated server's clock: whoever owns it moves it; nothing reads the wall clock."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from guard.sim import timegrid


class SimClock:
    """The server's notion of now; thread-safe, moved only by whoever owns it."""

    def __init__(self, now: datetime) -> None:
        self._lock = threading.Lock()
        self._now = timegrid.utc(now)

    def now(self) -> datetime:
        """The current simulated time (UTC)."""
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware; stored in UTC)."""
        with self._lock:
            self._now = timegrid.utc(moment)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new now."""
        with self._lock:
            self._now += delta
            return self._now
