"""How many Admin API requests the reads that can wait may still make in this refresh.

A steady tick makes at most ``STEADY_REQUESTS`` requests: the minute window's, and one read
that can wait a tick (a billed poll or sweep, an hour's revision, a cost re-read, the daily
directory). Each such read asks first; refused, it stays due and a later tick makes it, so
nothing is skipped, only spread. A refresh that backfills is not steady: nothing waits.
"""

from __future__ import annotations

from guard.shell.ports import AdminReports

STEADY_REQUESTS = 2


class Spare:
    """Whether a read that can wait may make its requests now (``limit`` ``None``: always)."""

    def __init__(self, client: AdminReports, limit: int | None = STEADY_REQUESTS) -> None:
        self.client = client
        self.limit = limit
        self.start = client.requests

    def take(self) -> bool:
        """True while this refresh has made fewer than ``limit`` requests."""
        return self.limit is None or self.client.requests - self.start < self.limit



def may_read(spare: Spare | None) -> bool:
    """Whether a read that can wait may read now (``None``: no limit)."""
    return spare is None or spare.take()
