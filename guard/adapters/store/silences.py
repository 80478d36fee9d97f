"""Silences: a budget's notifications (or one condition's) muted until an end time."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from guard.adapters.store.engine import Store, at_epoch, epoch
from guard.adapters.store.schema import silences
from guard.core.records import Silence


class Silences:
    """Typed reads and writes of the silences."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_silence(self, budget: str, condition: str | None, ends_at: datetime, *,
                    reason: str, who: str, now: datetime) -> int:
        """Mute a budget (or one of its conditions) until ``ends_at``; returns the silence id."""
        with self.store.writing() as conn:
            result = conn.execute(silences.insert().values(
                budget=budget, condition=condition, starts_at=epoch(now),
                ends_at=epoch(ends_at), reason=reason, who=who))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def silences(self, now: datetime | None = None) -> list[Silence]:
        """All silences, or only those active at ``now``."""
        query = sa.select(silences).order_by(silences.c.id)
        if now is not None:
            query = query.where(silences.c.starts_at <= epoch(now),
                                silences.c.ends_at > epoch(now))
        with self.store.reading() as conn:
            rows = conn.execute(query).all()
        return [Silence(r.id, r.budget, r.condition, at_epoch(r.starts_at), at_epoch(r.ends_at),
                        r.reason, r.who) for r in rows]

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        """End a silence now; False if there is no such active silence."""
        with self.store.writing() as conn:
            done = conn.execute(silences.update().where(
                silences.c.id == silence_id, silences.c.ends_at > epoch(now))
                .values(ends_at=epoch(now)))
        return done.rowcount == 1
