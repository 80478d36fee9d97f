"""The leader lease's heartbeat: renewed in a thread of its own, independent of the tick.

The lease is short (``state.lease_ttl_s``, 15 s) so a standby takes over soon after a leader
dies or is paused; the heartbeat renews it every third of that, so a tick longer than the
TTL keeps it. A standby's heartbeat tries to take the lease at the same pace and, when it
does, asks for a tick at once (``on_gain``): takeover within one TTL and one beat. A paused
process pauses its heartbeat too, so its lease lapses and the fence stops it on resuming.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from guard.errors import GuardError
from guard.shell.ports import LeasePort
from guard.shell.tick import LEADER

log = logging.getLogger(__name__)


class Heartbeat:
    """Holds the leader lease for ``holder`` from a daemon thread, every ``ttl / 3``."""

    def __init__(self, lease: LeasePort, holder: str, ttl: timedelta,
                 clock: Callable[[], datetime],
                 on_gain: Callable[[], None] | None = None) -> None:
        self.lease, self.holder, self.ttl, self.clock = lease, holder, ttl, clock
        self.on_gain = on_gain
        self.token: int | None = None
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> int | None:
        """Hold (renew or take) the lease once; the epoch held, or ``None`` on standby."""
        try:
            token = self.lease.hold(LEADER, self.holder, self.clock(), self.ttl)
        except GuardError as exc:
            log.warning("leader lease heartbeat failed (the lease lapses on its own): %s", exc)
            token = None
        self.beats += 1
        gained = token is not None and token != self.token
        self.token = token
        if gained:
            log.info("leader lease held by %s at epoch %d", self.holder, token)
            if self.on_gain is not None:
                self.on_gain()
        return token

    def start(self) -> Heartbeat:
        """Beat now, then every third of the TTL until ``stop``."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the lease is released or lapses)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl.total_seconds())

    def _run(self) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            self.beat()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
