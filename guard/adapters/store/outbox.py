"""The notification outbox and the Slack messages incidents live in.

A notification is **owed** from the moment policy decides it (one row, deduplicated by a key
derived from the decision, so two replicas or a restart never owe it twice) and **delivered**
only once Slack accepted it. Sending takes a short **claim** on the row first, so two senders
never send the same row. Owed rows are retried in order every tick; a repeat or an update that
a later notification of the same incident overtook is **superseded**, not sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from guard.adapters.store.engine import Store, at_epoch, epoch, insert_new
from guard.adapters.store.schema import incidents, outbox
from guard.core.records import Owed, Payload

OWED, DELIVERED, SUPERSEDED = "owed", "delivered", "superseded"


class Outbox:
    """Owed notifications and the messages incidents live in."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- owed --------------------------------------------------------------------------------

    def enqueue(self, dedup: str, incident: str, kind: str, payload: Payload,
                now: datetime) -> bool:
        """Record a notification as owed; False if the same decision was already recorded."""
        row = {"dedup": dedup[:255], "incident": incident, "kind": kind,
               "created_at": epoch(now), "text": payload.text, "blocks": payload.dumps(),
               "status": OWED, "attempts": 0}
        with self.store.writing() as conn:
            return insert_new(conn, outbox, row, "dedup")

    def owed(self) -> list[Owed]:
        """Every owed notification, oldest first."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(outbox).where(outbox.c.status == OWED)
                                .order_by(outbox.c.id)).all()
        return [Owed(r.id, r.dedup, r.incident, r.kind, at_epoch(r.created_at),
                     Payload.loads(r.text, r.blocks), r.attempts,
                     at_epoch(r.sending_since) if r.sending_since is not None else None)
                for r in rows]

    def supersede(self, ids: list[int]) -> None:
        """Mark rows overtaken by a later notification of the same incident."""
        if ids:
            with self.store.writing() as conn:
                conn.execute(outbox.update().where(outbox.c.id.in_(ids))
                             .values(status=SUPERSEDED))

    def claim(self, row_id: int, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take the row for sending; False if delivered or claimed by a live sender."""
        with self.store.writing() as conn:
            done = conn.execute(
                outbox.update()
                .where(outbox.c.id == row_id, outbox.c.status == OWED,
                       sa.or_(outbox.c.claimed_until.is_(None),
                              outbox.c.claimed_until < epoch(now),
                              outbox.c.claimed_by == holder))
                .values(claimed_by=holder, claimed_until=epoch(now + ttl),
                        sending_since=sa.func.coalesce(outbox.c.sending_since, epoch(now))))
        return done.rowcount == 1

    def delivered(self, row_id: int, now: datetime) -> None:
        """Slack accepted the row."""
        with self.store.writing() as conn:
            conn.execute(outbox.update().where(outbox.c.id == row_id).values(
                status=DELIVERED, delivered_at=epoch(now), claimed_by=None,
                claimed_until=None))

    def failed(self, row_id: int, error: str) -> None:
        """Sending failed: release the claim so the next tick retries it."""
        with self.store.writing() as conn:
            conn.execute(outbox.update().where(outbox.c.id == row_id).values(
                attempts=outbox.c.attempts + 1, last_error=error[:500], claimed_by=None,
                claimed_until=None))

    def last_error(self) -> str | None:
        """The newest error of a notification still owed."""
        with self.store.reading() as conn:
            value = conn.scalar(sa.select(outbox.c.last_error)
                                .where(outbox.c.status == OWED, outbox.c.last_error.is_not(None))
                                .order_by(outbox.c.id.desc()).limit(1))
        return str(value) if value is not None else None

    def history(self) -> list[tuple[str, str, str]]:
        """(incident, kind, status) of every row, oldest first (for tests and status)."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(outbox.c.incident, outbox.c.kind, outbox.c.status)
                                .order_by(outbox.c.id)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    # --- incidents' messages -----------------------------------------------------------------

    def message_of(self, incident: str) -> tuple[str, str] | None:
        """(channel, ts) of the message an incident lives in, once posted."""
        with self.store.reading() as conn:
            row = conn.execute(sa.select(incidents.c.channel, incidents.c.ts)
                               .where(incidents.c.incident == incident)).first()
        return (row[0], row[1]) if row else None

    def remember_message(self, incident: str, channel: str, ts: str, now: datetime) -> None:
        """Remember where an incident's message is, so restarts update instead of reposting."""
        with self.store.writing() as conn:
            conn.execute(incidents.delete().where(incidents.c.incident == incident))
            conn.execute(incidents.insert().values(incident=incident, channel=channel, ts=ts,
                                                   posted_at=epoch(now)))
