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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.adapters.store.outbox import COLLAPSIBLE, Outbox, Owed
from guard.shell.ports import (
    Blocks,
    Posted,
    SlackRejected,
    SlackTransport,
    SlackUnavailable,
)

log = logging.getLogger(__name__)
CLAIM_TTL = timedelta(minutes=2)
THREADED = frozenset({"repeat", "escalated", "resolved"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one owed row."""

    owed: Owed
    ok: bool
    error: str | None = None
    final: bool = False


class LogTransport:
    """The transport when Slack is not configured: every message becomes a log line."""

    supports_updates = True

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("guard.notify")
        self.count = 0

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None) -> Posted:
        """Log the text; a reply is indented under its parent."""
        self.count += 1
        self.logger.warning("%s%s", "  ↳ " if thread_ts else "", text)
        return Posted(channel or "log", f"{self.count}")

    def update(self, channel: str, ts: str, text: str,
               blocks: Blocks) -> Posted:
        """Updates are not worth a log line: the numbers are in each tick's report."""
        return Posted(channel, ts)


def collapse(rows: Sequence[Owed]) -> tuple[list[Owed], list[int]]:
    """Split owed rows into those to send and repeats/updates a later row overtook."""
    last: dict[str, int] = {}
    for index, row in enumerate(rows):
        last[row.incident] = index
    keep, dropped = [], []
    for index, row in enumerate(rows):
        if row.kind in COLLAPSIBLE and last[row.incident] > index:
            dropped.append(row.id)
        else:
            keep.append(row)
    return keep, dropped


def deliver(outbox: Outbox, transport: SlackTransport, channel: str, holder: str,
            now: datetime) -> list[Delivery]:
    """Send every owed notification that can be sent now, oldest first."""
    keep, dropped = collapse(outbox.owed())
    outbox.supersede(dropped)
    results: list[Delivery] = []
    held: set[str] = set()
    for row in keep:
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


def _send(outbox: Outbox, transport: SlackTransport, channel: str, row: Owed,
          now: datetime) -> None:
    p = row.payload
    where = outbox.message_of(row.incident)
    if row.kind == "firing" and where is None:
        posted = transport.post(channel, p.text, p.blocks)
        if transport.supports_updates:
            outbox.remember_message(row.incident, posted.channel, posted.ts, now)
        return
    if where is not None and transport.supports_updates:
        transport.update(where[0], where[1], p.text, p.blocks)
        if row.kind in THREADED:
            transport.post(where[0], p.reply_text or p.text, p.reply_blocks, thread_ts=where[1])
        return
    if row.kind != "update":
        transport.post(channel, p.reply_text or p.text, p.blocks)


class PacedTransport:
    """Keeps to Slack's one message per second per channel by waiting between sends."""

    def __init__(self, inner: SlackTransport, min_interval: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.min_interval = min_interval
        self.sleep = sleep
        self.monotonic = monotonic
        self._last: dict[str, float] = {}

    @property
    def supports_updates(self) -> bool:
        """As the wrapped transport."""
        return self.inner.supports_updates

    def post(self, channel: str, text: str, blocks: Blocks,
             thread_ts: str | None = None) -> Posted:
        """Post after the channel's last message is at least ``min_interval`` old."""
        self._wait(channel)
        return self.inner.post(channel, text, blocks, thread_ts)

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> Posted:
        """Update, paced like posts."""
        self._wait(channel)
        return self.inner.update(channel, ts, text, blocks)

    def _wait(self, channel: str) -> None:
        last = self._last.get(channel)
        if last is not None:
            gap = self.min_interval - (self.monotonic() - last)
            if gap > 0:
                self.sleep(gap)
        self._last[channel] = self.monotonic()
