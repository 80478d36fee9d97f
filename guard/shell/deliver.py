"""Sending owed notifications, in order, each once.

One round per tick: collapse what later notifications overtook, then for each owed row (oldest
first) claim it, send it, and mark it delivered. An incident lives in one Slack message: the
first notification posts it (its ``ts`` is remembered in the store, so a restart updates
instead of reposting); updates edit it; repeat, escalation and resolution edit it and reply in
its thread. If Slack is unavailable the round stops, keeping order, and the next tick resumes;
a message Slack rejects holds back only its own incident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.core.records import COLLAPSIBLE, THREADED, Blocks, NotificationKind, Owed, Posted
from guard.errors import SlackRejected, SlackUnavailable
from guard.shell.ports import OutboxPort, SlackTransport

log = logging.getLogger(__name__)
CLAIM_TTL = timedelta(minutes=2)
LOOKUP_SLACK = timedelta(minutes=1)
"""How far before a row's first send its lookup starts (clock skew with Slack)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one owed row."""

    owed: Owed
    ok: bool
    error: str | None = None
    final: bool = False


def collapse(rows: Sequence[Owed]) -> tuple[list[Owed], list[int]]:
    """Split owed rows into those to send and those a later row of their incident overtook:
    an update by any later row (each one edits the message), a repeat only by a later row
    that also replies in the thread. A later update never drops a repeat: its "still
    firing" reply would be lost (a rerun after a crash, or a Slack outage, owes both)."""
    last: dict[str, int] = {}
    threaded: dict[str, int] = {}
    for index, row in enumerate(rows):
        last[row.incident] = index
        if row.kind in THREADED:
            threaded[row.incident] = index
    keep, dropped = [], []
    for index, row in enumerate(rows):
        later = threaded if row.kind == NotificationKind.REPEAT else last
        if row.kind in COLLAPSIBLE and later.get(row.incident, -1) > index:
            dropped.append(row.id)
        else:
            keep.append(row)
    return keep, dropped


def deliver(outbox: OutboxPort, transport: SlackTransport, channel: str, holder: str,
            now: datetime, *, before: Callable[[], None] | None = None) -> list[Delivery]:
    """Send every owed notification that can be sent now, oldest first; ``before`` runs
    before each one (the leader fence, which raises to stop the round)."""
    keep, dropped = collapse(outbox.owed())
    outbox.supersede(dropped)
    results: list[Delivery] = []
    held: set[str] = set()
    for row in keep:
        if before is not None:
            before()
        if row.incident in held or not outbox.claim(row.id, holder, now, CLAIM_TTL):
            continue
        try:
            _send(outbox, transport, channel, row, now)
        except SlackUnavailable as exc:
            outbox.failed(row.id, str(exc))
            results.append(Delivery(row, False, str(exc)))
            log.warning("Slack unavailable; %d notifications stay owed: %s",
                        len(keep) - len(results) + 1, exc)
            break
        except SlackRejected as exc:
            outbox.failed(row.id, str(exc))
            held.add(row.incident)
            results.append(Delivery(row, False, str(exc), final=True))
            log.error("Slack rejected a notification (%s); fix the cause, it stays owed", exc)
            continue
        outbox.delivered(row.id, now)
        results.append(Delivery(row, True))
    return results


def _send(outbox: OutboxPort, transport: SlackTransport, channel: str, row: Owed,
          now: datetime) -> None:
    p = row.payload
    where = outbox.message_of(row.incident)
    if row.kind == NotificationKind.FIRING and where is None:
        posted = _post_once(transport, channel, row, p.text, p.blocks)
        if transport.supports_updates:
            outbox.remember_message(row.incident, posted.channel, posted.ts, now)
        return
    if where is not None and transport.supports_updates:
        transport.update(where[0], where[1], p.text, p.blocks)  # idempotent
        if row.kind in THREADED:
            _post_once(transport, where[0], row, p.reply_text or p.text, p.reply_blocks,
                       thread_ts=where[1])
        return
    if row.kind != NotificationKind.UPDATE:
        _post_once(transport, channel, row, p.reply_text or p.text, p.blocks)


def _post_once(transport: SlackTransport, channel: str, row: Owed, text: str,
               blocks: Blocks, *, thread_ts: str | None = None) -> Posted:
    """Post ``row`` tagged with its dedup key; a row an earlier sender took is first looked
    up in Slack (from a minute before that send), and adopted if it is there."""
    if row.sending_since is not None and transport.supports_lookup:
        found = transport.find(channel, row.dedup, row.sending_since - LOOKUP_SLACK,
                               thread_ts)
        if found is not None:
            log.info("notification %s was already in Slack (%s); not posted again",
                     row.dedup, found.ts)
            return found
    return transport.post(channel, text, blocks, thread_ts, dedup=row.dedup)
