"""The notification outbox, incidents' Slack messages, silences and the leader lease.

A notification is **owed** from the moment policy decides it (one row, deduplicated by a key
derived from the decision, so two replicas or a restart never owe it twice) and **delivered**
only once Slack accepted it. Sending takes a short **claim** on the row first, so two senders
never send the same row. Owed rows are retried in order every tick; a repeat or an update that
a later notification of the same incident overtook is **superseded**, not sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from guard.adapters.store.engine import Store, at_epoch, epoch
from guard.adapters.store.schema import incidents, leases, outbox, silences

OWED, DELIVERED, SUPERSEDED = "owed", "delivered", "superseded"
COLLAPSIBLE = frozenset({"repeat", "update"})


@dataclass(frozen=True, slots=True)
class Payload:
    """What to send: the parent message, and a thread reply for lifecycle notices."""

    text: str
    blocks: tuple[dict[str, Any], ...]
    reply_text: str | None = None
    reply_blocks: tuple[dict[str, Any], ...] = ()

    def dumps(self) -> str:
        """As JSON for the store."""
        return json.dumps({"reply_text": self.reply_text, "reply_blocks": self.reply_blocks,
                           "blocks": self.blocks})

    @classmethod
    def loads(cls, text: str, raw: str) -> Payload:
        """From the store."""
        data = json.loads(raw)
        return cls(text, tuple(data["blocks"]), data["reply_text"], tuple(data["reply_blocks"]))


@dataclass(frozen=True, slots=True)
class Owed:
    """One notification not yet delivered."""

    id: int
    dedup: str
    incident: str
    kind: str
    created_at: datetime
    payload: Payload
    attempts: int


@dataclass(frozen=True, slots=True)
class Silence:
    """Notifications of ``budget`` (and ``condition``, or all) are not sent until ``ends_at``."""

    id: int
    budget: str
    condition: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    who: str

    def covers(self, budget: str, condition: str | None, now: datetime) -> bool:
        """Whether this silence mutes (budget, condition) at ``now``."""
        return (self.budget == budget and self.condition in (None, condition)
                and self.starts_at <= now < self.ends_at)


class Outbox:
    """Owed notifications, the messages incidents live in, silences and leases."""

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
            return _insert_new(conn, outbox, row, "dedup")

    def owed(self) -> list[Owed]:
        """Every owed notification, oldest first."""
        with self.store.reading() as conn:
            rows = conn.execute(sa.select(outbox).where(outbox.c.status == OWED)
                                .order_by(outbox.c.id)).all()
        return [Owed(r.id, r.dedup, r.incident, r.kind, at_epoch(r.created_at),
                     Payload.loads(r.text, r.blocks), r.attempts) for r in rows]

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
                .values(claimed_by=holder, claimed_until=epoch(now + ttl)))
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

    # --- silences ----------------------------------------------------------------------------

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

    # --- leader lease ------------------------------------------------------------------------

    def lease(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Hold (or renew) the lease ``name``; False while another live holder has it."""
        with self.store.writing() as conn:
            renewed = conn.execute(leases.update().where(
                leases.c.name == name,
                sa.or_(leases.c.holder == holder, leases.c.expires_at <= epoch(now)))
                .values(holder=holder, expires_at=epoch(now + ttl)))
            if renewed.rowcount == 1:
                return True
        with self.store.writing() as conn:
            return _insert_new(conn, leases, {"name": name, "holder": holder,
                                              "expires_at": epoch(now + ttl)}, "name")


def _insert_new(conn: Connection, table: sa.Table, row: dict[str, Any], key: str) -> bool:
    """INSERT unless a row with the same ``key`` exists; True if this call inserted it."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(**row).on_conflict_do_nothing(index_elements=[key])
    return conn.execute(statement).rowcount == 1
