"""The daemon's heap between ticks: what the ticks keep is kept out of the collector's way.

A daemon keeps a month of day indexes, the minute window and each budget's forecast parts
between ticks: hundreds of thousands of long-lived objects that every full collection of
Python's cyclic garbage collector walks again, a few hundred milliseconds at 1,000 budgets,
whenever enough new objects survived. After each tick ``settle`` collects what that tick left
(only objects not frozen yet are walked) and freezes the survivors (``gc.freeze``), so later
collections walk only what is new. Frozen objects are still freed by reference counting when
let go; only a cycle among them would wait, so every ``full_every`` ticks everything is
unfrozen and collected once.
"""

from __future__ import annotations

import gc
import threading

FULL_EVERY = 60
"""Ticks between full collections of everything (an hour at the default interval)."""


class Heap:
    """Settles the heap after each tick; safe to call from several ticks' threads."""

    def __init__(self, full_every: int = FULL_EVERY) -> None:
        self.full_every = full_every
        self.settled = 0
        self._lock = threading.Lock()

    def settle(self) -> None:
        """Collect what the last tick left behind and freeze what lives on."""
        with self._lock:
            self.settled += 1
            if self.settled % self.full_every == 0:
                gc.unfreeze()
            gc.collect()
            gc.freeze()
