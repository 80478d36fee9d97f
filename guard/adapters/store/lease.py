"""The leader lease: one replica acts, the others stand by (DESIGN §6)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from guard.adapters.store.engine import Store, epoch, insert_new
from guard.adapters.store.schema import leases


class Lease:
    """A named lease in the store, held by one holder until it expires."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def hold(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Hold (or renew) the lease ``name``; False while another live holder has it."""
        with self.store.writing() as conn:
            renewed = conn.execute(leases.update().where(
                leases.c.name == name,
                sa.or_(leases.c.holder == holder, leases.c.expires_at <= epoch(now)))
                .values(holder=holder, expires_at=epoch(now + ttl)))
            if renewed.rowcount == 1:
                return True
        with self.store.writing() as conn:
            return insert_new(conn, leases, {"name": name, "holder": holder,
                                              "expires_at": epoch(now + ttl)}, "name")

    def release(self, name: str, holder: str) -> bool:
        """Give the lease ``name`` up if ``holder`` has it (a clean exit); True if it did."""
        with self.store.writing() as conn:
            gone = conn.execute(leases.delete().where(leases.c.name == name,
                                                      leases.c.holder == holder))
        return gone.rowcount == 1
