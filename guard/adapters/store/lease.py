"""The leader lease: one replica acts, the others stand by (DESIGN §6).

Every change of holder raises the lease's ``epoch``, a fencing token: a holder checks its
epoch before each effect (``current``), so a leader that was paused past its lease and
resumed finds a newer epoch and does nothing more.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from guard.adapters.store.engine import Store, epoch, insert_new
from guard.adapters.store.schema import leases


class Lease:
    """A named lease in the store, held by one holder until it expires; with a ``scope``
    (an organization), every name is the row ``<name>:<scope>``."""

    def __init__(self, store: Store, scope: str | None = None) -> None:
        self.store = store
        self.scope = scope

    def row(self, name: str) -> str:
        """The row that holds the lease ``name`` in this scope."""
        return f"{name}:{self.scope}" if self.scope else name

    def hold(self, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
        """Hold (or renew) the lease ``name``: its epoch, or ``None`` while another live
        holder has it. Renewing keeps the epoch; taking it over raises it."""
        name = self.row(name)
        until = epoch(now + ttl)
        with self.store.writing() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
            if row is None:
                if insert_new(conn, leases, {"name": name, "holder": holder,
                                              "expires_at": until, "epoch": 1}, "name"):
                    return 1
                return None
            live = row.expires_at > epoch(now)
            if row.holder != holder and live:
                return None
            renewing = row.holder == holder and live
            token = (row.epoch or 0) + (0 if renewing else 1) or 1
            changed = conn.execute(leases.update().where(
                leases.c.name == name, leases.c.holder == row.holder,
                leases.c.expires_at == row.expires_at)
                .values(holder=holder, expires_at=until, epoch=token))
        return token if changed.rowcount == 1 else None

    def current(self, name: str, holder: str, token: int, now: datetime) -> bool:
        """Whether ``holder`` still holds ``name`` at epoch ``token``, unexpired at ``now``."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(leases).where(
                leases.c.name == self.row(name))).first()
        return (row is not None and row.holder == holder and (row.epoch or 0) == token
                and row.expires_at > epoch(now))

    def release(self, name: str, holder: str) -> bool:
        """Give the lease ``name`` up if ``holder`` has it (a clean exit); True if it did.
        The row stays, expired, so the next holder's epoch is higher still."""
        with self.store.writing() as conn:
            gone = conn.execute(leases.update().where(leases.c.name == self.row(name),
                                                      leases.c.holder == holder)
                                .values(expires_at=0))
        return gone.rowcount == 1

    def renew(self, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
        """Renew the lease ``name`` if ``holder`` has it, unexpired: its epoch; never takes
        it (``None`` otherwise)."""
        with self.store.writing() as conn:
            row = conn.execute(sa.select(leases).where(
                leases.c.name == self.row(name))).first()
            if row is None or row.holder != holder or row.expires_at <= epoch(now):
                return None
            changed = conn.execute(leases.update().where(
                leases.c.name == row.name, leases.c.holder == holder,
                leases.c.expires_at == row.expires_at).values(expires_at=epoch(now + ttl)))
        return (row.epoch or 1) if changed.rowcount == 1 else None

    def live(self, now: datetime) -> dict[str, str]:
        """Every unexpired lease at ``now``, row name → holder (all scopes)."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(leases.c.name, leases.c.holder).where(
                leases.c.expires_at > epoch(now))).all()
        return {row.name: row.holder for row in rows}


class Renewing:
    """A lease a tick may renew but never take: a replica that splits organizations with
    others takes an organization's lease only by its split (``guard.entry.split``), so a tick
    never leads more organizations than the replica's share."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def hold(self, name: str, holder: str, now: datetime, ttl: timedelta) -> int | None:
        """Renew the lease if ``holder`` has it; ``None`` (standby) otherwise."""
        return self.lease.renew(name, holder, now, ttl)

    def current(self, name: str, holder: str, token: int, now: datetime) -> bool:
        """The fence, as the lease's."""
        return self.lease.current(name, holder, token, now)

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up, as the lease does."""
        return self.lease.release(name, holder)
